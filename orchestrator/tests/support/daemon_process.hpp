// Integration-test support: a real orchestratord child process on its own loopback port, with its
// own --instance name (so daemons never touch each other's sandboxes) and its log in a file.
//
//   sandlot::itest::daemon_process d(sandlot::itest::unique_instance("slots"), /*slots=*/2);
//   sandlot::client::client c(d.url());
//   ...
//   auto st = d.terminate(30s);   // SIGTERM, then waitpid within the bound
//
// The destructor stops a daemon that is still running (SIGTERM, bounded wait, SIGKILL as a last
// resort), so a failing test never leaves one behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sandlot::itest {

struct daemon_options {
  std::string instance;  // --instance: required, so each test's sandboxes carry their own label
  int slots = 2;         // --slots
  std::vector<std::string> extra_args;
  std::chrono::seconds start_timeout{30};  // until /healthz answers
  std::string binary;   // empty: the orchestratord built alongside (SANDLOT_ORCHESTRATORD)
  int nofile_soft = 0;  // RLIMIT_NOFILE for the daemon (0: inherited)
  int nofile_hard = 0;
};

/// How a child process ended, as waitpid() reported it.
struct exit_status {
  bool exited = false;  // returned from main / called exit
  int code = -1;        // exit code when `exited`
  int signal = 0;       // the terminating signal otherwise
  std::string describe() const;
};

class daemon_process {
 public:
  /// Starts orchestratord (SANDLOT_ORCHESTRATORD) on a free 127.0.0.1 port and waits until its
  /// /healthz answers. Throws std::runtime_error with the end of its log if it does not come up.
  explicit daemon_process(daemon_options opts);
  daemon_process(std::string instance, int slots) : daemon_process(options_for(std::move(instance), slots)) {}
  ~daemon_process();
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  const std::string& url() const noexcept { return url_; }
  unsigned short port() const noexcept { return port_; }
  const std::string& instance() const noexcept { return opts_.instance; }
  const std::filesystem::path& log_path() const noexcept { return log_path_; }
  /// The whole log so far.
  std::string log() const;

  /// Not reaped yet (may be a zombie that wait_exit() would reap).
  bool running() const noexcept { return !status_; }
  /// Sends `sig` to the daemon (no-op once reaped).
  void send_signal(int sig) const;
  /// Reaps the daemon if it exits within `timeout` (polling waitpid WNOHANG).
  std::optional<exit_status> wait_exit(std::chrono::milliseconds timeout);
  /// SIGTERM, then waits up to `timeout`; nullopt if it is still running then.
  std::optional<exit_status> terminate(std::chrono::milliseconds timeout);
  /// SIGKILL and reap: a daemon that dies without any cleanup.
  exit_status kill_hard();

 private:
  static daemon_options options_for(std::string instance, int slots) {
    daemon_options o;
    o.instance = std::move(instance);
    o.slots = slots;
    return o;
  }
  bool try_start(unsigned short port, std::string& why);

  daemon_options opts_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  unsigned short port_ = 0;
  std::string url_;
  std::optional<exit_status> status_;
};

/// A --instance name no other test or engineer uses: "itest-<tag>-<pid>-<random>".
std::string unique_instance(std::string_view tag);

/// This process's scratch directory (created on first use under $TMPDIR or /tmp).
const std::filesystem::path& scratch_dir();
/// Logs of the daemons started since the last forget_started_daemons(), for printing on failure.
std::vector<std::filesystem::path> started_daemon_logs();
void forget_started_daemons();
/// The last `max_bytes` of a file (the whole file when smaller), or a note that it is unreadable.
std::string file_tail(const std::filesystem::path& p, std::size_t max_bytes);

/// A process's resident set (VmRSS in /proc/PID/status) in KiB; nullopt once it is gone.
std::optional<long> rss_kib(pid_t pid);

/// A port nothing listens on right now (bind 127.0.0.1:0, read it back, close).
unsigned short free_loopback_port();

/// Polls `pred` until it is true or `timeout` passes; returns its last value. This is how tests
/// wait: on a condition with a deadline, never on a bare sleep.
template <class Pred>
bool wait_until(Pred&& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(50)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);  // the poll period, not a synchronisation point
  }
}

}  // namespace sandlot::itest
