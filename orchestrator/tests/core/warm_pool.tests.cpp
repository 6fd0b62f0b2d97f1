// Warm pools: the pool's bookkeeping alone (warm_pool.hpp), then the lease core on the fake
// provider with --warm (adoption, eviction for a lease, single use, refill, the lease's env).
#include <set>

#include "core/core_harness.hpp"
#include "warm_pool.hpp"

using namespace core_tests;
using sandlot::orchestrator::parse_warm_entry;
using sandlot::orchestrator::warm_key;
using sandlot::orchestrator::warm_options;
using sandlot::orchestrator::warm_pool;

namespace {

const std::string image_a = "127.0.0.1:5000/sandlot/a:1";
const std::string image_b = "127.0.0.1:5000/sandlot/b:1";

warm_options fixed(std::map<std::string, int> counts) {
  warm_options o;
  o.fixed = std::move(counts);
  return o;
}

/// Plans up to `idle` creates and reports each made at once; returns their ids.
std::vector<std::string> fill(warm_pool& pool, int idle, clock_type::time_point now) {
  static int next = 0;
  std::vector<std::string> ids;
  for (auto& c : pool.plan_fill(idle, now, [] { return "w" + std::to_string(++next); })) {
    protocol::sandbox_info info;
    info.id = "sb-" + c.id;
    REQUIRE(pool.made(c.id, "sha256:" + c.key.image, info));
    ids.push_back(c.id);
  }
  return ids;
}

}  // namespace

TEST_CASE("warm entries are IMAGE, IMAGE=N or auto, and a bad count says what is accepted", "[warm_pool]") {
  warm_options o;
  parse_warm_entry(image_a, o);
  parse_warm_entry(image_b + "=3", o);
  parse_warm_entry("auto", o);
  CHECK(o.fixed.at(image_a) == 1);
  CHECK(o.fixed.at(image_b) == 3);
  CHECK(o.auto_size);
  CHECK_THROWS_WITH(parse_warm_entry(image_a + "=many", o), Contains("from 0 to 64"));
  CHECK_THROWS_WITH(parse_warm_entry(image_a + "=65", o), Contains("from 0 to 64"));
  CHECK_THROWS_WITH(parse_warm_entry("=2", o), Contains("image reference"));
}

TEST_CASE("a fixed pool fills up to its count, never beyond idle capacity", "[warm_pool]") {
  warm_pool pool(fixed({{image_a, 3}}));
  const auto now = clock_type::now();
  CHECK(fill(pool, 2, now).size() == 2);  // only two idle slots
  CHECK(pool.count() == 2);
  CHECK(fill(pool, 5, now).size() == 1);  // one short of its target
  CHECK(fill(pool, 5, now).empty());
  CHECK(pool.ready_count() == 3);
}

TEST_CASE("two images share idle capacity in turn", "[warm_pool]") {
  warm_pool pool(fixed({{image_a, 2}, {image_b, 2}}));
  const auto made = pool.plan_fill(3, clock_type::now(), [n = 0]() mutable { return "w" + std::to_string(++n); });
  std::map<std::string, int> per_image;
  for (const auto& c : made) ++per_image[c.key.image];
  CHECK(per_image[image_a] + per_image[image_b] == 3);
  CHECK(per_image[image_a] >= 1);
  CHECK(per_image[image_b] >= 1);
  CHECK(pool.count() == 3);  // being made counts against capacity
}

TEST_CASE("a lease claims a ready sandbox of its key once, and other limits do not match", "[warm_pool]") {
  warm_pool pool(fixed({{image_a, 1}}));
  fill(pool, 4, clock_type::now());
  protocol::lease_request other_limits;
  other_limits.image = image_a;
  other_limits.memory_mb = 512;
  CHECK_FALSE(pool.claim(warm_key::of(other_limits)));
  auto w = pool.claim(warm_key::defaults_for(image_a));
  REQUIRE(w);
  CHECK(w->key.image == image_a);
  CHECK_FALSE(pool.holds(w->id));  // single use: the pool forgets it
  CHECK_FALSE(pool.claim(warm_key::defaults_for(image_a)));
}

TEST_CASE("trimming to capacity evicts other images first", "[warm_pool]") {
  warm_pool pool(fixed({{image_a, 2}, {image_b, 2}}));
  fill(pool, 4, clock_type::now());
  REQUIRE(pool.count() == 4);
  auto evicted = pool.trim(3, image_b, clock_type::now());
  REQUIRE(evicted.size() == 1);
  CHECK(evicted[0].key.image == image_a);
  evicted = pool.trim(1, image_b, clock_type::now());
  REQUIRE(evicted.size() == 2);
  CHECK(pool.count() == 1);
  CHECK(pool.claim(warm_key::defaults_for(image_b)));  // the kept image's survives longest
}

TEST_CASE("a sandbox evicted while being made is removed once made", "[warm_pool]") {
  warm_pool pool(fixed({{image_a, 1}}));
  auto plan = pool.plan_fill(1, clock_type::now(), [] { return std::string("w1"); });
  REQUIRE(plan.size() == 1);
  CHECK(pool.holds("w1"));
  CHECK(pool.trim(0, {}, clock_type::now()).empty());  // nothing ready to hand back yet
  CHECK(pool.count() == 0);
  CHECK_FALSE(pool.made("w1", "sha256:x", {}));  // the caller removes it
  CHECK(pool.ready_count() == 0);
}

TEST_CASE("a failed create backs its key off", "[warm_pool]") {
  auto o = fixed({{image_a, 1}});
  o.retry_after = std::chrono::seconds(10);
  warm_pool pool(o);
  const auto now = clock_type::now();
  auto plan = pool.plan_fill(1, now, [] { return std::string("w1"); });
  REQUIRE(plan.size() == 1);
  pool.create_failed("w1", now);
  CHECK(pool.plan_fill(1, now + std::chrono::seconds(5), [] { return std::string("w2"); }).empty());
  CHECK(pool.plan_fill(1, now + std::chrono::seconds(11), [] { return std::string("w3"); }).size() == 1);
}

TEST_CASE("auto keeps the recent peak of leases held at once, and lets it go after the window", "[warm_pool]") {
  warm_options o;
  o.auto_size = true;
  o.demand_window = std::chrono::seconds(300);
  warm_pool pool(o);
  const auto key = warm_key::defaults_for(image_a);
  const auto t0 = clock_type::now();
  CHECK(pool.target(key, t0) == 0);
  pool.lease_held(key, t0);
  pool.lease_held(key, t0 + 1s);
  pool.lease_held(key, t0 + 2s);
  pool.lease_let_go(key, t0 + 10s);
  pool.lease_let_go(key, t0 + 11s);
  pool.lease_let_go(key, t0 + 12s);
  CHECK(pool.target(key, t0 + 20s) == 3);
  CHECK(pool.target(key, t0 + 250s) == 3);
  CHECK(pool.target(key, t0 + 400s) == 0);
  // Beyond target, ready ones are trimmed.
  fill(pool, 3, t0 + 20s);
  CHECK(pool.count() == 3);
  CHECK(pool.trim(10, {}, t0 + 400s).size() == 3);
}

// --- the lease core with --warm ---------------------------------------------------------------

namespace {

service_options warm_service(int slots, std::map<std::string, int> counts) {
  auto o = quick_options();
  o.slots = slots;
  o.warm = fixed(std::move(counts));
  return o;
}

protocol::lease_request lease_of(const std::string& img, std::string test) {
  auto r = lease_for(std::move(test));
  r.image = img;
  return r;
}

/// Ids of the fake engine's sandboxes made by the pool and not removed.
std::set<std::string> warm_sandboxes(const harness& h) {
  std::set<std::string> out;
  for (const auto& [id, s] : h.fake.sandboxes()) {
    if (s.lease_id.rfind("warm-", 0) == 0) out.insert(id);
  }
  return out;
}

/// Ready warm sandboxes as the status says (the engine may hold one the pool has not heard of yet).
int ready_warm(harness& h) {
  int n = 0;
  for (const auto& i : h.service().status().warm->images) n += i.ready;
  return n;
}

}  // namespace

TEST_CASE("a lease is served by a warm sandbox the pool made, and single use means a new one next",
          "[warm_pool][lease_service]") {
  harness h(warm_service(2, {{image, 1}}));
  h.fake.add_image(image);
  h.start();
  REQUIRE(h.run_until([&] { return ready_warm(h) == 1; }));
  const auto pooled = *warm_sandboxes(h).begin();
  const int creates_before = h.fake.create_calls();

  auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  CHECK(h.sandbox_of(a) == pooled);
  CHECK(h.view(a).warm);
  CHECK(h.fake.create_calls() >= creates_before);  // no create was waited for (a refill may run)
  CHECK(h.service().status().warm->hits == 1);

  // The pool refills in the background while the lease holds its slot.
  REQUIRE(h.run_until([&] { return warm_sandboxes(h).size() == 2; }));  // pooled (adopted) + a fresh one
  h.release(a);
  CHECK_FALSE(h.fake.has_sandbox(pooled));  // removed on release, never handed out again

  auto b = h.create(lease_for("b"));
  REQUIRE(h.reach(b, "ready"));
  CHECK(h.sandbox_of(b) != pooled);
  CHECK(h.view(b).warm);
  h.release(b);
}

TEST_CASE("a lease that needs the slot evicts a warm sandbox of another image", "[warm_pool][lease_service]") {
  harness h(warm_service(2, {{image_a, 2}}));
  h.fake.add_image(image_a);
  h.fake.add_image(image_b);
  h.start();
  REQUIRE(h.run_until([&] { return ready_warm(h) == 2; }));
  const auto before = warm_sandboxes(h);

  auto b = h.create(lease_of(image_b, "b"));
  REQUIRE(h.reach(b, "ready"));
  CHECK_FALSE(h.view(b).warm);
  // One warm sandbox of A went for B's slot: warm + in use stays within the budget.
  REQUIRE(h.run_until([&] { return warm_sandboxes(h).size() == 1; }));
  CHECK(h.service().status().warm->evictions == 1);
  const auto st = h.service().status();
  CHECK(st.slots_in_use + h.service().status().warm->images.at(0).ready <= st.slots_total);
  h.release(b);
  // And it comes back once the slot is free again.
  REQUIRE(h.run_until([&] { return warm_sandboxes(h).size() == 2; }));
}

TEST_CASE("a lease with other limits takes the cold path and counts a miss", "[warm_pool][lease_service]") {
  harness h(warm_service(3, {{image, 1}}));
  h.fake.add_image(image);
  h.start();
  REQUIRE(h.run_until([&] { return ready_warm(h) == 1; }));
  auto req = lease_for("big");
  req.memory_mb = 512;
  auto a = h.create(req);
  REQUIRE(h.reach(a, "ready"));
  CHECK_FALSE(h.view(a).warm);
  CHECK(h.fake.made_for(a).size() == 1);
  CHECK(h.service().status().warm->misses == 1);
  h.release(a);
}

TEST_CASE("a warm lease's env reaches every exec and the command's own env wins", "[warm_pool][lease_service]") {
  harness h(warm_service(2, {{image, 1}}));
  h.fake.add_image(image);
  std::vector<std::string> env_seen;
  h.fake.set_exec([&](const std::string&, const sandlot::orchestrator::exec_spec& spec) {
    env_seen = spec.env;
    return sandlot::orchestrator::exec_output{0, "", "", false, false};
  });
  h.start();
  REQUIRE(h.run_until([&] { return ready_warm(h) == 1; }));
  auto req = lease_for("env");
  req.env = {{"GREETING", "hello"}, {"WHO", "lease"}};
  auto a = h.create(req);
  REQUIRE(h.reach(a, "ready"));
  REQUIRE(h.view(a).warm);
  protocol::exec_request e;
  e.argv = {"env"};
  e.env = {{"WHO", "exec"}};
  h.wait(h.service().exec(a, e));
  const std::set<std::string> got(env_seen.begin(), env_seen.end());
  CHECK(got.count("GREETING=hello") == 1);
  CHECK(got.count("WHO=exec") == 1);
  CHECK(got.count("WHO=lease") == 0);
  h.release(a);
}

TEST_CASE("the orphan sweep leaves warm and adopted sandboxes alone", "[warm_pool][lease_service]") {
  auto o = warm_service(2, {{image, 1}});
  o.orphan_sweep_interval = 1s;
  harness h(o);
  h.fake.add_image(image);
  h.start();
  REQUIRE(h.run_until([&] { return ready_warm(h) == 1; }));
  auto a = h.create(lease_for("a"));
  REQUIRE(h.reach(a, "ready"));
  const auto adopted = h.sandbox_of(a);
  REQUIRE(h.run_until([&] { return warm_sandboxes(h).size() == 2; }));
  h.run_for(2500ms);  // two sweeps
  CHECK(h.fake.has_sandbox(adopted));
  CHECK(warm_sandboxes(h).size() == 2);
  CHECK(h.state(a) == "ready");
  h.release(a);
}
