#include "listener.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

listener::listener(asio::any_io_executor ex, const tcp::endpoint& ep, router& r, session_limits limits)
    : acceptor_(ex), router_(r), limits_(limits) {
  try {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error(fmt::format("cannot listen on {}:{}: {}; is another orchestratord running "
                                         "there? pick another --listen port",
                                         ep.address().to_string(), ep.port(), e.code().message()));
  }
}

void listener::log_accept_failure(const boost::system::error_code& ec) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_accept_log_ < std::chrono::seconds(1)) {
    ++unlogged_accept_failures_;
    return;
  }
  last_accept_log_ = now;
  spdlog::warn("accept failed: {}{} ({} connections served, {} in triage; the fd limit or --max-connections "
               "may be too low)",
               ec.message(),
               unlogged_accept_failures_ > 0 ? fmt::format(", and {} more times since the last line",
                                                           unlogged_accept_failures_)
                                             : std::string(),
               counts_.active, counts_.triage);
  unlogged_accept_failures_ = 0;
}

asio::awaitable<void> listener::run() {
  asio::steady_timer backoff(acceptor_.get_executor());
  auto pause = std::chrono::milliseconds(10);
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors (EMFILE) the pending connection stays queued and accept fails again at
      // once: without a pause this loop spins and floods the log.
      log_accept_failure(ec);
      backoff.expires_after(pause);
      co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
      if (!acceptor_.is_open()) co_return;
      pause = std::min(pause * 2, std::chrono::milliseconds(1000));
      continue;
    }
    pause = std::chrono::milliseconds(10);
    last_activity_ = std::chrono::steady_clock::now();
    auto ex = socket.get_executor();
    if (counts_.active < limits_.max_connections) {
      ++counts_.active;
      asio::co_spawn(
          ex,
          [this, s = std::move(socket)]() mutable -> asio::awaitable<void> {
            struct done {
              int& n;
              std::chrono::steady_clock::time_point& last;
              ~done() {
                --n;
                last = std::chrono::steady_clock::now();
              }
            } guard{counts_.active, last_activity_};
            co_await http_session(std::move(s), router_, limits_);
          },
          asio::detached);
    } else {
      asio::co_spawn(ex, triage(std::move(socket)), asio::detached);
    }
  }
}

asio::awaitable<void> listener::triage(asio::ip::tcp::socket socket) {
  // Over --max-connections: health checks still get their answer, everyone else a 503 to retry,
  // and the descriptors this costs stay bounded by max_triage.
  beast::tcp_stream stream(std::move(socket));
  http_response res;
  if (counts_.triage < limits_.max_triage) {
    ++counts_.triage;
    struct done {
      int& n;
      ~done() { --n; }
    } guard{counts_.triage};
    beast::flat_buffer buffer;
    request_parser parser;
    apply_limits(parser, limits_);
    stream.expires_after(limits_.triage_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    auto req = parser.release();
    if (req.method() == http::verb::get && req.target() == "/healthz") {
      res = co_await router_.handle(req);
    } else {
      res = overloaded_response(limits_);
    }
  } else {
    res = overloaded_response(limits_);
  }
  res.keep_alive(false);
  stream.expires_after(std::chrono::seconds(2));
  co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

void listener::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

}  // namespace sandlot::orchestrator
