#include "daemon_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <sandlot/client.hpp>

#ifndef SANDLOT_ORCHESTRATORD
#error "SANDLOT_ORCHESTRATORD must name the orchestratord binary (set by orchestrator/CMakeLists.txt)"
#endif

namespace sandlot::itest {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

std::mutex registry_mutex;
std::vector<std::filesystem::path> registry;  // guarded by registry_mutex

exit_status decode(int wstatus) {
  exit_status s;
  if (WIFEXITED(wstatus)) {
    s.exited = true;
    s.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    s.signal = WTERMSIG(wstatus);
  }
  return s;
}

std::string random_hex(int digits) {
  static std::mt19937_64 rng{std::random_device{}()};
  static std::mutex m;
  std::lock_guard lock(m);
  std::uniform_int_distribution<unsigned> d(0, 15);
  std::string out;
  for (int i = 0; i < digits; ++i) out.push_back("0123456789abcdef"[d(rng)]);
  return out;
}

}  // namespace

std::string exit_status::describe() const {
  if (exited) return fmt::format("exited with code {}", code);
  if (signal != 0) return fmt::format("killed by signal {} ({})", signal, strsignal(signal));
  return "ended in an unknown way";
}

std::string unique_instance(std::string_view tag) {
  return fmt::format("itest-{}-{}-{}", tag, getpid(), random_hex(6));
}

const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/sandlot-itest-XXXXXX", (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp");
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) {
      throw std::runtime_error(fmt::format("mkdtemp {}: {}", pattern, std::strerror(errno)));
    }
    return std::filesystem::path(buf.data());
  }();
  return dir;
}

std::vector<std::filesystem::path> started_daemon_logs() {
  std::lock_guard lock(registry_mutex);
  return registry;
}

void forget_started_daemons() {
  std::lock_guard lock(registry_mutex);
  registry.clear();
}

std::string file_tail(const std::filesystem::path& p, std::size_t max_bytes) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fmt::format("(cannot read {})", p.string());
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() <= max_bytes) return all;
  return fmt::format("[... {} earlier bytes cut ...]\n{}", all.size() - max_bytes,
                     all.substr(all.size() - max_bytes));
}

unsigned short free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  // The sockaddr casts are the BSD socket API's own contract.
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(fmt::format("binding 127.0.0.1:0: {}", std::strerror(e)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

daemon_process::daemon_process(daemon_options opts) : opts_(std::move(opts)) {
  if (opts_.instance.empty()) throw std::invalid_argument("daemon_options::instance must be set");
  log_path_ = scratch_dir() / fmt::format("orchestratord-{}.log", opts_.instance);
  {
    std::lock_guard lock(registry_mutex);
    registry.push_back(log_path_);
  }
  // The free port may be taken between our probe and the daemon's bind (other engineers start
  // daemons on this machine too): a daemon that exits at once is retried on another port.
  std::string why;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    if (try_start(free_loopback_port(), why)) return;
  }
  throw std::runtime_error(fmt::format("orchestratord (instance {}) did not come up: {}\n--- its log ({}) ---\n{}",
                                       opts_.instance, why, log_path_.string(), file_tail(log_path_, 16 * 1024)));
}

bool daemon_process::try_start(unsigned short port, std::string& why) {
  port_ = port;
  url_ = fmt::format("http://127.0.0.1:{}", port_);
  status_.reset();

  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls are allowed (this process may have other threads).
  // SANDLOT_ORCHESTRATORD_BIN runs the tests against another build (e.g. an older one, to see a
  // test fail where a fix is missing).
  const char* other = std::getenv("SANDLOT_ORCHESTRATORD_BIN");
  const std::string binary = !opts_.binary.empty()                  ? opts_.binary
                             : (other != nullptr && *other != '\0') ? std::string(other)
                                                                    : std::string(SANDLOT_ORCHESTRATORD);
  std::vector<std::string> args{binary,
                                "--slots",
                                std::to_string(opts_.slots),
                                "--listen",
                                fmt::format("127.0.0.1:{}", port_),
                                "--instance",
                                opts_.instance,
                                "--log-level",
                                "debug"};
  args.insert(args.end(), opts_.extra_args.begin(), opts_.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  {
    std::ofstream(log_path_, std::ios::app) << fmt::format("=== itest: starting {} on port {} ===\n",
                                                           binary, port_);
  }
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error(fmt::format("open {}: {}", log_path_.string(), std::strerror(errno)));
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();

  pid_ = ::fork();
  if (pid_ < 0) {
    int e = errno;
    ::close(log_fd);
    ::close(null_fd);
    throw std::runtime_error(fmt::format("fork: {}", std::strerror(e)));
  }
  if (pid_ == 0) {
    // If the test binary dies (a crash, a ctest timeout), the daemon gets SIGTERM and removes
    // its sandboxes instead of outliving the test. (Tied to the forking thread: the test thread.)
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::close_range(3, ~0U, 0);  // no test sockets or pipes leak into the daemon
    if (opts_.nofile_hard > 0) {
      rlimit lim{static_cast<rlim_t>(opts_.nofile_soft), static_cast<rlim_t>(opts_.nofile_hard)};
      ::setrlimit(RLIMIT_NOFILE, &lim);
    }
    ::execv(argv[0], argv.data());
    const char msg[] = "itest: execv of orchestratord failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);

  sandlot::client::options copts;
  copts.url = url_;
  copts.request_timeout = std::chrono::seconds(2);
  const sandlot::client::client probe(copts);
  const auto deadline = steady_clock::now() + opts_.start_timeout;
  while (steady_clock::now() < deadline) {
    if (auto st = wait_exit(0ms)) {
      why = fmt::format("it {} before answering /healthz on port {}", st->describe(), port_);
      return false;
    }
    try {
      if (probe.request("GET", "/healthz").status == 200) return true;
    } catch (const sandlot::client::error&) {
      // not listening yet
    }
    std::this_thread::sleep_for(50ms);  // the poll period
  }
  why = fmt::format("/healthz on port {} did not answer within {} s", port_, opts_.start_timeout.count());
  kill_hard();
  throw std::runtime_error(fmt::format("orchestratord (instance {}): {}\n--- its log ({}) ---\n{}", opts_.instance,
                                       why, log_path_.string(), file_tail(log_path_, 16 * 1024)));
}

daemon_process::~daemon_process() {
  if (!running()) return;
  // Give it the same chance a user would (SIGTERM removes its sandboxes), then force.
  if (!terminate(30s)) kill_hard();
}

std::string daemon_process::log() const { return file_tail(log_path_, std::string::npos); }

void daemon_process::send_signal(int sig) const {
  if (running() && pid_ > 0) ::kill(pid_, sig);
}

std::optional<exit_status> daemon_process::wait_exit(milliseconds timeout) {
  if (status_) return status_;
  const auto deadline = steady_clock::now() + timeout;
  for (;;) {
    int wstatus = 0;
    pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      status_ = decode(wstatus);
      return status_;
    }
    if (r < 0 && errno != EINTR) {
      // Not our child any more (cannot happen unless someone reaped it): treat as gone.
      status_ = exit_status{};
      return status_;
    }
    if (steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(20ms);  // the poll period
  }
}

std::optional<exit_status> daemon_process::terminate(milliseconds timeout) {
  send_signal(SIGTERM);
  return wait_exit(timeout);
}

exit_status daemon_process::kill_hard() {
  send_signal(SIGKILL);
  while (!status_) wait_exit(1s);  // SIGKILL cannot be ignored: this ends promptly
  return *status_;
}

std::optional<long> rss_kib(pid_t pid) {
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  constexpr std::string_view key = "VmRSS:";
  for (std::string line; std::getline(status, line);) {
    if (line.compare(0, key.size(), key) != 0) continue;
    std::size_t at = key.size();
    while (at < line.size() && (line[at] == ' ' || line[at] == '\t')) ++at;
    long kib = 0;
    const auto [end, ec] = std::from_chars(line.data() + at, line.data() + line.size(), kib);
    if (ec == std::errc() && end != line.data() + at) return kib;
  }
  return std::nullopt;
}

}  // namespace sandlot::itest
