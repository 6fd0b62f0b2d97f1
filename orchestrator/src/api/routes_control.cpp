// The operator's endpoints: the live leases, why one waits, drain and resume, the budget, and
// ending one lease by force (docs/api.md, "Runtime control"). The token guards them like the rest.
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "lease_service.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http = boost::beast::http::verb;
using json = nlohmann::json;
using awaitable_response = asio::awaitable<http_response>;

void add_control_routes(route_table& t, lease_service& s) {
  t.add(http::get, "/v1/leases", [&s](const route_call& c) -> awaitable_response {
    const std::string run = url_decode(query_string(c.query, "run"), "run");
    if (!run.empty()) check_run_id(run);
    co_return json_response(200, json{{"leases", s.live_leases(run)}}, c.req);
  });
  t.add(http::get, "/v1/leases/{lease}/why", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, s.why(c.params[0]), c.req);
  });
  t.add(http::post, "/v1/leases/{lease}/evict", [&s](const route_call& c) -> awaitable_response {
    // The body is optional: an empty one evicts without a reason.
    protocol::evict_request body;
    if (!c.req.body().empty()) body = json_body<protocol::evict_request>(c.req);
    co_return json_response(200, co_await s.evict(c.params[0], std::move(body.reason)), c.req);
  });
  t.add(http::post, "/v1/drain", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, co_await s.drain(query_int(c.query, "wait_s", 0)), c.req);
  });
  t.add(http::post, "/v1/resume", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, s.resume(), c.req);
  });
  t.add(http::put, "/v1/slots", [&s](const route_call& c) -> awaitable_response {
    const auto body = json_body<protocol::slots_request>(c.req);
    co_return json_response(200, s.set_slots(body.slots), c.req);
  });
}

}  // namespace sandlot::orchestrator
