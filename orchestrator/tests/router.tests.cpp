// The router's bearer-token check, without an engine: /v1/status and /metrics are answered from
// memory, so a lease service on the fake provider is enough.
#include <catch2/catch.hpp>

#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "lease_service.hpp"
#include "support/fake_provider.hpp"
#include "router.hpp"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;

class auth_fixture {
 public:
  explicit auth_fixture(std::string token)
      : service_(ioc_.get_executor(), provider_, service_options{}),
        router_(service_, std::move(token)) {}

  http_response call(std::string target, std::optional<std::string> authorization = std::nullopt) {
    http_request req{http::verb::get, target, 11};
    if (authorization) req.set(http::field::authorization, *authorization);
    std::optional<http_response> res;
    asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> { res = co_await router_.handle(req); }, asio::detached);
    ioc_.restart();
    ioc_.run();
    REQUIRE(res.has_value());
    return std::move(*res);
  }

 private:
  asio::io_context ioc_;
  fake_provider provider_;
  lease_service service_;
  router router_;
};

std::string code_of(const http_response& res) {
  auto j = nlohmann::json::parse(res.body(), nullptr, false);
  return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
}

}  // namespace

TEST_CASE("with a token every route but healthz needs the bearer token", "[router][auth]") {
  auth_fixture f("s3cret-token");
  CHECK(f.call("/healthz").result_int() == 200);
  for (const char* target : {"/v1/status", "/metrics", "/readyz", "/v1/runs", "/v1/leases/abc", "/nowhere"}) {
    INFO(target);
    auto res = f.call(target);
    CHECK(res.result_int() == 401);
    CHECK(code_of(res) == "unauthorized");
    CHECK(res[http::field::www_authenticate] == "Bearer");
    CHECK(res.body().find("s3cret") == std::string::npos);
  }
  CHECK(f.call("/v1/status", "Bearer s3cret-token").result_int() == 200);
  CHECK(f.call("/v1/status", "bearer s3cret-token").result_int() == 200);
}

TEST_CASE("a wrong or malformed token gets 401 and nothing else", "[router][auth]") {
  auth_fixture f("s3cret-token");
  for (const char* bad : {"Bearer s3cret-toke", "Bearer s3cret-token2", "Bearer ", "Basic czNjcmV0LXRva2Vu",
                          "s3cret-token", "Bearer S3CRET-TOKEN"}) {
    INFO(bad);
    auto res = f.call("/v1/status", std::string(bad));
    CHECK(res.result_int() == 401);
    CHECK(code_of(res) == "unauthorized");
  }
}

TEST_CASE("without a token no route asks for one", "[router][auth]") {
  auth_fixture f("");
  CHECK(f.call("/v1/status").result_int() == 200);
  CHECK(f.call("/metrics").result_int() == 200);
}

TEST_CASE("a target that is not UTF-8 still gets a JSON error body", "[router]") {
  auth_fixture f("");
  auto res = f.call("/v2/nothi\xeeg");
  CHECK(res.result_int() == 404);
  CHECK(code_of(res) == "not_found");
}
