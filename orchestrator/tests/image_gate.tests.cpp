// The image gate on a real io_context, with the engine replaced by a fake registry: the fake
// records every call, so single flight, retries and the pull cap are asserted on what the engine
// would have seen.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "image_gate.hpp"
#include "sandbox_provider.hpp"

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using sandlot::orchestrator::image_gate;
using sandlot::protocol::api_error;
using sandlot::protocol::errc;

/// Stands in for the engine and its registry.
struct fake_registry {
  std::set<std::string> present;                             // images exists() reports
  std::map<std::string, std::vector<std::string>> failures;  // per image: reasons, one per attempt
  // (a reason starting "manifest unknown" is an image_not_found)
  std::chrono::milliseconds pull_time{0};                    // how long a pull takes
  std::vector<std::string> pulls;                            // every pull attempt, in order
  std::function<void()> on_pull_done;                        // runs as a pull ends, either way
  int exists_calls = 0;
  int in_flight = 0;
  int max_in_flight = 0;

  asio::awaitable<bool> exists(std::string image) {
    ++exists_calls;
    co_return present.count(image) > 0;
  }

  asio::awaitable<void> pull(std::string image) {
    pulls.push_back(image);
    ++in_flight;
    max_in_flight = std::max(max_in_flight, in_flight);
    if (pull_time > 0ms) {
      asio::steady_timer t(co_await asio::this_coro::executor, pull_time);
      co_await t.async_wait(asio::use_awaitable);
    }
    --in_flight;
    auto& queued = failures[image];
    if (!queued.empty()) {
      const std::string reason = queued.front();
      queued.erase(queued.begin());
      if (on_pull_done) on_pull_done();
      // As a provider would: an unknown manifest is a typed, permanent failure.
      const bool unknown = reason.rfind("manifest unknown", 0) == 0;
      throw sandlot::orchestrator::provider_error(
          unknown ? sandlot::orchestrator::provider_failure::image_not_found
                  : sandlot::orchestrator::provider_failure::failed,
          reason);
    }
    present.insert(image);
    if (on_pull_done) on_pull_done();
  }

  int pulls_of(const std::string& image) const {
    return static_cast<int>(std::count(pulls.begin(), pulls.end(), image));
  }
};

image_gate::options quick_options() {
  image_gate::options o;
  o.backoff = 1ms;
  return o;
}

/// One ensure() as seen by the lease that called it.
struct outcome {
  bool done = false;
  std::exception_ptr error;
};

/// Member order matters: the io_context goes first on destruction, so coroutines it still holds
/// (only when a test fails) are destroyed while the gate and the fake they point at are alive.
struct harness {
  fake_registry registry;
  std::optional<image_gate> gate;
  asio::io_context io;

  explicit harness(image_gate::options opts = quick_options()) {
    gate.emplace(
        io.get_executor(),
        [this](const std::string& image) { return registry.exists(image); },
        [this](const std::string& image, std::chrono::steady_clock::time_point, image_gate::progress_fn) {
          return registry.pull(image);
        },
        opts);
  }

  /// Starts an ensure() the way a lease does; the coroutine owns its copy of the reference.
  void ensure(std::string image, outcome& out) {
    asio::co_spawn(io, call_ensure(*gate, std::move(image)), [&out](std::exception_ptr e) {
      out.done = true;
      out.error = e;
    });
  }

  /// Runs until every coroutine has finished; the bound only matters when the gate hangs.
  void run() {
    io.restart();
    io.run_for(10s);
  }

 private:
  static asio::awaitable<void> call_ensure(image_gate& g, std::string image) {
    co_await g.ensure(image);
  }
};

/// The api_error an ensure() failed with; fails the test if it succeeded or threw something else.
api_error failure_of(const outcome& out) {
  REQUIRE(out.done);
  REQUIRE(out.error);
  try {
    std::rethrow_exception(out.error);
  } catch (const api_error& e) {
    return e;
  } catch (const std::exception& e) {
    FAIL("ensure() threw something other than api_error: " << e.what());
  }
  throw std::logic_error("unreachable");
}

void require_succeeded(const outcome& out) {
  REQUIRE(out.done);
  if (out.error) {
    try {
      std::rethrow_exception(out.error);
    } catch (const std::exception& e) {
      FAIL("ensure() failed: " << e.what());
    }
  }
}

}  // namespace

TEST_CASE("concurrent ensures of one image share a single pull", "[image_gate]") {
  harness h;
  h.registry.pull_time = 5ms;
  std::vector<outcome> leases(5);
  for (auto& out : leases) h.ensure("busybox:1.36", out);
  h.run();

  for (const auto& out : leases) require_succeeded(out);
  CHECK(h.registry.pulls_of("busybox:1.36") == 1);
  CHECK(h.registry.exists_calls == 1);
  CHECK(h.gate->pulls_started() == 1);
  CHECK(h.gate->flights_started() == 1);
  CHECK(h.gate->known_present("busybox:1.36"));
  CHECK(h.gate->idle());
}

TEST_CASE("a failed pull fails every waiter with the image and the engine's reason",
          "[image_gate]") {
  auto opts = quick_options();
  opts.attempts = 1;
  harness h(opts);
  h.registry.pull_time = 2ms;
  h.registry.failures["registry.local/app:7"] = {"connection refused by registry.local"};
  std::vector<outcome> leases(3);
  for (auto& out : leases) h.ensure("registry.local/app:7", out);
  h.run();

  for (const auto& out : leases) {
    const api_error e = failure_of(out);
    CHECK(e.code() == errc::image_pull_failed);
    CHECK_THAT(e.message(), Catch::Contains("registry.local/app:7"));
    CHECK_THAT(e.message(), Catch::Contains("connection refused by registry.local"));
  }
  CHECK(h.registry.pulls_of("registry.local/app:7") == 1);
  CHECK(h.gate->pulls_failed() == 1);
  CHECK_FALSE(h.gate->known_present("registry.local/app:7"));
  CHECK(h.gate->idle());
}

TEST_CASE("a pull that fails transiently is retried with backoff", "[image_gate]") {
  harness h;  // three attempts, 1 ms backoff
  h.registry.failures["alpine:3.19"] = {"TLS handshake timeout", "connection reset by peer"};
  outcome out;
  h.ensure("alpine:3.19", out);
  h.run();

  require_succeeded(out);
  CHECK(h.registry.pulls_of("alpine:3.19") == 3);
  CHECK(h.gate->pulls_started() == 3);
  CHECK(h.gate->pulls_failed() == 2);
  CHECK(h.gate->flights_started() == 1);
  CHECK(h.gate->known_present("alpine:3.19"));
}

TEST_CASE("a pull that keeps failing gives up after the configured attempts", "[image_gate]") {
  harness h;  // three attempts
  h.registry.failures["alpine:3.19"] = {"timeout 1", "timeout 2", "timeout 3", "never reached"};
  outcome out;
  h.ensure("alpine:3.19", out);
  h.run();

  const api_error e = failure_of(out);
  CHECK(e.code() == errc::image_pull_failed);
  CHECK_THAT(e.message(), Catch::Contains("timeout 3"));  // the last attempt's reason
  CHECK(h.registry.pulls_of("alpine:3.19") == 3);
  CHECK(h.gate->pulls_started() == 3);
  CHECK(h.gate->pulls_failed() == 3);
}

TEST_CASE("an unknown manifest is not retried", "[image_gate]") {
  harness h;  // three attempts allowed
  h.registry.failures["alpine:no-such-tag"] = {"manifest unknown: manifest unknown"};
  outcome out;
  h.ensure("alpine:no-such-tag", out);
  h.run();

  const api_error e = failure_of(out);
  CHECK(e.code() == errc::image_pull_failed);
  CHECK_THAT(e.message(), Catch::Contains("manifest unknown"));
  CHECK(h.registry.pulls_of("alpine:no-such-tag") == 1);
  CHECK(h.gate->pulls_started() == 1);
}

TEST_CASE("the cap limits how many distinct images are pulled at once", "[image_gate]") {
  auto opts = quick_options();
  opts.max_concurrent_pulls = 1;
  harness h(opts);
  h.registry.pull_time = 5ms;  // long enough for the two pulls to overlap without the cap
  outcome first;
  outcome second;
  h.ensure("image-a:1", first);
  h.ensure("image-b:1", second);
  h.run();

  require_succeeded(first);
  require_succeeded(second);
  CHECK(h.registry.max_in_flight == 1);
  CHECK(h.registry.pulls == std::vector<std::string>{"image-a:1", "image-b:1"});
  CHECK(h.gate->idle());
}

TEST_CASE("distinct images are pulled concurrently up to the cap", "[image_gate]") {
  // The counterpart of the test above: shows the fake would see an overlap if one happened.
  auto opts = quick_options();
  opts.max_concurrent_pulls = 2;
  harness h(opts);
  h.registry.pull_time = 5ms;
  outcome a;
  outcome b;
  outcome c;
  h.ensure("image-a:1", a);
  h.ensure("image-b:1", b);
  h.ensure("image-c:1", c);
  h.run();

  require_succeeded(a);
  require_succeeded(b);
  require_succeeded(c);
  CHECK(h.registry.max_in_flight == 2);
  CHECK(h.registry.pulls.size() == 3);
}

TEST_CASE("an image the engine already has is never pulled", "[image_gate]") {
  harness h;
  h.registry.present.insert("busybox:1.36");
  outcome first;
  h.ensure("busybox:1.36", first);
  h.run();
  require_succeeded(first);

  // Once known present, the gate answers without asking the engine again.
  outcome second;
  h.ensure("busybox:1.36", second);
  h.run();
  require_succeeded(second);

  CHECK(h.registry.pulls.empty());
  CHECK(h.registry.exists_calls == 1);
  CHECK(h.gate->pulls_started() == 0);
  CHECK(h.gate->known_present("busybox:1.36"));
}

TEST_CASE("an ensure after a failed flight starts a new flight", "[image_gate]") {
  auto opts = quick_options();
  opts.attempts = 1;
  harness h(opts);
  h.registry.failures["app:2"] = {"registry unavailable"};
  outcome failed;
  h.ensure("app:2", failed);
  h.run();
  CHECK(failure_of(failed).code() == errc::image_pull_failed);
  REQUIRE(h.gate->flights_started() == 1);

  // The registry has recovered: the failure is not cached.
  outcome retried;
  h.ensure("app:2", retried);
  h.run();
  require_succeeded(retried);
  CHECK(h.gate->flights_started() == 2);
  CHECK(h.registry.pulls_of("app:2") == 2);
  CHECK(h.gate->known_present("app:2"));
}

TEST_CASE("an invalidated image is checked and pulled again", "[image_gate]") {
  harness h;
  outcome first;
  h.ensure("app:3", first);
  h.run();
  require_succeeded(first);
  REQUIRE(h.gate->known_present("app:3"));

  // The engine lost the image behind the daemon's back.
  h.registry.present.erase("app:3");
  h.gate->invalidate("app:3");
  CHECK_FALSE(h.gate->known_present("app:3"));

  outcome second;
  h.ensure("app:3", second);
  h.run();
  require_succeeded(second);
  CHECK(h.registry.pulls_of("app:3") == 2);
  CHECK(h.gate->flights_started() == 2);
}

// Regression: a waiter that woke after a newer flight began used to read that flight's state and
// cleared error ("unknown reason"); each waiter now keeps the flight it joined.
TEST_CASE("a waiter of a failed flight gets its reason even when a new flight starts at once",
          "[image_gate]") {
  auto opts = quick_options();
  opts.attempts = 1;
  harness h(opts);
  h.registry.pull_time = 2ms;
  h.registry.failures["app:4"] = {"registry.local is down"};
  outcome waiter;
  outcome newcomer;
  // Another lease reaches the gate in the same turn of the event loop as the failure: its
  // ensure() is queued before the waiter of the failed flight is resumed.
  h.registry.on_pull_done = [&] {
    h.registry.on_pull_done = nullptr;
    boost::asio::post(h.io, [&] { h.ensure("app:4", newcomer); });
  };
  h.ensure("app:4", waiter);
  h.run();

  const api_error e = failure_of(waiter);
  CHECK(e.code() == errc::image_pull_failed);
  CHECK_THAT(e.message(), Catch::Contains("registry.local is down"));
  require_succeeded(newcomer);  // the registry recovered for the second flight
  CHECK(h.gate->flights_started() == 2);
}

// Regression (same root cause as above).
TEST_CASE("a waiter of a successful flight succeeds even when the image is invalidated at once",
          "[image_gate]") {
  harness h;
  h.registry.pull_time = 2ms;
  outcome waiter;
  outcome newcomer;
  // In the same turn as the successful pull, the image disappears from the engine (a lease's
  // create said "No such image") and another lease asks for it again.
  h.registry.on_pull_done = [&] {
    h.registry.on_pull_done = nullptr;
    boost::asio::post(h.io, [&] {
      h.registry.present.erase("app:5");
      h.gate->invalidate("app:5");
      h.ensure("app:5", newcomer);
    });
  };
  h.ensure("app:5", waiter);
  h.run();

  require_succeeded(newcomer);
  require_succeeded(waiter);  // its flight pulled the image
}

TEST_CASE("the gate forgets idle images beyond its bound, failed ones before present ones", "[image_gate]") {
  auto opts = quick_options();
  opts.attempts = 1;
  harness h(opts);
  h.registry.failures["bad:1"] = {"manifest unknown"};
  std::vector<outcome> outcomes(6);
  const std::vector<std::string> images{"a:1", "b:1", "c:1", "d:1", "e:1", "bad:1"};
  for (std::size_t i = 0; i < images.size(); ++i) h.ensure(images[i], outcomes[i]);
  h.run();
  REQUIRE(h.gate->remembered() == 6);
  h.gate->prune(4);
  CHECK(h.gate->remembered() == 4);
  // The failed one went first; the present ones that stay are still known without a pull.
  const auto states = h.gate->snapshot();
  CHECK(std::none_of(states.begin(), states.end(), [](const auto& s) { return s.state == "failed"; }));
  h.gate->prune(100);  // under the bound: nothing goes
  CHECK(h.gate->remembered() == 4);
}

TEST_CASE("a pull whose last waiter leaves gives its slot back to the next image", "[image_gate]") {
  auto opts = quick_options();
  opts.max_concurrent_pulls = 1;
  harness h(opts);
  h.registry.pull_time = 5s;  // the first pull would hold the only slot this long
  outcome late;
  // The first image's only waiter gives up after 50 ms (a lease released at the gate).
  asio::co_spawn(
      h.io,
      [&]() -> asio::awaitable<void> {
        using namespace boost::asio::experimental::awaitable_operators;
        asio::steady_timer give_up(h.io, 50ms);
        co_await (h.gate->ensure("slow:1") || give_up.async_wait(asio::use_awaitable));
        h.registry.pull_time = 0ms;
        h.ensure("next:1", late);
      },
      asio::detached);
  const auto start = std::chrono::steady_clock::now();
  h.io.restart();
  h.io.run_for(3s);
  require_succeeded(late);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK(h.registry.pulls_of("next:1") == 1);
}
