#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "listener.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::as_tuple;
using protocol::errc;

void apply_limits(request_parser& parser, const session_limits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.header_limit));
  parser.body_limit(limits.body_limit);
}

http_response read_error_response(const beast::error_code& ec, const session_limits& limits) {
  if (ec == http::error::body_limit || ec == http::error::header_limit) {
    return error_response(errc::payload_too_large,
                          fmt::format("request too large: headers must fit in {} KiB and bodies in {} KiB",
                                      limits.header_limit / 1024, limits.body_limit / 1024),
                          11, false);
  }
  return error_response(errc::bad_request, "malformed HTTP request: " + ec.message(), 11, false);
}

http_response overloaded_response(const session_limits& limits) {
  auto res = error_response(errc::overloaded,
                            fmt::format("orchestratord is serving its most connections at once ({}, "
                                        "--max-connections); retry in a moment",
                                        limits.max_connections),
                            11, false);
  res.set(http::field::retry_after, "1");
  return res;
}

asio::awaitable<void> peer_closed(asio::ip::tcp::socket& socket) {
  for (;;) {
    co_await socket.async_wait(asio::ip::tcp::socket::wait_read, asio::use_awaitable);
    char byte = 0;
    const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) {
      // An orderly close, or only a half-close: an HTTP/1.0 client such as busybox nc may end its
      // side after the request and still read the answer. A grace period lets a request that is
      // answered at once (a health check) win the race; a long-poll or exec is abandoned after it.
      asio::steady_timer grace(socket.get_executor(), peer_close_grace);
      co_await grace.async_wait(asio::use_awaitable);
      co_return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      co_return;  // reset or another error: nobody is there to answer
    }
    // A pipelined request: the client is alive. Leave the bytes to the next read; watch no more.
    asio::steady_timer forever(socket.get_executor(), asio::steady_timer::time_point::max());
    co_await forever.async_wait(asio::use_awaitable);
  }
}

namespace {

/// Requests that only wait or run a command: abandoning them when the client leaves changes
/// nothing but what the client would have been told. (A release or a create must run to its end.)
bool abandon_with_client(const http_request& req) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  return req.method() == http::verb::get ||
         (req.method() == http::verb::post && path.size() > 5 && path.substr(path.size() - 5) == "/exec");
}

}  // namespace

asio::awaitable<void> http_session(asio::ip::tcp::socket socket, router& r, session_limits limits) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    // A fresh parser per request, so limits apply to each one.
    request_parser parser;
    apply_limits(parser, limits);
    stream.expires_after(limits.read_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, as_tuple(asio::use_awaitable));
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      break;
    }
    if (ec) {
      // Malformed or oversized: answer once, then close (the stream is no longer in sync).
      auto res = read_error_response(ec, limits);
      stream.expires_after(std::chrono::seconds(5));
      co_await http::async_write(stream, res, as_tuple(asio::use_awaitable));
      break;
    }
    // The handler may long-poll; the read timeout applies to reading, not to our answer.
    stream.expires_never();
    auto req = parser.release();
    if (const auto* takeover = r.stream_for(req)) {
      // The streaming seam: the route owns the connection from here and closes it by returning.
      co_await (*takeover)(stream, req);
      break;
    }
    http_response res;
    if (abandon_with_client(req)) {
      using namespace asio::experimental::awaitable_operators;
      auto raced = co_await (r.handle(req) || peer_closed(stream.socket()));
      if (raced.index() == 1) {
        spdlog::info("{} {}: the client closed the connection; stopped waiting for it",
                     std::string_view(req.method_string()), std::string_view(req.target()).substr(0, 200));
        break;
      }
      res = std::move(std::get<0>(raced));
    } else {
      res = co_await r.handle(req);
    }
    spdlog::debug("{} {} -> {}", std::string_view(req.method_string()), std::string_view(req.target()),
                  res.result_int());
    stream.expires_after(std::chrono::seconds(30));
    auto [wec, wn] = co_await http::async_write(stream, res, as_tuple(asio::use_awaitable));
    if (wec || !res.keep_alive()) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace sandlot::orchestrator
