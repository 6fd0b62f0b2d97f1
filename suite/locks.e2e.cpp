// Named locks: a "cluster-wide config" that many tests read under a shared lock and a few change
// under an exclusive one. The config lives in a once-per-run fixture sandbox; a writer changes it in
// two steps with a pause between them, and a reader checks both halves agree every time it looks.
// Each holder also samples the daemon's status to see that no conflicting holder of the lock is
// admitted at the same time.
#include <catch2/catch.hpp>

#include <thread>

#include "support.hpp"

using namespace std::chrono_literals;
using sandlot::protocol::lease_state;
using sandlot::protocol::lock_mode;
using sandlot::testing::lease_sandbox;

namespace {

constexpr const char* config_lock = "cluster-config";

sandlot::protocol::lease_request with_lock(lock_mode mode) {
  sandlot::protocol::lease_request req;
  req.locks.push_back({config_lock, mode});
  return req;
}

/// The run's config "cluster": a sandbox holding /tmp/config/a and /tmp/config/b, both "v0" at first.
sandlot::client::fixture config_cluster(const sandlot::client::lease& holder) {
  sandlot::protocol::fixture_request spec;
  spec.name = "cluster-config";
  spec.image = sandlot::testing::default_image();
  // Once per run: it must outlive the gaps between its holders, which the daemon's longest-first
  // order can stretch to minutes. The run's end (DELETE /v1/runs/{id}) tears it down anyway.
  spec.grace_s = 900;
  return holder.hold_fixture(spec, [](const sandlot::client::fixture& f) {
    auto r = f.exec({"sh", "-c", "mkdir -p /tmp/config && echo v0 > /tmp/config/a && echo v0 > /tmp/config/b"});
    if (r.exit_code != 0) throw std::runtime_error("could not seed the config: " + r.stderr_data);
    return nlohmann::json{{"seeded", "v0"}};
  });
}

/// Admitted leases (other than `self`) that hold the config lock, and in which modes.
std::vector<lock_mode> other_holders(const std::string& self) {
  std::vector<lock_mode> out;
  for (const auto& l : sandlot::testing::default_client().status().leases) {
    if (l.id == self || l.state == lease_state::queued || sandlot::protocol::is_final(l.state)) continue;
    for (const auto& lock : l.locks) {
      if (lock.name == config_lock) out.push_back(lock.mode);
    }
  }
  return out;
}

void read_config_as_a_reader() {
  auto sb = lease_sandbox(with_lock(lock_mode::shared));
  auto cluster = config_cluster(sb);
  for (int i = 0; i < 6; ++i) {
    auto r = cluster.exec({"cat", "/tmp/config/a", "/tmp/config/b"});
    REQUIRE(r.exit_code == 0);
    auto nl = r.stdout_data.find('\n');
    REQUIRE(nl != std::string::npos);
    INFO("config read: " << r.stdout_data);
    CHECK(r.stdout_data.substr(0, nl + 1) == r.stdout_data.substr(nl + 1));  // never a half-done change
    for (auto mode : other_holders(sb.id())) CHECK(mode == lock_mode::shared);
    std::this_thread::sleep_for(100ms);
  }
}

void change_config_as_a_writer() {
  auto sb = lease_sandbox(with_lock(lock_mode::exclusive));
  auto cluster = config_cluster(sb);
  // The change is two steps with a pause: a reader between them would see a and b disagree.
  auto r = cluster.exec({"sh", "-c", "echo \"$0\" > /tmp/config/a && sleep 0.4 && echo \"$0\" > /tmp/config/b", sb.name()});
  REQUIRE(r.exit_code == 0);
  CHECK(other_holders(sb.id()).empty());
  auto check = cluster.exec({"cat", "/tmp/config/a", "/tmp/config/b"});
  CHECK(check.stdout_data == sb.name() + "\n" + sb.name() + "\n");
  CHECK(other_holders(sb.id()).empty());
}

}  // namespace

TEST_CASE("a reader of the cluster config always sees one whole version (first reader)", "[locks]") {
  read_config_as_a_reader();
}

TEST_CASE("a reader of the cluster config always sees one whole version (second reader)", "[locks]") {
  read_config_as_a_reader();
}

TEST_CASE("a reader of the cluster config always sees one whole version (third reader)", "[locks]") {
  read_config_as_a_reader();
}

TEST_CASE("a reader of the cluster config always sees one whole version (fourth reader)", "[locks]") {
  read_config_as_a_reader();
}

TEST_CASE("a writer changes the cluster config with nobody else holding its lock (first writer)", "[locks]") {
  change_config_as_a_writer();
}

TEST_CASE("a writer changes the cluster config with nobody else holding its lock (second writer)", "[locks]") {
  change_config_as_a_writer();
}

TEST_CASE("a lease whose lock is taken waits and says which lock", "[locks]") {
  const auto& c = sandlot::testing::default_client();
  // A lock name of this test's own, so nothing else in the suite touches it.
  const std::string lock = "probe-" + sandlot::e2e::unique_request_id();
  sandlot::protocol::lease_request first_req;
  first_req.locks.push_back({lock, lock_mode::exclusive});
  auto first = lease_sandbox(first_req);

  auto req = sandlot::e2e::request_for_this_test();
  req.test += " (second lease)";  // another holder: not the test that already holds the lock
  req.locks.push_back({lock, lock_mode::shared});
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  auto waiting = c.get(created.id, 1);
  CHECK(waiting.state == lease_state::queued);
  CHECK(waiting.waiting_for == std::optional<std::string>("lock:" + lock));
  REQUIRE(waiting.locks.size() == 1);
  CHECK(waiting.locks[0].mode == lock_mode::shared);

  first.release();
  auto ready = sandlot::e2e::wait_for_lease(c, created.id, sandlot::e2e::is_ready, 120s);
  CHECK(ready.state == lease_state::ready);
}

TEST_CASE("a lock request with an unknown mode gets 400 naming the field", "[locks]") {
  const auto& c = sandlot::testing::default_client();
  nlohmann::json body = {{"image", sandlot::testing::default_image()},
                         {"locks", {{{"name", "cluster-config"}, {"mode", "sometimes"}}}}};
  auto res = c.request("POST", "/v1/leases", body.dump());
  CHECK(res.status == 400);
  auto e = sandlot::e2e::error_of(res);
  CHECK(e.code == "invalid_field");
  CHECK_THAT(e.message, Catch::Contains("locks[0].mode"));
}
