// api_load: what the daemon's HTTP API takes on loopback. Creating queued leases (how many a
// second, and each create's latency), the daemon's memory with all of them queued, N long-poll
// waiters at once while another client is served, and releasing them all again.
//
// It starts its own orchestratord (--slots 2, its own --instance, a free loopback port, room for
// the waiters in --max-connections). A "blocker" lease takes both slots and is the one sandbox the
// bench makes, so every other lease stays queued: the figures are the daemon's, not the engine's.
// The load comes from one thread of C++20 coroutines over keep-alive connections (Beast), so the
// client costs little next to the daemon on a 2-core machine.
//
//   sandlot_bench_api_load [--creates 10000] [--connections 32] [--runs 8] [--waiters 2000]
//                          [--wait-s 3] [--max-seconds 240] [--image REF]
//
// It prints figures; it exits 1 only for wrong behaviour: a request that failed, a waiter not
// answered as a long-poll (200, still queued, after about wait_s), a lease left queued or a
// container left behind, or a daemon that does not exit 0 on SIGTERM.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace itest = sandlot::itest;
namespace sclient = sandlot::client;
using namespace std::chrono_literals;
using bench_clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

constexpr int slots = 2;

struct options {
  int creates = 10000;
  int connections = 32;
  int runs = 8;
  int waiters = 2000;
  int wait_s = 3;
  int max_seconds = 240;
  std::string image;
};

/// One keep-alive connection to the daemon; requests on it go one after another.
class connection {
 public:
  connection(asio::any_io_executor ex, unsigned short port) : stream_(ex), port_(port) {}

  asio::awaitable<http::response<http::string_body>> exchange(http::verb verb, std::string target,
                                                              std::string body, std::chrono::seconds limit) {
    if (!stream_.socket().is_open()) {
      stream_.expires_after(10s);
      const asio::ip::tcp::endpoint to(asio::ip::make_address_v4("127.0.0.1"), port_);
      co_await stream_.async_connect(to, asio::use_awaitable);
    }
    http::request<http::string_body> req(verb, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    if (!body.empty()) req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
    req.prepare_payload();
    stream_.expires_after(limit);
    co_await http::async_write(stream_, req, asio::use_awaitable);
    http::response<http::string_body> res;
    co_await http::async_read(stream_, buffer_, res, asio::use_awaitable);
    if (!res.keep_alive()) close();
    co_return res;
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().close(ignored);
    buffer_.clear();
  }

 private:
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  unsigned short port_;
};

/// Milliseconds at quantile q (0..1) of unsorted samples.
double quantile_ms(std::vector<double> s, double q) {
  if (s.empty()) return 0;
  std::sort(s.begin(), s.end());
  const auto i = static_cast<std::size_t>(q * static_cast<double>(s.size() - 1) + 0.5);
  return s[std::min(i, s.size() - 1)] * 1000.0;
}

double since(bench_clock::time_point t) { return std::chrono::duration<double>(bench_clock::now() - t).count(); }

/// What a phase saw: each request's seconds, and what went wrong.
struct phase {
  std::vector<double> seconds;
  std::vector<std::string> failures;
  void fail(std::string what) {
    if (failures.size() < 10) failures.push_back(std::move(what));
    else if (failures.size() == 10) failures.push_back("(more failures not shown)");
  }
};

/// `count` requests shared by `workers` coroutines on their own connections; request(i) gives the
/// i-th request's method, target and body, check(i, response) says what is wrong with its answer.
template <class Request, class Check>
double run_requests(unsigned short port, int count, int workers, Request request, Check check, phase& p) {
  asio::io_context io;
  int next = 0;
  p.seconds.reserve(p.seconds.size() + static_cast<std::size_t>(count));
  const auto t0 = bench_clock::now();
  for (int w = 0; w < workers; ++w) {
    asio::co_spawn(
        io,
        [&, port]() -> asio::awaitable<void> {
          connection conn(co_await asio::this_coro::executor, port);
          while (next < count) {
            const int i = next++;
            auto [verb, target, body] = request(i);
            const auto start = bench_clock::now();
            try {
              auto res = co_await conn.exchange(verb, target, body, 30s);
              p.seconds.push_back(since(start));
              if (auto wrong = check(i, res); !wrong.empty()) p.fail(std::move(wrong));
            } catch (const std::exception& e) {
              p.fail(fmt::format("{} {}: {}", std::string(http::to_string(verb)), target, e.what()));
              conn.close();
            }
          }
        },
        asio::detached);
  }
  io.run();
  return since(t0);
}

std::string lease_body(const options& o, int i) {
  return json{{"image", o.image},
              {"run", fmt::format("apiload-{}-{}", getpid(), i % o.runs)},
              {"test", fmt::format("case {}", i % 500)},
              {"ttl_s", 600},
              {"slots", 1}}
      .dump();
}

/// GET /metrics and GET /v1/runs, `count` each on one connection: what a scrape and a dashboard
/// cost. `queued` is what the metrics must say is queued.
struct read_figures {
  double metrics_p50_ms = 0;
  double runs_p50_ms = 0;
};
read_figures time_reads(unsigned short port, int count, int queued, phase& p) {
  read_figures f;
  const std::string want = fmt::format("sandlot_leases{{state=\"queued\"}} {}\n", queued);
  phase m;
  run_requests(
      port, count, 1, [](int) { return std::tuple{http::verb::get, std::string("/metrics"), std::string()}; },
      [&](int, const http::response<http::string_body>& res) -> std::string {
        if (res.result_int() != 200) return fmt::format("GET /metrics: HTTP {}", res.result_int());
        if (res.body().find(want) == std::string::npos) return fmt::format("GET /metrics lacks '{}'", want.substr(0, want.size() - 1));
        return {};
      },
      m);
  phase r;
  run_requests(
      port, count, 1, [](int) { return std::tuple{http::verb::get, std::string("/v1/runs"), std::string()}; },
      [&](int, const http::response<http::string_body>& res) -> std::string {
        if (res.result_int() != 200) return fmt::format("GET /v1/runs: HTTP {}", res.result_int());
        return {};
      },
      r);
  f.metrics_p50_ms = quantile_ms(m.seconds, 0.5);
  f.runs_p50_ms = quantile_ms(r.seconds, 0.5);
  for (auto* each : {&m, &r}) {
    for (auto& e : each->failures) p.fail(std::move(e));
  }
  return f;
}

struct waiter_figures {
  int answered_as_poll = 0;    // 200, still queued, after at least 90% of wait_s
  double slowest_s = 0;        // the last waiter's answer
  std::vector<double> probe_s; // another client's GET /healthz meanwhile
};

/// `ids.size()` long-polls at once, each on its own connection, while one more connection asks
/// GET /healthz every 50 ms until they are all answered.
waiter_figures wait_all(unsigned short port, const std::vector<std::string>& ids, int wait_s, phase& p) {
  asio::io_context io;
  waiter_figures f;
  std::size_t open = ids.size();
  const auto t0 = bench_clock::now();
  for (const auto& id : ids) {
    asio::co_spawn(
        io,
        [&, id, port]() -> asio::awaitable<void> {
          connection conn(co_await asio::this_coro::executor, port);
          const auto start = bench_clock::now();
          try {
            auto res = co_await conn.exchange(http::verb::get, fmt::format("/v1/leases/{}?wait_s={}", id, wait_s),
                                              {}, std::chrono::seconds(wait_s + 60));
            const double took = since(start);
            f.slowest_s = std::max(f.slowest_s, since(t0));
            const auto state = res.result_int() == 200 ? json::parse(res.body()).value("state", "") : "";
            if (res.result_int() != 200 || state != "queued") {
              p.fail(fmt::format("waiter on {}: HTTP {} state '{}': {}", id, res.result_int(), state,
                                 res.body().substr(0, 200)));
            } else if (took < 0.9 * wait_s) {
              p.fail(fmt::format("waiter on {} was answered after {:.2f} s, not held for wait_s={}", id, took, wait_s));
            } else {
              ++f.answered_as_poll;
            }
          } catch (const std::exception& e) {
            p.fail(fmt::format("waiter on {}: {}", id, e.what()));
          }
          --open;
        },
        asio::detached);
  }
  asio::co_spawn(
      io,
      [&, port]() -> asio::awaitable<void> {
        connection conn(co_await asio::this_coro::executor, port);
        asio::steady_timer tick(co_await asio::this_coro::executor);
        while (open > 0) {
          const auto start = bench_clock::now();
          try {
            auto res = co_await conn.exchange(http::verb::get, "/healthz", {}, 10s);
            f.probe_s.push_back(since(start));
            if (res.result_int() != 200) p.fail(fmt::format("GET /healthz during the waits: HTTP {}", res.result_int()));
          } catch (const std::exception& e) {
            p.fail(fmt::format("GET /healthz during the waits: {}", e.what()));
            conn.close();
          }
          tick.expires_after(50ms);
          co_await tick.async_wait(asio::use_awaitable);
        }
      },
      asio::detached);
  io.run();
  return f;
}

void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

void print_failures(std::string_view what, const phase& p) {
  for (const auto& f : p.failures) std::cout << fmt::format("  FAILED ({}): {}\n", what, f);
}

int run(const options& o) {
  raise_fd_limit();
  const auto t0 = bench_clock::now();
  std::thread([limit = t0 + std::chrono::seconds(o.max_seconds) + 60s] {
    std::this_thread::sleep_until(limit);
    std::cerr << "sandlot_bench_api_load: hard deadline passed, giving up\n";
    std::_Exit(3);
  }).detach();

  const itest::engine_probe engine;
  const std::string instance = itest::unique_instance("apiload");
  const itest::leftover_guard leftovers(engine, instance);  // runs after the daemon has stopped
  itest::daemon_options dopts;
  dopts.instance = instance;
  dopts.slots = slots;
  dopts.extra_args = {"--max-connections", std::to_string(o.waiters + o.connections + 64), "--max-queued-per-run",
                      std::to_string(o.creates + 10)};
  itest::daemon_process daemon(dopts);
  const auto port = daemon.port();
  std::cout << fmt::format("api_load: {} creates over {} connections into {} runs, {} waiters (wait_s={}), "
                           "--slots {}, instance {}, daemon pid {}\n",
                           o.creates, o.connections, o.runs, o.waiters, o.wait_s, slots, instance, daemon.pid());
  const auto idle_kib = itest::rss_kib(daemon.pid()).value_or(0);

  const sclient::client c(daemon.url());
  sandlot::protocol::lease_request blocker_req = itest::lease_of(o.image, "blocker", 600);
  blocker_req.slots = slots;
  std::optional<sclient::lease> blocker = sclient::lease::acquire(c, blocker_req, 120s);

  // Reads that must not grow with the leases the daemon holds: idle, queued, ended.
  phase reads;
  constexpr int read_count = 200;
  const auto reads_idle = time_reads(port, read_count, 0, reads);

  // Creates.
  std::vector<std::string> ids(static_cast<std::size_t>(o.creates));
  phase creates;
  const double create_s = run_requests(
      port, o.creates, o.connections,
      [&](int i) { return std::tuple{http::verb::post, std::string("/v1/leases"), lease_body(o, i)}; },
      [&](int i, const http::response<http::string_body>& res) -> std::string {
        if (res.result_int() != 201) return fmt::format("create {}: HTTP {}: {}", i, res.result_int(), res.body());
        auto v = json::parse(res.body());
        if (v.value("state", "") != "queued") return fmt::format("create {}: state {}", i, v.value("state", ""));
        ids[static_cast<std::size_t>(i)] = v.value("id", "");
        return {};
      },
      creates);
  const auto queued_kib = itest::rss_kib(daemon.pid()).value_or(0);
  auto st = c.status();
  std::cout << fmt::format("creates: {} in {:.2f} s = {:.0f}/s; latency p50 {:.2f} ms, p99 {:.2f} ms, max {:.2f} ms\n",
                           creates.seconds.size(), create_s, static_cast<double>(creates.seconds.size()) / create_s,
                           quantile_ms(creates.seconds, 0.5), quantile_ms(creates.seconds, 0.99),
                           quantile_ms(creates.seconds, 1.0));
  std::cout << fmt::format("memory: VmRSS {:.1f} MiB idle, {:.1f} MiB with {} leases queued ({:.2f} KiB a lease)\n",
                           static_cast<double>(idle_kib) / 1024.0, static_cast<double>(queued_kib) / 1024.0, st.queue_length,
                           st.queue_length > 0 ? static_cast<double>(queued_kib - idle_kib) / st.queue_length : 0.0);
  print_failures("create", creates);
  bool ok = creates.failures.empty() && st.queue_length == o.creates;
  if (st.queue_length != o.creates) {
    std::cout << fmt::format("  FAILED: /v1/status shows {} queued, not {}\n", st.queue_length, o.creates);
  }

  const auto reads_queued = time_reads(port, read_count, st.queue_length, reads);

  // Long-poll waiters, on the first queued leases.
  std::vector<std::string> waited;
  for (const auto& id : ids) {
    if (static_cast<int>(waited.size()) < o.waiters && !id.empty()) waited.push_back(id);
  }
  phase waits;
  const auto w = wait_all(port, waited, o.wait_s, waits);
  std::cout << fmt::format("waiters: {}/{} held and answered as long-polls, the last after {:.2f} s; "
                           "GET /healthz meanwhile p50 {:.2f} ms, p99 {:.2f} ms ({} probes)\n",
                           w.answered_as_poll, waited.size(), w.slowest_s, quantile_ms(w.probe_s, 0.5),
                           quantile_ms(w.probe_s, 0.99), w.probe_s.size());
  print_failures("wait", waits);
  ok = ok && waits.failures.empty() && w.answered_as_poll == static_cast<int>(waited.size()) && !w.probe_s.empty();

  // Releases of queued leases.
  phase releases;
  const double release_s = run_requests(
      port, o.creates, o.connections,
      [&](int i) {
        return std::tuple{http::verb::delete_, fmt::format("/v1/leases/{}", ids[static_cast<std::size_t>(i)]),
                          std::string()};
      },
      [&](int i, const http::response<http::string_body>& res) -> std::string {
        if (res.result_int() != 200) return fmt::format("release {}: HTTP {}: {}", i, res.result_int(), res.body());
        return {};
      },
      releases);
  std::cout << fmt::format("releases: {} queued leases in {:.2f} s = {:.0f}/s; p50 {:.2f} ms, p99 {:.2f} ms\n",
                           releases.seconds.size(), release_s,
                           static_cast<double>(releases.seconds.size()) / release_s,
                           quantile_ms(releases.seconds, 0.5), quantile_ms(releases.seconds, 0.99));
  print_failures("release", releases);
  ok = ok && releases.failures.empty();
  // The released leases stay remembered (for ten minutes, to answer GET) but are no longer live.
  const auto reads_ended = time_reads(port, read_count, 0, reads);
  std::cout << fmt::format("reads (p50 of {} each): GET /metrics {:.2f} ms idle, {:.2f} ms with {} queued, {:.2f} ms "
                           "with them ended; GET /v1/runs {:.2f} / {:.2f} / {:.2f} ms\n",
                           read_count, reads_idle.metrics_p50_ms, reads_queued.metrics_p50_ms, o.creates,
                           reads_ended.metrics_p50_ms, reads_idle.runs_p50_ms, reads_queued.runs_p50_ms,
                           reads_ended.runs_p50_ms);
  print_failures("read", reads);
  ok = ok && reads.failures.empty();

  blocker->release();
  blocker.reset();
  st = c.status();
  if (st.queue_length != 0 || st.slots_in_use != 0) {
    std::cout << fmt::format("  FAILED: after the releases {} queued and {} slot(s) in use\n", st.queue_length,
                             st.slots_in_use);
    ok = false;
  }
  const auto ended = daemon.terminate(30s);
  if (!ended || !ended->exited || ended->code != 0) {
    std::cout << "  FAILED: orchestratord did not exit 0 on SIGTERM: "
              << (ended ? ended->describe() : std::string("still running")) << "\n";
    ok = false;
  }
  if (const auto left = engine.containers_of(instance).size(); left != 0) {
    std::cout << fmt::format("  FAILED: {} container(s) of instance {} left\n", left, instance);
    ok = false;
  }
  std::cout << fmt::format("api_load: {} in {:.1f} s\n", ok ? "ok" : "FAILED", since(t0));
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.image = itest::test_image();
  const std::string usage =
      "usage: sandlot_bench_api_load [--creates N (default 10000)] [--connections C (32)] [--runs R (8)]\n"
      "                              [--waiters W (2000)] [--wait-s S (3)] [--max-seconds T (240)] [--image REF]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << usage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "sandlot_bench_api_load: " << flag << " needs a value\n" << usage;
      return 2;
    }
    const std::string value = argv[++i];
    auto number = [&](int low, int high) {
      int n = 0;
      try {
        n = std::stoi(value);
      } catch (const std::exception&) {
        n = low - 1;
      }
      if (n < low || n > high) {
        std::cerr << fmt::format("sandlot_bench_api_load: {} must be a number from {} to {}, not '{}'\n", flag, low,
                                 high, value);
        std::exit(2);
      }
      return n;
    };
    if (flag == "--creates") o.creates = number(1, 1000000);
    else if (flag == "--connections") o.connections = number(1, 1000);
    else if (flag == "--runs") o.runs = number(1, 1000);
    else if (flag == "--waiters") o.waiters = number(0, 10000);
    else if (flag == "--wait-s") o.wait_s = number(1, 60);
    else if (flag == "--max-seconds") o.max_seconds = number(10, 3600);
    else if (flag == "--image") o.image = value;
    else {
      std::cerr << "sandlot_bench_api_load: unknown flag " << flag << "\n" << usage;
      return 2;
    }
  }
  if (o.waiters > o.creates) o.waiters = o.creates;
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_api_load: " << e.what() << "\n";
    std::cerr << "daemon logs in " << itest::scratch_dir().string() << "\n";
    return 1;
  }
}
