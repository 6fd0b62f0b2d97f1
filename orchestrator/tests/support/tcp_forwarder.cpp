#include "support/tcp_forwarder.hpp"

#include <array>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace sandlot::itest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using generic_socket = asio::generic::stream_protocol::socket;

namespace {

// One forwarded connection: the accepted socket and the one to the target. Closing both ends
// the two pumps.
struct link {
  tcp::socket near;
  generic_socket far;
  explicit link(tcp::socket s) : near(std::move(s)), far(near.get_executor()) {}
  void close() {
    boost::system::error_code ignored;
    near.close(ignored);
    far.close(ignored);
  }
};

// `keep` holds the link (and so both sockets) for as long as the pump runs.
template <class From, class To>
asio::awaitable<void> pump([[maybe_unused]] std::shared_ptr<link> keep, From& from, To& to) {
  std::array<char, 16384> buf{};
  for (;;) {
    auto [rec, n] = co_await from.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), asio::as_tuple(asio::use_awaitable));
      if (wec) break;
    }
    if (rec) break;
  }
  boost::system::error_code ignored;
  to.shutdown(asio::socket_base::shutdown_send, ignored);  // pass the half-close on (exec stdin EOF)
}

}  // namespace

struct tcp_forwarder::impl {
  forward_target target;
  asio::io_context ioc;
  // Keeps run() going while cut: with no acceptor and no connection there is no work, and
  // restore() would post to a stopped loop.
  asio::executor_work_guard<asio::io_context::executor_type> busy = asio::make_work_guard(ioc);
  std::shared_ptr<tcp::acceptor> acceptor;  // a new one per restore(); io thread only
  std::vector<std::weak_ptr<link>> links;  // io thread only
  std::thread thread;

  // Runs `f` on the io thread and waits for it.
  template <class F>
  void on_io(F f) {
    std::promise<void> done;
    asio::post(ioc, [&] {
      try {
        f();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    auto answered = done.get_future();
    if (answered.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      throw std::runtime_error("tcp_forwarder: its io thread did not answer within 10 s");
    }
    answered.get();
  }

  void listen(unsigned short port) {
    acceptor = std::make_shared<tcp::acceptor>(ioc);
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    acceptor->open(ep.protocol());
    acceptor->set_option(asio::socket_base::reuse_address(true));  // restore() rebinds the same port
    acceptor->bind(ep);
    acceptor->listen();
  }

  asio::awaitable<void> connect_far(link& l) {
    if (!target.unix_path.empty()) {
      co_await l.far.async_connect(asio::local::stream_protocol::endpoint(target.unix_path), asio::use_awaitable);
    } else {
      co_await l.far.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), target.port),
                                   asio::use_awaitable);
    }
  }

  asio::awaitable<void> accept_loop(std::shared_ptr<tcp::acceptor> a, std::atomic<int>& count) {
    for (;;) {
      auto [ec, s] = co_await a->async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !a->is_open()) co_return;
      if (ec) continue;
      auto l = std::make_shared<link>(std::move(s));
      links.push_back(l);
      ++count;
      asio::co_spawn(ioc, [this, l]() -> asio::awaitable<void> {
        try {
          co_await connect_far(*l);
        } catch (const std::exception&) {
          l->close();  // the target is not there: the client sees its connection closed
          co_return;
        }
        asio::co_spawn(ioc, pump(l, l->near, l->far), asio::detached);
        asio::co_spawn(ioc, pump(l, l->far, l->near), asio::detached);
      }, asio::detached);
    }
  }
};

tcp_forwarder::tcp_forwarder(forward_target target) : impl_(std::make_unique<impl>()) {
  impl_->target = std::move(target);
  impl_->listen(0);
  port_ = impl_->acceptor->local_endpoint().port();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(impl_->acceptor, connections_), asio::detached);
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

tcp_forwarder::~tcp_forwarder() {
  impl_->ioc.stop();
  impl_->thread.join();
}

void tcp_forwarder::cut() {
  impl_->on_io([this] {
    boost::system::error_code ignored;
    if (impl_->acceptor) impl_->acceptor->close(ignored);
    for (auto& w : impl_->links) {
      if (auto l = w.lock()) l->close();
    }
    impl_->links.clear();
  });
}

void tcp_forwarder::restore() {
  impl_->on_io([this] {
    if (impl_->acceptor && impl_->acceptor->is_open()) return;
    impl_->listen(port_);
    asio::co_spawn(impl_->ioc, impl_->accept_loop(impl_->acceptor, connections_), asio::detached);
  });
}

}  // namespace sandlot::itest
