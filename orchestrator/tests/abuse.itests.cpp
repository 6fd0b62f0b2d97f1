// Fault tests with an engine that misbehaves on purpose (support/engine_fault_proxy.hpp): calls it
// stalls, fails or never answers. Each checks that one stuck engine call holds up nothing else,
// that a hung engine gives a clear error and a bounded shutdown, and that the daemon exits cleanly
// whatever it was waiting for (SANDLOT_ORCHESTRATORD_ASAN names an ASan build to run instead).
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_fault_proxy.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace {

using namespace std::chrono_literals;
using sandlot::itest::daemon_options;
using sandlot::itest::daemon_process;
using sandlot::itest::engine_fault_proxy;
using sandlot::itest::engine_probe;
using sandlot::itest::error_of;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::wait_settled;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;
using Catch::Matchers::Contains;
using action = engine_fault_proxy::action;

/// A daemon whose engine is `proxy`: the ASan build when SANDLOT_ORCHESTRATORD_ASAN names one.
daemon_options behind(const engine_fault_proxy& proxy, const std::string& instance, int slots = 2) {
  daemon_options o;
  o.instance = instance;
  o.slots = slots;
  o.extra_args = {"--docker-host", proxy.docker_host()};
  if (const char* asan = std::getenv("SANDLOT_ORCHESTRATORD_ASAN"); asan != nullptr && *asan != '\0') o.binary = asan;
  return o;
}

/// SIGTERM, and the daemon must exit 0 within `bound` with no sanitizer report in its log.
void require_clean_exit(daemon_process& d, std::chrono::seconds bound = 30s) {
  const auto st = d.terminate(bound);
  REQUIRE(st.has_value());
  INFO("exit: " << st->describe());
  CHECK(st->exited);
  CHECK(st->code == 0);
  CHECK_THAT(d.log(), !Contains("AddressSanitizer") && !Contains("runtime error:"));
}

}  // namespace

TEST_CASE("one stalled engine call holds up neither expiries nor the rest of the sweep", "[abuse][reaper]") {
  const engine_probe engine;
  const std::string instance = unique_instance("stall");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance, 3);
  opts.extra_args.insert(opts.extra_args.end(), {"--sweep-interval", "1", "--engine-timeout", "60"});
  daemon_process d(opts);
  const client::client c(d.url());

  // Sandboxes that become orphans when their lease ends: the engine stalls the removal of one
  // and fails another's once. (Labelled with a live lease first, so no sweep takes them before
  // the rules are in place.)
  auto holder = client::lease::acquire(c, lease_of(test_image(), "holder", 60), 60s);
  const std::map<std::string, std::string> labels{{"sandlot.daemon", instance}, {"sandlot.lease", holder.id()}};
  const auto stuck = engine.create_labelled(test_image(), labels);
  const auto flaky = engine.create_labelled(test_image(), labels);
  const auto plain = engine.create_labelled(test_image(), labels);
  const int stall = proxy.add_rule("DELETE", "/containers/" + stuck, action::stall);
  const int fail = proxy.add_rule("DELETE", "/containers/" + flaky, action::fail, 1);
  holder.release();
  REQUIRE(wait_until([&] { return proxy.matched(stall) == 1; }, 15s));

  // Two leases that expire while that DELETE hangs.
  const auto a = c.create(lease_of(test_image(), "expires-a", /*ttl_s=*/2));
  const auto b = c.create(lease_of(test_image(), "expires-b", /*ttl_s=*/2));
  REQUIRE(wait_settled(c, a.id).state == lease_state::ready);
  REQUIRE(wait_settled(c, b.id).state == lease_state::ready);
  const auto a_box = c.get(a.id).sandbox->id;
  const auto b_box = c.get(b.id).sandbox->id;

  // While that DELETE hangs, the expired leases are removed within about their ttl.
  const auto since = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return !engine.container_exists(a_box) && !engine.container_exists(b_box); }, 10s, 100ms));
  const auto took = std::chrono::steady_clock::now() - since;
  INFO("expired leases removed after " << std::chrono::duration<double>(took).count() << " s");
  CHECK(took < 5s);  // ttl 2 s, the reaper's tick and one removal each
  // The sweep went on past the stalled and the failed removal, and retried the failed one.
  CHECK(wait_until([&] { return !engine.container_exists(plain); }, 10s, 100ms));
  CHECK(wait_until([&] { return proxy.matched(fail) == 1 && !engine.container_exists(flaky); }, 15s, 100ms));
  CHECK(engine.container_exists(stuck));
  CHECK(c.status().slots_in_use == 0);
  proxy.clear_rules();
  require_clean_exit(d);
}

TEST_CASE("an engine that takes connections and never answers fails leases with engine_unavailable", "[abuse][hung]") {
  const engine_probe engine;
  const std::string instance = unique_instance("hung");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.extra_args.insert(opts.extra_args.end(), {"--engine-timeout", "3", "--shutdown-timeout", "5"});
  daemon_process d(opts);
  const client::client c(d.url());
  auto ready = client::lease::acquire(c, lease_of(test_image(), "before"), 60s);

  proxy.hang_all(true);
  const auto started = std::chrono::steady_clock::now();
  const auto stuck = wait_settled(c, c.create(lease_of(test_image(), "during")).id, 60s);
  CHECK(stuck.state == lease_state::failed);
  REQUIRE(stuck.error.has_value());
  CHECK(stuck.error->code == "engine_unavailable");
  CHECK_THAT(stuck.error->message, Contains("did not answer") && Contains("3 s"));
  CHECK(std::chrono::steady_clock::now() - started < 30s);
  // Commands fail the same clear way; the daemon answers meanwhile.
  const auto exec = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", ready.id()), R"({"argv":["true"]})"));
  CHECK(exec.status == 503);
  CHECK(exec.code == "engine_unavailable");
  CHECK(c.request("GET", "/healthz").status == 200);

  // A stop with the engine still hung ends within --shutdown-timeout, saying what is left.
  const auto stop_at = std::chrono::steady_clock::now();
  const auto st = d.terminate(20s);
  REQUIRE(st.has_value());
  CHECK(std::chrono::steady_clock::now() - stop_at < 12s);
  CHECK(st->exited);
  CHECK(st->code == 1);
  CHECK_THAT(d.log(), Contains("shutdown did not finish within 5 s"));
  proxy.hang_all(false);
  // The daemon is gone: the lease's destructor gives up at once; the leftover_guard removes the sandbox.
}

TEST_CASE("a second SIGTERM exits at once", "[abuse][shutdown]") {
  const engine_probe engine;
  const std::string instance = unique_instance("twice");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.extra_args.insert(opts.extra_args.end(), {"--shutdown-timeout", "60"});
  daemon_process d(opts);
  const client::client c(d.url());
  auto held = client::lease::acquire(c, lease_of(test_image(), "held"), 60s);
  proxy.add_rule("DELETE", "/containers/", action::stall);  // the graceful stop cannot finish
  d.send_signal(SIGTERM);
  REQUIRE(wait_until([&] { return d.log().find("received signal 15; stopping") != std::string::npos; }, 5s));
  CHECK_FALSE(d.wait_exit(1s).has_value());
  d.send_signal(SIGTERM);
  const auto st = d.wait_exit(5s);
  REQUIRE(st.has_value());
  CHECK(st->exited);
  CHECK(st->code == 128 + SIGTERM);
  proxy.clear_rules();
}

TEST_CASE("SIGTERM while pulls wait for a pull slot exits cleanly", "[abuse][shutdown]") {
  const engine_probe engine;
  const std::string instance = unique_instance("pull-wait");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance, 3);
  // Prepulls wait at the gate until they are done (a lease's wait ends with the lease), so their
  // flights are still suspended, one pulling and one waiting for the only pull slot, when the
  // daemon stops: what used to be destroyed after the service they point into.
  const std::string first = fmt::format("127.0.0.1:5000/sandlot/never-{}:1", getpid());
  const std::string second = fmt::format("127.0.0.1:5000/sandlot/never-{}:2", getpid());
  opts.extra_args.insert(opts.extra_args.end(), {"--max-pulls", "1", "--prepull", first, "--prepull", second});
  proxy.add_rule("POST", "/images/create", action::stall);  // every pull hangs
  daemon_process d(opts);
  const client::client c(d.url());
  const auto lease = c.create(lease_of(second, "waiting"));
  REQUIRE(wait_until(
      [&] {
        for (const auto& img : c.status().images) {
          if (img.state == "waiting") return true;
        }
        return false;
      },
      15s));
  require_clean_exit(d);
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("SIGTERM at any moment of a lease's life exits 0", "[abuse][shutdown]") {
  const engine_probe engine;
  // Right after start, while a lease is queued behind a full budget, mid-create, and with a
  // long-poll and an exec in flight.
  for (int moment = 0; moment < 4; ++moment) {
    DYNAMIC_SECTION("moment " << moment) {
      const std::string instance = unique_instance(fmt::format("anytime-{}", moment));
      leftover_guard cleanup(engine, instance);
      engine_fault_proxy proxy;
      daemon_process d(behind(proxy, instance, 1));
      const client::client c(d.url());
      std::thread poll;
      std::thread command;
      if (moment >= 1) {
        const auto first = c.create(lease_of(test_image(), "first", 60));
        const auto second = c.create(lease_of(test_image(), "second", 60));
        if (moment == 2) proxy.add_rule("POST", "/containers/create", action::stall, 1);
        if (moment == 3) {
          REQUIRE(wait_settled(c, first.id).state == lease_state::ready);
          poll = std::thread([&c, id = second.id] {
            try {
              c.get(id, 30);
            } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the daemon stops under it
            }
          });
          command = std::thread([&c, id = first.id] {
            try {
              protocol::exec_request r;
              r.argv = {"sleep", "30"};
              r.timeout_s = 30;
              c.exec(id, r);
            } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the daemon stops under it
            }
          });
          wait_until([&] { return d.log().find("/exec") != std::string::npos; }, 5s);
        }
      }
      require_clean_exit(d);
      if (poll.joinable()) poll.join();
      if (command.joinable()) command.join();
      CHECK(engine.containers_of(instance).empty());
    }
  }
}

TEST_CASE("renew and exec on a lease that is being released get 410", "[abuse][lifecycle]") {
  const engine_probe engine;
  const std::string instance = unique_instance("finishing");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.extra_args.insert(opts.extra_args.end(), {"--engine-timeout", "4"});
  daemon_process d(opts);
  const client::client c(d.url());
  const auto l = c.create(lease_of(test_image(), "finishing", 60));
  REQUIRE(wait_settled(c, l.id).state == lease_state::ready);
  const int rm = proxy.add_rule("DELETE", "/containers/", action::stall, 1);  // the removal takes a while
  std::thread releasing([&] { c.release(l.id); });
  REQUIRE(wait_until([&] { return proxy.matched(rm) == 1; }, 10s));
  const auto renew = error_of(c.request("POST", fmt::format("/v1/leases/{}/renew", l.id)));
  CHECK(renew.status == 410);
  CHECK_THAT(renew.message, Contains("is ending"));
  const auto exec = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", l.id), R"({"argv":["true"]})"));
  CHECK(exec.status == 410);
  releasing.join();  // the stalled DELETE times out and the retry removes it
  CHECK(c.get(l.id).state == lease_state::released);
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a pull nobody waits for any more gives its pull slot back", "[abuse][gate]") {
  const engine_probe engine;
  const std::string instance = unique_instance("abandon");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.extra_args.insert(opts.extra_args.end(), {"--max-pulls", "1"});
  daemon_process d(opts);
  const client::client c(d.url());
  const int pulls = proxy.add_rule("POST", "/images/create", action::stall, 1);  // the first pull hangs
  const auto abandoned = c.create(lease_of(fmt::format("127.0.0.1:5000/sandlot/never-{}:3", getpid()), "abandoned"));
  REQUIRE(wait_until([&] { return proxy.matched(pulls) == 1; }, 15s));
  c.release(abandoned.id);
  // The only pull slot is free again: a cold image's pull starts at once and its lease gets ready.
  engine.remove_image(sandlot::itest::cold_image());
  auto cold = client::lease::acquire(c, lease_of(sandlot::itest::cold_image(), "cold"), 60s);
  CHECK(cold.exec({"true"}).exit_code == 0);
  CHECK_THAT(d.log(), Contains("abandoned: every lease that wanted it left"));
}

TEST_CASE("a sandbox that fails to start is removed at once instead of by the sweep", "[abuse][fixtures]") {
  const engine_probe engine;
  const std::string instance = unique_instance("start-fails");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.extra_args.insert(opts.extra_args.end(), {"--sweep-interval", "3600"});  // no sweep to rely on
  daemon_process d(opts);
  const client::client c(d.url());
  auto holder = client::lease::acquire(c, lease_of(test_image(), "holder"), 60s);
  const int start = proxy.add_rule("POST", "/start", action::fail, 1);  // the engine made it, start fails
  protocol::fixture_request spec;
  spec.name = "never-starts";
  spec.image = test_image();
  const auto failed = error_of(c.request("POST", fmt::format("/v1/leases/{}/fixtures", holder.id()),
                                         nlohmann::json(spec).dump()));
  CHECK(proxy.matched(start) == 1);
  CHECK(failed.code == "sandbox_failed");
  CHECK_THAT(failed.message, Contains("never-starts"));
  // Only the holder's own sandbox is left.
  CHECK(engine.containers_of(instance).size() == 1);
}

TEST_CASE("orchestratord health is 0 only once the prepulls are done", "[abuse][health]") {
  const engine_probe engine;
  const std::string instance = unique_instance("health");
  leftover_guard cleanup(engine, instance);
  engine_fault_proxy proxy;
  auto opts = behind(proxy, instance);
  opts.binary.clear();  // the probe itself is what is tested: the build's own binary
  const int pulls = proxy.add_rule("POST", "/images/create", action::stall, 1);  // the prepull hangs a while
  opts.extra_args.insert(opts.extra_args.end(),
                         {"--prepull", fmt::format("127.0.0.1:5000/sandlot/never-{}:9", getpid()), "--engine-timeout", "3"});
  daemon_process d(opts);
  auto probe = [&] {
    const int status = std::system(fmt::format("{} health --listen 127.0.0.1:{} >/dev/null", SANDLOT_ORCHESTRATORD,
                                               d.port()).c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  REQUIRE(wait_until([&] { return proxy.matched(pulls) == 1; }, 15s));
  CHECK(probe() == 1);  // prepulling: not ready
  // The stalled pull gives up (a pull with no progress), the retry fails fast: prepulls are done.
  proxy.clear_rules();
  CHECK(wait_until([&] { return probe() == 0; }, 120s, 500ms));
  d.terminate(30s);
  CHECK(probe() == 1);  // nobody there
}
