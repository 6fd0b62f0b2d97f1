// GET /healthz, /readyz, /metrics and /v1/status: the daemon's own state.
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "lease_service.hpp"
#include "metrics_text.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http = boost::beast::http::verb;
using json = nlohmann::json;

void add_status_routes(route_table& t, lease_service& s) {
  t.add(http::get, "/healthz", [](const route_call& c) -> asio::awaitable<http_response> {
    co_return json_response(200, json{{"status", "ok"}}, c.req);
  });
  t.add(http::get, "/readyz", [&s](const route_call& c) -> asio::awaitable<http_response> {
    if (s.draining()) {
      co_return json_response(
          503, json{{"status", "draining"}, {"message", "the operator drains this daemon (POST /v1/drain); POST /v1/resume admits again"}},
          c.req);
    }
    if (s.ready()) co_return json_response(200, json{{"status", "ready"}}, c.req);
    co_return json_response(
        503, json{{"status", "prepulling"}, {"message", "prepulls are still running; see GET /v1/status"}}, c.req);
  });
  t.add(http::get, "/metrics", [&s](const route_call& c) -> asio::awaitable<http_response> {
    co_return make_response(200, render_metrics(s.metrics()), "text/plain; version=0.0.4", c.req.version(),
                            c.req.keep_alive());
  });
  t.add(http::get, "/v1/status", [&s](const route_call& c) -> asio::awaitable<http_response> {
    co_return json_response(200, s.status(), c.req);
  });
}

}  // namespace sandlot::orchestrator
