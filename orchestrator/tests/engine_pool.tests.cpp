// A pool of engines (--engine) on in-memory fakes: placement by image and load, each engine's own
// slots, one pull per image per engine, and an engine that goes away and comes back — first on the
// pool alone, then under the lease core, where the leases of the lost engine fail engine_lost.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/core_harness.hpp"
#include "engine_pool.hpp"

using namespace core_tests;
using sandlot::orchestrator::capacity_change;
using sandlot::orchestrator::engine_pool;
using sandlot::orchestrator::pool_member;
using sandlot::orchestrator::provider_error;
using sandlot::orchestrator::sandbox_provider;
using sandlot::orchestrator::sandbox_spec;

namespace {

engine_pool::options quick_probes() {
  engine_pool::options o;
  o.probe_interval = 20ms;
  o.probe_timeout = 500ms;
  o.failures_to_lose = 2;
  return o;
}

/// Two fake engines, "a" and "b", in one pool under a lease service. The fakes are declared
/// before the harness, so they outlive the pool and the service that point at them.
struct two_engines {
  fake_provider a{"pool-tests"};
  fake_provider b{"pool-tests"};
  engine_pool* pool = nullptr;
  harness h;

  two_engines(int slots_a, int slots_b)
      : h(
            [this, slots_a, slots_b](asio::any_io_executor ex) -> std::unique_ptr<sandbox_provider> {
              a.set_id_prefix("a-");
              b.set_id_prefix("b-");
              std::vector<pool_member> members{pool_member{"a", "unix:///fake/a.sock", "docker", slots_a, &a},
                                               pool_member{"b", "unix:///fake/b.sock", "docker", slots_b, &b}};
              auto p = std::make_unique<engine_pool>(std::move(ex), std::move(members), quick_probes());
              pool = p.get();
              return p;
            },
            options_for(slots_a + slots_b)) {}

  static service_options options_for(int slots) {
    auto o = quick_options();
    o.slots = slots;
    return o;
  }

  sandbox_spec spec(const std::string& lease, int slots = 1) const {
    sandbox_spec s;
    s.lease_id = lease;
    s.lease_name = lease;
    s.request = lease_for(lease);
    s.request.slots = slots;
    return s;
  }

  protocol::engine_status engine(const std::string& name) const {
    for (const auto& e : pool->engines()) {
      if (e.name == name) return e;
    }
    FAIL("no engine " << name);
    return {};
  }
};

}  // namespace

TEST_CASE("the pool places a sandbox where its image already is, then on the least loaded engine",
          "[pool]") {
  two_engines t(2, 2);
  t.a.add_image(image);
  t.h.wait(t.pool->connect());
  CHECK(t.pool->slots_total() == 4);
  CHECK(t.pool->widest_sandbox() == 2);

  // "a" has the image: both of its slots fill before "b" is used, though "b" is idle.
  CHECK(t.h.wait(t.pool->create(t.spec("x1"))).engine == "a");
  CHECK(t.h.wait(t.pool->create(t.spec("x2"))).engine == "a");
  CHECK(t.b.pulls(image) == 0);
  // "a" is full: "b" pulls the image first, once, then takes the next two.
  const auto x3 = t.h.wait(t.pool->create(t.spec("x3")));
  CHECK(x3.engine == "b");
  CHECK(x3.id.starts_with("b-"));
  CHECK(t.h.wait(t.pool->create(t.spec("x4"))).engine == "b");
  CHECK(t.b.pulls(image) == 1);
  CHECK(t.a.pulls(image) == 0);
  CHECK(t.engine("a").in_use == 2);
  CHECK(t.engine("b").in_use == 2);
  CHECK(t.engine("b").pulls == 1);

  // Both full: the next create waits for room, and takes the slot a removal frees.
  auto x5 = t.h.spawn(t.pool->create(t.spec("x5")));
  t.h.run_for(100ms);
  CHECK_FALSE(x5->done);
  t.h.wait(t.pool->remove(t.a.made_for("x1").front()));
  REQUIRE(t.h.run_until([&] { return x5->done; }));
  REQUIRE_FALSE(x5->error);
  CHECK(x5->value->engine == "a");
}

TEST_CASE("with the image on both engines the pool balances by load", "[pool]") {
  two_engines t(4, 2);
  t.a.add_image(image);
  t.b.add_image(image);
  t.h.wait(t.pool->connect());
  std::vector<std::string> on;
  for (int i = 0; i < 6; ++i) on.push_back(t.h.wait(t.pool->create(t.spec("y" + std::to_string(i)))).engine);
  // Least loaded by share of its slots: a 0/4 → a; a 1/4 vs b 0/2 → b; then a 1/4 < b 1/2 → a ...
  CHECK(std::count(on.begin(), on.end(), "a") == 4);
  CHECK(std::count(on.begin(), on.end(), "b") == 2);
  CHECK(on[0] == "a");
  CHECK(on[1] == "b");
  // A fixture holds no slot: it is placed though every slot is taken.
  auto fixture = t.spec("fixture-1");
  fixture.fixture = true;
  CHECK_FALSE(t.h.wait(t.pool->create(fixture)).engine.empty());
  CHECK(t.engine("a").in_use + t.engine("b").in_use == 6);
}

TEST_CASE("a wide sandbox waiting for room is not starved by narrow ones", "[pool]") {
  two_engines t(2, 2);
  t.a.add_image(image);
  t.b.add_image(image);
  t.h.wait(t.pool->connect());
  CHECK(t.h.wait(t.pool->create(t.spec("n1"))).engine == "a");
  CHECK(t.h.wait(t.pool->create(t.spec("n2"))).engine == "b");
  // Two slots free in all, but not on one engine: the wide one waits, holding "a" for itself.
  auto wide = t.h.spawn(t.pool->create(t.spec("wide", 2)));
  t.h.run_for(50ms);
  CHECK_FALSE(wide->done);
  // A narrow one goes to "b", not into the slot "a" frees for the wide one.
  CHECK(t.h.wait(t.pool->create(t.spec("n3"))).engine == "b");
  t.h.wait(t.pool->remove(t.a.made_for("n1").front()));
  REQUIRE(t.h.run_until([&] { return wide->done; }));
  REQUIRE_FALSE(wide->error);
  CHECK(wide->value->engine == "a");
  CHECK(t.engine("a").in_use == 2);
  CHECK(t.engine("b").in_use == 2);
}

TEST_CASE("a pull goes to every engine that lacks the image, once each", "[pool]") {
  two_engines t(1, 1);
  t.a.set_pull_delay(30ms);
  t.b.set_pull_delay(30ms);
  t.h.wait(t.pool->connect());
  CHECK_FALSE(t.h.wait(t.pool->image_present(image)));
  // Two pulls of the image at once (a prepull and a lease's gate): one pull per engine.
  auto first = t.h.spawn(t.pool->pull(image, clock_type::now() + 5s, {}));
  auto second = t.h.spawn(t.pool->pull(image, clock_type::now() + 5s, {}));
  REQUIRE(t.h.run_until([&] { return first->done && second->done; }));
  CHECK_FALSE(first->error);
  CHECK_FALSE(second->error);
  CHECK(t.a.pulls(image) == 1);
  CHECK(t.b.pulls(image) == 1);
  CHECK(t.h.wait(t.pool->image_present(image)));
  // Known present on both now: another pull asks neither engine.
  t.h.wait(t.pool->pull(image, clock_type::now() + 5s, {}));
  CHECK(t.a.pulls(image) == 1);
  CHECK(t.b.pulls(image) == 1);
}

TEST_CASE("a pull that fails on one engine only is not the lease's failure", "[pool]") {
  quiet_log quiet;
  two_engines t(1, 1);
  t.b.fail_pulls(provider_failure::failed, "disk full", 1);
  t.h.wait(t.pool->connect());
  t.h.wait(t.pool->pull(image, clock_type::now() + 5s, {}));
  CHECK(t.a.pulls(image) == 1);
  CHECK(t.b.pulls(image) == 1);
  // "a" has it: the next sandbox goes there, not to "b" where the image is missing.
  CHECK(t.h.wait(t.pool->create(t.spec("z1"))).engine == "a");
  // With "a" full, "b" pulls again before its create.
  CHECK(t.h.wait(t.pool->create(t.spec("z2"))).engine == "b");
  CHECK(t.b.pulls(image) == 2);

  // No engine gets it: the pull fails with the engine's reason.
  two_engines none(1, 1);
  none.a.fail_pulls(provider_failure::image_not_found, "manifest unknown", 1);
  none.b.fail_pulls(provider_failure::image_not_found, "manifest unknown", 1);
  none.h.wait(none.pool->connect());
  try {
    none.h.wait(none.pool->pull(image, clock_type::now() + 5s, {}));
    FAIL("the pull did not fail");
  } catch (const provider_error& e) {
    CHECK(e.reason() == provider_failure::image_not_found);
  }
}

TEST_CASE("an engine that stops answering is lost with its sandboxes, and rejoins swept", "[pool]") {
  quiet_log quiet;
  two_engines t(1, 1);
  t.a.add_image(image);
  t.b.add_image(image);
  std::vector<capacity_change> changes;
  t.pool->on_capacity_change([&](capacity_change c) { changes.push_back(std::move(c)); });
  t.h.wait(t.pool->connect());
  const auto on_a = t.h.wait(t.pool->create(t.spec("w1")));
  const auto on_b = t.h.wait(t.pool->create(t.spec("w2")));
  REQUIRE(on_a.engine == "a");
  REQUIRE(on_b.engine == "b");

  t.b.set_down(true);
  REQUIRE(t.h.run_until([&] { return !changes.empty(); }));
  CHECK_FALSE(changes[0].up);
  CHECK(changes[0].engine == "b");
  CHECK(changes[0].slots_total == 1);
  CHECK(changes[0].lost_sandboxes == std::vector<std::string>{on_b.id});
  CHECK(t.pool->slots_total() == 1);
  CHECK_FALSE(t.engine("b").up);
  CHECK_THAT(t.engine("b").detail, Contains("it is down"));  // the engine's own words
  // Its sandbox answers engine_lost; its removal waits for the engine and does not fail.
  try {
    t.h.wait(t.pool->exec(on_b.id, {}));
    FAIL("exec on a lost sandbox did not fail");
  } catch (const provider_error& e) {
    CHECK(e.reason() == provider_failure::engine_lost);
  }
  t.h.wait(t.pool->remove(on_b.id));
  // The other engine is untouched.
  CHECK(t.h.wait(t.pool->exec(on_a.id, {})).exit_code == 0);

  // New sandboxes go to the engine that is up only: here it is full, so the create waits.
  auto w3 = t.h.spawn(t.pool->create(t.spec("w3")));
  t.h.run_for(100ms);
  CHECK_FALSE(w3->done);
  CHECK(t.b.create_calls() == 1);

  t.b.set_down(false);
  REQUIRE(t.h.run_until([&] { return changes.size() == 2; }));
  CHECK(changes[1].up);
  CHECK(changes[1].slots_total == 2);
  CHECK(t.b.logged("remove_all_own"));
  CHECK_FALSE(t.b.has_sandbox(on_b.id));  // swept before it took new ones
  REQUIRE(t.h.run_until([&] { return w3->done; }));
  REQUIRE_FALSE(w3->error);
  CHECK(w3->value->engine == "b");
  CHECK(t.engine("b").up);
}

TEST_CASE("with every engine down a create fails engine_lost at once", "[pool]") {
  quiet_log quiet;
  two_engines t(1, 1);
  t.h.wait(t.pool->connect());
  t.a.set_down(true);
  t.b.set_down(true);
  REQUIRE(t.h.run_until([&] { return t.pool->slots_total() == 0; }));
  try {
    t.h.wait(t.pool->create(t.spec("v1")));
    FAIL("the create did not fail");
  } catch (const provider_error& e) {
    CHECK(e.reason() == provider_failure::engine_lost);
    CHECK_THAT(std::string(e.what()), Contains("no engine of the pool is up"));
  }
}

TEST_CASE("a pool with no engine that answers does not start", "[pool]") {
  quiet_log quiet;
  two_engines t(1, 1);
  t.a.set_down(true);
  t.b.set_down(true);
  try {
    t.h.wait(t.pool->connect());
    FAIL("connect did not fail");
  } catch (const provider_error& e) {
    CHECK(e.reason() == provider_failure::unreachable);
    CHECK_THAT(std::string(e.what()), Contains("a at unix:///fake/a.sock: DOWN"));
  }
}

// --- under the lease core -----------------------------------------------------------------------

TEST_CASE("the leases of a lost engine fail engine_lost, the others run on, and the budget follows",
          "[pool][core]") {
  quiet_log quiet;
  two_engines t(1, 1);
  t.a.add_image(image);
  t.b.add_image(image);
  t.h.start();
  CHECK(t.h.service().status().slots_total == 2);
  const auto l1 = t.h.create(lease_for("one"));
  const auto l2 = t.h.create(lease_for("two"));
  REQUIRE(t.h.reach(l1, "ready"));
  REQUIRE(t.h.reach(l2, "ready"));
  const auto v1 = t.h.view(l1);
  const auto v2 = t.h.view(l2);
  REQUIRE(v1.sandbox->engine != v2.sandbox->engine);
  const std::string lost_id = v1.sandbox->engine == "b" ? l1 : l2;
  const std::string kept_id = lost_id == l1 ? l2 : l1;

  const auto status = t.h.service().status();
  REQUIRE(status.engines.size() == 2);
  CHECK(status.engines[0].in_use + status.engines[1].in_use == 2);

  t.b.set_down(true);
  REQUIRE(t.h.reach(lost_id, "failed"));
  const auto lost = t.h.view(lost_id);
  REQUIRE(lost.error);
  CHECK(lost.error->code == "engine_lost");
  CHECK_THAT(lost.error->message, Contains("engine b went away"));
  CHECK(t.h.state(kept_id) == "ready");
  CHECK(t.h.service().status().slots_total == 1);
  // The holder's next call on the lost lease says it is gone, and why, in the code (410).
  protocol::exec_request true_cmd;
  true_cmd.argv = {"true"};
  CHECK(t.h.error_of(t.h.service().exec(lost_id, true_cmd)) == errc::engine_lost);
  CHECK(protocol::http_status(errc::engine_lost) == 410);

  // A new lease queues behind the one left, and runs on "a" when that one is released.
  const auto l3 = t.h.create(lease_for("three"));
  t.h.run_for(50ms);
  CHECK(t.h.state(l3) == "queued");
  t.h.release(kept_id);
  REQUIRE(t.h.reach(l3, "ready"));
  CHECK(t.h.view(l3).sandbox->engine == "a");

  // "b" comes back: swept, and the budget is whole again.
  t.b.set_down(false);
  REQUIRE(t.h.run_until([&] { return t.h.service().status().slots_total == 2; }));
  CHECK(t.b.sandboxes().empty());
  const auto l4 = t.h.create(lease_for("four"));
  REQUIRE(t.h.reach(l4, "ready"));
  CHECK(t.h.view(l4).sandbox->engine == "b");
}

TEST_CASE("a lease wider than the widest engine is refused at once, saying why", "[pool][core]") {
  two_engines t(2, 2);
  t.a.add_image(image);
  t.b.add_image(image);
  t.h.start();
  auto wide = lease_for("wide");
  wide.slots = 3;
  CHECK(code_of([&] { t.h.service().create(wide); }) == errc::invalid_field);
  try {
    t.h.service().create(wide);
  } catch (const api_error& e) {
    CHECK_THAT(e.message(), Contains("widest engine") && Contains("at most 2"));
  }
}
