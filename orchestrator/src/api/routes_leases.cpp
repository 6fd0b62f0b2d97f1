// /v1/leases: create, wait for, renew, command, transfer files to, report on and release a lease.
#include <nlohmann/json.hpp>

#include "http_util.hpp"
#include "lease_service.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http = boost::beast::http::verb;
using json = nlohmann::json;
using awaitable_response = asio::awaitable<http_response>;

namespace {

void add_files_routes(route_table& t, lease_service& s) {
  t.add(http::get, "/v1/leases/{lease}/files", [&s](const route_call& c) -> awaitable_response {
    const std::string path = url_decode(query_string(c.query, "path"), "path");
    auto data = co_await s.read_file(c.params[0], path);
    co_return make_response(200, std::move(data), "application/octet-stream", c.req.version(), c.req.keep_alive());
  });
  t.add(http::put, "/v1/leases/{lease}/files", [&s](const route_call& c) -> awaitable_response {
    const std::string path = url_decode(query_string(c.query, "path"), "path");
    require_content_type(c.req, "application/octet-stream");
    co_await s.write_file(c.params[0], path, c.req.body(), query_mode(c.query));
    co_return json_response(200, json{{"path", path}, {"bytes", c.req.body().size()}}, c.req);
  });
}

}  // namespace

void add_lease_routes(route_table& t, lease_service& s) {
  t.add(http::post, "/v1/leases", [&s](const route_call& c) -> awaitable_response {
    auto [view, created] = s.create(json_body<protocol::lease_request>(c.req));
    co_return json_response(created ? 201 : 200, view, c.req);
  });
  t.add(http::get, "/v1/leases/{lease}", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, co_await s.get(c.params[0], query_int(c.query, "wait_s", 0)), c.req);
  });
  t.add(http::delete_, "/v1/leases/{lease}", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, co_await s.release(c.params[0]), c.req);
  });
  t.add(http::post, "/v1/leases/{lease}/renew", [&s](const route_call& c) -> awaitable_response {
    co_return json_response(200, s.renew(c.params[0]), c.req);
  });
  t.add(http::post, "/v1/leases/{lease}/exec", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::exec_request>(c.req);
    co_return json_response(200, co_await s.exec(c.params[0], std::move(body)), c.req);
  });
  add_files_routes(t, s);
  t.add(http::post, "/v1/leases/{lease}/outcome", [&s](const route_call& c) -> awaitable_response {
    auto body = json_body<protocol::outcome_request>(c.req);
    s.set_outcome(c.params[0], body.outcome);
    co_return json_response(200, json{{"id", c.params[0]}, {"outcome", body.outcome}}, c.req);
  });
}

}  // namespace sandlot::orchestrator
