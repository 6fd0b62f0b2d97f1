// The API's error contract as a test author meets it: every failure has a fitting status, a stable
// code and a message that names what was wrong and says what to do. Covers leases that are gone,
// images that cannot be pulled, bad JSON, fields of the wrong type or out of range, bad exec
// requests, unknown routes and leases, wrong methods, and no daemon at all.
#include <catch2/catch.hpp>

#include <tuple>
#include <vector>

#include "support.hpp"

using Catch::Matchers::Contains;
using namespace std::chrono_literals;
using sandlot::e2e::error_from;
using sandlot::e2e::error_of;
using sandlot::testing::lease_sandbox;

namespace {

// POSTs a lease request with `field` set to `value` on top of a valid request for this test.
sandlot::client::client::response post_lease_with(const std::string& field,
                                                  const nlohmann::json& value) {
  nlohmann::json req = sandlot::e2e::request_for_this_test();
  req[field] = value;
  return sandlot::testing::default_client().request("POST", "/v1/leases", req.dump());
}

// A rejected request: 400 invalid_field, and the message names the field.
void check_names_field(const sandlot::client::client::response& res, const std::string& field) {
  INFO("answer: " << res.status << " " << res.body);
  CHECK(res.status == 400);
  auto error = error_of(res);
  CHECK(error.code == "invalid_field");
  CHECK_THAT(error.message, Contains("'" + field + "'"));
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

TEST_CASE("a lease request field of the wrong type gets 400 naming that field", "[errors]") {
  const std::vector<std::pair<std::string, nlohmann::json>> wrong = {
      {"ttl_s", 1.5},          {"ttl_s", "30"},     {"cpus", "1"},
      {"memory_mb", true},     {"read_only", "yes"}, {"env", nlohmann::json::array({"A=1"})},
      {"network", 1},          {"test", 42},         {"image", nlohmann::json::object()},
  };
  for (const auto& [field, value] : wrong) {
    INFO(field << " = " << value.dump());
    check_names_field(post_lease_with(field, value), field);
  }
}

TEST_CASE("an environment value that is not a string gets 400 naming its key", "[errors]") {
  check_names_field(post_lease_with("env", {{"GOOD", "fine"}, {"BAD", 3}}), "env.BAD");
}

TEST_CASE("a network other than none or host gets 400 naming the two choices", "[errors]") {
  auto res = post_lease_with("network", "bridge");
  check_names_field(res, "network");
  CHECK_THAT(error_of(res).message, Contains("none") && Contains("host"));
}

TEST_CASE("ttl_s out of range gets 400 naming the field and its range", "[errors]") {
  for (int ttl : {0, -5, 86401}) {
    INFO("ttl_s = " << ttl);
    auto res = post_lease_with("ttl_s", ttl);
    check_names_field(res, "ttl_s");
    CHECK_THAT(error_of(res).message, Contains("between 1 and 86400"));
  }
}

TEST_CASE("limits below their minimum get 400 naming the limit", "[errors]") {
  check_names_field(post_lease_with("memory_mb", 5), "memory_mb");
  check_names_field(post_lease_with("pids_limit", 7), "pids_limit");
  check_names_field(post_lease_with("cpus", 0), "cpus");
}

TEST_CASE("a lease request without an image gets 400 naming image", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  nlohmann::json req = sandlot::e2e::request_for_this_test();
  req.erase("image");
  check_names_field(c.request("POST", "/v1/leases", req.dump()), "image");
  check_names_field(post_lease_with("image", ""), "image");
}

TEST_CASE("slots beyond the daemon's budget get 400 saying how many there are", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  const int total = c.status().slots_total;
  auto res = post_lease_with("slots", total + 1);
  check_names_field(res, "slots");
  CHECK_THAT(error_of(res).message, Contains("only " + std::to_string(total) + " slot"));
  // The client library raises it with the daemon's status and code.
  auto e = error_from([&] {
    auto req = sandlot::e2e::request_for_this_test();
    req.slots = total + 1;
    c.create(req);
  });
  REQUIRE(e);
  CHECK(e->status() == 400);
  CHECK(e->code() == "invalid_field");
}

TEST_CASE("an exec with an empty or missing argv gets 400 naming argv", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string target = "/v1/leases/" + sb.id() + "/exec";
  for (const char* body :
       {R"({"argv": []})", R"({})", R"({"argv": "echo hi"})", R"({"argv": null})"}) {
    INFO("body: " << body);
    check_names_field(c.request("POST", target, body), "argv");
  }
  check_names_field(c.request("POST", target, R"({"argv": ["echo", 7]})"), "argv[1]");
  // The lease is none the worse for it.
  CHECK(sb.exec({"true"}).exit_code == 0);
}

TEST_CASE("exec fields of the wrong type or range get 400 naming the field", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string target = "/v1/leases/" + sb.id() + "/exec";
  const std::vector<std::tuple<std::string, std::string>> wrong = {
      {R"({"argv": ["true"], "timeout_s": 0})", "timeout_s"},
      {R"({"argv": ["true"], "timeout_s": "5"})", "timeout_s"},
      {R"({"argv": ["true"], "stdin": 12})", "stdin"},
      {R"({"argv": ["true"], "env": ["A=1"]})", "env"},
      {R"({"argv": ["true"], "workdir": false})", "workdir"},
  };
  for (const auto& [body, field] : wrong) {
    INFO("body: " << body);
    check_names_field(c.request("POST", target, body), field);
  }
}

TEST_CASE("a wrong method gets 405 naming the methods that are allowed", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  const std::vector<std::tuple<std::string, std::string, std::string>> wrong = {
      {"PUT", "/v1/leases", "POST"},
      {"DELETE", "/v1/leases", "POST or GET"},
      {"POST", "/v1/slots", "PUT"},
      {"DELETE", "/v1/status", "GET"},
      {"POST", "/healthz", "GET"},
      {"PATCH", "/v1/leases/0123456789ab", "GET or DELETE"},
      {"GET", "/v1/leases/0123456789ab/renew", "POST"},
      {"GET", "/v1/leases/0123456789ab/exec", "POST"},
  };
  for (const auto& [method, target, allowed] : wrong) {
    INFO(method << " " << target);
    auto res = c.request(method, target, method == "GET" ? "" : "{}");
    CHECK(res.status == 405);
    auto error = error_of(res);
    CHECK(error.code == "method_not_allowed");
    CHECK_THAT(error.message, Contains(method) && Contains("use " + allowed));
  }
}

TEST_CASE("an unknown route gets 404 pointing at the API docs", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  for (const char* target : {"/v2/leases", "/v1/nothing-here", "/index.html"}) {
    INFO(target);
    auto res = c.request("GET", target);
    CHECK(res.status == 404);
    auto error = error_of(res);
    CHECK(error.code == "not_found");
    CHECK_THAT(error.message, Contains("docs/api.md"));
  }
}

TEST_CASE("renew exec and DELETE of an unknown lease get 404 not_found", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  const std::string unknown = "000000000000";
  sandlot::protocol::exec_request exec;
  exec.argv = {"true"};
  for (auto& e : {error_from([&] { c.renew(unknown); }), error_from([&] { c.exec(unknown, exec); }),
                  error_from([&] { c.release(unknown); })}) {
    REQUIRE(e);
    INFO(e->what());
    CHECK(e->status() == 404);
    CHECK(e->code() == "not_found");
    CHECK_THAT(e->message(), Contains(unknown));
  }
  // A name that cannot be a lease id says what ids look like.
  auto odd = c.request("GET", "/v1/leases/NOT_AN_ID");
  CHECK(odd.status == 404);
  CHECK_THAT(error_of(odd).message, Contains("lowercase hex"));
}

TEST_CASE("a wait_s that is not a number of seconds gets 400 naming wait_s", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto created = c.create(sandlot::e2e::request_for_this_test());
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  for (const char* wait : {"soon", "-1", "1.5"}) {
    INFO("wait_s=" << wait);
    auto res = c.request("GET", "/v1/leases/" + created.id + "?wait_s=" + wait);
    CHECK(res.status == 400);
    auto error = error_of(res);
    CHECK(error.code == "invalid_field");
    CHECK_THAT(error.message, Contains("'wait_s'"));
  }
}

TEST_CASE("every error answer carries a stable code and a message with its status", "[errors]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  const std::string gone = sb.id();
  sb.release();

  struct call {
    std::string method, target, body;
    int status;
    std::string code;
  };
  const std::vector<call> calls = {
      {"POST", "/v1/leases", "not json", 400, "bad_json"},
      {"POST", "/v1/leases", "[1, 2]", 400, "bad_json"},
      {"POST", "/v1/leases", R"({"image": 5})", 400, "invalid_field"},
      {"GET", "/v1/leases/000000000000", "", 404, "not_found"},
      {"GET", "/nowhere", "", 404, "not_found"},
      {"PUT", "/v1/status", "{}", 405, "method_not_allowed"},
      {"POST", "/v1/leases/" + gone + "/renew", "", 410, "lease_gone"},
      {"POST", "/v1/leases/" + gone + "/exec", R"({"argv": ["true"]})", 410, "lease_gone"},
  };
  for (const auto& k : calls) {
    INFO(k.method << " " << k.target << " -> " << k.status);
    auto res = c.request(k.method, k.target, k.body);
    CHECK(res.status == k.status);
    auto body = nlohmann::json::parse(res.body, nullptr, /*allow_exceptions=*/false);
    REQUIRE(body.is_object());
    // Exactly one key, "error", holding exactly a code and a message.
    CHECK(body.size() == 1);
    REQUIRE(body.contains("error"));
    CHECK(body["error"].size() == 2);
    auto error = error_of(res);
    CHECK(error.code == k.code);
    CHECK(error.message.size() > 10);
    // The code alone tells the status, as docs/api.md's table has it.
    auto code = sandlot::protocol::code_from_string(error.code);
    CHECK(sandlot::protocol::http_status(code) == res.status);
  }
}
