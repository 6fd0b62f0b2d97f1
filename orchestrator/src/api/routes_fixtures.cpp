// Fixtures: acquired through a lease (POST /v1/leases/{id}/fixtures), then /v1/fixtures/{id}.
#include "http_util.hpp"
#include "lease_service.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http = boost::beast::http::verb;
using awaitable_response = asio::awaitable<http_response>;

void add_fixture_routes(route_table& t, lease_service& s) {
  t.add(http::post, "/v1/leases/{lease}/fixtures", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::fixture_request>(c.req);
    co_return json_response(200, co_await s.acquire_fixture(c.params[0], std::move(body)), c.req);
  });
  t.add(http::get, "/v1/fixtures/{fixture}", [&s](const route_call& c) -> awaitable_response {
    const std::string lease = query_string(c.query, "lease");
    co_return json_response(200, co_await s.get_fixture(c.params[0], lease, query_int(c.query, "wait_s", 0)), c.req);
  });
  t.add(http::post, "/v1/fixtures/{fixture}/ready", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::fixture_ready_request>(c.req);
    co_return json_response(200, s.fixture_ready(c.params[0], std::move(body)), c.req);
  });
  t.add(http::post, "/v1/fixtures/{fixture}/fail", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::fixture_fail_request>(c.req);
    co_return json_response(200, co_await s.fixture_failed(c.params[0], std::move(body)), c.req);
  });
  t.add(http::post, "/v1/fixtures/{fixture}/exec", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::exec_request>(c.req);
    const std::string lease = query_string(c.query, "lease");
    co_return json_response(200, co_await s.fixture_exec(c.params[0], lease, std::move(body)), c.req);
  });
}

}  // namespace sandlot::orchestrator
