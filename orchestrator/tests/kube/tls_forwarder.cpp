#include "kube/tls_forwarder.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <unistd.h>

namespace sandlot::test {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::ip::tcp;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

test_cert test_cert::make(const std::string& common_name, const std::string& san) {
  static std::atomic<int> n{0};
  const auto dir = fs::temp_directory_path() / fmt::format("sandlot-cert-{}-{}", ::getpid(), n++);
  fs::create_directories(dir);
  const auto cmd = fmt::format(
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj '/CN={}' "
      "-addext 'subjectAltName={}' -addext 'basicConstraints=critical,CA:TRUE' -keyout '{}' -out '{}' >/dev/null 2>&1",
      common_name, san, (dir / "key.pem").string(), (dir / "cert.pem").string());
  const int rc = std::system(cmd.c_str());
  test_cert c{slurp(dir / "cert.pem"), slurp(dir / "key.pem")};
  fs::remove_all(dir);
  if (rc != 0 || c.cert_pem.empty()) throw std::runtime_error("openssl could not make a test certificate: " + cmd);
  return c;
}

struct tls_forwarder::impl {
  asio::io_context ioc;
  asio::ssl::context ctx{asio::ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  unsigned short backend = 0;
  std::atomic<int> ok{0}, failed{0};
  std::thread thread;

  static asio::awaitable<void> pump(auto& from, auto& to) {
    char buf[16384];
    for (;;) {
      auto [rec, n] = co_await from.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (n > 0) {
        auto [wec, w] = co_await asio::async_write(to, asio::buffer(buf, n), asio::as_tuple(asio::use_awaitable));
        (void)w;
        if (wec) break;
      }
      if (rec) break;
    }
  }

  asio::awaitable<void> serve(tcp::socket socket) {
    auto tls = std::make_shared<asio::ssl::stream<tcp::socket>>(std::move(socket), ctx);
    auto [hec] = co_await tls->async_handshake(asio::ssl::stream_base::server, asio::as_tuple(asio::use_awaitable));
    if (hec) {
      ++failed;
      co_return;
    }
    ++ok;
    auto plain = std::make_shared<tcp::socket>(ioc);
    auto [cec] = co_await plain->async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), backend),
                                               asio::as_tuple(asio::use_awaitable));
    if (cec) co_return;
    // Each direction on its own; when the backend closes, the client's side is closed too.
    asio::co_spawn(ioc, [tls, plain]() -> asio::awaitable<void> {
      co_await pump(*tls, *plain);
      boost::system::error_code ec;
      plain->shutdown(tcp::socket::shutdown_send, ec);
    }, asio::detached);
    co_await pump(*plain, *tls);
    boost::system::error_code ec;
    tls->lowest_layer().close(ec);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(ioc, serve(std::move(s)), asio::detached);
    }
  }
};

tls_forwarder::tls_forwarder(unsigned short backend_port, const test_cert& server, const std::string& client_ca_pem)
    : impl_(std::make_unique<impl>()) {
  impl_->backend = backend_port;
  impl_->ctx.use_certificate_chain(asio::buffer(server.cert_pem));
  impl_->ctx.use_private_key(asio::buffer(server.key_pem), asio::ssl::context::pem);
  if (!client_ca_pem.empty()) {
    impl_->ctx.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    impl_->ctx.add_certificate_authority(asio::buffer(client_ca_pem));
  }
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

tls_forwarder::~tls_forwarder() {
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

unsigned short tls_forwarder::port() const { return impl_->acceptor.local_endpoint().port(); }
int tls_forwarder::handshakes_ok() const { return impl_->ok.load(); }
int tls_forwarder::handshakes_failed() const { return impl_->failed.load(); }

}  // namespace sandlot::test
