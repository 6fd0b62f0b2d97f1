// GET /v1/events through a real http_session on loopback: the first event is the whole status, a
// change brings a newer one, the stream ends when the daemon shuts down, and streams beyond the
// limit get 503 overloaded.
#include <catch2/catch.hpp>

#include <array>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "event_stream.hpp"
#include "lease_service.hpp"
#include "listener.hpp"
#include "router.hpp"
#include "support/fake_provider.hpp"

namespace {

namespace asio = boost::asio;
using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;
using namespace std::chrono_literals;

const char* const events_request = "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// The `data:` lines of every complete `status` event in `text`, parsed.
std::vector<nlohmann::json> status_events(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::size_t pos = 0;
  for (auto end = text.find("\n\n", pos); end != std::string::npos; end = text.find("\n\n", pos)) {
    const std::string block = text.substr(pos, end - pos);
    pos = end + 2;
    if (block.find("event: status\n") == std::string::npos) continue;
    const auto data = block.find("data: ");
    if (data != std::string::npos) out.push_back(nlohmann::json::parse(block.substr(data + 6)));
  }
  return out;
}

class events_fixture {
 public:
  events_fixture() : service_(ioc_.get_executor(), provider_, options()), router_(service_) {
    provider_.add_image(image);
    acceptor_.open(asio::ip::tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    asio::co_spawn(ioc_, accept_loop(), asio::detached);
  }

  static service_options options() {
    service_options o;
    o.instance = "events-tests";
    o.slots = 2;
    return o;
  }

  /// Opens a stream; what it receives is appended to the returned string until the server closes.
  std::shared_ptr<std::string> open() {
    auto received = std::make_shared<std::string>();
    auto closed = std::make_shared<bool>(false);
    closed_.push_back(closed);
    const auto port = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, [this, port, received, closed]() -> asio::awaitable<void> {
      asio::ip::tcp::socket client(ioc_);
      co_await client.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
      co_await asio::async_write(client, asio::buffer(std::string(events_request)), asio::use_awaitable);
      std::array<char, 4096> buf{};
      for (;;) {
        auto [ec, n] = co_await client.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        received->append(buf.data(), n);
        if (ec) break;
      }
      *closed = true;
    }, asio::detached);
    return received;
  }

  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds bound = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      ioc_.restart();
      ioc_.run_for(10ms);
    }
    return done();
  }

  bool all_closed() const {
    for (const auto& c : closed_) {
      if (!*c) return false;
    }
    return true;
  }

  lease_service& service() { return service_; }
  router& api() { return router_; }
  void start() {
    bool started = false;
    asio::co_spawn(ioc_, service_.start(), [&](std::exception_ptr) { started = true; });
    REQUIRE(run_until([&] { return started; }));
  }
  void shut_down() {
    bool done = false;
    asio::co_spawn(ioc_, service_.shutdown(), [&](std::exception_ptr) { done = true; });
    REQUIRE(run_until([&] { return done; }));
  }

  const std::string image = "127.0.0.1:5000/sandlot/busybox:1.36";

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(ioc_, http_session(std::move(socket), router_, session_limits{}), asio::detached);
    }
  }

  asio::io_context ioc_;
  fake_provider provider_;
  lease_service service_;
  router router_;
  asio::ip::tcp::acceptor acceptor_{ioc_};
  std::vector<std::shared_ptr<bool>> closed_;
};

}  // namespace

TEST_CASE("the event stream sends the status, then a newer one on each change, and ends at shutdown",
          "[events]") {
  events_fixture f;
  f.start();
  auto received = f.open();
  REQUIRE(f.run_until([&] { return !status_events(*received).empty(); }));
  CHECK(received->rfind("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream", 0) == 0);
  const auto first = status_events(*received).front();
  CHECK(first["instance"] == "events-tests");
  CHECK(first["lanes"].size() == 2);
  CHECK(first["lanes"][0]["lease"].is_null());

  sandlot::protocol::lease_request req;
  req.image = f.image;
  req.run = "events-run";
  req.test = "watched";
  const auto id = f.service().create(req).first.id;
  // Changes are folded: the stream catches up to a status where the lease holds a lane.
  auto holds_lane = [&] {
    for (const auto& s : status_events(*received)) {
      if (s["lanes"][0]["lease"] == id && s["lanes"][0]["state"] == "ready") return true;
    }
    return false;
  };
  REQUIRE(f.run_until(holds_lane));
  const auto events = status_events(*received);
  CHECK(events.back()["seq"].get<std::uint64_t>() > first["seq"].get<std::uint64_t>());
  CHECK(events.back()["runs"][0]["run"] == "events-run");
  CHECK(events.size() < 10);  // folded: not one event per state change and budget change

  f.shut_down();
  CHECK(f.run_until([&] { return f.all_closed(); }));
}

TEST_CASE("streams beyond the limit are refused with 503 overloaded", "[events]") {
  events_fixture f;
  event_stream_limits one;
  one.max_streams = 1;
  f.api().add_stream("/v1/events", make_event_stream(f.service(), one));
  f.start();
  auto first = f.open();
  REQUIRE(f.run_until([&] { return !status_events(*first).empty(); }));
  auto second = f.open();
  REQUIRE(f.run_until([&] { return second->find("\r\n\r\n") != std::string::npos && second->find("}") != std::string::npos; }));
  CHECK(second->rfind("HTTP/1.1 503", 0) == 0);
  CHECK(second->find("overloaded") != std::string::npos);
  CHECK(f.service().metrics().event_streams == 1);
  f.shut_down();
  CHECK(f.run_until([&] { return f.all_closed(); }));
}
