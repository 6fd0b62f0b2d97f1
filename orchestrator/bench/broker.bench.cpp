// broker: the admission core alone, at scale. Prints, for the fifo and the duration schedule
// side by side:
//   - enqueue rate and the broker's memory per queued lease (heap in use before and after filling
//     the queue; the daemon's whole RSS at 10k queued is measured through its API);
//   - admit-after-release latency: with the queue full, one lease ends and admit() picks the next
//     (the work the daemon does on its single thread between a DELETE and the next lease's start);
//   - position() latency for a random queued lease (what every GET and the status pay).
// In-process, no engine: the daemon's HTTP and engine costs are measured by other benches.
//
//   sandlot_bench_broker [--queued 10000] [--runs 10] [--slots 8] [--cycles 2000]
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <malloc.h>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "broker.hpp"

using sandlot::orchestrator::broker;
using sandlot::orchestrator::schedule;
using bench_clock = std::chrono::steady_clock;

namespace {

struct settings {
  int queued = 10000;
  int runs = 10;
  int slots = 8;
  int cycles = 2000;
};

/// Bytes the heap has handed out now (not RSS: the second schedule reuses the first's freed pages).
double heap_in_use() { return static_cast<double>(mallinfo2().uordblks); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  return v[i];
}

struct figures {
  double enqueue_per_s = 0;
  double bytes_per_lease = 0;
  double admit_p50_us = 0, admit_p99_us = 0, admit_max_us = 0;
  double position_p50_us = 0, position_p99_us = 0;
  int backfilled = 0;
};

figures measure(const settings& s, schedule order) {
  figures f;
  std::mt19937 rng(42);
  // A skewed suite: most tests take a second or two, some a minute; a few leases are wide.
  std::lognormal_distribution<double> seconds(0.5, 1.0);
  std::uniform_int_distribution<int> wide(0, 49);
  double fake_now = 0;
  broker b(s.slots, broker::options{order, 1.0, 256, [&] { return fake_now; }});
  std::vector<std::string> held;
  // Fill the slots, then the queue.
  for (int i = 0; i < s.slots; ++i) b.enqueue({fmt::format("held-{}", i), 1, "r0", fmt::format("r0\nheld-{}", i), {}, 5});
  for (auto& a : b.admit()) held.push_back(a.lease_id);
  const double heap_before = heap_in_use();
  const auto t0 = bench_clock::now();
  for (int i = 0; i < s.queued; ++i) {
    fake_now += 0.0001;
    const std::string run = fmt::format("run-{}", i % s.runs);
    b.enqueue({fmt::format("lease-{:06}", i), wide(rng) == 0 ? std::min(4, s.slots) : 1, run,
               fmt::format("{}\ntest-{}", run, i), {}, seconds(rng)});
  }
  const double fill_s = std::chrono::duration<double>(bench_clock::now() - t0).count();
  f.enqueue_per_s = s.queued / fill_s;
  f.bytes_per_lease = (heap_in_use() - heap_before) / s.queued;

  // Release one, admit the next, as the daemon does; refill so the queue stays at its size.
  std::vector<double> admit_us, position_us;
  std::uniform_int_distribution<int> pick(0, s.queued - 1);
  int next_id = s.queued;
  for (int c = 0; c < s.cycles && !held.empty(); ++c) {
    fake_now += 0.5;
    const std::string done = held.front();
    held.erase(held.begin());
    const auto a0 = bench_clock::now();
    b.release(done);
    auto admitted = b.admit();
    admit_us.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - a0).count());
    for (auto& a : admitted) {
      if (a.backfilled) ++f.backfilled;
      held.push_back(a.lease_id);
    }
    // Keep the queue full.
    for (std::size_t k = 0; k < admitted.size(); ++k, ++next_id) {
      const std::string run = fmt::format("run-{}", next_id % s.runs);
      b.enqueue({fmt::format("lease-{:06}", next_id), 1, run, fmt::format("{}\ntest-{}", run, next_id), {}, seconds(rng)});
    }
    const std::string probe = fmt::format("lease-{:06}", std::max(pick(rng), next_id - s.queued));
    const auto p0 = bench_clock::now();
    const int at = b.position(probe);
    position_us.push_back(std::chrono::duration<double, std::micro>(bench_clock::now() - p0).count());
    if (at < -1) throw std::logic_error("impossible position");
  }
  f.admit_p50_us = percentile(admit_us, 0.50);
  f.admit_p99_us = percentile(admit_us, 0.99);
  f.admit_max_us = percentile(admit_us, 1.0);
  f.position_p50_us = percentile(position_us, 0.50);
  f.position_p99_us = percentile(position_us, 0.99);
  if (b.queue_length() != s.queued) {
    throw std::logic_error(fmt::format("the queue should hold {} leases, holds {}", s.queued, b.queue_length()));
  }
  return f;
}

int parse_int(std::string_view v, const char* flag) {
  int out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < 1) {
    throw std::invalid_argument(fmt::format("{} wants a positive number, not '{}'", flag, v));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      auto value = [&]() -> std::string_view {
        if (i + 1 >= argc) throw std::invalid_argument(fmt::format("{} needs a value", arg));
        return argv[++i];
      };
      if (arg == "--queued") s.queued = parse_int(value(), "--queued");
      else if (arg == "--runs") s.runs = parse_int(value(), "--runs");
      else if (arg == "--slots") s.slots = parse_int(value(), "--slots");
      else if (arg == "--cycles") s.cycles = parse_int(value(), "--cycles");
      else if (arg == "-h" || arg == "--help") {
        std::cout << "sandlot_bench_broker [--queued 10000] [--runs 10] [--slots 8] [--cycles 2000]\n";
        return 0;
      } else {
        throw std::invalid_argument(fmt::format("unknown argument '{}'; see --help", arg));
      }
    }
    if (s.slots < 4) throw std::invalid_argument("--slots must be at least 4 (the bench queues 4-slot leases)");
    std::cout << fmt::format("broker bench: {} queued leases in {} runs, {} slots, {} release/admit cycles\n\n",
                             s.queued, s.runs, s.slots, s.cycles);
    const figures fifo = measure(s, schedule::fifo);
    const figures dur = measure(s, schedule::duration);
    std::cout << fmt::format("{:<34} {:>12} {:>12} {:>14}\n", "figure", "fifo", "duration", "goal");
    auto row = [](std::string_view name, double a, double b, std::string_view goal, int precision = 1) {
      std::cout << fmt::format("{:<34} {:>12.{}f} {:>12.{}f} {:>14}\n", name, a, precision, b, precision, goal);
    };
    row("enqueue (leases/s)", fifo.enqueue_per_s, dur.enqueue_per_s, "");
    row("broker heap per queued lease (B)", fifo.bytes_per_lease, dur.bytes_per_lease, "");
    row("broker memory for the queue (MB)", fifo.bytes_per_lease * s.queued / 1e6,
      dur.bytes_per_lease * s.queued / 1e6, "< 50 (daemon)");
    row("admit after release p50 (us)", fifo.admit_p50_us, dur.admit_p50_us, "");
    row("admit after release p99 (us)", fifo.admit_p99_us, dur.admit_p99_us, "< 1000");
    row("admit after release max (us)", fifo.admit_max_us, dur.admit_max_us, "");
    row("position() p50 (us)", fifo.position_p50_us, dur.position_p50_us, "");
    row("position() p99 (us)", fifo.position_p99_us, dur.position_p99_us, "");
    row("admissions by backfill", fifo.backfilled, dur.backfilled, "", 0);
    const bool met = fifo.admit_p99_us < 1000 && dur.admit_p99_us < 1000;
    std::cout << fmt::format("\nadmit p99 < 1 ms: {}\n", met ? "met" : "NOT met");
    return met ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_broker: " << e.what() << "\n";
    return 2;
  }
}
