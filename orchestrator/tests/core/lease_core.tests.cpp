// The lease core (lease_service) on an in-memory provider: every lifecycle transition, the failure
// paths, expiry, the order of a release and the next admission, fixture takeover and shutdown,
// asserted on what a client sees (states, error codes) and on what the engine saw (the fake's
// sandboxes and event log). No engine, no network: the binary links sandlot_core alone.
//
// Each case drives its io_context in bounded steps: a core that hangs fails the case at its
// deadline instead of blocking the suite.
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

namespace {

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
const std::string image = "127.0.0.1:5000/sandlot/busybox:1.36";
const std::string run_name = "core-run";

/// Timings short enough for a unit test; the orphan sweep stays out of the way unless a case
/// turns it on.
service_options quick_options() {
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
protocol::lease_request lease_for(std::string test) {
  protocol::lease_request r;
  r.image = image;
  r.run = run_name;
  r.test = std::move(test);
  return r;
}

std::string code_name(errc code) { return std::string(protocol::code_string(code)); }

/// The api_error code a call threw; fails the test if it threw nothing or something else.
template <class F>
errc code_of(F&& call) {
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

asio::awaitable<std::monostate> as_value(asio::awaitable<void> a) {
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

bool contains(const states& seen, std::string_view s) {
  return std::find(seen.begin(), seen.end(), s) != seen.end();
}

}  // namespace

// --- lifecycle ---------------------------------------------------------------------------------

TEST_CASE("a lease of an absent image goes queued, pulling, starting, ready, released",
          "[lease_service]") {
  harness h;
  h.fake.set_pull_delay(30ms);
  h.fake.set_create_delay(30ms);
  h.start();
  std::string a;
  std::map<std::string, std::string> state_at;  // engine event → the lease's state as it happened
  h.fake.on_event([&](const std::string& e) {
    if (!a.empty()) state_at[e] = h.state(a);
  });

  a = h.create(lease_for("a"));
  CHECK(h.state(a) == "queued");
  REQUIRE(h.reach(a, "ready"));
  const auto made = h.fake.made_for(a);
  REQUIRE(made.size() == 1);
  const auto ready = h.view(a);
  REQUIRE(ready.sandbox);
  CHECK(ready.sandbox->id == made[0]);
  CHECK(h.fake.sandboxes().at(made[0]).running);
  CHECK(h.fake.pulls(image) == 1);
  CHECK(state_at["pull " + image] == "pulling");
  CHECK(state_at["create " + a] == "starting");

  const auto released = h.release(a);
  CHECK(protocol::to_string(released.state) == "released");
  CHECK_FALSE(released.error);
  CHECK_FALSE(released.sandbox);
  CHECK(h.fake.sandboxes().empty());
  CHECK(h.fake.removed() == states{made[0]});
  CHECK(h.states_seen(a) == states{"queued", "pulling", "starting", "ready", "released"});
  CHECK(h.service().status().slots_in_use == 0);
  CHECK(h.service().idle());
}

TEST_CASE("a lease of an image the engine already has is never pulled", "[lease_service]") {
  harness h;
  h.fake.add_image(image);
  h.fake.set_create_delay(10ms);
  h.start();

  const auto first = h.create(lease_for("first"));
  REQUIRE(h.reach(first, "ready"));
  const auto second = h.create(lease_for("second"));
  REQUIRE(h.reach(second, "ready"));

  CHECK(h.fake.pulls(image) == 0);
  CHECK(h.fake.image_present_calls() == 1);  // the gate remembers the answer
  // The first lease waits at the gate (state "pulling") while the engine is asked; once the gate
  // knows the image is there, a lease goes straight to starting.
  CHECK(h.states_seen(first).back() == "ready");
  CHECK(h.states_seen(second) == states{"queued", "starting", "ready"});
}

TEST_CASE("a lease released while queued never reaches the provider", "[lease_service]") {
  auto opts = quick_options();
  opts.slots = 1;
  harness h(opts);
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto b = h.create(lease_for("b"));
  CHECK(h.state(b) == "queued");
  CHECK(h.view(b).position == 0);

  const auto released = h.release(b);
  CHECK(protocol::to_string(released.state) == "released");
  CHECK(h.states_seen(b) == states{"queued", "released"});
  CHECK(h.service().status().queue_length == 0);
  CHECK(h.state(a) == "ready");

  // Its slot was never taken: once a is gone too, nothing else was ever made.
  h.release(a);
  CHECK(h.fake.create_calls() == 1);
  CHECK_FALSE(h.fake.logged("create " + b));
  CHECK(h.fake.made_for(b).empty());
  CHECK(h.service().idle());
}

TEST_CASE("a release during start-up ends released and removes the sandbox the create made",
          "[lease_service]") {
  harness h;
  h.fake.add_image(image);
  h.fake.set_create_delay(200ms);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.run_until([&] { return h.fake.logged("create " + a); }));
  CHECK(h.state(a) == "starting");

  auto release = h.spawn(h.service().release(a));
  REQUIRE(h.run_until([&] { return release->done; }));
  REQUIRE_FALSE(release->error);
  CHECK(protocol::to_string(release->value->state) == "released");
  CHECK_FALSE(release->value->error);

  // The create landed after the release was asked for; its sandbox went with the lease.
  const auto made = h.fake.made_for(a);
  REQUIRE(made.size() == 1);
  CHECK(h.fake.event_index("created " + a + " " + made[0]) <
        h.fake.event_index("removed " + made[0]));
  CHECK(h.fake.sandboxes().empty());
  CHECK_FALSE(contains(h.states_seen(a), "ready"));
  CHECK(h.states_seen(a).back() == "released");
  CHECK(h.service().status().slots_in_use == 0);
}

// --- failures ----------------------------------------------------------------------------------

TEST_CASE("a failing create fails the lease with its reason and admits the next one",
          "[lease_service]") {
  auto opts = quick_options();
  opts.slots = 1;
  harness h(opts);
  h.fake.add_image(image);
  h.fake.fail_creates(provider_failure::failed, "no space left on device", 1);
  h.start();
  const auto a = h.create(lease_for("a"));
  const auto b = h.create(lease_for("b"));

  REQUIRE(h.reach(a, "failed"));
  const auto failed = h.view(a);
  REQUIRE(failed.error);
  CHECK(failed.error->code == code_name(errc::sandbox_failed));
  CHECK_THAT(failed.error->message, Contains("no space left on device") && Contains(image));
  CHECK(h.fake.made_for(a).empty());

  REQUIRE(h.reach(b, "ready"));
  CHECK(h.fake.create_calls() == 2);
  CHECK(h.fake.event_index("create failed " + a) < h.fake.event_index("create " + b));
  CHECK(h.service().status().slots_in_use == 1);
}

TEST_CASE(
    "a create slower than ready_timeout_s fails with ready_timeout and its late sandbox is removed",
    "[lease_service]") {
  auto opts = quick_options();
  opts.orphan_sweep_interval =
      1s;  // the sweep is what finds a sandbox that lands after its lease ended
  harness h(opts);
  h.fake.add_image(image);
  h.fake.set_create_delay(1500ms);  // well after the 1 s timeout, before the second sweep
  h.start();
  auto req = lease_for("slow");
  req.ready_timeout_s = 1;
  const auto a = h.create(req);

  REQUIRE(h.reach(a, "failed", 3s));
  const auto failed = h.view(a);
  REQUIRE(failed.error);
  CHECK(failed.error->code == code_name(errc::ready_timeout));
  CHECK_THAT(failed.error->message, Contains("ready_timeout_s=1"));
  CHECK(h.fake.creates_landed() == 0);  // the lease gave up before the engine was done
  CHECK(h.fake.logged("remove_lease " + a));
  CHECK(h.service().status().slots_in_use == 0);

  // The engine finishes the create anyway; the sandbox must not outlive the lease for long.
  REQUIRE(
      h.run_until([&] { return h.fake.creates_landed() == 1 && h.fake.sandboxes().empty(); }, 4s));
  const auto made = h.fake.made_for(a);
  REQUIRE(made.size() == 1);
  CHECK(h.fake.event_index("created " + a + " " + made[0]) <
        h.fake.event_index("removed " + made[0]));
}

TEST_CASE("an image the registry does not know fails the lease at once, without retries",
          "[lease_service]") {
  harness h;
  h.fake.fail_pulls(provider_failure::image_not_found, "manifest unknown: manifest unknown", -1);
  h.start();
  const auto a = h.create(lease_for("a"));

  REQUIRE(h.reach(a, "failed"));
  const auto failed = h.view(a);
  REQUIRE(failed.error);
  CHECK(failed.error->code == code_name(errc::image_pull_failed));
  CHECK_THAT(failed.error->message, Contains("manifest unknown") && Contains(image));
  CHECK(h.fake.pulls(image) == 1);
  CHECK(h.fake.create_calls() == 0);
  CHECK(h.service().status().slots_in_use == 0);
}

TEST_CASE("a pull that fails for a while is retried and the lease becomes ready",
          "[lease_service]") {
  // The counterpart of the case above: the fake's failures are retried when they are transient.
  harness h;
  h.fake.fail_pulls(provider_failure::failed, "connection reset by peer", 2);
  h.start();
  const auto a = h.create(lease_for("a"));

  REQUIRE(h.reach(a, "ready"));
  CHECK(h.fake.pulls(image) == 3);
  CHECK(h.fake.count("pull failed " + image) == 2);
}

TEST_CASE("a hung engine on create fails the lease with engine_unavailable", "[lease_service]") {
  harness h;
  h.fake.add_image(image);
  h.fake.fail_creates(provider_failure::timed_out,
                      "the engine took the request and did not answer within 30 s", 1);
  h.start();
  const auto a = h.create(lease_for("a"));

  REQUIRE(h.reach(a, "failed"));
  const auto failed = h.view(a);
  REQUIRE(failed.error);
  CHECK(failed.error->code == code_name(errc::engine_unavailable));
  CHECK_THAT(failed.error->message, Contains("did not answer"));
  CHECK(h.service().status().slots_in_use == 0);

  // The engine answers again: the next lease is served.
  const auto b = h.create(lease_for("b"));
  REQUIRE(h.reach(b, "ready"));
}

// --- expiry ------------------------------------------------------------------------------------

TEST_CASE(
    "a lease renewed in time outlives ttl_s and expires once renewals stop, its sandbox removed",
    "[lease_service]") {
  harness h;
  h.fake.add_image(image);
  h.start();
  auto req = lease_for("heartbeat");
  req.ttl_s = 1;
  const auto a = h.create(req);
  REQUIRE(h.reach(a, "ready"));
  const auto sandbox = h.sandbox_of(a);

  // Renewed every 250 ms for 1.5 s, longer than ttl_s: it stays ready.
  for (int i = 0; i < 6; ++i) {
    h.run_for(250ms);
    const auto renewed = h.service().renew(a);
    CHECK(protocol::to_string(renewed.state) == "ready");
    CHECK(renewed.expires_in_s > 0.9);
  }
  CHECK(h.state(a) == "ready");

  const auto last_renewal = clock_type::now();
  REQUIRE(h.reach(a, "expired", 3s));
  CHECK(clock_type::now() - last_renewal >= 900ms);
  const auto expired = h.view(a);
  REQUIRE(expired.error);
  CHECK(expired.error->code == code_name(errc::lease_gone));
  CHECK_THAT(expired.error->message, Contains("expired") && Contains("ttl_s=1"));
  CHECK_FALSE(h.fake.has_sandbox(sandbox));
  CHECK(code_of([&] { h.service().renew(a); }) == errc::lease_gone);
  CHECK(h.service().status().slots_in_use == 0);
}

// --- release ordering and failing removals -------------------------------------------------------

TEST_CASE("a freed slot goes to the next lease only once the engine confirmed the sandbox is gone",
          "[lease_service]") {
  auto opts = quick_options();
  opts.slots = 1;
  harness h(opts);
  h.fake.add_image(image);
  h.fake.set_remove_delay(200ms);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto b = h.create(lease_for("b"));
  const auto sandbox_a = h.sandbox_of(a);
  std::string b_when_removed;
  h.fake.on_event([&](const std::string& e) {
    if (e == "removed " + sandbox_a) b_when_removed = h.state(b);
  });

  auto release = h.spawn(h.service().release(a));
  REQUIRE(h.run_until([&] { return h.fake.logged("remove " + sandbox_a); }));
  CHECK(h.state(b) == "queued");
  REQUIRE(h.run_until([&] { return release->done; }));
  REQUIRE_FALSE(release->error);
  CHECK(b_when_removed == "queued");

  REQUIRE(h.reach(b, "ready"));
  const auto removed = h.fake.event_index("removed " + sandbox_a);
  REQUIRE(removed >= 0);
  CHECK(removed < h.fake.event_index("create " + b));
}

TEST_CASE(
    "a slot comes back after three failed removals, and the orphan sweep removes the sandbox later",
    "[lease_service]") {
  auto opts = quick_options();
  opts.slots = 1;
  opts.orphan_sweep_interval = 1s;
  harness h(opts);
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto b = h.create(lease_for("b"));
  const auto sandbox_a = h.sandbox_of(a);
  h.fake.fail_removes(3);
  const quiet_log quiet;

  const auto released = h.release(a);  // three attempts, 0.5 s and 1 s apart
  CHECK(protocol::to_string(released.state) == "released");
  CHECK(h.fake.count("remove failed " + sandbox_a) == 3);
  CHECK(h.fake.has_sandbox(sandbox_a));  // left for the sweep

  REQUIRE(h.reach(b, "ready"));  // the queue moved
  REQUIRE(h.run_until([&] { return !h.fake.has_sandbox(sandbox_a); }, 3s));
  CHECK(h.fake.count("remove " + sandbox_a) == 4);
  CHECK(h.fake.has_sandbox(h.sandbox_of(b)));  // the sweep leaves a live lease's sandbox alone
  CHECK(h.state(b) == "ready");
}

// --- the orphan sweep --------------------------------------------------------------------------

TEST_CASE("a sandbox stopped behind the core's back fails its lease through the orphan sweep",
          "[lease_service]") {
  auto opts = quick_options();
  opts.orphan_sweep_interval = 1s;
  harness h(opts);
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto sandbox = h.sandbox_of(a);

  h.fake.mark_stopped(sandbox);
  REQUIRE(h.reach(a, "failed", 3s));
  const auto failed = h.view(a);
  REQUIRE(failed.error);
  CHECK(failed.error->code == code_name(errc::sandbox_failed));
  CHECK_THAT(failed.error->message, Contains("stopped") && Contains("exited"));
  CHECK_FALSE(h.fake.has_sandbox(sandbox));
  CHECK(h.service().status().slots_in_use == 0);
}

TEST_CASE("start removes what an earlier instance left and leaves another daemon's sandboxes alone",
          "[lease_service]") {
  harness h;
  const auto leftover = h.fake.add_sandbox("lease-of-an-earlier-instance");
  const auto foreign = h.fake.add_sandbox("lease-of-another-daemon", "another-daemon");
  h.start();

  CHECK_FALSE(h.fake.has_sandbox(leftover));
  CHECK(h.fake.has_sandbox(foreign));
  CHECK(h.fake.event_index("connect") < h.fake.event_index("remove_all_own"));
}

// --- commands on a lease -------------------------------------------------------------------------

TEST_CASE("exec and file transfers reach the lease's own sandbox, and only while it is ready",
          "[lease_service]") {
  harness h;
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  protocol::exec_request echo;
  echo.argv = {"echo", "hello"};
  CHECK(h.error_of(h.service().exec(a, echo)) == errc::lease_not_ready);

  REQUIRE(h.reach(a, "ready"));
  const auto sandbox = h.sandbox_of(a);
  const auto out = h.wait(h.service().exec(a, echo));
  CHECK(out.exit_code == 0);
  CHECK(out.stdout_data == "echo hello");
  CHECK(h.fake.logged("exec " + sandbox + " echo hello"));

  h.fake.set_exec([](const std::string&, const sandlot::orchestrator::exec_spec&) {
    sandlot::orchestrator::exec_output failed;
    failed.exit_code = 3;
    failed.stderr_data = "boom";
    return failed;
  });
  const auto failing = h.wait(h.service().exec(a, echo));
  CHECK(failing.exit_code == 3);
  CHECK(failing.stderr_data == "boom");

  h.wait(h.service().write_file(a, "/tmp/greeting.txt", "hi there", 0644u));
  CHECK(h.fake.sandboxes().at(sandbox).files.at("/tmp/greeting.txt") == "hi there");
  CHECK(h.wait(h.service().read_file(a, "/tmp/greeting.txt")) == "hi there");
  CHECK(h.error_of(h.service().read_file(a, "/tmp/missing.txt")) == errc::not_found);

  h.service().set_outcome(a, "passed");
  h.release(a);
  CHECK(h.error_of(h.service().exec(a, echo)) == errc::lease_gone);
  CHECK(code_of([&] { h.service().renew(a); }) == errc::lease_gone);
  const auto timeline = h.service().run(run_name);
  REQUIRE(timeline.leases.size() == 1);
  CHECK(timeline.leases[0].test_outcome == "passed");
  CHECK(timeline.leases[0].state == "released");
}

// --- fixtures ----------------------------------------------------------------------------------

TEST_CASE("when a fixture's creator leaves before it is ready, the next holder becomes its creator",
          "[lease_service][fixtures]") {
  harness h;
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  const auto b = h.create(lease_for("b"));
  REQUIRE(h.reach(a, "ready"));
  REQUIRE(h.reach(b, "ready"));

  protocol::fixture_request db;
  db.name = "db";
  db.image = image;
  const auto first = h.wait(h.service().acquire_fixture(a, db));
  CHECK(first.role == "creator");
  CHECK(first.state == "creating");
  CHECK(first.creator == a);
  REQUIRE(first.sandbox);
  CHECK(h.fake.sandboxes().at(first.sandbox->id).lease_id == first.id);

  const auto joined = h.wait(h.service().acquire_fixture(b, db));
  CHECK(joined.id == first.id);
  CHECK(joined.role == "waiting");
  CHECK(joined.holders == 2);
  CHECK_FALSE(joined.sandbox);  // nobody but its creator sees a half-made fixture
  protocol::fixture_ready_request not_yours;
  not_yours.lease = b;
  CHECK(code_of([&] { h.service().fixture_ready(first.id, not_yours); }) == errc::conflict);

  h.release(a);
  const auto taken = h.wait(h.service().get_fixture(first.id, b, 5));
  CHECK(taken.role == "creator");
  CHECK(taken.creator == b);
  CHECK(taken.state == "creating");
  CHECK(taken.creations == 2);
  REQUIRE(taken.sandbox);
  CHECK(taken.sandbox->id != first.sandbox->id);
  CHECK_FALSE(h.fake.has_sandbox(first.sandbox->id));  // the half-made one is gone
  CHECK(h.fake.has_sandbox(taken.sandbox->id));

  protocol::fixture_ready_request done;
  done.lease = b;
  done.data = {{"dsn", "db://fixture"}};
  CHECK(h.service().fixture_ready(first.id, done).state == "ready");
  const auto ready = h.wait(h.service().get_fixture(first.id, b, 0));
  CHECK(ready.state == "ready");
  CHECK(ready.role == "user");
  CHECK(ready.data.value("dsn", "") == "db://fixture");

  // The run ends: its fixture goes, sandbox and all.
  const auto timeline = h.wait(h.service().end_run(run_name));
  CHECK(timeline.ended);
  REQUIRE(timeline.fixtures.size() == 1);
  CHECK(timeline.fixtures[0].state == "gone");
  CHECK(h.fake.sandboxes_of(first.id).empty());
}

// --- shutdown ----------------------------------------------------------------------------------

TEST_CASE(
    "shutdown fails every lease, queued and starting ones included, and removes every sandbox",
    "[lease_service]") {
  auto opts = quick_options();
  opts.slots = 2;
  harness h(opts);
  h.fake.add_image(image);
  h.start();
  const auto ready = h.create(lease_for("ready"));
  REQUIRE(h.reach(ready, "ready"));
  h.fake.set_create_delay(200ms);
  const auto starting = h.create(lease_for("starting"));
  REQUIRE(h.run_until([&] { return h.fake.logged("create " + starting); }));
  const auto queued = h.create(lease_for("queued"));
  CHECK(h.state(queued) == "queued");
  const auto leftover = h.fake.add_sandbox("lease-nobody-knows");

  h.wait(h.service().shutdown());
  for (const auto& id : {ready, starting, queued}) {
    INFO(id);
    CHECK(h.state(id) == "failed");
    const auto v = h.view(id);
    REQUIRE(v.error);
    CHECK(v.error->code == code_name(errc::shutting_down));
  }
  CHECK(h.fake.sandboxes().empty());
  CHECK(h.fake.logged("removed " + leftover));
  CHECK_FALSE(h.fake.logged("create " + queued));
  CHECK(h.fake.made_for(starting).size() == 1);  // it landed during shutdown, and went
  CHECK(code_of([&] { h.service().create(lease_for("late")); }) == errc::shutting_down);
  CHECK(h.service().idle());
}
