// Failures a test author will meet, each with a stable code and a message that says what to do:
// a lease that is gone, an image that cannot be pulled, bad input, an unknown lease, no daemon.
#include <catch2/catch.hpp>

#include "support.hpp"

using Catch::Matchers::Contains;
using namespace std::chrono_literals;
using sandlot::testing::lease_sandbox;

namespace {

// The client::error a call raises, so its fields can be checked one by one.
template <class F>
std::optional<sandlot::client::error> error_from(F&& f) {
  try {
    f();
  } catch (const sandlot::client::error& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("exec on a released lease fails with lease_gone", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();
  sb.release();
  sb.release();  // idempotent

  sandlot::protocol::exec_request req;
  req.argv = {"true"};
  auto e = error_from([&] { c.exec(id, req); });
  REQUIRE(e);
  CHECK(e->status() == 410);
  CHECK(e->code() == "lease_gone");
  CHECK_THAT(e->what(), Contains("/exec"));
}

TEST_CASE("an image that cannot be pulled fails the lease with image_pull_failed", "[errors]") {
  const std::string image = "127.0.0.1:5000/sandlot/does-not-exist:1";
  auto req = sandlot::e2e::request_for_this_test();
  req.image = image;
  auto e = error_from([&] { lease_sandbox(req); });
  REQUIRE(e);
  CHECK(e->code() == "image_pull_failed");
  CHECK_THAT(e->message(), Contains(image));
}

TEST_CASE("a request body that is not JSON gets 400 bad_json", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto res = c.request("POST", "/v1/leases", "{\"image\": ");
  CHECK(res.status == 400);
  auto body = nlohmann::json::parse(res.body);
  CHECK(body["error"]["code"] == "bad_json");
  CHECK_FALSE(body["error"]["message"].get<std::string>().empty());
}

TEST_CASE("a lease request with slots as a string gets 400 naming the field", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  nlohmann::json req = sandlot::e2e::request_for_this_test();
  req["slots"] = "2";
  auto res = c.request("POST", "/v1/leases", req.dump());
  CHECK(res.status == 400);
  auto body = nlohmann::json::parse(res.body);
  CHECK(body["error"]["code"] == "invalid_field");
  CHECK_THAT(body["error"]["message"].get<std::string>(), Contains("'slots'"));
}

TEST_CASE("an unknown lease id gets 404 not_found", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto e = error_from([&] { c.get("no-such-lease"); });
  REQUIRE(e);
  CHECK(e->status() == 404);
  CHECK(e->code() == "not_found");
  CHECK_THAT(e->what(), Contains("GET ") && Contains("/v1/leases/no-such-lease"));
}

TEST_CASE("a client pointed where no daemon listens says how to start one", "[errors]") {
  // Port 1 on loopback: nothing listens there, and nothing leaves the machine.
  sandlot::client::client nowhere("http://127.0.0.1:1");
  auto e = error_from([&] { nowhere.status(); });
  REQUIRE(e);
  CHECK(e->status() == 0);
  CHECK(e->code() == "unreachable");
  CHECK_THAT(e->message(), Contains("no orchestratord answered at http://127.0.0.1:1"));
  CHECK_THAT(e->message(), Contains("orchestratord --slots N") && Contains("SANDLOT_URL"));
}
