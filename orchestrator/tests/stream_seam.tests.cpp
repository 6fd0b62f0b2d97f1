// The API's streaming seam: a route that takes the connection over, reached through a real
// http_session on loopback, after the access policy let the request through; and the route table
// the router is built from.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/write.hpp>

#include "lease_service.hpp"
#include "listener.hpp"
#include "router.hpp"
#include "support/fake_provider.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;
using namespace std::chrono_literals;

/// A router with one streaming route, served by http_session on 127.0.0.1; a raw client sends one
/// request and reads until the server closes.
class seam_fixture {
 public:
  explicit seam_fixture(std::string token = {})
      : service_(ioc_.get_executor(), provider_, service_options{}), router_(service_, std::move(token)) {
    router_.add_stream("/v1/test-stream", [this](beast::tcp_stream& stream, const http_request&) -> asio::awaitable<void> {
      ++takeovers_;
      // The handler writes its own head, then events, as a server-sent-events route would.
      std::string out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
      for (int i = 1; i <= 3; ++i) out += "data: event " + std::to_string(i) + "\n\n";
      co_await asio::async_write(stream, asio::buffer(out), asio::use_awaitable);
    });
  }

  std::string exchange(const std::string& request) {
    asio::ip::tcp::acceptor acceptor(ioc_, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = acceptor.local_endpoint().port();
    asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> {
      auto socket = co_await acceptor.async_accept(asio::use_awaitable);
      co_await http_session(std::move(socket), router_, session_limits{});
    }, asio::detached);
    std::string reply;
    asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> {
      asio::ip::tcp::socket client(ioc_);
      co_await client.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
      co_await asio::async_write(client, asio::buffer(request), asio::use_awaitable);
      client.shutdown(asio::ip::tcp::socket::shutdown_send);
      std::array<char, 4096> buf{};
      for (;;) {
        auto [ec, n] = co_await client.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        reply.append(buf.data(), n);
        if (ec) break;
      }
    }, asio::detached);
    ioc_.run_for(10s);
    ioc_.restart();
    return reply;
  }

  int takeovers() const { return takeovers_; }
  const router& api() const { return router_; }

 private:
  asio::io_context ioc_;
  fake_provider provider_;
  lease_service service_;
  router router_;
  int takeovers_ = 0;
};

}  // namespace

TEST_CASE("a streaming route takes the connection over and closes it when done", "[router][stream]") {
  seam_fixture f;
  const auto reply = f.exchange("GET /v1/test-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK(f.takeovers() == 1);
  CHECK(reply.rfind("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", 0) == 0);
  CHECK(reply.find("data: event 1\n\ndata: event 2\n\ndata: event 3\n\n") != std::string::npos);
}

TEST_CASE("a streaming route is not reached past the access policy", "[router][stream]") {
  seam_fixture f("s3cret-token");
  const auto refused = f.exchange("GET /v1/test-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  CHECK(f.takeovers() == 0);
  CHECK(refused.rfind("HTTP/1.1 401", 0) == 0);
  const auto foreign = f.exchange(
      "GET /v1/test-stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret-token\r\n"
      "Origin: http://evil.example\r\n\r\n");
  CHECK(f.takeovers() == 0);
  CHECK(foreign.rfind("HTTP/1.1 403", 0) == 0);
  const auto allowed =
      f.exchange("GET /v1/test-stream?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret-token\r\n\r\n");
  CHECK(f.takeovers() == 1);
  CHECK(allowed.find("data: event 3") != std::string::npos);
}

TEST_CASE("other requests on a router with a streaming route are answered as before", "[router][stream]") {
  seam_fixture f;
  const auto reply = f.exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  CHECK(f.takeovers() == 0);
  CHECK(reply.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(reply.find("\"status\":\"ok\"") != std::string::npos);
}

TEST_CASE("the route table holds every documented endpoint once", "[router]") {
  seam_fixture f;
  auto routes = f.api().routes();
  const std::vector<std::string> expected = {
      "GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/status", "POST /v1/leases", "GET /v1/leases",
      "GET /v1/leases/{lease}", "DELETE /v1/leases/{lease}", "POST /v1/leases/{lease}/renew",
      "POST /v1/leases/{lease}/exec", "GET /v1/leases/{lease}/files", "PUT /v1/leases/{lease}/files",
      "POST /v1/leases/{lease}/outcome", "GET /v1/leases/{lease}/why", "POST /v1/leases/{lease}/evict",
      "POST /v1/leases/{lease}/fixtures", "GET /v1/fixtures/{fixture}", "POST /v1/fixtures/{fixture}/ready",
      "POST /v1/fixtures/{fixture}/fail", "POST /v1/fixtures/{fixture}/exec", "GET /v1/runs", "GET /v1/runs/{run}",
      "DELETE /v1/runs/{run}", "GET /v1/runs/{run}/report.html", "POST /v1/drain", "POST /v1/resume",
      "PUT /v1/slots", "GET /v1/events", "GET /", "GET /ui/",
      "GET /v1/test-stream",  // this fixture's own streaming route
  };
  for (const auto& e : expected) {
    INFO(e);
    CHECK(std::count(routes.begin(), routes.end(), e) == 1);
  }
  CHECK(routes.size() == expected.size());
}
