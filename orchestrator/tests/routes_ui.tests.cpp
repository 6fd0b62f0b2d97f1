// GET / and GET /ui/: the dashboard page, served without the token but not past the Host and Origin
// rules, with a policy that lets only its own inline script and style run.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "lease_service.hpp"
#include "router.hpp"
#include "support/fake_provider.hpp"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;

class ui_fixture {
 public:
  explicit ui_fixture(std::string token)
      : service_(ioc_.get_executor(), provider_, service_options{}), router_(service_, std::move(token)) {}

  http_response call(http::verb method, std::string target,
                     std::vector<std::pair<http::field, std::string>> headers = {}) {
    http_request req{method, target, 11};
    req.set(http::field::host, "127.0.0.1:7345");
    for (auto& [name, value] : headers) req.set(name, value);
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

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

}  // namespace

TEST_CASE("the dashboard is served at / and /ui/ without the token", "[router][ui]") {
  ui_fixture f("s3cret-token");
  for (const char* target : {"/", "/ui/", "/?x=1"}) {
    INFO(target);
    auto res = f.call(http::verb::get, target);
    CHECK(res.result_int() == 200);
    CHECK(res[http::field::content_type] == "text/html; charset=utf-8");
    CHECK(res[http::field::cache_control] == "no-cache");
    CHECK(res["X-Content-Type-Options"] == "nosniff");
    CHECK(res.body().rfind("<!doctype html>", 0) == 0);
    CHECK(contains(res.body(), "/v1/events"));
    // The page holds no data: nothing of the daemon, and never the token.
    CHECK_FALSE(contains(res.body(), "s3cret"));
  }
  // Its data is not: the token is still needed for everything the page reads.
  CHECK(f.call(http::verb::get, "/v1/status").result_int() == 401);
}

TEST_CASE("the dashboard's policy allows only itself, its script and style by hash", "[router][ui]") {
  ui_fixture f("");
  const auto res = f.call(http::verb::get, "/");
  const std::string csp(res["Content-Security-Policy"]);
  INFO(csp);
  CHECK(contains(csp, "default-src 'none'"));
  CHECK(contains(csp, "script-src 'sha256-"));
  CHECK(contains(csp, "style-src 'sha256-"));
  CHECK(contains(csp, "connect-src 'self'"));
  CHECK(contains(csp, "frame-ancestors 'none'"));
  CHECK_FALSE(contains(csp, "unsafe"));
  // A SHA-256 in base64 is 44 characters.
  const auto at = csp.find("script-src 'sha256-") + std::string_view("script-src 'sha256-").size();
  CHECK(csp.find('\'', at) - at == 44);
  CHECK(f.call(http::verb::get, "/ui/")["Content-Security-Policy"] == csp);
}

TEST_CASE("other methods on the dashboard get 405 with the token and 401 without", "[router][ui]") {
  ui_fixture f("s3cret-token");
  for (auto method : {http::verb::head, http::verb::post, http::verb::delete_}) {
    INFO(http::to_string(method));
    auto without = f.call(method, "/");
    CHECK(without.result_int() == 401);
    CHECK(code_of(without) == "unauthorized");
    auto with = f.call(method, "/ui/", {{http::field::authorization, "Bearer s3cret-token"}});
    CHECK(with.result_int() == 405);
    CHECK(code_of(with) == "method_not_allowed");
    CHECK(contains(with.body(), "use GET"));
  }
}

TEST_CASE("the dashboard keeps the Host and Origin rules", "[router][ui]") {
  SECTION("without a token, a foreign Host is refused") {
    ui_fixture f("");
    auto res = f.call(http::verb::get, "/", {{http::field::host, "evil.example"}});
    CHECK(res.result_int() == 403);
    CHECK(code_of(res) == "forbidden");
  }
  SECTION("with or without a token, a foreign Origin is refused and the daemon's own is served") {
    for (const char* token : {"", "s3cret-token"}) {
      INFO("token '" << token << "'");
      ui_fixture f(token);
      auto foreign = f.call(http::verb::get, "/", {{http::field::origin, "http://evil.example"}});
      CHECK(foreign.result_int() == 403);
      CHECK(code_of(foreign) == "forbidden");
      CHECK(f.call(http::verb::get, "/ui/", {{http::field::origin, "http://127.0.0.1:7345"}}).result_int() == 200);
    }
  }
}
