// `--engine NAME=URL[;slots=N]`: the engines of a pool, as the operator names them
// (docs/scale-out.md). Parsing and checks only; daemon.cpp makes the providers.
#pragma once

#include <string>
#include <vector>

namespace sandlot::orchestrator {

struct engine_spec {
  std::string name;  // [A-Za-z0-9_.-], 1 to 32 characters: a metric label and sandbox.engine
  std::string url;   // unix:///path.sock, tcp://HOST:PORT on loopback, or kubernetes://[NAMESPACE]
  int slots = 0;     // 0: not given (the daemon's --slots; one Kubernetes engine alone: its nodes' allocatable)
  bool slots_given = false;
  std::string kubeconfig;  // kubernetes: a path, "in-cluster", or empty ($KUBECONFIG, ~/.kube/config)
  std::string context;     // kubernetes: the kubeconfig context (empty: current-context)

  bool kubernetes() const { return url.starts_with("kubernetes://"); }
  /// kubernetes://NAMESPACE's namespace (empty: the context's).
  std::string kube_namespace() const { return kubernetes() ? url.substr(13) : std::string(); }
};

/// One entry. Throws std::runtime_error saying what is accepted.
engine_spec parse_engine_spec(const std::string& text);

/// Every entry, with `default_slots` for those that give none. Throws std::runtime_error for a
/// bad entry, a name or URL given twice.
std::vector<engine_spec> resolve_engines(const std::vector<std::string>& entries, int default_slots);

}  // namespace sandlot::orchestrator
