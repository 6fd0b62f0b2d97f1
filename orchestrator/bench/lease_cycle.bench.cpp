// lease_cycle: what one lease cycle — create → ready → exec `echo x` → release — costs through
// orchestratord, next to the same engine calls made directly. docs/performance.md has the figures.
//
// Mode "orchestratord": the benchmark starts its own daemon (loopback, free port, --slots 1, its
// own --instance) and drives it with the client library exactly as a test does (lease::acquire,
// lease::exec, lease::release). Mode "direct": docker_client on an io_context makes the calls the
// daemon makes for the same steps (create, start, inspect, exec, remove) with the same container
// body (docker_provider::container_spec). The two modes alternate (ABBA) so a noisy neighbour on
// the machine lands on both.
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "docker_client.hpp"
#include "docker_provider.hpp"

#ifndef SANDLOT_ORCHESTRATORD
#define SANDLOT_ORCHESTRATORD "orchestratord"
#endif

namespace asio = boost::asio;
namespace orch = sandlot::orchestrator;
namespace protocol = sandlot::protocol;
namespace sclient = sandlot::client;
using namespace std::chrono_literals;
using bench_clock = std::chrono::steady_clock;

namespace {

// Every engine or daemon call below has its own timeout; these bound the whole run.
constexpr int max_iterations = 1000;
constexpr int max_warmup = 100;
constexpr auto daemon_start_timeout = 30s;
constexpr auto daemon_stop_timeout = 30s;
constexpr auto ready_wait = 120s;
constexpr int exec_timeout_s = 30;

std::atomic<bool> interrupted{false};

void on_signal(int /*sig*/) { interrupted.store(true); }

struct options {
  int iterations = 30;
  int warmup = 3;
  int max_seconds = 900;
  std::string image;
  std::string orchestratord = SANDLOT_ORCHESTRATORD;
  std::string docker_host = orch::engine_address::default_spec();
};

constexpr std::string_view usage = R"(usage: sandlot_bench_lease_cycle [options]

Times the lease cycle create -> ready -> exec `echo x` -> release on the real engine, through
an orchestratord it starts itself and directly on the Engine API, and prints both.

  --iterations N        measured cycles per mode (1-1000, default 30)
  --warmup N            unmeasured cycles per mode first (0-100, default 3)
  --image REF           sandbox image (default $SANDLOT_TEST_IMAGE, else
                        127.0.0.1:5000/sandlot/busybox:1)
  --orchestratord PATH  daemon binary (default: the one built with this benchmark)
  --docker-host SPEC    engine for both modes (default $DOCKER_HOST or unix:///var/run/docker.sock)
  --max-seconds S       stop measuring after S seconds (10-3600, default 900)
  --help                this text
)";

int parse_int(std::string_view flag, std::string_view value, int lo, int hi) {
  int out = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || out < lo || out > hi) {
    throw std::runtime_error(
        fmt::format("{} '{}' must be a whole number from {} to {}", flag, value, lo, hi));
  }
  return out;
}

/// Returns nullopt after printing --help; throws std::runtime_error saying what to fix.
std::optional<options> parse_args(int argc, char** argv) {
  options o;
  const char* env_image = std::getenv("SANDLOT_TEST_IMAGE");
  o.image =
      (env_image != nullptr && *env_image != '\0') ? env_image : "127.0.0.1:5000/sandlot/busybox:1";
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::optional<std::string_view> inline_value;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string_view::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    if (flag == "--help" || flag == "-h") {
      std::cout << usage;
      return std::nullopt;
    }
    auto value = [&]() -> std::string_view {
      if (inline_value) {
        return *inline_value;
      }
      if (i + 1 >= args.size()) {
        throw std::runtime_error(fmt::format("{} needs a value; see --help", flag));
      }
      return args[++i];
    };
    if (flag == "--iterations") {
      o.iterations = parse_int(flag, value(), 1, max_iterations);
    } else if (flag == "--warmup") {
      o.warmup = parse_int(flag, value(), 0, max_warmup);
    } else if (flag == "--max-seconds") {
      o.max_seconds = parse_int(flag, value(), 10, 3600);
    } else if (flag == "--image") {
      o.image = value();
    } else if (flag == "--orchestratord") {
      o.orchestratord = value();
    } else if (flag == "--docker-host") {
      o.docker_host = value();
    } else {
      throw std::runtime_error(fmt::format("unknown argument '{}'; see --help", flag));
    }
  }
  if (o.image.empty()) {
    throw std::runtime_error("--image must not be empty");
  }
  return o;
}

double ms_since(bench_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(bench_clock::now() - t).count();
}

// --- statistics -------------------------------------------------------------------------------

struct summary {
  std::size_t n = 0;
  double p50 = 0, p99 = 0, mean = 0, min = 0, max = 0;
};

/// Percentiles interpolate linearly between closest ranks; with 30 samples p99 lies between the
/// two largest, so read it as "the worst cycle or two", not a tail estimate.
summary summarize(std::vector<double> v) {
  summary s;
  s.n = v.size();
  if (v.empty()) {
    return s;
  }
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    const double h = p * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(h));
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (h - static_cast<double>(lo)) * (v[hi] - v[lo]);
  };
  s.p50 = pct(0.50);
  s.p99 = pct(0.99);
  double sum = 0;
  for (double x : v) {
    sum += x;
  }
  s.mean = sum / static_cast<double>(v.size());
  s.min = v.front();
  s.max = v.back();
  return s;
}

/// One cycle's phases in milliseconds. `engine_exec_ms` is the exec as the daemon timed it
/// (daemon mode only), so the HTTP hop around an exec can be told apart from the engine's part.
struct cycle_times {
  double ready = 0, exec = 0, release = 0;
  double engine_exec_ms = 0;
  [[nodiscard]] double total() const { return ready + exec + release; }
};

struct mode_samples {
  std::vector<double> total, ready, exec, release, engine_exec, exec_hop;
  void add(const cycle_times& t) {
    total.push_back(t.total());
    ready.push_back(t.ready);
    exec.push_back(t.exec);
    release.push_back(t.release);
    engine_exec.push_back(t.engine_exec_ms);
    exec_hop.push_back(t.exec - t.engine_exec_ms);
  }
};

// --- the daemon under test ----------------------------------------------------------------------

std::string read_file(const std::string& path) {
  // (Plain read(2): istreambuf_iterator trips GCC 12's -Wnull-dereference at -O2.)
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return out;
  }
  std::array<char, 8192> chunk{};
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n <= 0) {
      break;
    }
    out.append(chunk.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// The 1-minute load average from /proc/loadavg, or "?".
std::string load_average() {
  const std::string text = read_file("/proc/loadavg");
  const auto space = text.find(' ');
  return space == std::string::npos ? std::string("?") : text.substr(0, space);
}

std::string tail(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) {
      return text;
    }
  }
  return text.substr(pos + 1);
}

/// orchestratord as a child: its own process group (a Ctrl-C reaches the benchmark, which stops
/// it in order) and PR_SET_PDEATHSIG (a benchmark killed outright still takes it down, and its
/// shutdown removes its sandboxes). Output goes to a log file, never a pipe nobody drains.
class daemon_process {
 public:
  daemon_process(const std::string& path, const std::string& docker_host, std::string instance)
      : instance_(std::move(instance)) {
    if (::access(path.c_str(), X_OK) != 0) {
      throw std::runtime_error(
          fmt::format("orchestratord '{}' is not an executable file; build the "
                      "orchestratord target or pass --orchestratord PATH",
                      path));
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/sandlot-bench-{}-XXXXXX",
                                      (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp", ::getpid());
    const int log_fd = ::mkstemp(pattern.data());
    if (log_fd < 0) {
      throw std::runtime_error(fmt::format("cannot create a log file like {}", pattern));
    }
    log_path_ = pattern;

    // Port 0: the daemon binds a free loopback port and logs it, so nothing can take it in between.
    std::vector<std::string> args{path,        "--listen",    "127.0.0.1:0", "--slots",
                                  "1",         "--instance",  instance_,     "--docker-host",
                                  docker_host, "--log-level", "info"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);

    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log_fd);
      throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec.
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) {
        ::_exit(127);
      }
      const int null_fd = ::open("/dev/null", O_RDONLY);
      if (null_fd >= 0) {
        ::dup2(null_fd, STDIN_FILENO);
      }
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      constexpr std::string_view failed =
          "sandlot_bench_lease_cycle: execv of orchestratord failed\n";
      [[maybe_unused]] auto n = ::write(STDERR_FILENO, failed.data(), failed.size());
      ::_exit(127);
    }
    ::close(log_fd);
    pid_ = pid;
    try {
      url_ = wait_for_listening();
    } catch (...) {
      stop();
      throw;
    }
  }

  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  ~daemon_process() {
    try {
      stop();
    } catch (...) {  // NOLINT(bugprone-empty-catch): stop() already reported what it could
    }
  }

  /// SIGTERM (the daemon removes its sandboxes), wait; SIGKILL only if it does not exit in time.
  /// Returns a description of how it ended.
  std::string stop() {
    if (pid_ <= 0) {
      return exit_description_;
    }
    ::kill(pid_, SIGTERM);
    const auto deadline = bench_clock::now() + daemon_stop_timeout;
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        break;
      }
      if (r < 0) {
        status = -1;
        break;
      }
      if (bench_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        exit_description_ = "did not stop within 30 s of SIGTERM; killed";
        pid_ = 0;
        return exit_description_;
      }
      std::this_thread::sleep_for(20ms);
    }
    pid_ = 0;
    exit_description_ = describe_status(status);
    return exit_description_;
  }

  [[nodiscard]] const std::string& url() const noexcept { return url_; }
  [[nodiscard]] const std::string& log_path() const noexcept { return log_path_; }
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  void remove_log() const { std::remove(log_path_.c_str()); }

 private:
  static std::string describe_status(int status) {
    if (status == -1) {
      return "already reaped";
    }
    if (WIFEXITED(status)) {
      return fmt::format("exited with status {}", WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
      return fmt::format("killed by signal {}", WTERMSIG(status));
    }
    return "ended";
  }

  std::string wait_for_listening() {
    constexpr std::string_view marker = "listening on http://";
    const auto deadline = bench_clock::now() + daemon_start_timeout;
    for (;;) {
      const std::string log = read_file(log_path_);
      if (auto at = log.find(marker); at != std::string::npos) {
        auto end = log.find_first_of(" \n", at + marker.size());
        if (end != std::string::npos) {
          return "http://" + log.substr(at + marker.size(), end - at - marker.size());
        }
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        exit_description_ = describe_status(status);
        throw std::runtime_error(fmt::format("orchestratord {} before it listened; end of {}:\n{}",
                                             exit_description_, log_path_, tail(log, 15)));
      }
      if (bench_clock::now() > deadline || interrupted.load()) {
        throw std::runtime_error(
            fmt::format("orchestratord did not log that it listens within 30 s; end of {}:\n{}",
                        log_path_, tail(log, 15)));
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  std::string instance_;
  std::string log_path_;
  std::string url_;
  pid_t pid_ = 0;
  std::string exit_description_ = "not started";
};

// --- the two modes ------------------------------------------------------------------------------

protocol::lease_request make_request(const options& o, const std::string& run) {
  protocol::lease_request req;
  req.image = o.image;
  req.run = run;
  req.test = "lease_cycle";
  return req;
}

const std::vector<std::string> exec_argv{"echo", "x"};

void check_echo(int exit_code, const std::string& out, const std::string& err,
                std::string_view mode) {
  if (exit_code != 0 || out != "x\n") {
    throw std::runtime_error(fmt::format("{}: `echo x` gave exit code {}, stdout '{}', stderr '{}'",
                                         mode, exit_code, out, err));
  }
}

cycle_times daemon_cycle(const sclient::client& c, const protocol::lease_request& req) {
  cycle_times t;
  auto t0 = bench_clock::now();
  auto lease =
      sclient::lease::acquire(c, req, std::chrono::duration_cast<std::chrono::seconds>(ready_wait));
  t.ready = ms_since(t0);

  auto t1 = bench_clock::now();
  auto r = lease.exec(exec_argv, std::nullopt, {}, exec_timeout_s);
  t.exec = ms_since(t1);
  check_echo(r.exit_code, r.stdout_data, r.stderr_data, "orchestratord");
  t.engine_exec_ms = r.duration_s * 1000.0;

  auto t2 = bench_clock::now();
  lease.release();
  t.release = ms_since(t2);
  return t;
}

/// Runs one awaitable to completion on `ioc` and returns its value (or rethrows).
template <class T>
T run_on(asio::io_context& ioc, asio::awaitable<T> a) {
  std::optional<T> result;
  std::exception_ptr failure;
  asio::co_spawn(ioc, std::move(a), [&](std::exception_ptr e, T v) {
    if (!e) {
      result = std::move(v);
    }
    failure = std::move(e);
  });
  ioc.restart();
  ioc.run();
  if (failure) {
    std::rethrow_exception(failure);
  }
  return std::move(*result);
}

void run_on(asio::io_context& ioc, asio::awaitable<void> a) {
  std::exception_ptr failure;
  asio::co_spawn(ioc, std::move(a), [&](std::exception_ptr e) { failure = std::move(e); });
  ioc.restart();
  ioc.run();
  if (failure) {
    std::rethrow_exception(failure);
  }
}

/// The engine calls the daemon makes for one lease, without the daemon. Its containers carry an
/// instance label of their own: the daemon's orphan sweep removes unknown containers of *its*
/// instance, and must not take these from under the benchmark.
class direct_runner {
 public:
  direct_runner(asio::io_context& ioc, orch::docker_client& engine, std::string instance,
                protocol::lease_request req)
      : ioc_(ioc), engine_(engine), provider_(engine, std::move(instance)), req_(std::move(req)) {}

  cycle_times cycle() {
    created_.reset();
    try {
      return run_on(ioc_, run_cycle());
    } catch (...) {
      // Whatever failed, the container this cycle made goes.
      if (created_) {
        try {
          run_on(ioc_, engine_.remove_container(*created_));
        } catch (const std::exception& e) {
          std::cerr << fmt::format("could not remove container {}: {}\n", created_->substr(0, 12),
                                   e.what());
        }
      }
      throw;
    }
  }

 private:
  asio::awaitable<cycle_times> run_cycle() {
    cycle_times t;
    // The daemon's ids are 12 hex digits; the same length keeps the container body the same size.
    orch::sandbox_spec spec;
    spec.lease_id = fmt::format("{:012x}", rng_() & 0xffffffffffffULL);
    spec.lease_name = "bench-direct";
    spec.request = req_;
    const std::string name = "sandlot-" + spec.lease_id;
    const auto body = provider_.container_spec(spec);

    // create → ready: what docker_provider::create does.
    auto t0 = bench_clock::now();
    created_ = co_await engine_.create_container(name, body);
    co_await engine_.start_container(*created_);
    auto info = co_await engine_.inspect_container(*created_);
    if (!info.at("State").value("Running", false)) {
      throw std::runtime_error(
          fmt::format("direct: container {} is not running after start", name));
    }
    t.ready = ms_since(t0);

    auto t1 = bench_clock::now();
    orch::exec_spec exec;
    exec.argv = exec_argv;
    exec.timeout = std::chrono::seconds(exec_timeout_s);
    auto out = co_await engine_.exec(*created_, exec);
    t.exec = ms_since(t1);
    check_echo(out.exit_code, out.stdout_data, out.stderr_data, "direct");

    auto t2 = bench_clock::now();
    co_await engine_.remove_container(*created_);
    created_.reset();
    t.release = ms_since(t2);
    co_return t;
  }

  asio::io_context& ioc_;
  orch::docker_client& engine_;
  orch::docker_provider provider_;
  protocol::lease_request req_;
  std::optional<std::string> created_;
  std::mt19937_64 rng_{std::random_device{}()};
};

/// Removes every container labelled with `instance`; returns how many there were.
int sweep(asio::io_context& ioc, orch::docker_client& engine, const std::string& instance) {
  std::vector<std::string> filter{fmt::format("{}={}", orch::labels::daemon, instance)};
  auto found = run_on(ioc, engine.list_containers(filter));
  for (const auto& c : found) {
    run_on(ioc, engine.remove_container(c.id));
  }
  return static_cast<int>(found.size());
}

/// sum and count of one histogram in the daemon's /metrics, to read its own view of a phase.
struct histogram_reading {
  double sum = 0;
  double count = 0;
};

std::optional<histogram_reading> read_histogram(const sclient::client& c, std::string_view name) {
  auto res = c.request("GET", "/metrics");
  if (res.status != 200) {
    return std::nullopt;
  }
  histogram_reading h;
  bool have_sum = false;
  bool have_count = false;
  std::istringstream lines(res.body);
  for (std::string line; std::getline(lines, line);) {
    auto value_of = [&](std::string_view suffix) -> std::optional<double> {
      const std::string key = fmt::format("{}{} ", name, suffix);
      if (line.rfind(key, 0) != 0) {
        return std::nullopt;
      }
      return std::strtod(line.c_str() + key.size(), nullptr);
    };
    if (auto v = value_of("_sum")) {
      h.sum = *v;
      have_sum = true;
    } else if (auto w = value_of("_count")) {
      h.count = *w;
      have_count = true;
    }
  }
  if (!have_sum || !have_count) {
    return std::nullopt;
  }
  return h;
}

// --- report -------------------------------------------------------------------------------------

void print_row(std::string_view mode, std::string_view phase, const summary& s) {
  std::cout << fmt::format("{:<15} {:<24} {:>5} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n",
                           mode, phase, s.n, s.p50, s.p99, s.mean, s.min, s.max);
}

void print_ratio(std::string_view what, const summary& daemon, const summary& direct) {
  std::cout << fmt::format("  {:<24} p50 {:>5.2f}x ({:+7.1f} ms)   p99 {:>5.2f}x ({:+7.1f} ms)\n",
                           what, daemon.p50 / direct.p50, daemon.p50 - direct.p50,
                           daemon.p99 / direct.p99, daemon.p99 - direct.p99);
}

int run(const options& o) {
  const auto started = bench_clock::now();
  // Other work on the machine moves every figure; the load average says how much there was.
  const std::string load_at_start = load_average();
  const std::string tag = fmt::format("bench-{}", ::getpid());
  const std::string direct_instance = tag + "-direct";

  asio::io_context ioc{1};
  orch::docker_client engine(ioc.get_executor(), orch::engine_address::parse(o.docker_host));
  const std::string api = run_on(ioc, engine.negotiate());
  if (!run_on(ioc, engine.image_exists(o.image))) {
    std::cout << fmt::format("pulling {} (not present on the engine) ...\n", o.image);
    run_on(ioc, engine.pull(o.image, bench_clock::now() + 5min));
  }

  std::optional<daemon_process> daemon;
  int exit_code = 0;
  mode_samples via_daemon;
  mode_samples direct;
  std::optional<histogram_reading> ready_before;
  std::optional<histogram_reading> ready_after;
  std::string stop_note;
  try {
    daemon.emplace(o.orchestratord, o.docker_host, tag);
    sclient::options copts;
    copts.url = daemon->url();
    copts.token = "";
    copts.request_timeout = 60s;
    const sclient::client c(copts);
    const auto req = make_request(o, tag);
    direct_runner runner(ioc, engine, direct_instance, req);

    std::cout << fmt::format(
        "lease cycle: create -> ready -> exec `echo x` -> release\n"
        "  engine   {} (API {})\n  image    {}\n"
        "  daemon   {} (pid {}, {}, --slots 1, --instance {})\n"
        "  runs     {} measured + {} warm-up per mode, alternating (ABBA)\n\n",
        engine.address().to_string(), api, o.image, o.orchestratord, daemon->pid(), daemon->url(),
        tag, o.iterations, o.warmup);
    std::cout << std::flush;

    const auto budget = std::chrono::seconds(o.max_seconds);
    for (int i = -o.warmup; i < o.iterations; ++i) {
      if (interrupted.load()) {
        stop_note = "interrupted";
        break;
      }
      if (bench_clock::now() - started > budget) {
        stop_note = fmt::format("--max-seconds {} reached", o.max_seconds);
        break;
      }
      // The daemon's own view of create -> ready, over the measured cycles only.
      if (i == 0) {
        ready_before = read_histogram(c, "sandlot_lease_ready_seconds");
      }
      const bool daemon_first = ((i + o.warmup) % 4 == 0) || ((i + o.warmup) % 4 == 3);
      cycle_times d;
      cycle_times e;
      if (daemon_first) {
        d = daemon_cycle(c, req);
        e = runner.cycle();
      } else {
        e = runner.cycle();
        d = daemon_cycle(c, req);
      }
      if (i >= 0) {
        via_daemon.add(d);
        direct.add(e);
      }
    }
    if (!via_daemon.total.empty()) {
      ready_after = read_histogram(c, "sandlot_lease_ready_seconds");
    }
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_lease_cycle: " << e.what() << "\n";
    exit_code = 1;
  }

  // Stop the daemon (it removes its sandboxes), then make sure nothing of ours is left.
  std::string daemon_end;
  if (daemon) {
    daemon_end = daemon->stop();
  }
  int left = 0;
  try {
    left = sweep(ioc, engine, tag) + sweep(ioc, engine, direct_instance);
  } catch (const std::exception& e) {
    std::cerr << fmt::format(
        "the final sweep failed: {}; look for containers labelled {}={} or {}\n", e.what(),
        orch::labels::daemon, tag, direct_instance);
    exit_code = 1;
  }
  if (left > 0) {
    std::cerr << fmt::format("removed {} container(s) left behind\n", left);
  }
  if (daemon) {
    if (exit_code != 0 || daemon_end != "exited with status 0") {
      std::cerr << fmt::format("orchestratord {}; its log is {}\n", daemon_end, daemon->log_path());
      if (daemon_end != "exited with status 0") {
        exit_code = 1;
      }
    } else {
      daemon->remove_log();
    }
  }
  // Figures from a run that failed part-way are not comparable with anything; show none.
  if (exit_code != 0) {
    return exit_code;
  }
  if (via_daemon.total.empty()) {
    std::cerr << fmt::format("no cycle measured{}\n", stop_note.empty() ? "" : ": " + stop_note);
    return interrupted.load() ? 130 : 1;
  }

  const auto d_total = summarize(via_daemon.total);
  const auto e_total = summarize(direct.total);
  const auto d_ready = summarize(via_daemon.ready);
  const auto e_ready = summarize(direct.ready);
  const auto d_exec = summarize(via_daemon.exec);
  const auto e_exec = summarize(direct.exec);
  const auto d_rel = summarize(via_daemon.release);
  const auto e_rel = summarize(direct.release);
  std::cout << fmt::format("{:<15} {:<24} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "mode", "phase",
                           "n", "p50 ms", "p99 ms", "mean ms", "min ms", "max ms");
  print_row("orchestratord", "cycle", d_total);
  print_row("", "create -> ready", d_ready);
  print_row("", "exec", d_exec);
  print_row("", "  engine, daemon-timed", summarize(via_daemon.engine_exec));
  print_row("", "  HTTP hop (difference)", summarize(via_daemon.exec_hop));
  print_row("", "release", d_rel);
  print_row("direct", "cycle", e_total);
  print_row("", "create+start+inspect", e_ready);
  print_row("", "exec", e_exec);
  print_row("", "remove", e_rel);
  std::cout << "\norchestratord / direct:\n";
  print_ratio("cycle", d_total, e_total);
  print_ratio("create -> ready", d_ready, e_ready);
  print_ratio("exec", d_exec, e_exec);
  print_ratio("release", d_rel, e_rel);
  // Each iteration ran one cycle of each mode back to back, so their difference cancels most of
  // the drift in the machine's load; its median is the steadiest estimate of the daemon's cost.
  std::vector<double> paired;
  paired.reserve(via_daemon.total.size());
  for (std::size_t k = 0; k < via_daemon.total.size(); ++k) {
    paired.push_back(via_daemon.total[k] - direct.total[k]);
  }
  const auto pd = summarize(paired);
  std::cout << fmt::format(
      "  paired difference per iteration (orchestratord - direct): p50 {:+.1f} ms, "
      "mean {:+.1f} ms\n",
      pd.p50, pd.mean);
  if (ready_before && ready_after && ready_after->count > ready_before->count) {
    const double daemon_ready_ms = (ready_after->sum - ready_before->sum) /
                                   (ready_after->count - ready_before->count) * 1000.0;
    std::cout << fmt::format(
        "\ncreate -> ready inside the daemon (admission to ready, /metrics): mean {:.1f} ms;\n"
        "  the client saw a mean of {:.1f} ms, so HTTP, queueing and the long-poll add "
        "{:.1f} ms.\n",
        daemon_ready_ms, d_ready.mean, d_ready.mean - daemon_ready_ms);
  }
  const auto engine_exec = summarize(via_daemon.engine_exec);
  std::cout << fmt::format(
      "exec: the daemon's engine calls took a mean {:.1f} ms of the client's {:.1f} ms.\n",
      engine_exec.mean, d_exec.mean);
  if (!stop_note.empty()) {
    std::cout << fmt::format("\nstopped early ({}) after {} of {} measured cycles per mode\n",
                             stop_note, via_daemon.total.size(), o.iterations);
  }
  if (interrupted.load()) {
    exit_code = 130;  // the figures are real, but fewer than asked for
  }
  std::cout << fmt::format("\nwall time {:.1f} s; load average {} at the start, {} at the end\n",
                           ms_since(started) / 1000.0, load_at_start, load_average());
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<options> opts;
  try {
    opts = parse_args(argc, argv);
    if (!opts) {
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_lease_cycle: " << e.what() << "\n";
    return 2;
  }
  // A Ctrl-C finishes the current cycle, then stops the daemon and cleans up.
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  try {
    return run(*opts);
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_lease_cycle: " << e.what() << "\n";
    return 1;
  }
}
