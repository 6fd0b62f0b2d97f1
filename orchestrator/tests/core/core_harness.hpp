// The lease core's test harness: a lease service on the in-memory fake provider and an
// io_context the test drives in bounded steps. Shared by the core's test files.
#pragma once

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <spdlog/spdlog.h>
#include <sandlot/protocol.hpp>
#include "lease_service.hpp"
#include "support/fake_provider.hpp"

namespace core_tests {

namespace asio = boost::asio;
namespace protocol = sandlot::protocol;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using protocol::api_error;
using protocol::errc;
using sandlot::orchestrator::lease_service;
using sandlot::orchestrator::provider_failure;
using sandlot::orchestrator::service_options;
using sandlot::orchestrator::testing::fake_provider;
using clock_type = std::chrono::steady_clock;
using states = std::vector<std::string>;

// A loopback registry: the core pulls only from those unless told otherwise.
inline const std::string image = "127.0.0.1:5000/sandlot/busybox:1.36";
inline const std::string run_name = "core-run";

/// Timings short enough for a unit test; the orphan sweep stays out of the way unless a case
/// turns it on.
inline service_options quick_options() {
  service_options o;
  o.instance = "core-tests";
  o.slots = 2;
  o.reap_interval = 20ms;
  o.orphan_sweep_interval = 60s;
  o.gate.backoff = 1ms;
  o.gate.attempts = 3;
  o.gate.pull_deadline = 10s;
  return o;
}

/// One lease per test name: the broker lets a test's second lease go ahead of the queue, so
/// distinct names keep the queue plain FIFO.
inline protocol::lease_request lease_for(std::string test) {
  protocol::lease_request r;
  r.image = image;
  r.run = run_name;
  r.test = std::move(test);
  return r;
}

inline std::string code_name(errc code) { return std::string(protocol::code_string(code)); }

/// The api_error code a call threw; fails the test if it threw nothing or something else.
template <class F>
inline errc code_of(F&& call) {
  try {
    call();
  } catch (const api_error& e) {
    return e.code();
  }
  FAIL("the call did not throw an api_error");
  return errc::unknown;
}

/// An awaitable call in flight on the harness's io_context.
template <class T>
struct pending {
  bool done = false;
  std::optional<T> value;
  std::exception_ptr error;
};

inline asio::awaitable<std::monostate> as_value(asio::awaitable<void> a) {
  co_await std::move(a);
  co_return std::monostate{};
}

/// A lease service on a fake provider and an io_context the test drives in bounded steps.
///
/// Member order matters: the io_context goes first on destruction, so the coroutines it still
/// holds (the reaper, the sweeper, whatever a failed case left) are destroyed while the service
/// and the fake they point at are alive.
class harness {
 public:
  fake_provider fake;

  explicit harness(service_options opts = quick_options()) {
    service_.emplace(io_.get_executor(), fake, std::move(opts));
  }
  /// A service on another provider (a pool of fakes, say), made by `make` on this harness's
  /// executor and owned here; `fake` then goes unused.
  using provider_maker =
      std::function<std::unique_ptr<sandlot::orchestrator::sandbox_provider>(asio::any_io_executor)>;
  harness(const provider_maker& make, service_options opts) {
    provider_ = make(io_.get_executor());  // in the body: io_ is made after every other member
    service_.emplace(io_.get_executor(), *provider_, std::move(opts));
  }
  harness(const harness&) = delete;
  harness& operator=(const harness&) = delete;

  lease_service& service() { return *service_; }

  void start() { wait(service().start()); }

  template <class T>
  std::shared_ptr<pending<T>> spawn(asio::awaitable<T> a) {
    auto p = std::make_shared<pending<T>>();
    asio::co_spawn(io_, std::move(a), [p](std::exception_ptr e, T value) {
      p->done = true;
      p->error = e;
      if (!e) p->value = std::move(value);
    });
    return p;
  }
  std::shared_ptr<pending<std::monostate>> spawn(asio::awaitable<void> a) {
    return spawn(as_value(std::move(a)));
  }

  /// Runs `a` to its end (at most `bound`) and returns its value or rethrows its exception.
  template <class T>
  T wait(asio::awaitable<T> a, std::chrono::milliseconds bound = 5s) {
    auto p = spawn(std::move(a));
    REQUIRE(run_until([&] { return p->done; }, bound));
    if (p->error) std::rethrow_exception(p->error);
    return std::move(*p->value);
  }
  void wait(asio::awaitable<void> a, std::chrono::milliseconds bound = 5s) {
    wait(as_value(std::move(a)), bound);
  }

  /// The api_error code an awaitable call ended with; fails the test if it succeeded.
  template <class T>
  errc error_of(asio::awaitable<T> a) {
    auto p = spawn(std::move(a));
    REQUIRE(run_until([&] { return p->done; }));
    REQUIRE(p->error);
    try {
      std::rethrow_exception(p->error);
    } catch (const api_error& e) {
      return e.code();
    } catch (const std::exception& e) {
      FAIL("the call threw something other than api_error: " << e.what());
    }
    return errc::unknown;
  }

  /// Runs the event loop, one handler at a time, until `done()` holds. False when `bound` ran out
  /// first (a hang, or a behaviour that never came) or when nothing is left to run.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds bound = 5s) {
    const auto deadline = clock_type::now() + bound;
    while (!done()) {
      if (clock_type::now() >= deadline) return false;
      if (io_.stopped()) io_.restart();
      if (io_.run_one_until(deadline) == 0 && io_.stopped() && clock_type::now() < deadline)
        return done();
      sample();
    }
    return true;
  }

  /// Lets time pass with the event loop running, when time passing is what a case is about.
  void run_for(std::chrono::milliseconds d) {
    run_until([] { return false; }, d);
  }

  /// POST /v1/leases; the lease's states are recorded from now on (see states_seen).
  std::string create(protocol::lease_request req) {
    const auto [v, created] = service().create(std::move(req));
    REQUIRE(created);
    runs_[v.id] = v.run;
    seen_[v.id] = {std::string(protocol::to_string(v.state))};
    return v.id;
  }

  /// The lease's state as the run's timeline shows it: unlike GET, looking does not renew it.
  std::string state(const std::string& id) const {
    for (const auto& r : service_->run(runs_.at(id)).leases) {
      if (r.id == id) return r.state;
    }
    return "unknown";
  }

  bool reach(const std::string& id, std::string_view wanted, std::chrono::milliseconds bound = 5s) {
    return run_until([&] { return state(id) == wanted; }, bound);
  }

  /// Every state the lease was in after any handler ran, in order, without repeats.
  const states& states_seen(const std::string& id) const { return seen_.at(id); }

  protocol::lease_view view(const std::string& id) { return wait(service().get(id, 0)); }
  protocol::lease_view release(const std::string& id, std::chrono::milliseconds bound = 5s) {
    return wait(service().release(id), bound);
  }
  std::string sandbox_of(const std::string& id) {
    const auto v = view(id);
    REQUIRE(v.sandbox);
    return v.sandbox->id;
  }

 private:
  void sample() {
    for (auto& [id, seen] : seen_) {
      auto now = state(id);
      if (seen.back() != now) seen.push_back(std::move(now));
    }
  }

  std::map<std::string, std::string> runs_;  // lease id → its run
  std::map<std::string, states> seen_;
  std::unique_ptr<sandlot::orchestrator::sandbox_provider> provider_;
  std::optional<lease_service> service_;
  asio::io_context io_;
};

/// Silences the core's log for a case whose logged errors are the scenario itself (tests/main.cpp
/// keeps errors on).
class quiet_log {
 public:
  quiet_log() : was_(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~quiet_log() { spdlog::set_level(was_); }
  quiet_log(const quiet_log&) = delete;
  quiet_log& operator=(const quiet_log&) = delete;

 private:
  spdlog::level::level_enum was_;
};

inline bool contains(const states& seen, std::string_view s) {
  return std::find(seen.begin(), seen.end(), s) != seen.end();
}

}  // namespace core_tests
