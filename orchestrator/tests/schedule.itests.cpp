// Duration-aware admission on a real daemon and engine: the daemon is given what earlier runs
// taught it (a durations.json in its --state-dir) and must order and backfill by it.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
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

/// A state directory holding what "earlier runs" of this process's run pattern (itest-*) taught.
struct learned_durations {
  std::filesystem::path dir;
  explicit learned_durations(const std::map<std::string, double>& seconds_by_test) {
    dir = std::filesystem::temp_directory_path() / fmt::format("sandlot-schedule-{}-{}", getpid(), counter()++);
    std::filesystem::create_directories(dir);
    json tests = json::array();
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (const auto& [test, s] : seconds_by_test) {
      tests.push_back({{"run_pattern", "itest-*"}, {"test", test}, {"seconds", s}, {"samples", 5}, {"updated", now}});
    }
    std::ofstream(dir / "durations.json") << json{{"format", "sandlot-durations/1"}, {"tests", tests}}.dump();
  }
  ~learned_durations() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

daemon_options scheduled_daemon(const std::string& instance, int slots, const learned_durations& learned) {
  daemon_options o;
  o.instance = instance;
  o.slots = slots;
  o.extra_args = {"--state-dir", learned.dir.string(), "--schedule", "duration"};
  return o;
}

/// The one lease of `ids` that left the queue (admitted, not final), once there is one.
std::string next_admitted(const client::client& c, const std::vector<std::string>& ids) {
  std::string next;
  wait_until([&] {
    for (const auto& id : ids) {
      auto v = c.get(id);
      if (v.state != lease_state::queued && !sandlot::protocol::is_final(v.state)) next = id;
    }
    return !next.empty();
  }, 30s, 50ms);
  return next;
}

}  // namespace

TEST_CASE("the longest known test goes first when a slot frees", "[daemon][schedule]") {
  const engine_probe engine;
  const std::string instance = unique_instance("longest");
  leftover_guard cleanup(engine, instance);
  learned_durations learned({{"quick", 1}, {"middling", 10}, {"slow", 30}});
  daemon_process d(scheduled_daemon(instance, 1, learned));
  const client::client c(d.url());

  const std::string holder = c.create(lease_of(test_image(), "holder")).id;
  REQUIRE(wait_settled(c, holder).state == lease_state::ready);
  std::map<std::string, std::string> test_of;
  std::vector<std::string> queued;
  for (const char* test : {"quick", "middling", "slow"}) {  // shortest first: FIFO would run quick first
    auto id = c.create(lease_of(test_image(), test)).id;
    test_of[id] = test;
    queued.push_back(id);
  }
  CHECK(c.get(queued[2]).position == 0);  // slow

  std::vector<std::string> served;
  std::string current = holder;
  while (!queued.empty()) {
    c.release(current);
    current = next_admitted(c, queued);
    REQUIRE(!current.empty());
    served.push_back(test_of[current]);
    queued.erase(std::find(queued.begin(), queued.end(), current));
    REQUIRE(wait_settled(c, current).state == lease_state::ready);
  }
  c.release(current);
  CHECK(served == std::vector<std::string>{"slow", "middling", "quick"});

  // The report says what was expected of each.
  auto run = json::parse(c.request("GET", "/v1/runs/" + lease_of("", "").run).body);
  for (const auto& l : run.at("leases")) {
    if (l.at("test") == "slow") CHECK(l.at("expected_s").get<double>() == Approx(30));
    if (l.at("test") == "quick") CHECK(l.at("expected_s").get<double>() == Approx(1));
  }
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a short known test runs past a waiting wide lease and a long one does not", "[daemon][schedule]") {
  const engine_probe engine;
  const std::string instance = unique_instance("backfill");
  leftover_guard cleanup(engine, instance);
  // The holder is expected to keep its slot for a minute; the wide lease needs both slots.
  learned_durations learned({{"holder", 60}, {"wide", 90}, {"long", 70}, {"quick", 1}});
  daemon_process d(scheduled_daemon(instance, 2, learned));
  const client::client c(d.url());

  const std::string holder = c.create(lease_of(test_image(), "holder")).id;
  REQUIRE(wait_settled(c, holder).state == lease_state::ready);
  auto wide_req = lease_of(test_image(), "wide");
  wide_req.slots = 2;
  const std::string wide = c.create(wide_req).id;
  const std::string long_one = c.create(lease_of(test_image(), "long")).id;
  const std::string quick = c.create(lease_of(test_image(), "quick")).id;

  // quick (1 s) ends long before the holder (60 s): it takes the free slot. long (70 s) would
  // delay the wide lease: it waits behind it.
  REQUIRE(wait_settled(c, quick).state == lease_state::ready);
  CHECK(c.get(wide).state == lease_state::queued);
  CHECK(c.get(long_one).state == lease_state::queued);
  CHECK(c.get(wide).position == 0);
  CHECK(c.get(long_one).position == 1);

  // The report marks the backfill.
  auto run = json::parse(c.request("GET", "/v1/runs/" + wide_req.run).body);
  bool saw_quick = false;
  for (const auto& l : run.at("leases")) {
    if (l.at("test") != "quick") continue;
    saw_quick = true;
    CHECK(l.at("backfilled") == true);
    CHECK(l.at("expected_s").get<double>() == Approx(1));
  }
  CHECK(saw_quick);
  // And /metrics counts it: exactly one admission so far went past the reservation.
  const auto metrics = c.request("GET", "/metrics").body;
  CHECK_THAT(metrics, Catch::Matchers::Contains("\nsandlot_backfills_total 1\n"));

  // Both end: the wide lease goes before the long one.
  c.release(quick);
  c.release(holder);
  REQUIRE(wait_settled(c, wide).state == lease_state::ready);
  CHECK(c.get(long_one).state == lease_state::queued);
  c.release(wide);
  REQUIRE(wait_settled(c, long_one).state == lease_state::ready);
  c.release(long_one);
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a daemon learns durations and leaves them in its state directory", "[daemon][schedule]") {
  const engine_probe engine;
  const std::string instance = unique_instance("learn");
  leftover_guard cleanup(engine, instance);
  learned_durations learned({});
  {
    daemon_process d(scheduled_daemon(instance, 1, learned));
    const client::client c(d.url());
    const std::string id = c.create(lease_of(test_image(), "taught")).id;
    REQUIRE(wait_settled(c, id).state == lease_state::ready);
    c.release(id);
    auto st = d.terminate(30s);
    REQUIRE(st);
    CHECK(st->exited);
  }
  std::ifstream in(learned.dir / "durations.json");
  REQUIRE(in);
  const auto doc = json::parse(in);
  bool found = false;
  for (const auto& t : doc.at("tests")) {
    if (t.at("test") == "taught" && t.at("run_pattern") == "itest-*") {
      found = true;
      CHECK(t.at("seconds").get<double>() > 0);
      CHECK(t.at("samples") == 1);
    }
  }
  CHECK(found);
}
