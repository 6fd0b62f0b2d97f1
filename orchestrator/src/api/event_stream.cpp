#include "event_stream.hpp"

#include <array>
#include <memory>
#include <string>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "async_event.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace beast = boost::beast;
using clock = std::chrono::steady_clock;

namespace {

/// Returns when the client closes its side (or the connection breaks). A stream's client sends
/// nothing after its request, so any end of reading means it is gone.
asio::awaitable<void> until_peer_closed(asio::ip::tcp::socket& socket) {
  std::array<char, 256> scratch{};
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(scratch), asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

/// One open stream: counts itself in, subscribes to the hub, and undoes both when it ends.
class stream_session {
 public:
  stream_session(lease_service& service, std::size_t& open, const event_stream_limits& limits)
      : service_(service), open_(open), limits_(limits) {
    ++open_;
    handle_ = service_.events().subscribe([this](const core_event&) {
      dirty_ = true;
      wake_.notify_all();
    });
  }
  ~stream_session() {
    service_.events().unsubscribe(handle_);
    --open_;
  }
  stream_session(const stream_session&) = delete;
  stream_session& operator=(const stream_session&) = delete;

  /// Writes the first status, then one per change (folded to one per interval) and keep-alives.
  asio::awaitable<void> pump(beast::tcp_stream& stream) {
    co_await write(stream, head());
    co_await send_status(stream);
    for (;;) {
      if (dirty_) {
        const auto due = last_status_ + limits_.min_interval;
        if (clock::now() >= due) {
          co_await send_status(stream);
        } else {
          co_await wake_.wait_until(due);
        }
        continue;
      }
      const bool woke = co_await wake_.wait_until(last_write_ + limits_.keep_alive);
      if (!woke && !dirty_) co_await write(stream, ": keep-alive\n\n");
    }
  }

 private:
  static std::string head() {
    return "HTTP/1.1 200 OK\r\n"
           "Content-Type: text/event-stream; charset=utf-8\r\n"
           "Cache-Control: no-cache, no-store\r\n"
           "X-Content-Type-Options: nosniff\r\n"
           "X-Accel-Buffering: no\r\n"
           "Connection: close\r\n\r\n";
  }

  asio::awaitable<void> send_status(beast::tcp_stream& stream) {
    // Rendered when sent, never queued: a slow reader holds at most this one event.
    dirty_ = false;
    const auto status = service_.status();
    const std::string data = nlohmann::json(status).dump();
    last_status_ = clock::now();
    co_await write(stream, fmt::format("event: status\nid: {}\ndata: {}\n\n", status.seq, data));
  }

  asio::awaitable<void> write(beast::tcp_stream& stream, std::string text) {
    stream.expires_after(limits_.write_timeout);
    co_await asio::async_write(stream, asio::buffer(text), asio::use_awaitable);
    last_write_ = clock::now();
  }

  lease_service& service_;
  std::size_t& open_;
  const event_stream_limits& limits_;
  int handle_ = 0;
  bool dirty_ = false;
  async_event wake_;
  clock::time_point last_status_{};
  clock::time_point last_write_ = clock::now();
};

asio::awaitable<void> refuse_overloaded(beast::tcp_stream& stream, const http_request& req, std::size_t max) {
  auto res = error_response(protocol::errc::overloaded,
                            fmt::format("{} event streams are open, the most this daemon serves; close one (a "
                                        "dashboard tab, a `sandlot watch`) or retry shortly",
                                        max),
                            req.version(), false);
  stream.expires_after(std::chrono::seconds(5));
  co_await beast::http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
}

}  // namespace

stream_handler make_event_stream(lease_service& service, event_stream_limits limits) {
  auto open = std::make_shared<std::size_t>(0);
  return [&service, limits, open](beast::tcp_stream& stream, const http_request& req) -> asio::awaitable<void> {
    if (*open >= limits.max_streams || service.shutting_down()) {
      co_await refuse_overloaded(stream, req, limits.max_streams);
      co_return;
    }
    stream_session session(service, *open, limits);
    service.set_event_streams(*open);
    try {
      using namespace asio::experimental::awaitable_operators;
      co_await (session.pump(stream) || until_peer_closed(stream.socket()) || service.stopping().wait());
    } catch (const boost::system::system_error& e) {
      // A write timed out or the connection broke: the client is gone or too slow; drop it.
      spdlog::debug("event stream ended: {}", e.code().message());
    }
    service.set_event_streams(*open - 1);
  };
}

}  // namespace sandlot::orchestrator
