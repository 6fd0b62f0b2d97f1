// The lease lifecycle as a test sees it: the heartbeat keeps an idle lease alive past its TTL, a
// lease nobody renews expires, and repeating a request_id returns the same lease instead of a second one.
#include <catch2/catch.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using sandlot::protocol::lease_state;
using sandlot::testing::lease_sandbox;

TEST_CASE("the heartbeat keeps an idle lease alive well past its ttl", "[lease]") {
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

TEST_CASE("a lease nobody renews expires and can no longer be used", "[lease]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 2;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  auto ready = sandlot::e2e::wait_for_lease(
      c, created.id, [](const auto& v) { return v.state == lease_state::ready; }, 60s);
  REQUIRE(ready.state == lease_state::ready);

  // From here on nobody renews it. Watch through /v1/status: a GET of the lease itself counts
  // as a sign of life and would keep it alive.
  bool gone = sandlot::e2e::eventually(
      [&] {
        auto state = sandlot::e2e::state_in_status(c, created.id);
        return !state || sandlot::protocol::is_final(*state);
      },
      30s);
  REQUIRE(gone);
  auto last = c.get(created.id);
  CHECK(last.state == lease_state::expired);
  REQUIRE(last.error.has_value());
  CHECK_FALSE(last.error->message.empty());

  sandlot::protocol::exec_request exec;
  exec.argv = {"true"};
  try {
    c.exec(created.id, exec);
    FAIL("exec on an expired lease succeeded");
  } catch (const sandlot::client::error& e) {
    CHECK(e.code() == "lease_gone");
  }
}

TEST_CASE("repeating a request_id returns the same lease and not a second one", "[lease]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.request_id = sandlot::e2e::unique_request_id();
  const std::string body = nlohmann::json(req).dump();

  auto first = c.request("POST", "/v1/leases", body);
  REQUIRE(first.status == 201);
  auto first_view = nlohmann::json::parse(first.body).get<sandlot::protocol::lease_view>();
  sandlot::e2e::release_on_exit cleanup(c, first_view.id);

  auto second = c.request("POST", "/v1/leases", body);
  CHECK(second.status == 200);
  auto second_view = nlohmann::json::parse(second.body).get<sandlot::protocol::lease_view>();
  CHECK(second_view.id == first_view.id);

  // And the lease it names is a real one that becomes ready.
  auto ready = sandlot::e2e::wait_for_lease(
      c, first_view.id, [](const auto& v) { return v.state == lease_state::ready; }, 60s);
  CHECK(ready.state == lease_state::ready);
}
