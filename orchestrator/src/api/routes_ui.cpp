// GET / and GET /ui/: the live dashboard (docs/api.md). A static page that holds no data: it reads
// GET /v1/events with the token from its URL's fragment, so it is served without one (access.cpp).
#include <boost/beast/http/field.hpp>

#include "dashboard_asset.hpp"
#include "http_util.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

asio::awaitable<http_response> dashboard(const route_call& c) {
  auto res = make_response(200, std::string(detail::dashboard_page()), "text/html; charset=utf-8", c.req.version(),
                           c.req.keep_alive());
  // A new build may bring a new page (and new hashes in its policy): never serve a stale copy.
  res.set(http::field::cache_control, "no-cache");
  res.set("Content-Security-Policy", detail::dashboard_csp());
  res.set("X-Content-Type-Options", "nosniff");
  // The fragment carries the token: no Referer may leak the page's URL, and no frame may host it.
  res.set("Referrer-Policy", "no-referrer");
  res.set(http::field::x_frame_options, "DENY");
  co_return res;
}

}  // namespace

void add_ui_routes(route_table& t) {
  t.add(http::verb::get, "/", dashboard);
  t.add(http::verb::get, "/ui/", dashboard);
}

}  // namespace sandlot::orchestrator
