// Maps HTTP API v1 requests onto the lease service, and every failure onto the error contract
// `{"error":{"code","message"}}`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <functional>
#include <map>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "http_types.hpp"
#include "lease_service.hpp"
#include "route_table.hpp"

namespace sandlot::orchestrator {

/// Who may talk to the daemon. A web page can make a browser send requests to loopback: a
/// foreign `Host` (DNS rebinding) or any `Origin` marks such a request, and a page cannot send
/// the bearer token.
struct access_policy {
  /// With a token, every request but GET /healthz needs `Authorization: Bearer <token>`, and
  /// any Host may reach the daemon (a CI job reaches a service container by its name).
  std::string token;
  /// Without a token, requests must name a loopback host or one of these (--allow-host).
  std::vector<std::string> allowed_hosts;
  /// Origins (scheme://host[:port]) whose requests are answered besides the daemon's own
  /// (--allow-origin); any other Origin gets 403.
  std::vector<std::string> allowed_origins;
};

/// A route that takes the connection over (server-sent events, a WebSocket): it writes its own
/// response head and body for as long as it likes, and the connection closes when it returns. As
/// Beast's advanced server hands its socket to a WebSocket session, http_session hands its stream
/// to this once the access policy has let the request through.
using stream_handler =
    std::function<boost::asio::awaitable<void>(boost::beast::tcp_stream& stream, const http_request& req)>;

class router {
 public:
  explicit router(lease_service& service, std::string token = {})
      : router(service, access_policy{std::move(token), {}, {}}) {}
  router(lease_service& service, access_policy policy);
  /// Never throws: every failure becomes an error response.
  boost::asio::awaitable<http_response> handle(const http_request& req);

  /// Registers a streaming route for GET `path` (exact, query string ignored).
  void add_stream(std::string path, stream_handler h);
  /// The streaming route that takes `req` over, or null: no such route, or the access policy
  /// refuses the request (handle() then answers it with the reason).
  const stream_handler* stream_for(const http_request& req) const;
  /// Every route as "METHOD /pattern" (docs/api.md; the OpenAPI check of issue 13).
  std::vector<std::string> routes() const;

  /// Runs `render` (a run's report, which grows with the run) on a worker thread, so a big report
  /// does not stall every other request and the reaper on the daemon's one thread.
  boost::asio::awaitable<std::string> off_loop(std::function<std::string()> render);

 private:
  boost::asio::awaitable<http_response> dispatch(const http_request& req);
  bool authorized(const http_request& req) const;
  /// Why the policy refuses `req` before any route sees it (Host, Origin), or empty.
  std::string refusal(const http_request& req) const;
  lease_service& service_;
  access_policy policy_;
  route_table routes_;
  std::map<std::string, stream_handler, std::less<>> streams_;
  boost::asio::thread_pool renderer_{1};
};

/// True when the Host header value ("name", "name:port", "[v6]:port") names a loopback address,
/// "localhost", or one of `allowed` (compared without the port, case-insensitively).
bool host_allowed(std::string_view host_header, const std::vector<std::string>& allowed);

/// The media type of a Content-Type value, lowercased, without parameters ("text/plain").
std::string media_type(std::string_view content_type);

/// An error response with the contract's body.
http_response error_response(protocol::errc code, std::string_view message, unsigned version = 11,
                             bool keep_alive = true);

}  // namespace sandlot::orchestrator
