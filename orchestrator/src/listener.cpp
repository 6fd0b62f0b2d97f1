#include "listener.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
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

asio::awaitable<void> listener::run() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, http_session(std::move(socket), router_, limits_), asio::detached);
  }
}

void listener::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

}  // namespace sandlot::orchestrator
