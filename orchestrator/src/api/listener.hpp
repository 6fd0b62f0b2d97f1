// Accepts API connections and runs one coroutine per connection (http_session.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/parser.hpp>

#include "router.hpp"

namespace sandlot::orchestrator {

// What one API request may weigh. The fuzz target orchestrator/fuzz/fuzz_http.cpp parses with the
// same values, so what it finds is what the daemon would see.
inline constexpr std::size_t default_header_limit = 16 * 1024;
inline constexpr std::uint64_t default_body_limit = 1024 * 1024;

struct session_limits {
  std::size_t header_limit = default_header_limit;
  std::uint64_t body_limit = default_body_limit;
  std::chrono::seconds read_timeout{30};  // per request, idle keep-alive included
  int max_connections = 512;              // served at once; beyond it, triage (below)
  int max_triage = 16;                    // over-limit connections read for /healthz at once
  std::chrono::seconds triage_timeout{2};  // an over-limit connection's one request must come this fast
};

/// Connections being served, shared by the listener and its sessions (one thread).
struct connection_counts {
  int active = 0;  // full sessions
  int triage = 0;  // over the limit: one request, /healthz or 503
};

class listener {
 public:
  /// Binds and listens; throws std::runtime_error naming the address on failure.
  listener(boost::asio::any_io_executor ex, const boost::asio::ip::tcp::endpoint& ep, router& r,
           session_limits limits = {});
  boost::asio::awaitable<void> run();
  /// Stops accepting; sessions in flight finish their current request.
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  /// Connections open now (served or in triage).
  int open_connections() const { return counts_.active + counts_.triage; }
  /// When the last connection was accepted or closed.
  std::chrono::steady_clock::time_point last_activity() const { return last_activity_; }

 private:
  boost::asio::awaitable<void> triage(boost::asio::ip::tcp::socket socket);
  /// Logs an accept failure at most once a second, with how many were not logged.
  void log_accept_failure(const boost::system::error_code& ec);

  boost::asio::ip::tcp::acceptor acceptor_;
  router& router_;
  session_limits limits_;
  connection_counts counts_;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_accept_log_{};
  std::uint64_t unlogged_accept_failures_ = 0;
};

using request_parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

/// Applies the header and body limits to a fresh parser (one per request).
void apply_limits(request_parser& parser, const session_limits& limits);
/// The answer to a request that failed to parse: 413 over a limit, 400 otherwise. The session
/// closes the connection after it, because the stream is no longer in sync.
http_response read_error_response(const boost::beast::error_code& ec, const session_limits& limits);

/// 503 overloaded: the daemon serves --max-connections at once.
http_response overloaded_response(const session_limits& limits);

/// Serves one connection: a fresh parser per request with limits, keep-alive until the peer ends.
/// A long-poll or an exec whose client closes the connection is abandoned at once (the exec's
/// command is killed), so a dead client does not keep its lease alive.
boost::asio::awaitable<void> http_session(boost::asio::ip::tcp::socket socket, router& r, session_limits limits);

/// How long after a peer's FIN an answer may still win: the FIN may be a half-close.
inline constexpr std::chrono::milliseconds peer_close_grace{250};

/// Completes when the peer of `socket` has reset the connection, or `peer_close_grace` after it
/// closed its side. Data sent meanwhile (a pipelined request) is left unread, and the watch then
/// lasts until cancelled.
boost::asio::awaitable<void> peer_closed(boost::asio::ip::tcp::socket& socket);

}  // namespace sandlot::orchestrator
