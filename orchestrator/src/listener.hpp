// Accepts API connections and runs one coroutine per connection (http_session.cpp).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "router.hpp"

namespace sandlot::orchestrator {

struct session_limits {
  std::size_t header_limit = 16 * 1024;
  std::uint64_t body_limit = 1024 * 1024;
  std::chrono::seconds read_timeout{30};  // per request, idle keep-alive included
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

 private:
  boost::asio::ip::tcp::acceptor acceptor_;
  router& router_;
  session_limits limits_;
};

/// Serves one connection: a fresh parser per request with limits, keep-alive until the peer ends.
boost::asio::awaitable<void> http_session(boost::asio::ip::tcp::socket socket, router& r, session_limits limits);

}  // namespace sandlot::orchestrator
