// /v1/runs: what the daemon remembers of each run, its timeline and its HTML report.
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "lease_service.hpp"
#include "route_table.hpp"
#include "run_report.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http = boost::beast::http::verb;
using json = nlohmann::json;
using awaitable_response = asio::awaitable<http_response>;

void add_run_routes(route_table& t, lease_service& s, render_fn off_loop) {
  t.add(http::get, "/v1/runs", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, json(s.runs()), c.req);
  });
  // A run's timeline and report grow with the run: rendered off the daemon's thread.
  t.add(http::get, "/v1/runs/{run}", [&s, off_loop](const route_call& c) -> awaitable_response {
    // Named, not a temporary in the co_await: GCC 12 destroys such temporaries twice.
    std::function<std::string()> render = [timeline = s.run(c.params[0])] {
      return to_json(timeline).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    };
    auto body = co_await off_loop(std::move(render));
    co_return make_response(200, std::move(body), "application/json", c.req.version(), c.req.keep_alive());
  });
  t.add(http::delete_, "/v1/runs/{run}", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, to_json(co_await s.end_run(c.params[0])), c.req);
  });
  t.add(http::get, "/v1/runs/{run}/report.html", [&s, off_loop](const route_call& c) -> awaitable_response {
    std::function<std::string()> render = [timeline = s.run(c.params[0])] { return render_html(timeline); };
    auto html = co_await off_loop(std::move(render));
    co_return make_response(200, std::move(html), "text/html; charset=utf-8", c.req.version(), c.req.keep_alive());
  });
}

}  // namespace sandlot::orchestrator
