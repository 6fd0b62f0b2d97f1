// warm: lease → ready through orchestratord, cold (a fresh create) and warm (a sandbox the pool
// made before the lease came), side by side in one run on the real engine. docs/performance.md,
// "Warm pools", has the figures and how to read them.
//
// It starts its own daemon (integration tests' helper: loopback, free port, its own --instance)
// with `--slots 2 --warm IMAGE=1`. A warm sample is a lease with a default lease's limits, taken
// once the pool reports one ready; a cold sample is the same lease asking for 1 MiB more memory,
// which no warm sandbox matches, so it takes the create path unchanged. Both are timed from just
// before POST /v1/leases to the long-poll's "ready", as a test's lease::acquire sees it; release is
// not timed. The order alternates ABBA so a drift in machine load hits both.
//
//   sandlot_bench_warm [--iterations N] [--image REF] [--max-seconds S]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"

namespace itest = sandlot::itest;
namespace protocol = sandlot::protocol;
namespace sclient = sandlot::client;
using namespace std::chrono_literals;
using bench_clock = std::chrono::steady_clock;

namespace {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const auto hi = static_cast<std::size_t>(std::ceil(rank));
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

int warm_ready(const sclient::client& c) {
  const auto st = c.status();
  if (!st.warm) return 0;
  int n = 0;
  for (const auto& i : st.warm->images) n += i.ready;
  return n;
}

/// One lease, create → ready, in ms; released afterwards. Throws if it does not become ready.
double lease_ms(const sclient::client& c, const std::string& image, bool cold, int i, bool& was_warm) {
  protocol::lease_request req;
  req.image = image;
  req.run = fmt::format("bench-warm-{}", ::getpid());
  req.test = fmt::format("{} {}", cold ? "cold" : "warm", i);
  req.ttl_s = 60;
  if (cold) req.memory_mb += 1;  // no warm sandbox matches: the create path
  const auto t0 = bench_clock::now();
  const auto created = c.create(req);
  auto v = c.get(created.id, 30);
  while (v.state != protocol::lease_state::ready && !protocol::is_final(v.state)) v = c.get(created.id, 30);
  const double ms = std::chrono::duration<double, std::milli>(bench_clock::now() - t0).count();
  if (v.state != protocol::lease_state::ready) {
    throw std::runtime_error(fmt::format("lease {} ended {}: {}", created.id, protocol::to_string(v.state),
                                         v.error ? v.error->message : std::string()));
  }
  was_warm = v.warm;
  c.release(created.id);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 30;
  int max_seconds = 600;
  const char* env_image = std::getenv("SANDLOT_TEST_IMAGE");
  std::string image = env_image != nullptr ? env_image : "127.0.0.1:5000/sandlot/busybox:1";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--iterations" && i + 1 < argc) {
      iterations = std::clamp(std::atoi(argv[++i]), 1, 1000);
    } else if (a == "--image" && i + 1 < argc) {
      image = argv[++i];
    } else if (a == "--max-seconds" && i + 1 < argc) {
      max_seconds = std::clamp(std::atoi(argv[++i]), 10, 3600);
    } else {
      std::cerr << "usage: sandlot_bench_warm [--iterations N] [--image REF] [--max-seconds S]\n";
      return 2;
    }
  }

  const itest::engine_probe engine;
  itest::daemon_options o;
  o.instance = fmt::format("bench-warm-{}", ::getpid());
  o.slots = 2;
  o.extra_args = {"--warm", image + "=1"};
  int rc = 0;
  {
    itest::daemon_process d(o);
    const sclient::client c(d.url());
    const auto deadline = bench_clock::now() + std::chrono::seconds(max_seconds);
    std::vector<double> cold_ms, warm_ms;
    int not_warm = 0;
    try {
      // Warm-up: the image at the gate, the run's pin, one of each path.
      bool w = false;
      lease_ms(c, image, true, -1, w);
      for (int i = 0; i < iterations && bench_clock::now() < deadline; ++i) {
        const bool cold_first = (i % 4 == 0) || (i % 4 == 3);  // ABBA
        for (int k = 0; k < 2; ++k) {
          const bool cold = (k == 0) == cold_first;
          if (!cold) {
            // A warm sample is only a warm sample once the pool has one ready (refill is not timed).
            const auto until = bench_clock::now() + 60s;
            while (warm_ready(c) < 1 && bench_clock::now() < until) std::this_thread::sleep_for(5ms);
          }
          const double ms = lease_ms(c, image, cold, i, w);
          (cold ? cold_ms : warm_ms).push_back(ms);
          if (!cold && !w) ++not_warm;
        }
      }
    } catch (const std::exception& e) {
      std::cerr << "warm bench: " << e.what() << "\n";
      rc = 1;
    }
    const auto st = c.status();
    std::cout << fmt::format("lease → ready through orchestratord, --slots 2 --warm {}=1, {} iterations\n", image,
                             warm_ms.size());
    std::cout << fmt::format("{:<6} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "path", "n", "p50 ms", "p99 ms",
                             "mean ms", "min ms", "max ms");
    auto row = [](const char* name, const std::vector<double>& v) {
      double sum = 0;
      for (double x : v) sum += x;
      std::cout << fmt::format("{:<6} {:>4} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f} {:>9.1f}\n", name, v.size(),
                               percentile(v, 0.5), percentile(v, 0.99), v.empty() ? 0 : sum / static_cast<double>(v.size()),
                               percentile(v, 0), percentile(v, 1));
    };
    row("cold", cold_ms);
    row("warm", warm_ms);
    if (!warm_ms.empty() && percentile(warm_ms, 0.5) > 0) {
      std::cout << fmt::format("cold/warm: p50 {:.1f}x, p99 {:.1f}x\n", percentile(cold_ms, 0.5) / percentile(warm_ms, 0.5),
                               percentile(cold_ms, 0.99) / percentile(warm_ms, 0.99));
    }
    if (st.warm) {
      std::cout << fmt::format("daemon: warm hits {}, misses {}, evictions {}, adoption mean {:.1f} ms\n", st.warm->hits,
                               st.warm->misses, st.warm->evictions, st.warm->adoption_mean_s.value_or(0) * 1000);
    }
    if (not_warm > 0) {
      std::cout << fmt::format("warning: {} warm sample(s) were served cold\n", not_warm);
    }
    if (!d.terminate(60s)) rc = 1;
  }
  if (const auto left = engine.containers_of(o.instance); !left.empty()) {
    std::cerr << "warm bench: " << left.size() << " container(s) left behind; removing them\n";
    engine.remove_containers_of(o.instance);
    rc = 1;
  }
  return rc;
}
