#include <boost/asio/as_tuple.hpp>
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
    auto res = co_await r.handle(req);
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
