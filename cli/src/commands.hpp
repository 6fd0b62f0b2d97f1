// The subcommands of `sandlot`, one function each; main.cpp wires them to CLI11 and turns their
// exceptions into the documented exit codes (docs/cli.md).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include <sandlot/client.hpp>

namespace sandlot::cli {

namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int failed = 1;       // the daemon answered an error, not ready, not found, ambiguous
inline constexpr int usage = 2;        // bad arguments or options
inline constexpr int unreachable = 3;  // no answer from the daemon, or it closed the event stream
}  // namespace exit_code

/// Something the operator asked for cannot be done (exit 1); the message says what to do.
class command_failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// The arguments make no sense (exit 2).
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
/// The daemon went away mid-command (exit 3).
class daemon_lost : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct global_options {
  std::string url;         // --url, else SANDLOT_URL, else http://127.0.0.1:7345
  std::string token_file;  // --token-file, else SANDLOT_TOKEN
  bool json = false;       // --json: print the wire JSON instead of tables
};

/// A client for the chosen daemon. It never starts one: a missing daemon is exit 3.
client::client make_client(const global_options& g);

int cmd_status(const global_options& g);
int cmd_leases(const global_options& g, const std::string& run);
int cmd_why(const global_options& g, const std::string& key);
int cmd_runs(const global_options& g);

struct report_options {
  std::string run;
  bool open = false;
  std::string html_file;
  std::string junit_file;
};
int cmd_report(const global_options& g, const report_options& o);

int cmd_drain(const global_options& g, bool wait, int timeout_s);
int cmd_resume(const global_options& g);
int cmd_slots(const global_options& g, int slots);
int cmd_release(const global_options& g, const std::string& key, const std::string& reason);
int cmd_health(const global_options& g);

struct watch_options {
  std::string run;
  bool once = false;
};
int cmd_watch(const global_options& g, const watch_options& o);

/// The live lease a LEASE|TEST argument names: an exact id, name or test among the live leases;
/// a key that names none is taken as a lease id (the daemon knows ended ones too). Throws
/// command_failed listing the candidates when several leases match.
std::string resolve_lease_id(const client::client& c, const std::string& key);

}  // namespace sandlot::cli
