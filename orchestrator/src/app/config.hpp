// orchestratord's settings: command line (CLI11) over an optional TOML file (toml++); flags win.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lease_service.hpp"
#include "instance_owner.hpp"  // host_name()
#include "engine_spec.hpp"
#include "sizing.hpp"

namespace sandlot::orchestrator {

struct daemon_config {
  int slots = 4;            // with --slots auto: the number derived from the host
  bool slots_auto = false;  // --slots auto (or slots = "auto" in the file)
  std::string slots_explanation;  // with slots_auto: how the number was derived, for the log
  std::string listen;  // empty until parsed: 127.0.0.1:7345, or 0.0.0.0:7345 in the container image
  std::string docker_host;  // empty: DOCKER_HOST or the local socket
  std::vector<std::string> engine_entries;  // --engine NAME=URL[;slots=N] (repeatable; SANDLOT_ENGINE comma-separated)
  std::vector<engine_spec> engines;         // resolved; empty: the one engine of --docker-host
  std::vector<std::string> prepull;
  std::vector<std::string> warm;  // --warm IMAGE[=N] | auto (repeatable; SANDLOT_WARM comma-separated)
  std::vector<std::string> allow_registries;
  int max_pulls = 2;
  int max_queued_per_run = 1000;
  int read_timeout_s = 30;  // a request (headers and body) must arrive within this
  int pull_attempts = 3;
  int pull_deadline_s = 600;
  std::string instance;  // empty: derived from --listen
  std::string log_level = "info";
  std::string log_format = "text";  // text: one line per event; json: one JSON object per line
  int idle_exit_s = 0;              // --idle-exit: stop after this long with nothing in use; 0 never
  std::string config_file;
  std::string token_file;  // --token-file: every request but /healthz needs its bearer token
  std::string token;       // read from token_file, or SANDLOT_TOKEN; never logged

  std::vector<std::string> allow_hosts;    // --allow-host, and SANDLOT_ALLOW_HOSTS (comma-separated)
  std::vector<std::string> allow_origins;  // --allow-origin
  bool allow_host_network = false;
  int max_ttl_s = 3600;
  std::int64_t max_memory_mb = 0;  // per slot; 0: from sizing
  double max_cpus = 0;             // per slot; 0: from sizing
  int max_pids = 0;                // per slot; 0: from sizing
  std::int64_t max_disk_mb = 0;    // per slot; 0: from sizing
  int max_fixtures = 0;            // 0: as many as --slots
  int keep_runs = 100;
  int max_connections = 512;
  std::int64_t max_output_bytes = 4 * 1024 * 1024;
  int engine_timeout_s = 60;
  int sweep_interval_s = 10;
  int shutdown_timeout_s = 25;
  std::string schedule = "duration";  // --schedule: duration or fifo
  std::string state_dir;              // --state-dir: where durations.json lives; empty: memory only
  slot_share per_slot;  // resolved maxima per slot

  std::string listen_host;
  unsigned short listen_port = 0;

  service_options service() const;
};

/// Parses argv (and the --config file). Returns nullopt after printing --help; throws
/// std::runtime_error with a message that says what to fix. `--slots auto` is resolved here, by
/// measuring the host (sizing.hpp), so `slots` is always the number the daemon will use.
std::optional<daemon_config> parse_config(int argc, char** argv);

/// The bearer token in `path`: its content without trailing whitespace. Throws std::runtime_error
/// saying what to fix when it cannot be read, is empty, or has characters a header cannot carry.
std::string read_token_file(const std::string& path);

/// `text` as a bearer token, or throws std::runtime_error naming `source` and what to fix: empty,
/// over 4096 bytes, or holding characters an HTTP header cannot carry.
std::string checked_token(std::string text, const std::string& source);

/// The bearer token the daemon (and `orchestratord health`) uses: the token file's when one is
/// named, else SANDLOT_TOKEN's, else none. Throws as the two above.
std::string resolve_token(const std::string& token_file);

/// Seconds in a duration such as 600, 600s, 10m, 1h or 0 (off). Throws std::runtime_error saying
/// what is accepted.
int parse_duration_s(const std::string& text, const std::string& what);

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& host);

}  // namespace sandlot::orchestrator
