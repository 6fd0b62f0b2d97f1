// Lease expiry and renewal: the heartbeat (or any call on the lease) keeps it alive, a lease nobody
// touches for ttl_s expires and loses its sandbox, and renew pushes the expiry out or says why not.
// Tests that must see an expiry use ttl_s of 2 to 4 so they take seconds.
#include <catch2/catch.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using sandlot::protocol::lease_state;
using sandlot::testing::lease_sandbox;

namespace {

// seconds-to-expiry as /v1/status shows it; reading status does not renew the lease.
std::optional<double> expires_in_status(const sandlot::client::client& c, const std::string& id) {
  for (const auto& l : c.status().leases) {
    if (l.id == id) return l.expires_in_s;
  }
  return std::nullopt;
}

// Waits, without touching the lease, until /v1/status no longer lists it as live.
bool ended_on_its_own(const sandlot::client::client& c, const std::string& id,
                      std::chrono::seconds timeout) {
  return sandlot::e2e::eventually(
      [&] {
        auto state = sandlot::e2e::state_in_status(c, id);
        return !state || sandlot::protocol::is_final(*state);
      },
      timeout);
}

// Long-polls a raw lease (no heartbeat thread) until it is ready, renewing it on the way.
bool becomes_ready(const sandlot::client::client& c, const std::string& id) {
  auto view = sandlot::e2e::wait_for_lease(c, id, sandlot::e2e::is_ready, 60s);
  return view.state == lease_state::ready;
}

}  // namespace

TEST_CASE("the heartbeat keeps an idle lease alive well past its ttl", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto sb = lease_sandbox(req);
  // Make no calls on the lease for three TTLs (exec and GET count as signs of life), so only the
  // background heartbeat can keep it; watch it through /v1/status, which does not.
  bool left_ready = sandlot::e2e::eventually(
      [&] { return sandlot::e2e::state_in_status(c, sb.id()) != lease_state::ready; }, 3 * 2s, 250ms);
  CHECK_FALSE(left_ready);
  CHECK_FALSE(sb.heartbeat_error());
  CHECK(sb.exec({"true"}).exit_code == 0);
}

TEST_CASE("a lease nobody renews expires and can no longer be used", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(becomes_ready(c, created.id));

  // From here on nobody renews it. Watch through /v1/status: a GET of the lease itself counts
  // as a sign of life and would keep it alive.
  REQUIRE(ended_on_its_own(c, created.id, 30s));
  auto last = c.get(created.id);
  CHECK(last.state == lease_state::expired);
  REQUIRE(last.error.has_value());
  CHECK_FALSE(last.error->message.empty());

  sandlot::protocol::exec_request exec;
  exec.argv = {"true"};
  auto e = sandlot::e2e::error_from([&] { c.exec(created.id, exec); });
  REQUIRE(e);
  CHECK(e->code() == "lease_gone");
}

TEST_CASE("an expired lease has lost its sandbox and renewing it says it expired", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(becomes_ready(c, created.id));
  REQUIRE(ended_on_its_own(c, created.id, 30s));

  auto last = c.get(created.id);
  CHECK(last.state == lease_state::expired);
  CHECK_FALSE(last.sandbox.has_value());
  CHECK_FALSE(last.expires_in_s.has_value());
  REQUIRE(last.error.has_value());
  CHECK_THAT(last.error->message, Contains("ttl_s=2"));

  auto e = sandlot::e2e::error_from([&] { c.renew(created.id); });
  REQUIRE(e);
  CHECK(e->status() == 410);
  CHECK(e->code() == "lease_gone");
  CHECK_THAT(e->message(), Contains("expired"));
}

TEST_CASE("renew pushes the expiry out to a full ttl again", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 4;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(becomes_ready(c, created.id));

  // Let a little over a second run off the clock, watching through status (which does not renew).
  std::optional<double> left;
  REQUIRE(sandlot::e2e::eventually(
      [&] {
        left = expires_in_status(c, created.id);
        return left && *left < 2.8;
      },
      10s, 100ms));

  auto renewed = c.renew(created.id);
  CHECK(renewed.id == created.id);
  CHECK(renewed.state == lease_state::ready);
  CHECK(renewed.expires_in_s > *left);
  CHECK(renewed.expires_in_s > 3.0);
  CHECK(renewed.expires_in_s <= 4.0);
}

TEST_CASE("renewing a released lease is 410 lease_gone saying it was released", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();
  sb.release();

  auto e = sandlot::e2e::error_from([&] { c.renew(id); });
  REQUIRE(e);
  CHECK(e->status() == 410);
  CHECK(e->code() == "lease_gone");
  CHECK_THAT(e->message(), Contains("released"));
  CHECK_THAT(e->what(), Contains("/renew"));
}

TEST_CASE("a command that runs longer than the ttl keeps its lease alive", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(becomes_ready(c, created.id));

  // No heartbeat here (a raw lease): only the running exec speaks for it, for twice its ttl.
  sandlot::protocol::exec_request exec;
  exec.argv = {"sh", "-c", "sleep 4; echo still-here"};
  exec.timeout_s = 30;
  auto r = c.exec(created.id, exec);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "still-here\n");
  CHECK(sandlot::e2e::state_in_status(c, created.id) == lease_state::ready);
}

TEST_CASE("GETs spaced under the ttl keep a lease alive without a heartbeat", "[expiry]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(becomes_ready(c, created.id));

  // Two and a half ttls of plain GETs, half a second apart: each one restarts the clock.
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(c.get(created.id).state == lease_state::ready);
    std::this_thread::sleep_for(500ms);
  }
  CHECK(c.get(created.id).state == lease_state::ready);
}
