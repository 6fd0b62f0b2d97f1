// An engine pool on two real dockerds (docs/scale-out.md): one orchestratord given
// `--engine one=… --engine two=…` places leases on both, pulls a cold image once per engine, and
// when the second engine stops mid-run fails only the leases on it (engine_lost) while the rest go
// on; when it answers again it rejoins with its leftovers swept.
//
// Needs the second engine of the test environment (`scripts/e2e-env up --engines 2` writes
// SANDLOT_DOCKER_HOST_2); the stop/start case also needs SANDLOT_ENGINE2_CTL, a command taking
// `stop` or `start` for that engine, which scripts/test-all sets only when it started the engine.
//
//   ctest --test-dir build/dev -L fault -R pool --output-on-failure
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
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
using sandlot::itest::env_or;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_settled;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;
using Catch::Matchers::Contains;

std::string first_engine() { return env_or("DOCKER_HOST", "unix:///var/run/docker.sock"); }
std::string second_engine() { return env_or("SANDLOT_DOCKER_HOST_2", ""); }

/// A daemon over both engines of the environment, `slots` each.
daemon_options pool_options(const std::string& instance, int slots) {
  daemon_options opts;
  opts.instance = instance;
  opts.slots = slots;
  opts.extra_args = {"--engine", fmt::format("one={};slots={}", first_engine(), slots),
                     "--engine", fmt::format("two={};slots={}", second_engine(), slots)};
  return opts;
}

std::optional<protocol::engine_status> engine_named(const client::client& c, const std::string& name) {
  for (auto& e : c.status().engines) {
    if (e.name == name) return e;
  }
  return std::nullopt;
}

/// Runs the second engine's control command (`stop` / `start`); true when it exited 0.
bool engine2(const std::string& ctl, const char* verb) {
  return std::system(fmt::format("{} {} >/dev/null 2>&1", ctl, verb).c_str()) == 0;
}

}  // namespace

SANDLOT_ITEST_LOG_PRINTER()

TEST_CASE("a pool of two engines uses both, and pulls a cold image once on each", "[pool]") {
  if (second_engine().empty()) {
    WARN("SANDLOT_ITEST_SKIPPED: SANDLOT_DOCKER_HOST_2 is unset (start a second engine with "
         "'scripts/e2e-env up --engines 2' and source its env file)");
    return;
  }
  const engine_probe one(first_engine());
  const engine_probe two(second_engine());
  const std::string instance = unique_instance("pool-cold");
  leftover_guard cleanup_one(one, instance);
  leftover_guard cleanup_two(two, instance);
  one.remove_image(cold_image());
  two.remove_image(cold_image());
  REQUIRE_FALSE(one.image_exists(cold_image()));
  REQUIRE_FALSE(two.image_exists(cold_image()));

  daemon_process d(pool_options(instance, 2));
  const client::client c(d.url());
  const auto before = c.status();
  CHECK(before.slots_total == 4);
  REQUIRE(before.engines.size() == 2);

  // Four leases on the cold image at once: the budget is both engines' slots together.
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(c.create(lease_of(cold_image(), fmt::format("cold-{}", i), 120)).id);
  std::map<std::string, int> placed;
  for (const auto& id : ids) {
    const auto v = wait_settled(c, id, 180s);
    INFO("lease " << id << ": " << protocol::to_string(v.state) << " "
                  << (v.error ? v.error->code + ": " + v.error->message : ""));
    REQUIRE(v.state == lease_state::ready);
    REQUIRE(v.sandbox.has_value());
    ++placed[v.sandbox->engine];
    // What the daemon says is where the container is.
    const auto& on = v.sandbox->engine == "one" ? one : two;
    CHECK(on.container_exists(v.sandbox->id));
  }
  // Least loaded first: two on each.
  CHECK(placed["one"] == 2);
  CHECK(placed["two"] == 2);
  CHECK(one.containers_of(instance).size() == 2);
  CHECK(two.containers_of(instance).size() == 2);

  // One pull per engine: four leases, two engines, two pulls — not four, not one.
  for (const char* name : {"one", "two"}) {
    const auto e = engine_named(c, name);
    REQUIRE(e.has_value());
    INFO("engine " << name);
    CHECK(e->up);
    CHECK(e->pulls == 1);
    CHECK(e->in_use == 2);
  }
  CHECK(one.image_exists(cold_image()));
  CHECK(two.image_exists(cold_image()));

  for (const auto& id : ids) {
    protocol::exec_request echo;
    echo.argv = {"echo", "pooled"};
    const auto r = c.exec(id, echo);
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "pooled\n");
  }
  for (const auto& id : ids) c.release(id);
  CHECK(wait_until([&] { return one.containers_of(instance).empty() && two.containers_of(instance).empty(); },
                   30s, 200ms));
  CHECK(c.status().slots_in_use == 0);
}

TEST_CASE("an engine stopped mid-run fails only its leases with engine_lost, and rejoins when back",
          "[pool][engine]") {
  const char* ctl_env = std::getenv("SANDLOT_ENGINE2_CTL");
  if (second_engine().empty() || ctl_env == nullptr || *ctl_env == '\0') {
    WARN("SANDLOT_ITEST_SKIPPED: needs SANDLOT_DOCKER_HOST_2 and SANDLOT_ENGINE2_CTL (a command taking stop|start "
         "for that engine, e.g. 'scripts/e2e-env engine2', on an engine nobody else uses)");
    return;
  }
  const std::string ctl = ctl_env;
  const engine_probe one(first_engine());
  const engine_probe two(second_engine());
  const std::string instance = unique_instance("pool-lost");
  leftover_guard cleanup_one(one, instance);
  leftover_guard cleanup_two(two, instance);
  // Whatever happens below, engine two is running again afterwards (the rest of the run needs it).
  struct restart_after {
    std::string ctl;
    ~restart_after() { engine2(ctl, "start"); }
  } restart{ctl};

  daemon_process d(pool_options(instance, 2));
  const client::client c(d.url());

  std::vector<client::lease> leases;
  for (int i = 0; i < 4; ++i) {
    leases.push_back(client::lease::acquire(c, lease_of(test_image(), fmt::format("held-{}", i), 60), 120s));
  }
  std::vector<const client::lease*> on_one;
  std::vector<const client::lease*> on_two;
  for (const auto& l : leases) (l.sandbox().engine == "one" ? on_one : on_two).push_back(&l);
  REQUIRE(on_one.size() == 2);
  REQUIRE(on_two.size() == 2);

  INFO("engine control: " << ctl);
  REQUIRE(engine2(ctl, "stop"));

  // Only the leases on two fail, with the reason; the budget drops to what is up.
  for (const auto* l : on_two) {
    REQUIRE(wait_until([&] { return protocol::is_final(c.get(l->id()).state); }, 30s, 200ms));
    const auto v = c.get(l->id());
    CHECK(v.state == lease_state::failed);
    REQUIRE(v.error.has_value());
    CHECK(v.error->code == "engine_lost");
    CHECK_THAT(v.error->message, Contains("engine two"));
    // Its holder's next call is told the same, as 410.
    try {
      l->exec({"true"});
      FAIL("exec on a lease whose engine is gone succeeded");
    } catch (const client::error& e) {
      CHECK(e.status() == 410);
      CHECK(e.code() == "engine_lost");
    }
  }
  for (const auto* l : on_one) {
    CHECK(c.get(l->id()).state == lease_state::ready);
    const auto r = l->exec({"echo", "still here"});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "still here\n");
  }
  auto status = c.status();
  CHECK(status.slots_total == 2);
  const auto down = engine_named(c, "two");
  REQUIRE(down.has_value());
  CHECK_FALSE(down->up);
  CHECK_FALSE(down->detail.empty());

  // New leases go to the engine that is up: one slot comes free there, and the next lease takes it.
  const std::string freed = on_one[0]->id();
  for (auto& l : leases) {
    if (l.id() == freed) l.release();
  }
  {
    auto during = client::lease::acquire(c, lease_of(test_image(), "during-outage", 60), 120s);
    CHECK(during.sandbox().engine == "one");
    CHECK(one.container_exists(during.sandbox().id));
    CHECK(during.exec({"true"}).exit_code == 0);
  }

  // Back: it rejoins, the containers this daemon had there are swept, and it takes leases again.
  REQUIRE(engine2(ctl, "start"));
  REQUIRE(wait_until([&] { return c.status().slots_total == 4; }, 60s, 250ms));
  const auto back = engine_named(c, "two");
  REQUIRE(back.has_value());
  CHECK(back->up);
  CHECK(back->detail.empty());
  CHECK(wait_until([&] { return two.containers_of(instance).empty(); }, 30s, 200ms));
  {
    // One is holding one lease of two slots; two is empty, so the least loaded is two.
    auto after = client::lease::acquire(c, lease_of(test_image(), "after-rejoin", 60), 120s);
    CHECK(after.sandbox().engine == "two");
    CHECK(two.container_exists(after.sandbox().id));
    const auto r = after.exec({"echo", "rejoined"});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "rejoined\n");
  }

  leases.clear();  // releases what is left (the lost ones release quietly)
  CHECK(wait_until([&] { return one.containers_of(instance).empty() && two.containers_of(instance).empty(); },
                   30s, 200ms));
  status = c.status();
  CHECK(status.slots_in_use == 0);
}
