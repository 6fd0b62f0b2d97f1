// The lease core (lease_service) on an in-memory provider: every lifecycle transition, the failure
// paths, expiry, the order of a release and the next admission, fixture takeover and shutdown,
// asserted on what a client sees (states, error codes) and on what the engine saw (the fake's
// sandboxes and event log). No engine, no network: the binary links sandlot_core alone.
//
// Each case drives its io_context in bounded steps: a core that hangs fails the case at its
// deadline instead of blocking the suite.
#include <catch2/catch.hpp>

#include "core_harness.hpp"

using namespace core_tests;

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
