#include "autostart.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <link.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

#include "http_client.hpp"

namespace sandlot::client::detail {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

std::string errno_text(int err) { return std::strerror(err); }

/// A descriptor closed on every path out.
class unique_fd {
 public:
  explicit unique_fd(int fd = -1) noexcept : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return fd_; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

/// Moves `fd` to a number of at least 3 (closing the original), so that the child's dup2s onto
/// 0, 1 and 2 cannot overwrite one another when this process runs with a standard stream closed.
int above_stdio(int fd) {
  if (fd < 0 || fd > STDERR_FILENO) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  ::close(fd);
  return moved;
}

/// Creates `dir` (and missing parents) with mode 0700, then checks it is a real directory of
/// ours that nobody else may write to: the start lock and the log live there, and /tmp is shared.
void make_private_dir(const std::string& dir) {
  std::string partial;
  for (std::size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error(fmt::format("cannot create {}: {}", partial, errno_text(errno)));
    }
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw std::runtime_error(fmt::format("cannot read {}: {}", dir, errno_text(errno)));
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != ::getuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw std::runtime_error(fmt::format(
        "{} is not a private directory of this user (owner uid {}, mode {:o}); remove it, or set "
        "XDG_RUNTIME_DIR and XDG_STATE_HOME to directories of your own",
        dir, st.st_uid, st.st_mode & 07777));
  }
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::vector<std::string> current_environment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env.emplace_back(*e);
  return env;
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

/// An exclusive flock held for the object's life. Waited for with a deadline (polling), so a
/// starter that hangs holding it cannot hang every other test binary with it.
class file_lock {
 public:
  file_lock(const std::string& path, milliseconds wait)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) {
    if (fd_.get() < 0)
      throw std::runtime_error(fmt::format("cannot open the lock {}: {}", path, errno_text(errno)));
    const auto deadline = steady_clock::now() + wait;
    while (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        throw std::runtime_error(fmt::format("cannot lock {}: {}", path, errno_text(errno)));
      }
      if (steady_clock::now() >= deadline) {
        throw std::runtime_error(fmt::format(
            "another process held the start lock {} for over {} s; is a test binary stuck starting "
            "orchestratord? Start one yourself and set SANDLOT_URL",
            path, std::chrono::duration_cast<std::chrono::seconds>(wait).count()));
      }
      std::this_thread::sleep_for(milliseconds{50});  // the poll period
    }
  }
  // Closing the descriptor releases the lock; O_CLOEXEC kept it out of the daemon.

 private:
  unique_fd fd_;
};

/// Whether `pid` still runs. A zombie has exited: our daemon is nobody's child but init's, and an
/// init that reaps slowly (or not at all, in some containers) must not look like a live daemon.
bool process_runs(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (stat.empty()) return false;
  const std::size_t close = stat.rfind(')');  // the command name may hold spaces and ')'
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X' && state != 'x';
}

bool healthz_answers(const std::string& url, const std::string& token) {
  try {
    // Any HTTP answer means something listens there: starting another daemon could not bind.
    http_client(url, token).send("GET", "/healthz", {}, milliseconds{2000});
    return true;
  } catch (const transport_error&) {
    return false;
  }
}

/// Keeps the log from growing without end over months of autostarts: past this size the next
/// start moves it to orchestratord.log.1 (one old log kept, as scripts/e2e-env does).
constexpr std::uintmax_t log_rotate_bytes = std::uintmax_t{8} << 20;

/// Picks the first log directory that can be made private, rotates a big log, and appends a
/// line saying who starts what, so the log reads as a history of starts. Returns the log's path
/// and the offset this start's lines begin at.
std::pair<std::string, std::uintmax_t> prepare_log(const std::vector<std::string>& dirs,
                                                   const spawn_request& req) {
  std::string problems;
  for (const auto& dir : dirs) {
    try {
      make_private_dir(dir);
    } catch (const std::exception& e) {
      problems += fmt::format("{}{}", problems.empty() ? "" : "; ", e.what());
      continue;
    }
    const std::string log = dir + "/orchestratord.log";
    std::error_code ec;
    std::uintmax_t offset = fs::file_size(log, ec);
    if (ec) offset = 0;  // no log yet
    if (offset > log_rotate_bytes) {
      fs::rename(log, log + ".1", ec);
      if (!ec) offset = 0;
    }
    const std::time_t now = std::time(nullptr);
    std::tm local{};
    std::array<char, 32> when{};
    std::strftime(when.data(), when.size(), "%Y-%m-%dT%H:%M:%S", ::localtime_r(&now, &local));
    std::string line =
        fmt::format("=== sandlot {}: pid {} starts {}", when.data(), ::getpid(), req.binary);
    for (const auto& a : req.args) line += " " + a;
    line += " ===\n";
    const unique_fd out(
        ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (out.get() >= 0 &&
        ::write(out.get(), line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
      return {log, offset};
    }
    problems +=
        fmt::format("{}cannot write {}: {}", problems.empty() ? "" : "; ", log, errno_text(errno));
  }
  throw std::runtime_error(fmt::format("no directory for its log: {}", problems));
}

void start_daemon(const std::string& url, const std::function<bool()>& answers) {
  const std::string run_dir = runtime_dir(std::getenv("XDG_RUNTIME_DIR"), ::getuid());
  make_private_dir(run_dir);
  // Machine-wide single flight: whoever holds the lock starts the daemon; the others wait here,
  // then find it answering.
  const file_lock lock(run_dir + "/autostart.lock", milliseconds{60'000});
  if (answers()) return;

  spawn_request req;
  req.binary = find_orchestratord(binary_search{env_or_empty("SANDLOT_ORCHESTRATORD"),
                                                this_library_file(), env_or_empty("PATH")},
                                  is_executable_file);
  // Loopback only: --listen beats any SANDLOT_LISTEN the user's environment holds.
  req.args = {"--listen", std::string(autostart_listen)};
  req.env = daemon_environment(current_environment());
  auto [log, offset] =
      prepare_log(log_dirs(std::getenv("XDG_STATE_HOME"), std::getenv("HOME"), run_dir), req);
  req.log_file = log;
  // What it learns of test durations stays beside its log, for the next daemon started this way.
  if (env_value(req.env, "SANDLOT_STATE_DIR").empty()) {
    std::erase_if(req.env, [](const std::string& e) { return e.rfind("SANDLOT_STATE_DIR=", 0) == 0; });
    req.env.push_back("SANDLOT_STATE_DIR=" + std::filesystem::path(log).parent_path().string());
  }

  const pid_t pid = spawn_detached(req);
  // Tests run by hand show this; CI sets SANDLOT_AUTOSTART=0 and never gets here.
  fmt::print(
      stderr,
      "sandlot: started orchestratord (pid {}, log {}) because none answered at {}; it is {}, and "
      "exits after {} without leases (SANDLOT_IDLE_EXIT). SANDLOT_AUTOSTART=0 turns this off\n",
      pid, log, url, req.binary, env_value(req.env, "SANDLOT_IDLE_EXIT"));
  std::fflush(stderr);
  try {
    wait_until_answering(pid, answers, autostart_wait, log, offset);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("{} (pid {}) {}", req.binary, pid, e.what()));
  }
}

}  // namespace

bool autostart_allowed(bool url_given, const char* sandlot_url, const char* autostart) {
  if (url_given) return false;
  if (sandlot_url != nullptr && *sandlot_url != '\0') return false;
  if (autostart == nullptr) return true;
  std::string v(autostart);
  std::transform(v.begin(), v.end(), v.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return v != "0" && v != "false" && v != "no" && v != "off";
}

std::string find_orchestratord(const binary_search& where,
                               const std::function<bool(const std::string&)>& is_executable) {
  if (!where.env_override.empty()) {
    std::error_code ec;
    const fs::path p = fs::absolute(where.env_override, ec).lexically_normal();
    if (!ec && is_executable(p.string())) return p.string();
    // An explicit choice that is wrong is reported, not silently replaced by another binary.
    throw std::runtime_error(fmt::format(
        "SANDLOT_ORCHESTRATORD={} is not an executable file; point it at orchestratord (e.g. "
        "build/dev/orchestrator/orchestratord) or unset it",
        where.env_override));
  }
  std::string looked;
  if (!where.library_file.empty()) {
    // An install puts the library in PREFIX/lib and the daemon in PREFIX/bin.
    const fs::path beside =
        (fs::path(where.library_file).parent_path() / ".." / "bin" / "orchestratord")
            .lexically_normal();
    if (beside.is_absolute() && is_executable(beside.string())) return beside.string();
    looked = beside.parent_path().string() + ", ";
  }
  std::string_view rest = where.path;
  while (!rest.empty()) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    // An empty or relative entry means "the current directory", which depends on where the test
    // happens to run: never a place to pick a daemon from.
    if (dir.empty() || dir.front() != '/') continue;
    std::string candidate = fmt::format("{}/orchestratord", dir);
    if (is_executable(candidate)) return candidate;
  }
  throw std::runtime_error(fmt::format(
      "orchestratord was not found ({}PATH); install Sandlot (cmake --install BUILD --prefix P "
      "puts it in "
      "P/bin), put orchestratord on PATH, set SANDLOT_ORCHESTRATORD to it, or start one yourself "
      "(orchestratord --slots N) and set SANDLOT_URL",
      looked));
}

std::string this_library_file() {
  Dl_info info{};
  link_map* map = nullptr;
  // Any symbol of this library does; the function's own address is the simplest one at hand.
  if (::dladdr1(reinterpret_cast<void*>(&this_library_file), &info, reinterpret_cast<void**>(&map),
                RTLD_DL_LINKMAP) == 0) {
    return {};
  }
  std::error_code ec;
  if (map != nullptr && map->l_name != nullptr && map->l_name[0] != '\0') {
    return fs::absolute(map->l_name, ec).string();
  }
  // The main program has an empty name: the library is linked statically into it.
  return fs::read_symlink("/proc/self/exe", ec).string();
}

std::string runtime_dir(const char* xdg_runtime_dir, uid_t uid) {
  if (xdg_runtime_dir != nullptr && xdg_runtime_dir[0] == '/')
    return fmt::format("{}/sandlot", xdg_runtime_dir);
  return fmt::format("/tmp/sandlot-{}", uid);
}

std::vector<std::string> log_dirs(const char* xdg_state_home, const char* home,
                                  const std::string& runtime_dir) {
  // Relative values are ignored, as the XDG base directory spec says.
  std::vector<std::string> dirs;
  if (xdg_state_home != nullptr && xdg_state_home[0] == '/')
    dirs.push_back(fmt::format("{}/sandlot", xdg_state_home));
  if (home != nullptr && home[0] == '/') {
    std::string_view h = home;
    while (h.size() > 1 && h.back() == '/') h.remove_suffix(1);
    dirs.push_back(fmt::format("{}/.local/state/sandlot", h == "/" ? "" : h));
  }
  dirs.push_back(runtime_dir);
  dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
  return dirs;
}

std::string env_value(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 &&
        entry[name.size()] == '=') {
      return entry.substr(name.size() + 1);
    }
  }
  return {};
}

std::vector<std::string> daemon_environment(const std::vector<std::string>& env) {
  std::vector<std::string> out = env;
  for (const auto& [name, value] : {std::pair{std::string_view("SANDLOT_SLOTS"), default_slots},
                                    std::pair{std::string_view("SANDLOT_IDLE_EXIT"), default_idle_exit}}) {
    if (!env_value(out, name).empty()) continue;
    // Unset or empty (which the daemon reads as unset): the default, without a duplicate entry.
    const std::string prefix = fmt::format("{}=", name);
    std::erase_if(out, [&](const std::string& entry) { return entry.compare(0, prefix.size(), prefix) == 0; });
    out.push_back(fmt::format("{}{}", prefix, value));
  }
  return out;
}

pid_t spawn_detached(const spawn_request& req) {
  // Everything the children use is made here: between fork and exec only async-signal-safe calls
  // are allowed (this process may have other threads, holding the allocator's lock).
  std::vector<std::string> args{req.binary};
  args.insert(args.end(), req.args.begin(), req.args.end());
  std::vector<std::string> env = req.env;
  std::vector<char*> argv;
  std::vector<char*> envp;
  argv.reserve(args.size() + 1);
  envp.reserve(env.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  const unique_fd null_fd(above_stdio(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  const unique_fd log_fd(above_stdio(
      ::open(req.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600)));
  if (null_fd.get() < 0 || log_fd.get() < 0) {
    throw std::runtime_error(
        fmt::format("cannot open /dev/null or {}: {}", req.log_file, errno_text(errno)));
  }
  // The grandchild reports its pid, then either nothing (exec closed the pipe) or exec's errno.
  std::array<int, 2> report{-1, -1};
  if (::pipe2(report.data(), O_CLOEXEC) != 0)
    throw std::runtime_error(fmt::format("pipe: {}", errno_text(errno)));
  unique_fd report_read(above_stdio(report[0]));
  unique_fd report_write(above_stdio(report[1]));
  rlimit files{};
  const int max_fd = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                         ? static_cast<int>(std::min<rlim_t>(files.rlim_cur, 1 << 20))
                         : 1 << 16;

  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error(fmt::format("fork: {}", errno_text(errno)));
  if (child == 0) {
    // A session of its own: no controlling terminal, so a Ctrl-C meant for the test does not
    // reach the daemon. The second fork makes it nobody's child (init reaps it, not the test).
    if (::setsid() < 0) ::_exit(1);
    const pid_t grandchild = ::fork();
    if (grandchild != 0) ::_exit(grandchild < 0 ? 1 : 0);

    // Ignored signals and the blocked mask survive exec; a daemon that ignores SIGTERM could not
    // be stopped cleanly. (sigaction fails harmlessly for SIGKILL, SIGSTOP and libc's own.)
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    ::dup2(null_fd.get(), STDIN_FILENO);
    ::dup2(log_fd.get(), STDOUT_FILENO);
    ::dup2(log_fd.get(), STDERR_FILENO);
    // The report pipe goes to fd 3, close-on-exec; everything above it is closed, so no socket,
    // pipe or lock of the test binary (a CI runner's output pipe, say) is held by the daemon.
    constexpr int report_fd = 3;
    if (report_write.get() != report_fd) ::dup2(report_write.get(), report_fd);
    ::fcntl(report_fd, F_SETFD, FD_CLOEXEC);
    if (::close_range(report_fd + 1, ~0U, 0) != 0) {
      for (int fd = report_fd + 1; fd < max_fd; ++fd) ::close(fd);
    }
    const pid_t self = ::getpid();
    (void)!::write(report_fd, &self, sizeof self);
    ::execve(argv[0], argv.data(), envp.data());
    const int err = errno;
    (void)!::write(report_fd, &err, sizeof err);
    ::_exit(127);
  }
  report_write.reset();
  // The middle process exits at once; reap it so it leaves no zombie. (ECHILD when the program
  // set SIGCHLD to SIG_IGN: the kernel reaped it already.)
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }

  auto read_all = [&](void* into, std::size_t size) {
    auto* p = static_cast<char*>(into);
    std::size_t got = 0;
    while (got < size) {
      const ssize_t n = ::read(report_read.get(), p + got, size - got);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    return got;
  };
  pid_t pid = 0;
  if (read_all(&pid, sizeof pid) != sizeof pid) {
    throw std::runtime_error(
        fmt::format("could not start {}: fork or setsid failed in the child", req.binary));
  }
  int exec_errno = 0;
  if (read_all(&exec_errno, sizeof exec_errno) == sizeof exec_errno) {
    throw std::runtime_error(
        fmt::format("could not execute {}: {}", req.binary, errno_text(exec_errno)));
  }
  return pid;
}

std::string log_tail(const std::string& file, std::uintmax_t offset, std::size_t max_lines) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(offset));
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(std::move(line));
    if (lines.size() > max_lines) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  constexpr std::size_t max_bytes = 4096;  // an error message, not a log viewer
  if (out.size() > max_bytes) out = "..." + out.substr(out.size() - max_bytes);
  return out;
}

void wait_until_answering(pid_t pid, const std::function<bool()>& answers, milliseconds wait,
                          const std::string& log_file, std::uintmax_t log_offset) {
  const auto deadline = steady_clock::now() + wait;
  while (!answers()) {
    if (!process_runs(pid)) {
      // Another daemon may have won the port after all (one started by hand meanwhile).
      if (answers()) return;
      throw std::runtime_error(
          fmt::format("exited before answering /healthz; the last lines of its log {}:\n{}"
                      "Fix what it says, or start one yourself and set SANDLOT_URL",
                      log_file, log_tail(log_file, log_offset)));
    }
    if (steady_clock::now() >= deadline) {
      throw std::runtime_error(
          fmt::format("did not answer /healthz within {} s; it still runs, see its log {}:\n{}",
                      std::chrono::duration_cast<std::chrono::seconds>(wait).count(), log_file,
                      log_tail(log_file, log_offset)));
    }
    std::this_thread::sleep_for(milliseconds{100});  // the poll period
  }
}

void ensure_daemon(const std::string& url, const std::string& token) {
  // Threads of one process queue here; the first starts the daemon, the rest find it answering.
  static std::mutex mutex;
  static std::optional<std::string> failure;  // guarded by mutex
  const std::lock_guard lock(mutex);
  if (failure) throw std::runtime_error(*failure + " (this process tried once already; not again)");
  const auto answers = [&url, &token] { return healthz_answers(url, token); };
  if (answers()) return;
  try {
    start_daemon(url, answers);
  } catch (const std::exception& e) {
    failure = e.what();
    throw;
  }
}

}  // namespace sandlot::client::detail
