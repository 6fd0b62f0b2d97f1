// The API's routes as a table: method, path pattern and handler. A pattern's "{lease}" and
// "{run}" segments are checked as such ids; "{fixture}" is any segment. Each resource registers
// its routes from its own file (routes_*.cpp); router.cpp only looks them up.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>

#include "http_types.hpp"

namespace sandlot::orchestrator {

class lease_service;

struct route_call {
  const http_request& req;
  std::vector<std::string> params;  // the "{...}" segments, in order
  std::string_view query;           // after '?', undecoded
};

using route_handler = std::function<boost::asio::awaitable<http_response>(const route_call& call)>;

class route_table {
 public:
  void add(boost::beast::http::verb method, std::string pattern, route_handler handler);
  /// The handler for `req`, with its parameters. 404 for a path no route has (or an id that cannot
  /// be one), 405 naming the methods the path takes.
  std::pair<const route_handler*, route_call> match(const http_request& req) const;
  /// Every route as "METHOD /pattern", in registration order (docs and checks).
  std::vector<std::string> list() const;

 private:
  struct route {
    boost::beast::http::verb method;
    std::string pattern;
    std::vector<std::string> segments;
    route_handler handler;
  };
  /// Compares segments; fills `params`. Ids are checked only once the shape matches.
  static bool shape_matches(const route& r, const std::vector<std::string_view>& segments,
                            std::vector<std::string>& params);
  std::vector<route> routes_;
};

/// Where a route renders something big off the daemon's thread (router::off_loop).
using render_fn = std::function<boost::asio::awaitable<std::string>(std::function<std::string()>)>;

void add_status_routes(route_table& t, lease_service& s);
void add_lease_routes(route_table& t, lease_service& s);
void add_fixture_routes(route_table& t, lease_service& s);
void add_run_routes(route_table& t, lease_service& s, render_fn off_loop);
void add_control_routes(route_table& t, lease_service& s);
/// GET / and GET /ui/: the dashboard page (routes_ui.cpp).
void add_ui_routes(route_table& t);

}  // namespace sandlot::orchestrator
