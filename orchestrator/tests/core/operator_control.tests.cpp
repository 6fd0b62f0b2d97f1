// The operator's hands on the lease core: drain and resume, a budget resized at runtime, a lease
// ended by force, and what status and why say about lanes and holders. On the fake provider.
#include <catch2/catch.hpp>

#include "core_harness.hpp"

using namespace core_tests;

namespace {

service_options with_slots(int slots) {
  auto o = quick_options();
  o.slots = slots;
  return o;
}

}  // namespace

TEST_CASE("drain keeps new leases queued and resume admits them", "[operator]") {
  harness h(with_slots(2));
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));

  auto d = h.wait(h.service().drain(0));
  CHECK(d.draining);
  CHECK_FALSE(d.drained);  // a still holds its slot
  CHECK(d.slots_in_use == 1);
  CHECK(h.service().status().draining);

  const auto b = h.create(lease_for("b"));
  h.run_for(100ms);
  CHECK(h.state(b) == "queued");  // a slot is free, but nothing is admitted while draining
  CHECK(h.view(b).waiting_for == "draining");
  const auto why = h.service().why(b);
  CHECK(why.waiting_for == "draining");
  REQUIRE(why.holders.size() == 1);
  CHECK(why.holders[0].lease == a);
  CHECK_THAT(why.summary, Contains("draining"));

  // A drain that waits returns once the last holder is gone.
  auto waiting = h.spawn(h.service().drain(30));
  h.run_for(50ms);
  CHECK_FALSE(waiting->done);
  h.release(a);
  REQUIRE(h.run_until([&] { return waiting->done; }));
  REQUIRE(waiting->value);
  CHECK(waiting->value->drained);
  CHECK(waiting->value->queue_length == 1);
  CHECK(h.state(b) == "queued");

  const auto r = h.service().resume();
  CHECK_FALSE(r.draining);
  REQUIRE(h.reach(b, "ready"));
  CHECK_FALSE(h.service().status().draining);
  h.release(b);
}

TEST_CASE("growing the budget admits waiters at once", "[operator]") {
  harness h(with_slots(1));
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto b = h.create(lease_for("b"));
  h.run_for(50ms);
  CHECK(h.state(b) == "queued");

  const auto v = h.service().set_slots(3);
  CHECK(v.previous == 1);
  CHECK(v.slots_total == 3);
  REQUIRE(h.reach(b, "ready"));
  const auto st = h.service().status();
  CHECK(st.slots_total == 3);
  REQUIRE(st.lanes.size() == 3);
  int held = 0;
  for (const auto& lane : st.lanes) held += lane.lease ? 1 : 0;
  CHECK(held == 2);
  h.release(a);
  h.release(b);
  // Both leases held a slot for part of the run's wall time: the run's efficiency is measured.
  const auto runs = h.service().status().runs;
  REQUIRE(runs.size() == 1);
  REQUIRE(runs[0].efficiency);
  CHECK(*runs[0].efficiency > 0);
  CHECK(*runs[0].efficiency <= 1.0);
}

TEST_CASE("shrinking the budget ends no lease, retires lanes and fails leases too wide for it",
          "[operator]") {
  harness h(with_slots(3));
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  const auto b = h.create(lease_for("b"));
  const auto c = h.create(lease_for("c"));
  REQUIRE(h.reach(a, "ready"));
  REQUIRE(h.reach(b, "ready"));
  REQUIRE(h.reach(c, "ready"));
  auto wide_req = lease_for("wide");
  wide_req.slots = 3;
  const auto wide = h.create(wide_req);
  const auto d = h.create(lease_for("d"));

  const auto v = h.service().set_slots(1);
  CHECK(v.slots_total == 1);
  CHECK(v.slots_in_use == 3);
  REQUIRE(h.reach(wide, "failed"));
  const auto failed = h.view(wide);
  REQUIRE(failed.error);
  CHECK(failed.error->code == "invalid_field");
  CHECK_THAT(failed.error->message, Contains("shrank to 1"));
  // Nobody lost a sandbox.
  CHECK(h.state(a) == "ready");
  CHECK(h.state(b) == "ready");
  CHECK(h.state(c) == "ready");

  auto st = h.service().status();
  REQUIRE(st.lanes.size() == 3);
  CHECK_FALSE(st.lanes[0].retiring);
  CHECK(st.lanes[1].retiring);
  CHECK(st.lanes[2].retiring);

  // Two ends still leave use at the budget: d waits.
  h.release(a);
  h.release(b);
  h.run_for(50ms);
  CHECK(h.state(d) == "queued");
  h.release(c);
  REQUIRE(h.reach(d, "ready"));
  st = h.service().status();
  CHECK(st.lanes.size() == 1);  // the retired lanes went away as they emptied
  REQUIRE(st.lanes[0].lease);
  CHECK(*st.lanes[0].lease == d);
  h.release(d);
}

TEST_CASE("a budget outside 1..4096 is refused", "[operator]") {
  harness h(with_slots(2));
  h.start();
  CHECK(code_of([&] { h.service().set_slots(0); }) == errc::invalid_field);
  CHECK(code_of([&] { h.service().set_slots(4097); }) == errc::invalid_field);
  CHECK(h.service().status().slots_total == 2);
}

TEST_CASE("an evicted lease ends failed and its holder gets 410 saying why", "[operator]") {
  harness h(with_slots(1));
  h.fake.add_image(image);
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto b = h.create(lease_for("b"));

  const auto ended = h.wait(h.service().evict(a, "stuck for 20 min"));
  CHECK(protocol::to_string(ended.state) == "failed");
  REQUIRE(ended.error);
  CHECK(ended.error->code == "evicted");
  CHECK_THAT(ended.error->message, Contains("stuck for 20 min"));
  CHECK(h.fake.sandboxes().size() <= 1);  // a's sandbox is gone; b's may be up already

  try {
    h.service().renew(a);
    FAIL("renew of an evicted lease succeeded");
  } catch (const api_error& e) {
    CHECK(e.code() == errc::lease_gone);
    CHECK_THAT(std::string(e.what()), Contains("evicted"));
  }
  REQUIRE(h.reach(b, "ready"));  // its slot went to the next in line
  // Evicting again answers the ended lease unchanged.
  const auto again = h.wait(h.service().evict(a, "twice"));
  REQUIRE(again.error);
  CHECK_THAT(again.error->message, Contains("stuck for 20 min"));
  CHECK(h.service().metrics().evictions == 1);
  h.release(b);
}

TEST_CASE("why names the lock's holder and the slots' holders", "[operator]") {
  harness h(with_slots(2));
  h.fake.add_image(image);
  h.start();
  auto locked = lease_for("holder");
  locked.locks = {protocol::lock_spec{"db", protocol::lock_mode::exclusive}};
  const auto a = h.create(locked);
  REQUIRE(h.reach(a, "ready"));
  auto wants = lease_for("waiter");
  wants.locks = {protocol::lock_spec{"db", protocol::lock_mode::exclusive}};
  const auto b = h.create(wants);
  h.run_for(50ms);
  const auto w = h.service().why(b);
  CHECK(w.waiting_for == "lock:db");
  REQUIRE(w.holders.size() == 1);
  CHECK(w.holders[0].lease == a);
  CHECK(w.holders[0].test == "holder");
  CHECK_THAT(w.summary, Contains("db"));

  const auto ready = h.service().why(a);
  CHECK_FALSE(ready.waiting_for);
  CHECK(ready.holders.empty());
  CHECK(ready.lease.since_s.has_value());

  const auto live = h.service().live_leases(run_name);
  CHECK(live.size() == 2);
  CHECK(h.service().live_leases("another-run").empty());
  h.release(a);
  REQUIRE(h.reach(b, "ready"));
  h.release(b);
}

TEST_CASE("a pull in flight shows its bytes and time in the status", "[operator]") {
  harness h(with_slots(1));
  h.fake.set_pull_delay(300ms);
  h.start();
  const auto a = h.create(lease_for("a"));
  auto pulling_with_bytes = [&] {
    for (const auto& img : h.service().status().images) {
      if (img.image == image && img.state == "pulling" && img.bytes_total) return true;
    }
    return false;
  };
  REQUIRE(h.run_until(pulling_with_bytes));
  for (const auto& img : h.service().status().images) {
    if (img.image != image) continue;
    CHECK(img.bytes_done == fake_provider::fake_image_bytes / 2);
    CHECK(img.bytes_total == fake_provider::fake_image_bytes);
    CHECK(img.since_s.has_value());
  }
  CHECK(h.service().why(a).waiting_for == "image");
  REQUIRE(h.service().why(a).pull);
  CHECK(h.service().why(a).pull->bytes_total == fake_provider::fake_image_bytes);
  REQUIRE(h.reach(a, "ready"));
  const auto m = h.service().metrics();
  CHECK(m.pull_bytes == static_cast<std::uint64_t>(fake_provider::fake_image_bytes));
  CHECK(m.pulls_finished == 1);
  h.release(a);
}

TEST_CASE("engine failures are counted by their reason for /metrics", "[operator]") {
  quiet_log quiet;
  harness h(with_slots(1));
  h.fake.fail_pulls(provider_failure::image_not_found, "manifest unknown");
  h.start();
  const auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "failed"));
  h.fake.add_image(image);
  h.fake.fail_creates(provider_failure::conflict, "name in use");
  const auto b = h.create(lease_for("b"));
  REQUIRE(h.reach(b, "failed"));
  const auto& errors = h.service().metrics().counts->engine_errors;
  CHECK(errors.at("image_not_found") >= 1);
  CHECK(errors.at("conflict") == 1);
  CHECK(errors.count("timed_out") == 0);
}

namespace {

/// The run's efficiency recounted from its timeline, lease by lease (what the running totals in
/// run_registry replace): ideal = max(slot time ÷ slots, longest hold), over first queued → last end.
double efficiency_from(const sandlot::orchestrator::run_timeline& t) {
  double first = 1e300, last = 0, slot_s = 0, longest = 0;
  for (const auto& r : t.leases) {
    const double end = r.ended_s.value_or(t.now_s);
    first = std::min(first, r.queued_s.value_or(0));
    last = std::max(last, end);
    if (!r.admitted_s) continue;
    const double held = std::max(0.0, end - *r.admitted_s);
    slot_s += held * r.slots;
    longest = std::max(longest, held);
  }
  return std::max(slot_s / t.slots_total, longest) / (last - first);
}

}  // namespace

TEST_CASE("status counts live leases and the run's efficiency from running totals", "[operator]") {
  harness h(with_slots(3));
  h.fake.add_image(image);
  h.start();
  auto wide = lease_for("wide");
  wide.slots = 2;
  const auto a = h.create(wide);
  const auto b = h.create(lease_for("b"));
  const auto c = h.create(lease_for("c"));  // waits: three slots are taken
  REQUIRE(h.reach(a, "ready"));
  REQUIRE(h.reach(b, "ready"));
  h.run_for(40ms);
  CHECK(h.state(c) == "queued");

  auto m = h.service().metrics();
  CHECK(m.live[protocol::lease_state::ready] == 2);
  CHECK(m.live[protocol::lease_state::queued] == 1);
  auto st = h.service().status();
  CHECK(st.leases.size() == 3);
  REQUIRE(st.runs.size() == 1);
  CHECK(st.runs[0].live_leases == 3);
  REQUIRE(st.runs[0].efficiency);
  // While leases run: the totals count them up to now.
  CHECK(*st.runs[0].efficiency == Approx(efficiency_from(h.service().run(run_name))).epsilon(0.05));

  h.release(b);
  REQUIRE(h.reach(c, "ready"));
  h.run_for(30ms);
  h.release(a);
  h.run_for(20ms);
  m = h.service().metrics();
  CHECK(m.live[protocol::lease_state::ready] == 1);
  CHECK(m.live.count(protocol::lease_state::queued) == 0);
  CHECK(m.live.count(protocol::lease_state::released) == 0);  // final states are not live
  st = h.service().status();
  REQUIRE(st.leases.size() == 1);
  CHECK(st.leases[0].id == c);
  CHECK(st.runs[0].live_leases == 1);
  CHECK(st.runs[0].leases == 3);

  h.release(c);
  st = h.service().status();
  CHECK(st.leases.empty());
  CHECK(st.runs[0].live_leases == 0);
  CHECK(h.service().idle());
  REQUIRE(st.runs[0].efficiency);
  // All ended: the totals and the recount must agree exactly (up to rounding).
  CHECK(*st.runs[0].efficiency == Approx(efficiency_from(h.service().run(run_name))).epsilon(1e-6));
  CHECK(h.service().metrics().live.empty());
}
