// Fault tests: what the daemon and the client do when something they depend on goes away — the
// container engine mid-run, a registry, a client that stops heartbeating. Each test starts its own
// orchestratord against the real engine (docs/test-environment.md) and checks what a user would
// see: the error codes and messages, a daemon that keeps answering, nothing left on the engine.
// docs/operations.md describes the same failure modes for operators.
//
//   ctest --test-dir build/dev -L fault --output-on-failure
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"
#include "support/tcp_forwarder.hpp"

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using sandlot::itest::daemon_options;
using sandlot::itest::daemon_process;
using sandlot::itest::engine_probe;
using sandlot::itest::forward_target;
using sandlot::itest::tcp_forwarder;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;
using Catch::Matchers::Contains;

using sandlot::itest::error_of;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::wait_settled;

bool daemon_answers(const client::client& c) {
  try {
    return c.request("GET", "/healthz").status == 200 && c.request("GET", "/v1/status").status == 200;
  } catch (const client::error&) {
    return false;
  }
}

/// The instance's only lease has ended: its sandbox is gone and its slot is back. (Not by asking
/// for the lease: a GET would count as the touch that keeps it alive.)
bool lease_ended(const engine_probe& engine, const std::string& instance, const client::client& c) {
  return engine.containers_of(instance).empty() && c.status().slots_in_use == 0;
}

}  // namespace

SANDLOT_ITEST_LOG_PRINTER()

TEST_CASE("the engine going away fails what needs it, and the daemon recovers when it returns", "[faults][engine]") {
  const engine_probe engine;
  const std::string instance = unique_instance("engine-away");
  leftover_guard cleanup(engine, instance);
  tcp_forwarder forwarder(forward_target::unix_socket("/var/run/docker.sock"));
  daemon_options opts;
  opts.instance = instance;
  opts.slots = 3;
  opts.extra_args = {"--docker-host", fmt::format("tcp://127.0.0.1:{}", forwarder.port())};
  daemon_process d(opts);
  const client::client c(d.url());

  const auto ready = c.create(lease_of(test_image(), "ready-before", 120));
  REQUIRE(wait_settled(c, ready.id).state == lease_state::ready);

  // The engine goes away: open connections drop, new ones are refused (as when dockerd stops).
  forwarder.cut();
  const auto cut_at = std::chrono::steady_clock::now();
  const std::string engine_addr = fmt::format("tcp://127.0.0.1:{}", forwarder.port());

  // A lease that starts now cannot get a sandbox; it fails, naming the engine.
  const auto starting = c.create(lease_of(test_image(), "starting-during", 120));
  const auto failed = wait_settled(c, starting.id, 60s);
  INFO("lease during the outage: " << protocol::to_string(failed.state) << " "
                                   << (failed.error ? failed.error->code + ": " + failed.error->message : ""));
  CHECK(failed.state == lease_state::failed);
  REQUIRE(failed.error.has_value());
  CHECK(failed.error->code == "sandbox_failed");
  CHECK_THAT(failed.error->message, Contains("Docker engine") && Contains(engine_addr));

  // The ready lease's exec fails the same clear way, and the lease itself stays.
  const auto exec = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", ready.id), R"({"argv":["true"]})"));
  INFO("exec during the outage: " << exec.status << " " << exec.code << ": " << exec.message);
  CHECK(exec.status == 502);
  CHECK(exec.code == "exec_failed");
  CHECK_THAT(exec.message, Contains("Docker engine") && Contains(engine_addr));

  // The daemon itself keeps answering.
  CHECK(daemon_answers(c));
  const auto during = c.status();
  CHECK(during.slots_total == 3);

  // A few seconds away in all, then it comes back on the same address.
  wait_until([&] { return std::chrono::steady_clock::now() - cut_at >= 3s; }, 10s, 100ms);
  CHECK(daemon_answers(c));
  forwarder.restore();

  // Without a restart, a new lease on the same daemon becomes ready, and the old one works again.
  {
    auto after = client::lease::acquire(c, lease_of(test_image(), "after-return"), 120s);
    const auto r = after.exec({"echo", "back"});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "back\n");
  }
  protocol::exec_request again;
  again.argv = {"true"};
  CHECK(c.exec(ready.id, again).exit_code == 0);
  c.release(ready.id);

  // The failed start may have left a container the engine made before the cut (its removal failed
  // while the engine was away); the orphan sweep (every 10 s) removes it once the engine is back.
  const bool clean = wait_until([&] { return engine.containers_of(instance).empty(); }, 30s, 250ms);
  CHECK(clean);
  const auto end = c.status();
  CHECK(end.slots_in_use == 0);
  CHECK(forwarder.connections() > 0);
}

TEST_CASE("a registry that is down fails its leases with image_pull_failed, other images are served",
          "[faults][registry]") {
  const engine_probe engine;
  const std::string instance = unique_instance("registry-down");
  leftover_guard cleanup(engine, instance);
  daemon_options opts;
  opts.instance = instance;
  opts.slots = 2;
  opts.extra_args = {"--pull-attempts", "2", "--pull-deadline", "20"};
  daemon_process d(opts);
  const client::client c(d.url());

  // Nothing listens there: a port taken from the kernel and given back.
  const unsigned short dead_port = sandlot::itest::free_loopback_port();
  const std::string gone_image = fmt::format("127.0.0.1:{}/sandlot/gone:1", dead_port);
  const auto started = std::chrono::steady_clock::now();
  const auto doomed = c.create(lease_of(gone_image, "registry-down"));
  const auto fine = c.create(lease_of(test_image(), "registry-up"));

  const auto ok = wait_settled(c, fine.id, 60s);
  CHECK(ok.state == lease_state::ready);
  const auto v = wait_settled(c, doomed.id, 60s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO("gone image settled after " << took << " s: " << (v.error ? v.error->message : "(no error)"));
  CHECK(v.state == lease_state::failed);
  REQUIRE(v.error.has_value());
  CHECK(v.error->code == "image_pull_failed");
  CHECK_THAT(v.error->message, Contains(gone_image));

  // Retried (attempt 2/2 in the log), not given up at once.
  CHECK_THAT(d.log(), Contains("attempt 2/2"));
  c.release(fine.id);
  CHECK(engine.containers_of(instance).empty());
  CHECK(c.status().slots_in_use == 0);
}

TEST_CASE("an expired lease is told why on its next call", "[faults][expiry]") {
  const engine_probe engine;
  const std::string instance = unique_instance("expired");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());

  const auto raw = c.create(lease_of(test_image(), "never-renewed", /*ttl_s=*/2));
  // Every GET counts as a touch; after the last one the lease has ttl_s to be renewed, and is not.
  // So the wait watches the engine and the daemon's slots, never the lease itself.
  REQUIRE(wait_settled(c, raw.id).state == lease_state::ready);
  REQUIRE(wait_until([&] { return lease_ended(engine, instance, c); }, 15s, 250ms));
  CHECK(c.get(raw.id).state == lease_state::expired);

  const auto exec = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", raw.id), R"({"argv":["true"]})"));
  INFO("exec: " << exec.status << " " << exec.code << ": " << exec.message);
  CHECK(exec.status == 410);
  CHECK(exec.code == "lease_gone");
  // Said once, first thing: "lease X expired: not renewed within ttl_s=2; the client stopped ...".
  CHECK_THAT(exec.message, Catch::Matchers::StartsWith(fmt::format("lease {} expired: not renewed within ttl_s=2", raw.id)));
  const auto renew = error_of(c.request("POST", fmt::format("/v1/leases/{}/renew", raw.id)));
  CHECK(renew.status == 410);
  CHECK(renew.code == "lease_gone");
  CHECK_THAT(renew.message, Contains("not renewed within ttl_s=2"));
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a client lease whose heartbeat could not reach the daemon says so when used", "[faults][expiry]") {
  const engine_probe engine;
  const std::string instance = unique_instance("heartbeat-lost");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  // The test's way to the daemon goes through a forwarder that can be cut, as a network would.
  tcp_forwarder path(forward_target::loopback(d.port()));
  const client::client c(fmt::format("http://127.0.0.1:{}", path.port()));
  const client::client direct(d.url());

  auto lease = client::lease::acquire(c, lease_of(test_image(), "cut-off", /*ttl_s=*/2), 120s);
  const std::string id = lease.id();
  path.cut();
  // The heartbeat (every second at ttl 2) fails; the daemon expires the lease.
  REQUIRE(wait_until([&] { return lease_ended(engine, instance, direct); }, 15s, 250ms));
  CHECK(direct.get(id).state == lease_state::expired);
  CHECK(lease.heartbeat_error().has_value());
  path.restore();

  try {
    (void)lease.exec({"true"});
    FAIL("exec on an expired lease succeeded");
  } catch (const client::error& e) {
    INFO("what(): " << e.what());
    CHECK(e.status() == 410);
    CHECK(e.code() == "lease_gone");
    const std::string what = e.what();
    CHECK_THAT(what, Contains(fmt::format("lease {} expired: not renewed within ttl_s=2", id)));
    // ... and why it was not renewed, from this side: the heartbeat's own failure, which names
    // the address it could not reach.
    CHECK_THAT(what, Contains("this client's heartbeat had failed"));
    CHECK_THAT(what, Contains(fmt::format("http://127.0.0.1:{}/v1/leases/{}/renew", path.port(), id)));
  }
  lease.release();  // a lease the daemon already ended releases quietly
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("the engine restarted mid-run fails the leases it stopped and new leases work", "[faults][engine]") {
  // A real dockerd restart, through the test environment's own script; only when that script
  // started the engine (scripts/test-all sets SANDLOT_RESTART_ENGINE then).
  const char* restart = std::getenv("SANDLOT_RESTART_ENGINE");
  if (restart == nullptr || *restart == '\0') {
    WARN("SANDLOT_ITEST_SKIPPED: SANDLOT_RESTART_ENGINE is unset (set it to a command that restarts the engine, "
         "e.g. 'scripts/e2e-env restart-engine', on an engine nobody else uses)");
    return;
  }
  const engine_probe engine;
  const std::string instance = unique_instance("engine-restart");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());

  const auto before = c.create(lease_of(test_image(), "before-restart"));
  REQUIRE(wait_settled(c, before.id).state == lease_state::ready);
  INFO("restart command: " << restart);
  REQUIRE(std::system(fmt::format("{} >/dev/null 2>&1", restart).c_str()) == 0);
  REQUIRE(daemon_answers(c));

  // The daemon notices the stopped sandbox on its own (its sweep runs every 10 s) and fails the
  // lease with the reason; the test's next call is told so.
  REQUIRE(wait_until([&] { return c.status().slots_in_use == 0; }, 30s, 250ms));
  const auto gone = c.get(before.id);
  CHECK(gone.state == lease_state::failed);
  REQUIRE(gone.error.has_value());
  CHECK(gone.error->code == "sandbox_failed");
  CHECK_THAT(gone.error->message, Contains("engine restarted"));
  const auto exec = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", before.id), R"({"argv":["true"]})"));
  CHECK(exec.status == 410);
  CHECK_THAT(exec.message, Contains("stopped"));

  // The same daemon, not restarted, serves a new lease.
  {
    auto after = client::lease::acquire(c, lease_of(test_image(), "after-restart"), 120s);
    CHECK(after.exec({"echo", "still here"}).stdout_data == "still here\n");
  }
  CHECK(wait_until([&] { return engine.containers_of(instance).empty(); }, 15s));
}
