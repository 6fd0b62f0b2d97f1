// `--engine NAME=URL[;slots=N]`: the engines of a pool, as the operator names them
// (docs/scale-out.md). Parsing and checks only; daemon.cpp makes the providers.
#pragma once

#include <string>
#include <vector>

namespace sandlot::orchestrator {

struct engine_spec {
  std::string name;  // [A-Za-z0-9_.-], 1 to 32 characters: a metric label and sandbox.engine
  std::string url;   // unix:///path.sock, or tcp://HOST:PORT on loopback
  int slots = 0;     // 0: not given (the daemon's --slots)
};

/// One entry. Throws std::runtime_error saying what is accepted.
engine_spec parse_engine_spec(const std::string& text);

/// Every entry, with `default_slots` for those that give none. Throws std::runtime_error for a
/// bad entry, a name or URL given twice.
std::vector<engine_spec> resolve_engines(const std::vector<std::string>& entries, int default_slots);

}  // namespace sandlot::orchestrator
