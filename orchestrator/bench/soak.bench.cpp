// soak: many lease cycles against one orchestratord, with crashes on purpose, to show that nothing
// leaks — no sandbox, no slot, no steadily growing daemon memory.
//
// It starts its own daemon (--slots 4, its own --instance, a free loopback port) and runs --cycles
// lease cycles (create -> ready -> exec -> release) from 4 worker threads. About one cycle in ten
// is a client process (this binary re-run with --hold-lease) that takes a lease with ttl_s=3 and
// is SIGKILLed while holding it; the daemon must expire the lease and remove its sandbox. Halfway,
// with 4 sandboxes held, the daemon itself is SIGKILLed and started again with the same
// --instance; the new incarnation must remove what the old one left. The daemon's VmRSS is
// sampled every second. At the end it prints the figures and exits non-zero if a cycle failed
// unexpectedly, a container of the instance is left, or slots are still in use.
//
//   sandlot_bench_soak [--cycles 200] [--max-seconds 210] [--image REF]
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"

namespace protocol = sandlot::protocol;
namespace sclient = sandlot::client;
namespace itest = sandlot::itest;
using namespace std::chrono_literals;
using soak_clock = std::chrono::steady_clock;

namespace {

constexpr int slots = 4;
constexpr int workers = 4;
constexpr int killed_ttl_s = 3;
constexpr int kill_every = 10;  // one cycle in ten is a client killed while holding its lease

struct options {
  int cycles = 200;
  int max_seconds = 210;  // the hard deadline for the cycles; cleanup checks come on top (bounded)
  std::string image;
};

int parse_int(std::string_view flag, std::string_view value, int lo, int hi) {
  int out = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
  if (ec != std::errc() || end != value.data() + value.size() || out < lo || out > hi) {
    throw std::runtime_error(fmt::format("{} '{}' must be a whole number from {} to {}", flag, value, lo, hi));
  }
  return out;
}

std::string default_image() {
  const char* v = std::getenv("SANDLOT_TEST_IMAGE");
  return (v != nullptr && *v != '\0') ? std::string(v) : std::string("127.0.0.1:5000/sandlot/busybox:1");
}

protocol::lease_request request_for(const std::string& image, const std::string& test, int ttl_s) {
  protocol::lease_request req;
  req.image = image;
  req.run = fmt::format("soak-{}", getpid());
  req.test = test;
  req.ttl_s = ttl_s;
  return req;
}

// --- the client that gets killed: this binary, re-run --------------------------------------

// --hold-lease URL IMAGE RUN TEST: acquires a lease (ttl_s=3), prints "OK <id>" and waits to be
// killed. A fresh process (fork + exec), so the killed client is a real one with its own
// heartbeat thread, not a fork of a multi-threaded parent.
int hold_lease(const std::string& url, const std::string& image, const std::string& run, const std::string& test) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  try {
    const sclient::client c(url);
    auto req = request_for(image, test, killed_ttl_s);
    req.run = run;
    auto lease = sclient::lease::acquire(c, req, 60s);
    std::cout << "OK " << lease.id() << std::endl;
    for (;;) ::pause();
  } catch (const std::exception& e) {
    std::cout << "ERR " << e.what() << std::endl;
  }
  return 1;
}

struct killed_client_result {
  bool held = false;
  std::string report;
};

/// Runs a --hold-lease child, waits for its report (at most 60 s), then SIGKILLs and reaps it.
killed_client_result run_killed_client(const std::string& self, const std::string& url, const std::string& image,
                                       const std::string& test) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::vector<std::string> args{self, "--hold-lease", url, image, fmt::format("soak-{}", getpid()), test};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls until exec: the parent has other threads.
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(null_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(fds[1]);
  ::close(null_fd);
  killed_client_result out;
  const auto deadline = soak_clock::now() + 60s;
  while (out.report.find('\n') == std::string::npos && soak_clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.report.append(buf, static_cast<std::size_t>(n));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  if (auto nl = out.report.find('\n'); nl != std::string::npos) out.report.resize(nl);
  out.held = out.report.rfind("OK ", 0) == 0;
  return out;
}

// --- RSS sampling --------------------------------------------------------------------------

/// Samples a pid's VmRSS every second on its own thread, until stopped.
class rss_sampler {
 public:
  explicit rss_sampler(pid_t pid) : pid_(pid), thread_([this] { loop(); }) {}
  ~rss_sampler() { stop(); }
  rss_sampler(const rss_sampler&) = delete;
  rss_sampler& operator=(const rss_sampler&) = delete;
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<long> samples() const {
    std::lock_guard lock(m_);
    return samples_;
  }

 private:
  void loop() {
    while (!stop_) {
      if (auto kib = itest::rss_kib(pid_); kib && *kib > 0) {
        std::lock_guard lock(m_);
        samples_.push_back(*kib);
      }
      for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(100ms);  // the sampling period
    }
  }
  pid_t pid_;
  std::atomic<bool> stop_{false};
  mutable std::mutex m_;
  std::vector<long> samples_;
  std::thread thread_;
};

// --- the figures -----------------------------------------------------------------------------

struct tally {
  std::mutex m;
  std::vector<double> cycle_s;  // normal cycles
  int done = 0;
  int kills = 0;
  int failures = 0;
  std::vector<std::string> failure_notes;
  void failed(std::string note) {
    std::lock_guard lock(m);
    ++failures;
    if (failure_notes.size() < 10) failure_notes.push_back(std::move(note));
  }
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

/// Runs cycles [first, last) from `workers` threads against `url`, stopping at `deadline`.
void run_cycles(int first, int last, const std::string& url, const options& o, const std::string& self,
                soak_clock::time_point deadline, tally& t) {
  std::atomic<int> next{first};
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      const sclient::client c(url);
      for (int i = next++; i < last && soak_clock::now() < deadline; i = next++) {
        const std::string test = fmt::format("cycle-{}", i);
        const auto started = soak_clock::now();
        if (i % kill_every == kill_every / 2) {
          try {
            auto r = run_killed_client(self, url, o.image, test);
            std::lock_guard lock(t.m);
            if (r.held) {
              ++t.kills;
              ++t.done;
            } else {
              ++t.failures;
              t.failure_notes.push_back(fmt::format("{}: killed client never held its lease: {}", test, r.report));
            }
          } catch (const std::exception& e) {
            t.failed(fmt::format("{}: {}", test, e.what()));
          }
          continue;
        }
        try {
          auto lease = sclient::lease::acquire(c, request_for(o.image, test, 30), 90s);
          auto r = lease.exec({"echo", test});
          if (r.exit_code != 0 || r.stdout_data != test + "\n") {
            throw std::runtime_error(fmt::format("exec gave {} '{}'", r.exit_code, r.stdout_data));
          }
          lease.release();
          const double s = std::chrono::duration<double>(soak_clock::now() - started).count();
          std::lock_guard lock(t.m);
          t.cycle_s.push_back(s);
          ++t.done;
        } catch (const std::exception& e) {
          t.failed(fmt::format("{}: {}", test, e.what()));
        }
      }
    });
  }
  for (auto& th : pool) th.join();
}

struct incarnation {
  std::string name;
  std::vector<long> rss;
};

std::string rss_line(const incarnation& inc) {
  if (inc.rss.empty()) return fmt::format("  {}: no samples", inc.name);
  return fmt::format("  {}: start {} KiB, middle {} KiB, end {} KiB, max {} KiB ({} samples)", inc.name,
                     inc.rss.front(), inc.rss[inc.rss.size() / 2], inc.rss.back(),
                     *std::max_element(inc.rss.begin(), inc.rss.end()), inc.rss.size());
}

int soak(const options& o, const std::string& self) {
  const auto t0 = soak_clock::now();
  const auto deadline = t0 + std::chrono::seconds(o.max_seconds);
  // The hard stop: should anything hang past the deadline and the bounded checks after it, exit;
  // the daemons get SIGTERM from the kernel (PDEATHSIG) and remove their sandboxes.
  std::thread([limit = deadline + 90s] {
    std::this_thread::sleep_until(limit);
    std::cerr << "sandlot_bench_soak: hard deadline passed, giving up\n";
    std::_Exit(3);
  }).detach();
  const itest::engine_probe engine;
  itest::daemon_options dopts;
  dopts.instance = itest::unique_instance("soak");
  dopts.slots = slots;
  struct cleanup_guard {
    const itest::engine_probe& engine;
    std::string instance;
    ~cleanup_guard() {
      try {
        if (int n = engine.remove_containers_of(instance); n > 0) std::cout << "cleanup removed " << n << "\n";
      } catch (const std::exception& e) {
        std::cout << "cleanup failed: " << e.what() << "\n";
      }
    }
  } guard{engine, dopts.instance};

  tally t;
  std::vector<incarnation> lives;
  int restart_left_behind = -1;
  double restart_clean_s = -1;

  auto first = std::make_unique<itest::daemon_process>(dopts);
  std::cout << fmt::format("soak: {} cycles, {} workers, --slots {}, instance {}, daemon pid {}\n", o.cycles, workers,
                           slots, dopts.instance, first->pid());
  {
    rss_sampler rss(first->pid());
    run_cycles(0, o.cycles / 2, first->url(), o, self, deadline, t);
    // Halfway: the daemon dies hard while 4 sandboxes are held.
    const sclient::client c(first->url());
    std::vector<std::string> held;
    for (int i = 0; i < slots; ++i) {
      auto v = c.create(request_for(o.image, fmt::format("held-at-crash-{}", i), 300));
      held.push_back(v.id);
    }
    for (const auto& id : held) {
      for (auto v = c.get(id); v.state != protocol::lease_state::ready && !protocol::is_final(v.state) &&
                               soak_clock::now() < deadline + 30s;) {
        v = c.get(id, 5);
      }
    }
    rss.stop();
    lives.push_back({"daemon 1", rss.samples()});
    restart_left_behind = static_cast<int>(engine.containers_of(dopts.instance).size());
    first->kill_hard();
  }
  first.reset();
  std::cout << fmt::format("soak: daemon killed with {} sandbox(es) held; restarting with the same --instance\n",
                           restart_left_behind);

  itest::daemon_process second(dopts);
  {
    const auto up = soak_clock::now();
    itest::wait_until([&] { return engine.containers_of(dopts.instance).empty(); }, 15s, 100ms);
    restart_clean_s = std::chrono::duration<double>(soak_clock::now() - up).count();
    rss_sampler rss(second.pid());
    run_cycles(o.cycles / 2, o.cycles, second.url(), o, self, deadline, t);
    // The killed clients' leases expire within ttl_s; give the reaper that long, then check.
    const sclient::client c(second.url());
    itest::wait_until([&] { return c.status().slots_in_use == 0; }, std::chrono::seconds(killed_ttl_s * 3), 100ms);
    rss.stop();
    lives.push_back({"daemon 2", rss.samples()});
  }
  const sclient::client c(second.url());
  const auto st = c.status();
  itest::wait_until([&] { return engine.containers_of(dopts.instance).empty(); }, 5s, 100ms);
  const auto left = engine.containers_of(dopts.instance).size();
  const auto stopped = second.terminate(30s);
  const auto left_after_stop = engine.containers_of(dopts.instance).size();
  const double wall = std::chrono::duration<double>(soak_clock::now() - t0).count();

  std::cout << "\nsoak figures\n";
  std::cout << fmt::format("  cycles done: {} of {} ({} normal, {} clients SIGKILLed holding a lease)\n", t.done,
                           o.cycles, t.cycle_s.size(), t.kills);
  std::cout << fmt::format("  unexpected failures: {}\n", t.failures);
  for (const auto& n : t.failure_notes) std::cout << "    " << n << "\n";
  std::cout << fmt::format("  normal cycle: p50 {:.3f} s, p95 {:.3f} s, max {:.3f} s\n", percentile(t.cycle_s, 0.5),
                           percentile(t.cycle_s, 0.95), percentile(t.cycle_s, 1.0));
  // The daemon removes its instance's containers before it listens, so they are usually gone by
  // the time its /healthz answers (0.00 s).
  std::cout << fmt::format("  daemon SIGKILLed halfway with {} sandbox(es); gone {:.2f} s after the restarted "
                           "daemon answered /healthz\n",
                           restart_left_behind, restart_clean_s);
  std::cout << "  daemon VmRSS:\n";
  for (const auto& l : lives) std::cout << rss_line(l) << "\n";
  std::cout << fmt::format("  slots_in_use at the end: {} (queue {}, live leases {})\n", st.slots_in_use,
                           st.queue_length, st.leases.size());
  std::cout << fmt::format("  containers of the instance left: {} (after SIGTERM: {})\n", left, left_after_stop);
  std::cout << fmt::format("  daemon exit on SIGTERM: {}\n", stopped ? stopped->describe() : "still running");
  std::cout << fmt::format("  wall time: {:.1f} s\n", wall);

  bool ok = t.failures == 0 && t.done == o.cycles && st.slots_in_use == 0 && left == 0 && left_after_stop == 0 &&
            stopped && stopped->exited && stopped->code == 0;
  std::cout << (ok ? "soak: OK\n" : "soak: FAILED\n");
  if (!ok) std::cout << "daemon logs in " << itest::scratch_dir().string() << "\n";
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--hold-lease") {
    if (args.size() != 5) return 2;
    return hold_lease(args[1], args[2], args[3], args[4]);
  }
  options o;
  o.image = default_image();
  try {
    for (std::size_t i = 0; i < args.size(); ++i) {
      auto value = [&]() -> const std::string& {
        if (i + 1 >= args.size()) throw std::runtime_error(args[i] + " needs a value");
        return args[++i];
      };
      if (args[i] == "--cycles") {
        o.cycles = parse_int("--cycles", value(), 2, 5000);
      } else if (args[i] == "--max-seconds") {
        o.max_seconds = parse_int("--max-seconds", value(), 10, 3600);
      } else if (args[i] == "--image") {
        o.image = value();
      } else if (args[i] == "--help" || args[i] == "-h") {
        std::cout << "usage: sandlot_bench_soak [--cycles N (default 200)] [--max-seconds S (default 210)] "
                     "[--image REF]\n";
        return 0;
      } else {
        throw std::runtime_error(fmt::format("unknown option '{}'; see --help", args[i]));
      }
    }
    // The killed clients are this binary re-run.
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
    return soak(o, self.string());
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_soak: " << e.what() << "\n";
    return 2;
  }
}
