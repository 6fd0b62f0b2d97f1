// A daemon on demand for tests run by hand: when nothing answers at the default URL, the client
// starts `orchestratord` itself and waits for it (docs/consuming.md, "Tests run by hand").
//
// The policy, in order:
// - Only a client left at the default URL starts one: SANDLOT_URL unset or empty, no URL given in
//   options, and SANDLOT_AUTOSTART not 0 (CI sets it, so a missing service fails loudly there).
// - One start per machine at a time: the starter holds an flock on a file in the user's runtime
//   dir, probes /healthz again under it, and starts a daemon only if still nothing answers. Two
//   test binaries started at once therefore share one daemon; within a process a mutex does the
//   same for threads.
// - The daemon is nobody's child: fork, setsid, fork again. It listens on loopback only, logs to
//   $XDG_STATE_HOME/sandlot/orchestratord.log, and exits after SANDLOT_IDLE_EXIT (default 10m)
//   without leases, so it does not outlive the session by much.
// - A start that failed is not retried within the process: its error is repeated at once, so a
//   suite of forty tests fails in forty milliseconds, not forty times thirty seconds.
//
// Everything that decides (whether, which binary, which paths, which environment) is a pure
// function here, tested in shared/tests/autostart.tests.cpp; the process and lock handling is
// exercised for real by scripts/autostart-check.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sandlot::client::detail {

/// Where an autostarted daemon listens; the default URL (protocol::default_url) points here.
inline constexpr std::string_view autostart_listen = "127.0.0.1:7345";
/// How long an autostarted daemon stays without leases, unless SANDLOT_IDLE_EXIT says otherwise.
inline constexpr std::string_view default_idle_exit = "10m";
/// The budget of an autostarted daemon unless SANDLOT_SLOTS says otherwise: derived from the host.
inline constexpr std::string_view default_slots = "auto";
/// How long a started daemon has to answer /healthz.
inline constexpr std::chrono::seconds autostart_wait{30};

/// Whether a client may start a daemon: only when the caller gave no URL, SANDLOT_URL
/// (`sandlot_url`, null when unset) is unset or empty, and SANDLOT_AUTOSTART (`autostart`) is not
/// 0, false, no or off.
bool autostart_allowed(bool url_given, const char* sandlot_url, const char* autostart);

/// Where to look for orchestratord, in this order.
struct binary_search {
  std::string env_override;  // SANDLOT_ORCHESTRATORD: when set, it must name an executable
  std::string library_file;  // the file this library was loaded from (dladdr), or empty
  std::string path;          // PATH
};

/// The orchestratord to start, as an absolute path. Throws std::runtime_error saying what to do
/// when SANDLOT_ORCHESTRATORD names no executable or none is found.
std::string find_orchestratord(const binary_search& where,
                               const std::function<bool(const std::string&)>& is_executable);

/// The file holding this library's code (a shared library, or the executable it is linked into).
std::string this_library_file();

/// $XDG_RUNTIME_DIR/sandlot, or /tmp/sandlot-UID: where the start lock lives.
std::string runtime_dir(const char* xdg_runtime_dir, uid_t uid);
/// Where the daemon's log goes, best first: $XDG_STATE_HOME/sandlot, ~/.local/state/sandlot
/// (only absolute paths count), then the runtime dir.
std::vector<std::string> log_dirs(const char* xdg_state_home, const char* home,
                                  const std::string& runtime_dir);

/// The daemon's environment: `env` (NAME=VALUE entries) plus SANDLOT_SLOTS=auto and
/// SANDLOT_IDLE_EXIT=10m where they are not set, so the user's own values win. They travel in the
/// environment, not as flags, because orchestratord's flags beat its environment.
std::vector<std::string> daemon_environment(const std::vector<std::string>& env);
/// The value of `name` in `env` (NAME=VALUE entries), or empty.
std::string env_value(const std::vector<std::string>& env, std::string_view name);

struct spawn_request {
  std::string binary;             // absolute path
  std::vector<std::string> args;  // without argv[0]
  std::vector<std::string> env;   // NAME=VALUE
  std::string log_file;           // stdout and stderr are appended here
};

/// Starts `req.binary` detached: in a session of its own, reparented away from this process (no
/// zombie, it survives us), stdin from /dev/null, stdout and stderr appended to the log, every
/// other descriptor closed, signal mask and dispositions reset. Returns its pid once it has
/// exec'd; throws std::runtime_error if it could not be started.
pid_t spawn_detached(const spawn_request& req);

/// Waits until `answers()` holds, up to `wait`. Throws std::runtime_error if `pid` exits first
/// (with the last lines its log got since `log_offset`) or the wait runs out.
void wait_until_answering(pid_t pid, const std::function<bool()>& answers,
                          std::chrono::milliseconds wait, const std::string& log_file,
                          std::uintmax_t log_offset);

/// The last `max_lines` lines of `file` from byte `offset` on (at most a few KiB), or empty.
std::string log_tail(const std::string& file, std::uintmax_t offset, std::size_t max_lines = 20);

/// Makes sure a daemon answers at `url` (the default URL): probes /healthz and, if nothing
/// answers, starts one under the lock and waits for it. Thread- and process-safe. Throws
/// std::runtime_error whose message says what failed and what to do.
void ensure_daemon(const std::string& url, const std::string& token);

}  // namespace sandlot::client::detail
