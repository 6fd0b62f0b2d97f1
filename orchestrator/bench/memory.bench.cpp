// memory: shows that orchestratord's memory does not grow with the number of leases it has seen,
// even when every lease carries a large environment.
//
// The finding it guards against: the daemon kept whole leases, each one's `env` (up to 1 MiB)
// included, in its per-run records for an hour after a run went idle, and forever for a run that
// never went idle; 200 cycles with a 900 KB env took its VmRSS from 25 to 192 MB.
//
// It starts its own daemon (--slots 2, its own --instance, a free loopback port). A "blocker"
// lease takes both slots, so every cycle's lease stays queued: create with a ~900 KB env, then
// release while queued. No container is made, which keeps 1000 cycles within CI's time, yet the
// daemon records each lease in its run as it does any other. The cycles go to 10 runs from 4
// threads; the blocker's run is one of them, a run that never goes idle. VmRSS after 100 warm-up
// cycles (the first 4 real ones, see below), once the daemon is idle, is the baseline; then
// --cycles more, of which one in 50 is a real lease (ready, exec `true`, release) with the same
// env, run at the end once the blocker is released. It exits 1 if VmRSS grew by more than
// --max-growth-mib, a cycle failed, --max-seconds passed first, or the daemon does not end clean
// (no slot in use, no container of its instance, exit 0 on SIGTERM).
//
//   sandlot_bench_memory [--cycles 1000] [--max-seconds 240] [--max-growth-mib 10] [--image REF]
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace protocol = sandlot::protocol;
namespace sclient = sandlot::client;
namespace itest = sandlot::itest;
using namespace std::chrono_literals;
using bench_clock = std::chrono::steady_clock;

namespace {

constexpr int slots = 2;
constexpr int workers = 4;
constexpr int run_count = 10;
constexpr int warmup_cycles = 100;
constexpr int warmup_real_cycles = workers;  // all threads at once: the real cycles' peak
constexpr int real_every = 50;  // one cycle in 50 makes a sandbox
// ~900 KB: within the protocol's caps (64 KiB a value, 256 variables, 1 MiB a request body) with
// room left for the rest of the request.
constexpr int env_vars = 15;
constexpr std::size_t env_value_bytes = 60'000;
// Past this many times the allowed growth the verdict is clear; more cycles would only push a
// leaking daemon towards a gigabyte on the CI machine.
constexpr long runaway_factor = 25;

struct options {
  int cycles = 1000;
  int max_seconds = 240;  // for all the cycles; the checks after them are bounded on their own
  int max_growth_mib = 10;
  std::string image;
};

int int_flag(std::string_view flag, std::string_view text, int lo, int hi) {
  int value = 0;
  const char* last = text.data() + text.size();
  const auto [end, ec] = std::from_chars(text.data(), last, value);
  if (ec != std::errc() || end != last || value < lo || value > hi) {
    throw std::runtime_error(fmt::format("{} '{}': give a whole number from {} to {}", flag, text, lo, hi));
  }
  return value;
}

/// The VmRSS line of /proc/<pid>/status, in KiB; nullopt once the process is gone.
/// VmRSS once the daemon is idle: the lowest of 16 samples over 8 s. Freed request bodies and
/// engine answers (up to ~1 MiB each here) go back to the system at the daemon's next
/// housekeeping (every 5 s), so a reading taken the moment the load stops would count memory it no
/// longer holds. Taken the same way for the baseline and the end.
std::optional<long> settled_rss_kib(pid_t pid) {
  std::optional<long> lowest;
  for (int i = 0; i < 16; ++i) {
    if (auto kib = itest::rss_kib(pid); kib && (!lowest || *kib < *lowest)) lowest = kib;
    std::this_thread::sleep_for(500ms);  // the sampling period
  }
  return lowest;
}


double mib(long kib) { return static_cast<double>(kib) / 1024.0; }

std::string run_name(int k) { return fmt::format("membench-{}-{}", getpid(), k); }

std::map<std::string, std::string> big_env() {
  std::map<std::string, std::string> env;
  for (int i = 0; i < env_vars; ++i) {
    env[fmt::format("MEMBENCH_{:02}", i)] = std::string(env_value_bytes, static_cast<char>('a' + i));
  }
  return env;
}

/// What every cycle needs, shared read-only by the worker threads.
struct bench_context {
  std::string url;
  std::string image;
  std::map<std::string, std::string> env;
  pid_t daemon_pid = -1;
  bench_clock::time_point deadline;
};

struct tally {
  std::mutex m;
  int queued_done = 0;
  int real_done = 0;
  int failures = 0;
  std::vector<std::string> notes;  // the first few failures, for the report

  void succeeded(bool real) {
    std::lock_guard lock(m);
    ++(real ? real_done : queued_done);
  }
  void failed(std::string note) {
    std::lock_guard lock(m);
    ++failures;
    if (notes.size() < 10) notes.push_back(std::move(note));
  }
};

protocol::lease_request cycle_request(const bench_context& ctx, int cycle) {
  protocol::lease_request req;
  req.image = ctx.image;
  req.run = run_name(cycle % run_count);
  req.test = fmt::format("cycle-{}", cycle);
  req.env = ctx.env;
  return req;
}

// The lease never reaches the engine, but the daemon records it in its run all the same.
void queued_cycle(const sclient::client& c, const protocol::lease_request& req) {
  const auto v = c.create(req);
  // Released whatever its state, so that a lease which got past the blocker gives its slot back.
  c.release(v.id);
  if (v.state != protocol::lease_state::queued) {
    throw std::runtime_error(fmt::format("lease {} was {} on create, not queued behind the blocker", v.id,
                                         protocol::to_string(v.state)));
  }
}

// The sandbox path: the big env goes into a container and into the exec's process.
void real_cycle(const sclient::client& c, protocol::lease_request req) {
  auto lease = sclient::lease::acquire(c, std::move(req), 90s);
  const auto r = lease.exec({"true"});
  if (r.exit_code != 0) {
    throw std::runtime_error(fmt::format("exec true gave exit code {}: {}", r.exit_code, r.stderr_data));
  }
  lease.release();
}

struct phase_end {
  bool out_of_time = false;
  bool runaway = false;
};

/// Runs cycles [first, last) from `workers` threads until they are done, the deadline passes or
/// the daemon's VmRSS goes over `runaway_kib` (checked every 20 cycles).
phase_end run_cycles(const bench_context& ctx, int first, int last, bool real, std::optional<long> runaway_kib,
                     tally& t) {
  std::atomic<int> next{first};
  std::atomic<bool> out_of_time{false};
  std::atomic<bool> runaway{false};
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) {
    pool.emplace_back([&] {
      const sclient::client c(ctx.url);
      for (int i = next++; i < last; i = next++) {
        if (runaway) break;
        if (bench_clock::now() >= ctx.deadline) {
          out_of_time = true;
          break;
        }
        try {
          if (real) {
            real_cycle(c, cycle_request(ctx, i));
          } else {
            queued_cycle(c, cycle_request(ctx, i));
          }
          t.succeeded(real);
        } catch (const std::exception& e) {
          t.failed(fmt::format("cycle-{}: {}", i, e.what()));
        }
        if (runaway_kib && i % 20 == 0) {
          if (auto kib = itest::rss_kib(ctx.daemon_pid); kib && *kib > *runaway_kib) runaway = true;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return {out_of_time, runaway};
}

int bench(const options& o) {
  const auto t0 = bench_clock::now();
  bench_context ctx;
  ctx.image = o.image;
  ctx.env = big_env();
  ctx.deadline = t0 + std::chrono::seconds(o.max_seconds);
  // Should anything hang past the deadline and the bounded checks after it, give up; the daemon
  // gets SIGTERM from the kernel (PDEATHSIG) and removes its sandboxes.
  std::thread([limit = ctx.deadline + 75s] {
    std::this_thread::sleep_until(limit);
    std::cerr << "sandlot_bench_memory: hard deadline passed, giving up\n";
    std::_Exit(3);
  }).detach();

  const itest::engine_probe engine;
  const std::string instance = itest::unique_instance("membench");
  // Declared before the daemon, so it runs after the daemon has stopped.
  const itest::leftover_guard leftovers(engine, instance);
  itest::daemon_process daemon(instance, slots);
  ctx.url = daemon.url();
  ctx.daemon_pid = daemon.pid();
  const sclient::client c(ctx.url);
  std::size_t env_bytes = 0;
  for (const auto& [k, v] : ctx.env) env_bytes += k.size() + v.size();
  std::cout << fmt::format("memory: {} cycles (+{} warm-up), {} threads, {} runs, env {} bytes a lease, "
                           "--slots {}, instance {}, daemon pid {}\n",
                           o.cycles, warmup_cycles, workers, run_count, env_bytes, slots, instance, daemon.pid());

  tally t;
  const auto start_kib = itest::rss_kib(daemon.pid());

  const int real_cycles = std::max(1, o.cycles / real_every);
  const int queued_first = warmup_real_cycles;
  const int measured_first = warmup_cycles;
  const int real_first = warmup_cycles + o.cycles - real_cycles;
  const int all_last = warmup_cycles + o.cycles;

  // The warm-up takes the sandbox path too, from every thread at once, before the blocker comes:
  // the heap then reaches the peak that the real cycles at the end reach again (a 900 KB env goes
  // into each engine request), and the baseline includes it rather than reading it as growth.
  auto ended = run_cycles(ctx, 0, queued_first, true, std::nullopt, t);
  // Holds both slots until the real cycles, so the others stay queued; its run never goes idle.
  protocol::lease_request blocker_req;
  blocker_req.image = o.image;
  blocker_req.run = run_name(0);
  blocker_req.test = "blocker";
  blocker_req.slots = slots;
  std::optional<sclient::lease> blocker = sclient::lease::acquire(c, blocker_req, 120s);
  if (!ended.out_of_time) ended = run_cycles(ctx, queued_first, measured_first, false, std::nullopt, t);
  const int warmup_done = t.queued_done + t.real_done;
  const int warmup_real_done = t.real_done;
  const auto baseline_kib = settled_rss_kib(daemon.pid());
  const auto measured_start = bench_clock::now();
  std::optional<long> runaway_kib;
  if (baseline_kib) runaway_kib = *baseline_kib + runaway_factor * o.max_growth_mib * 1024L;
  if (!ended.out_of_time) ended = run_cycles(ctx, measured_first, real_first, false, runaway_kib, t);
  const auto queued_end_kib = itest::rss_kib(daemon.pid());
  blocker->release();
  blocker.reset();
  // The real cycles run even after a runaway: the sandbox path is checked either way.
  if (!ended.out_of_time) {
    const auto real_end = run_cycles(ctx, real_first, all_last, true, std::nullopt, t);
    ended.out_of_time = real_end.out_of_time;
  }
  const auto end_kib = settled_rss_kib(daemon.pid());
  const double measured_s = std::chrono::duration<double>(bench_clock::now() - measured_start).count();
  const int measured_done = t.queued_done + t.real_done - warmup_done;
  const int measured_real = t.real_done - warmup_real_done;

  // What the runs hold, read back: proof that the cycles were recorded where the finding was.
  std::size_t recorded = 0;
  for (int k = 0; k < run_count; ++k) {
    try {
      const auto timeline = c.run(run_name(k));
      recorded += timeline.value("leases", nlohmann::json::array()).size();
    } catch (const sclient::error& e) {
      if (e.status() != 404) throw;  // a forgotten run is what a fixed daemon may do
    }
  }

  // Everything is released: the slots come back and no container of the instance remains.
  std::optional<protocol::status_view> st;
  itest::wait_until(
      [&] {
        st = c.status();
        return st->slots_in_use == 0;
      },
      10s, 100ms);
  itest::wait_until([&] { return engine.containers_of(instance).empty(); }, 10s, 100ms);
  const auto left = engine.containers_of(instance).size();
  const auto stopped = daemon.terminate(30s);
  const auto left_after_stop = engine.containers_of(instance).size();

  auto kib_text = [](std::optional<long> kib) {
    return kib ? fmt::format("{:8.1f} MiB", mib(*kib)) : std::string("unreadable");
  };
  std::cout << "\nmemory figures (orchestratord VmRSS)\n";
  std::cout << fmt::format("  at start             {}\n", kib_text(start_kib));
  std::cout << fmt::format("  after warm-up        {}  ({} cycles, {} real; the baseline)\n",
                           kib_text(baseline_kib), warmup_done, warmup_real_done);
  std::cout << fmt::format("  before real cycles   {}\n", kib_text(queued_end_kib));
  std::cout << fmt::format("  at the end           {}\n", kib_text(end_kib));
  std::optional<double> growth;
  if (baseline_kib && end_kib) growth = mib(*end_kib - *baseline_kib);
  std::cout << fmt::format("  growth (end - base)  {}  (limit {} MiB)\n",
                           growth ? fmt::format("{:8.1f} MiB", *growth) : std::string("unknown"), o.max_growth_mib);
  std::cout << fmt::format("  cycles               {} of {} ({} queued, {} real)\n", measured_done, o.cycles,
                           measured_done - measured_real, measured_real);
  std::cout << fmt::format("  seconds              {:.1f}\n", measured_s);
  std::cout << fmt::format("  cycles/s             {:.1f}\n",
                           measured_s > 0 ? static_cast<double>(measured_done) / measured_s : 0.0);
  std::cout << fmt::format("  failed cycles        {}\n", t.failures);
  for (const auto& n : t.notes) std::cout << "    " << n << "\n";
  std::cout << fmt::format("  leases the {} runs still record: {}\n", run_count, recorded);
  std::cout << fmt::format("  slots in use at the end: {}; containers of the instance left: {} (after SIGTERM: {})\n",
                           st ? st->slots_in_use : -1, left, left_after_stop);
  std::cout << fmt::format("  daemon exit on SIGTERM: {}\n", stopped ? stopped->describe() : "still running");
  std::cout << fmt::format("  wall time: {:.1f} s\n",
                           std::chrono::duration<double>(bench_clock::now() - t0).count());

  std::vector<std::string> problems;
  if (!growth) {
    problems.push_back("could not read the daemon's VmRSS from /proc/<pid>/status");
  } else if (*growth > o.max_growth_mib) {
    problems.push_back(fmt::format(
        "VmRSS grew by {:.1f} MiB over {} cycles, more than --max-growth-mib={}: the daemon keeps something of every "
        "lease (its env?) that it should drop once the lease ends; compare GET /v1/runs/{}",
        *growth, measured_done, o.max_growth_mib, run_name(0)));
  }
  if (ended.runaway) {
    problems.push_back(fmt::format("stopped cycling early: VmRSS was over {} times the allowed growth",
                                   runaway_factor));
  }
  if (ended.out_of_time) {
    problems.push_back(fmt::format("--max-seconds={} passed after {} of {} cycles; the daemon is slower than it "
                                   "was, or give more time",
                                   o.max_seconds, measured_done, o.cycles));
  }
  if (t.failures > 0) problems.push_back(fmt::format("{} cycle(s) failed (the first ones are listed above)", t.failures));
  if (!st || st->slots_in_use != 0) problems.push_back("slots were still in use 10 s after everything was released");
  if (left != 0 || left_after_stop != 0) problems.push_back("containers of the instance were left behind");
  if (!stopped || !stopped->exited || stopped->code != 0) problems.push_back("the daemon did not exit 0 on SIGTERM");

  if (problems.empty()) {
    std::cout << "memory: OK\n";
    return 0;
  }
  std::cout << "memory: FAILED\n";
  for (const auto& p : problems) std::cout << "  - " << p << "\n";
  std::cout << "daemon log: " << daemon.log_path().string() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  options o;
  o.image = itest::test_image();
  try {
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& flag = args[i];
      if (flag == "--help" || flag == "-h") {
        std::cout << "usage: sandlot_bench_memory [--cycles N (default 1000)] [--max-seconds S (default 240)]\n"
                     "                            [--max-growth-mib M (default 10)] [--image REF]\n";
        return 0;
      }
      if (i + 1 >= args.size()) throw std::runtime_error(fmt::format("{} needs a value; see --help", flag));
      const std::string& value = args[++i];
      if (flag == "--cycles") {
        o.cycles = int_flag(flag, value, real_every, 100'000);
      } else if (flag == "--max-seconds") {
        o.max_seconds = int_flag(flag, value, 10, 3600);
      } else if (flag == "--max-growth-mib") {
        o.max_growth_mib = int_flag(flag, value, 1, 4096);
      } else if (flag == "--image") {
        o.image = value;
      } else {
        throw std::runtime_error(fmt::format("unknown option '{}'; see --help", flag));
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_memory: " << e.what() << "\n";
    return 2;
  }
  try {
    return bench(o);
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_memory: " << e.what() << "\n";
    std::cerr << "daemon logs in " << itest::scratch_dir().string() << "\n";
    return 2;
  }
}
