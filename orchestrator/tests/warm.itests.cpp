// Warm pools against the real engine: each case starts its own orchestratord with --warm and
// checks on the engine what the daemon says (which containers exist, which one a lease got).
//
// Needs the environment of docs/test-environment.md (scripts/e2e-env; SANDLOT_TEST_IMAGE and
// SANDLOT_COLD_IMAGE in the loopback registry):
//   ctest --test-dir build/dev -L integration -R warm --output-on-failure
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace {

using namespace std::chrono_literals;
using sandlot::itest::cold_image;
using sandlot::itest::daemon_options;
using sandlot::itest::daemon_process;
using sandlot::itest::engine_probe;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_settled;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;

daemon_options warm_daemon(const std::string& instance, int slots, std::vector<std::string> warm) {
  daemon_options o;
  o.instance = instance;
  o.slots = slots;
  for (auto& w : warm) {
    o.extra_args.push_back("--warm");
    o.extra_args.push_back(std::move(w));
  }
  // A short sweep interval: the sweep must leave warm and adopted sandboxes alone while it runs.
  o.extra_args.push_back("--sweep-interval");
  o.extra_args.push_back("1");
  return o;
}

/// Ready warm sandboxes of `image` as GET /v1/status says.
int ready_of(const client::client& c, const std::string& image) {
  const auto st = c.status();
  if (!st.warm) return -1;
  for (const auto& i : st.warm->images) {
    if (i.image == image) return i.ready;
  }
  return 0;
}

std::set<std::string> containers(const engine_probe& engine, const std::string& instance) {
  const auto ids = engine.containers_of(instance);
  return {ids.begin(), ids.end()};
}

}  // namespace

SANDLOT_ITEST_LOG_PRINTER()

TEST_CASE("a lease is served by a sandbox the warm pool made", "[warm]") {
  const engine_probe engine;
  const std::string instance = unique_instance("warm-adopt");
  leftover_guard cleanup(engine, instance);
  daemon_process d(warm_daemon(instance, 2, {test_image() + "=1"}));
  const client::client c(d.url());

  REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 1; }, 60s, 100ms));
  const auto pooled = containers(engine, instance);
  REQUIRE(pooled.size() == 1);

  const auto created = c.create(lease_of(test_image(), "warm adoption", 60));
  const auto v = wait_settled(c, created.id);
  REQUIRE(v.state == lease_state::ready);
  REQUIRE(v.sandbox);
  CHECK(v.warm);
  CHECK(pooled.count(v.sandbox->id) == 1);  // the very container the pool had made
  // It works like any sandbox.
  protocol::exec_request e;
  e.argv = {"echo", "warm"};
  CHECK(c.exec(created.id, e).stdout_data == "warm\n");
  const auto st = c.status();
  REQUIRE(st.warm);
  CHECK(st.warm->hits == 1);
  CHECK(st.warm->adoption_mean_s.has_value());
  // The run report marks it.
  const auto run = c.run(created.run);
  bool marked = false;
  for (const auto& l : run.at("leases")) marked = marked || (l.at("id") == created.id && l.at("warm") == true);
  CHECK(marked);

  c.release(created.id);
  CHECK_FALSE(engine.container_exists(v.sandbox->id));
  REQUIRE(d.terminate(30s).has_value());
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a lease of another image evicts a warm sandbox when the slots are short", "[warm]") {
  const engine_probe engine;
  const std::string instance = unique_instance("warm-evict");
  leftover_guard cleanup(engine, instance);
  daemon_process d(warm_daemon(instance, 2, {test_image() + "=2"}));
  const client::client c(d.url());

  REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 2; }, 60s, 100ms));
  const auto pooled = containers(engine, instance);
  REQUIRE(pooled.size() == 2);

  const auto created = c.create(lease_of(cold_image(), "warm eviction", 120));
  const auto v = wait_settled(c, created.id, 120s);
  REQUIRE(v.state == lease_state::ready);
  CHECK_FALSE(v.warm);
  // One warm sandbox went to make room: warm + in use stays within the two slots.
  CHECK(wait_until(
      [&] {
        const auto now = containers(engine, instance);
        int still_pooled = 0;
        for (const auto& id : now) still_pooled += pooled.count(id) != 0 ? 1 : 0;
        return now.size() == 2 && still_pooled == 1;
      },
      30s, 100ms));
  const auto st = c.status();
  REQUIRE(st.warm);
  CHECK(st.warm->evictions >= 1);
  CHECK(st.slots_in_use == 1);

  c.release(created.id);
  // The freed slot is warm again.
  CHECK(wait_until([&] { return ready_of(c, test_image()) == 2; }, 60s, 100ms));
  REQUIRE(d.terminate(30s).has_value());
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a warm sandbox serves one lease only and the pool refills", "[warm]") {
  const engine_probe engine;
  const std::string instance = unique_instance("warm-single");
  leftover_guard cleanup(engine, instance);
  daemon_process d(warm_daemon(instance, 2, {test_image() + "=1"}));
  const client::client c(d.url());

  REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 1; }, 60s, 100ms));
  const auto first = c.create(lease_of(test_image(), "warm single use 1", 60));
  const auto v1 = wait_settled(c, first.id);
  REQUIRE(v1.state == lease_state::ready);
  CHECK(v1.warm);
  // Refilled while the first lease holds its slot (one idle slot left).
  CHECK(wait_until([&] { return ready_of(c, test_image()) == 1; }, 60s, 100ms));
  // Something the next test must never see.
  c.put_file(first.id, "/left-by-first", "secret");
  c.release(first.id);
  CHECK_FALSE(engine.container_exists(v1.sandbox->id));

  REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 1; }, 60s, 100ms));
  const auto second = c.create(lease_of(test_image(), "warm single use 2", 60));
  const auto v2 = wait_settled(c, second.id);
  REQUIRE(v2.state == lease_state::ready);
  CHECK(v2.warm);
  CHECK(v2.sandbox->id != v1.sandbox->id);
  protocol::exec_request e;
  e.argv = {"ls", "/"};
  CHECK(c.exec(second.id, e).stdout_data.find("left-by-first") == std::string::npos);
  c.release(second.id);
  REQUIRE(d.terminate(30s).has_value());
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("warm auto keeps what was held at once recently, and the lease's env reaches its commands", "[warm]") {
  const engine_probe engine;
  const std::string instance = unique_instance("warm-auto");
  leftover_guard cleanup(engine, instance);
  daemon_process d(warm_daemon(instance, 3, {"auto"}));
  const client::client c(d.url());

  // No demand yet: nothing warm.
  CHECK(containers(engine, instance).empty());
  std::vector<std::string> held;
  for (int i = 0; i < 2; ++i) {
    const auto l = c.create(lease_of(test_image(), fmt::format("warm auto {}", i), 60));
    REQUIRE(wait_settled(c, l.id).state == lease_state::ready);
    held.push_back(l.id);
  }
  for (const auto& id : held) c.release(id);
  // Two were held at once: two are kept warm (within the three idle slots).
  REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 2; }, 60s, 100ms));

  auto req = lease_of(test_image(), "warm auto env", 60);
  req.env = {{"GREETING", "hello"}};
  const auto l = c.create(req);
  const auto v = wait_settled(c, l.id);
  REQUIRE(v.state == lease_state::ready);
  CHECK(v.warm);
  protocol::exec_request e;
  e.argv = {"sh", "-c", "echo $GREETING"};
  CHECK(c.exec(l.id, e).stdout_data == "hello\n");
  c.release(l.id);
  REQUIRE(d.terminate(30s).has_value());
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("warm sandboxes left by a killed daemon are removed by the next one", "[warm]") {
  const engine_probe engine;
  const std::string instance = unique_instance("warm-restart");
  leftover_guard cleanup(engine, instance);
  std::set<std::string> pooled;
  {
    daemon_process first(warm_daemon(instance, 2, {test_image() + "=2"}));
    const client::client c(first.url());
    REQUIRE(wait_until([&] { return ready_of(c, test_image()) == 2; }, 60s, 100ms));
    pooled = containers(engine, instance);
    REQUIRE(pooled.size() == 2);
    CHECK(first.kill_hard().signal == SIGKILL);  // no chance to clean up
  }
  for (const auto& id : pooled) REQUIRE(engine.container_exists(id));

  daemon_process second(instance, 2);  // no --warm: only the sweep at start
  CHECK(wait_until(
      [&] {
        for (const auto& id : pooled) {
          if (engine.container_exists(id)) return false;
        }
        return true;
      },
      10s, 100ms));
  REQUIRE(second.terminate(30s).has_value());
  CHECK(engine.containers_of(instance).empty());
}
