// A lease's life as a test sees it through the API: it starts before it is ready, a long-poll wakes
// at ready, its state only moves forward, DELETE answers once the sandbox is gone, and its name is
// one a person can read and no other lease shares.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::StartsWith;
using sandlot::protocol::lease_state;
using sandlot::testing::lease_sandbox;

namespace {

// Where each state sits on the way to ready; a lease never goes back.
int rank(lease_state s) {
  switch (s) {
    case lease_state::queued: return 0;
    case lease_state::pulling: return 1;
    case lease_state::starting: return 2;
    case lease_state::ready: return 3;
    default: return 4;
  }
}

// The counter a lease name ends in, or nothing when the name does not end in digits after a dash.
std::optional<long> trailing_counter(const std::string& name) {
  auto dash = name.rfind('-');
  if (dash == std::string::npos || dash + 1 == name.size()) return std::nullopt;
  auto digits = name.substr(dash + 1);
  auto is_digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  if (!std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
  return std::stol(digits);
}

}  // namespace

TEST_CASE("a new lease is not ready at once and a long-poll returns when it is", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto created = c.create(sandlot::e2e::request_for_this_test());
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  // POST answers before any sandbox exists: the test has to wait for one.
  CHECK(created.state != lease_state::ready);
  CHECK_FALSE(sandlot::protocol::is_final(created.state));
  CHECK_FALSE(created.sandbox.has_value());

  // One long-poll with room to spare: it comes back at ready, not at an intermediate state.
  auto view = c.get(created.id, /*wait_s=*/120);
  INFO("state after the long-poll: " << sandlot::protocol::to_string(view.state));
  CHECK(view.state == lease_state::ready);
  CHECK(view.sandbox.has_value());
}

TEST_CASE("a long-poll on a lease that is already ready answers at once", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const auto start = std::chrono::steady_clock::now();
  auto view = c.get(sb.id(), /*wait_s=*/60);
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(view.state == lease_state::ready);
  CHECK(took < 5s);
}

TEST_CASE("GET shows the states of a lease only moving forward until ready and then released", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto created = c.create(sandlot::e2e::request_for_this_test());
  sandlot::e2e::release_on_exit cleanup(c, created.id);

  // Short GETs, not long-polls, so the states on the way are seen too.
  std::vector<lease_state> seen{created.state};
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (seen.back() != lease_state::ready && !sandlot::protocol::is_final(seen.back()) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    auto state = c.get(created.id).state;
    if (state != seen.back()) seen.push_back(state);
  }
  std::string path;
  for (auto s : seen) path += std::string(sandlot::protocol::to_string(s)) + " ";
  INFO("states seen: " << path);
  REQUIRE(seen.back() == lease_state::ready);
  CHECK(seen.front() == lease_state::queued);
  for (std::size_t i = 1; i < seen.size(); ++i) CHECK(rank(seen[i - 1]) < rank(seen[i]));

  c.release(created.id);
  CHECK(c.get(created.id).state == lease_state::released);
}

TEST_CASE("DELETE answers once the sandbox is gone and the lease is released", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();
  REQUIRE(sb.exec({"true"}).exit_code == 0);

  auto res = c.request("DELETE", "/v1/leases/" + id);
  REQUIRE(res.status == 200);
  auto body = nlohmann::json::parse(res.body);
  CHECK(body["id"] == id);
  CHECK(body["state"] == "released");
  CHECK_FALSE(body.contains("sandbox"));

  // By the time DELETE answered, nothing is left to run a command in.
  CHECK(c.get(id).state == lease_state::released);
  sandlot::protocol::exec_request exec;
  exec.argv = {"true"};
  auto e = sandlot::e2e::error_from([&] { c.exec(id, exec); });
  REQUIRE(e);
  CHECK(e->status() == 410);
  CHECK(e->code() == "lease_gone");
  CHECK_FALSE(sandlot::e2e::state_in_status(c, id).has_value());
}

TEST_CASE("a second DELETE of a released lease answers 200 and still says released", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();
  sb.release();

  auto again = c.request("DELETE", "/v1/leases/" + id);
  CHECK(again.status == 200);
  CHECK(nlohmann::json::parse(again.body)["state"] == "released");
}

TEST_CASE("a ready lease shows its sandbox and a released one no longer does", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();

  auto ready = c.get(id);
  REQUIRE(ready.sandbox.has_value());
  CHECK_FALSE(ready.sandbox->id.empty());
  CHECK_FALSE(ready.sandbox->name.empty());
  CHECK_FALSE(ready.sandbox->hostname.empty());
  CHECK(ready.sandbox->image == sandlot::testing::default_image());
  CHECK(ready.sandbox->network == "none");
  CHECK(ready.sandbox->id == sb.sandbox().id);
  CHECK(ready.expires_in_s.has_value());

  sb.release();
  auto released = c.get(id);
  CHECK(released.state == lease_state::released);
  CHECK_FALSE(released.sandbox.has_value());
  CHECK_FALSE(released.expires_in_s.has_value());
  CHECK_FALSE(released.error.has_value());
}

TEST_CASE("a lease reports back the run test image slots and ttl it was asked for", "[lifecycle]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.ttl_s = 45;
  auto sb = lease_sandbox(req);
  auto view = sandlot::testing::default_client().get(sb.id());
  CHECK(view.run == req.run);
  CHECK(view.test == req.test);
  CHECK(view.image == req.image);
  CHECK(view.slots == 1);
  CHECK(view.ttl_s == 45);
  REQUIRE(view.expires_in_s.has_value());
  CHECK(*view.expires_in_s <= 45.0);
  CHECK(*view.expires_in_s > 30.0);
}

TEST_CASE("a lease name reads as its run and test followed by a counter", "[lifecycle]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.run = "Names Run";  // a run of known spelling, so the expected name can be written down
  auto sb = lease_sandbox(req);
  const std::string& name = sb.name();
  INFO("name: " << name);
  // Lower case, one dash for each run of other characters, the test name cut to a readable length.
  CHECK_THAT(name, StartsWith("names-run-a-lease-name-reads-as-its-run"));
  CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos);
  CHECK(trailing_counter(name).has_value());
  CHECK(name == sandlot::testing::default_client().get(sb.id()).name);
}

TEST_CASE("two leases of one test get different names", "[lifecycle]") {
  std::string first;
  {
    auto sb = lease_sandbox();
    first = sb.name();
  }
  auto sb = lease_sandbox();
  const std::string& second = sb.name();
  INFO("first: " << first << ", second: " << second);
  CHECK(first != second);
  // Same run and test, so only the counter tells them apart.
  auto a = trailing_counter(first);
  auto b = trailing_counter(second);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a != *b);
  CHECK(first.substr(0, first.rfind('-')) == second.substr(0, second.rfind('-')));
}

TEST_CASE("releasing a lease before it is ready ends it without a sandbox", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto created = c.create(sandlot::e2e::request_for_this_test());
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  REQUIRE(created.state != lease_state::ready);

  c.release(created.id);  // while it is still queued, pulling or starting
  auto view = c.get(created.id);
  CHECK(view.state == lease_state::released);
  CHECK_FALSE(view.sandbox.has_value());
  CHECK_FALSE(sandlot::e2e::state_in_status(c, created.id).has_value());
  auto e = sandlot::e2e::error_from([&] { c.renew(created.id); });
  REQUIRE(e);
  CHECK(e->code() == "lease_gone");
}

TEST_CASE("status lists a live lease and forgets it once released", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string id = sb.id();
  CHECK(sandlot::e2e::state_in_status(c, id) == lease_state::ready);
  sb.release();
  CHECK_FALSE(sandlot::e2e::state_in_status(c, id).has_value());
  // The lease itself still answers with how it ended.
  CHECK(c.get(id).state == lease_state::released);
}

TEST_CASE("repeating a request_id returns the same lease and not a second one", "[lifecycle]") {
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
  auto ready = sandlot::e2e::wait_for_lease(c, first_view.id, sandlot::e2e::is_ready, 60s);
  CHECK(ready.state == lease_state::ready);
}

TEST_CASE("the same request_id in another run makes a lease of its own", "[lifecycle]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.request_id = sandlot::e2e::unique_request_id();
  auto mine = c.create(req);
  sandlot::e2e::release_on_exit cleanup_mine(c, mine.id);

  // request_id is scoped to its run: another run's retry must not be handed this lease.
  req.run += "-other";
  auto theirs = c.create(req);
  sandlot::e2e::release_on_exit cleanup_theirs(c, theirs.id);
  CHECK(theirs.id != mine.id);
  CHECK(theirs.run == req.run);
}
