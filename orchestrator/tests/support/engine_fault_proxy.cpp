#include "support/engine_fault_proxy.hpp"

#include <poll.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "support/daemon_process.hpp"

namespace sandlot::itest {

namespace asio = boost::asio;
using unix_socket = asio::local::stream_protocol::socket;
using unix_acceptor = asio::local::stream_protocol::acceptor;
using unix_endpoint = asio::local::stream_protocol::endpoint;
using namespace std::chrono_literals;

namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// docker_client's request heads are a few hundred bytes; anything this large is not one of them.
constexpr std::size_t max_head_bytes = 64 * 1024;

// One accepted connection and, once it is forwarded, the one to the engine. The serving
// coroutine's frame owns it; the proxy keeps a weak_ptr so that it can close both on shutdown.
struct connection {
  unix_socket client;
  unix_socket engine;
  explicit connection(unix_socket s) : client(std::move(s)), engine(client.get_executor()) {}
  void close() {
    boost::system::error_code ignored;
    client.close(ignored);
    engine.close(ignored);
  }
};

struct request_line {
  std::string_view method;
  std::string_view target;
};

// "METHOD TARGET HTTP/1.1": a malformed line yields empty parts, which only rules with an empty
// method and target part match.
request_line parse_request_line(std::string_view head) {
  const auto line = head.substr(0, head.find("\r\n"));
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return {};
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return {};
  return {line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1)};
}

// The peer closed its socket entirely, not just its sending side. A read cannot tell the two
// apart (both are EOF), but a unix socket reports POLLHUP only for the full close; POLLHUP is
// reported whatever `events` asks for.
bool peer_closed(unix_socket& s) {
  pollfd p{s.native_handle(), 0, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

// Copies `from` to `to`. On EOF the half-close is passed on and the other direction keeps flowing
// (an exec client half-closes after its stdin and then reads the output); any other error ends
// the connection both ways, as a reset would.
asio::awaitable<void> pump(connection& c, unix_socket& from, unix_socket& to) {
  std::array<char, 16384> buf{};
  for (;;) {
    auto [rec, n] = co_await from.async_read_some(asio::buffer(buf), as_tuple_awaitable);
    if (n > 0) {
      auto [wec, wn] = co_await asio::async_write(to, asio::buffer(buf.data(), n), as_tuple_awaitable);
      if (wec) {
        c.close();
        co_return;
      }
    }
    if (rec == asio::error::eof) break;
    if (rec) {
      c.close();
      co_return;
    }
  }
  boost::system::error_code ignored;
  to.shutdown(asio::socket_base::shutdown_send, ignored);
}

// Reads and drops what the client sends until it has closed its socket entirely (or the proxy
// closed it). A client that only half-closed (exec with stdin) is still waiting for an answer,
// so it is held too.
asio::awaitable<void> swallow_until_closed(unix_socket& client) {
  std::array<char, 4096> sink{};
  for (;;) {
    auto [ec, n] = co_await client.async_read_some(asio::buffer(sink), as_tuple_awaitable);
    if (ec == asio::error::eof) break;
    if (ec) co_return;
  }
  // The reactor reports nothing more after EOF, so the full close is polled for; the period only
  // bounds how late stalled() notices a client that gave up.
  asio::steady_timer tick(client.get_executor());
  while (client.is_open() && !peer_closed(client)) {
    tick.expires_after(50ms);
    auto [ec] = co_await tick.async_wait(as_tuple_awaitable);
    if (ec) co_return;
  }
}

// An engine-style error answer: dockerd's error bodies are {"message": ...}, which is what
// docker_client shows.
asio::awaitable<void> answer(unix_socket& client, std::string status_line, std::string message) {
  nlohmann::json doc;
  doc["message"] = std::move(message);
  const std::string body = doc.dump();
  const std::string bytes = fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
      status_line, body.size(), body);
  auto [ec, n] = co_await asio::async_write(client, asio::buffer(bytes), as_tuple_awaitable);
  if (ec) co_return;
  boost::system::error_code ignored;
  client.shutdown(asio::socket_base::shutdown_send, ignored);
  // Closing with the client's request still unread would turn the answer into a reset on its
  // side; wait for it to read the answer and close first.
  co_await swallow_until_closed(client);
}

}  // namespace

struct engine_fault_proxy::impl {
  struct rule {
    std::string method;
    std::string target_part;
    action act = action::forward;
    int remaining = -1;  // -1: unlimited
    int matched = 0;
    bool retired = false;
  };

  std::string upstream;
  std::string path;
  // Before the io_context: coroutine frames it may still destroy decrement it.
  std::atomic<int> stalled{0};
  asio::io_context ioc{1};
  // Keeps run() going between connections, so that on_io() never posts to a stopped loop.
  asio::executor_work_guard<asio::io_context::executor_type> busy = asio::make_work_guard(ioc);
  unix_acceptor acceptor{ioc};
  std::vector<std::weak_ptr<connection>> connections;  // io thread only
  std::promise<void> ran_out;                          // set when run() returns
  std::thread thread;

  mutable std::mutex mutex;  // guards rules and hang; never held across a co_await
  std::vector<rule> rules;
  bool hang = false;

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
    if (answered.wait_for(10s) != std::future_status::ready) {
      throw std::runtime_error("engine_fault_proxy: its io thread did not answer within 10 s");
    }
    answered.get();
  }

  action decide(request_line req) {
    std::lock_guard lock(mutex);
    if (hang) return action::stall;
    for (auto& r : rules) {
      if (r.retired || r.remaining == 0) continue;
      if (!r.method.empty() && r.method != req.method) continue;
      if (req.target.find(r.target_part) == std::string_view::npos) continue;
      if (r.remaining > 0) --r.remaining;
      ++r.matched;
      return r.act;
    }
    return action::forward;
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(as_tuple_awaitable);
      if (!acceptor.is_open()) co_return;
      if (ec) continue;
      auto c = std::make_shared<connection>(std::move(s));
      std::erase_if(connections, [](const std::weak_ptr<connection>& w) { return w.expired(); });
      connections.push_back(c);
      asio::co_spawn(ioc, serve(std::move(c)), asio::detached);
    }
  }

  // `c` by value: this frame owns the connection for as long as it is served.
  asio::awaitable<void> serve(std::shared_ptr<connection> c) {
    // Everything read so far: the first request head and possibly the start of its body, all of
    // which goes upstream if the request is forwarded.
    std::string head;
    std::size_t head_end = std::string::npos;
    std::array<char, 8192> buf{};
    while (head_end == std::string::npos) {
      if (head.size() > max_head_bytes) {
        co_await answer(c->client, "431 Request Header Fields Too Large",
                        "engine_fault_proxy: the request head exceeds 64 KiB");
        co_return;
      }
      auto [ec, n] = co_await c->client.async_read_some(asio::buffer(buf), as_tuple_awaitable);
      head.append(buf.data(), n);
      head_end = head.find("\r\n\r\n");
      if (ec && head_end == std::string::npos) co_return;  // gone before finishing its request
    }

    switch (decide(parse_request_line(head))) {
      case action::stall: {
        ++stalled;
        struct uncount {
          std::atomic<int>& n;
          ~uncount() { --n; }
        } on_exit{stalled};
        co_await swallow_until_closed(c->client);
        co_return;
      }
      case action::fail:
        co_await answer(c->client, "500 Internal Server Error", "injected failure by engine_fault_proxy");
        co_return;
      case action::forward:
        break;
    }

    const unix_endpoint engine_ep(upstream);
    auto [cec] = co_await c->engine.async_connect(engine_ep, as_tuple_awaitable);
    if (cec) {
      // Tell the test why rather than just closing: a missing engine is a setup problem.
      const std::string why =
          fmt::format("engine_fault_proxy cannot reach the engine at {}: {}", upstream, cec.message());
      co_await answer(c->client, "502 Bad Gateway", why);
      co_return;
    }
    auto [wec, wn] = co_await asio::async_write(c->engine, asio::buffer(head), as_tuple_awaitable);
    if (wec) co_return;
    // Plain byte piping from here on also carries an upgraded (101) exec stream.
    using namespace asio::experimental::awaitable_operators;
    co_await (pump(*c, c->client, c->engine) && pump(*c, c->engine, c->client));
  }
};

engine_fault_proxy::engine_fault_proxy(std::string upstream_unix_path) : impl_(std::make_unique<impl>()) {
  static std::atomic<int> next_id{0};
  impl_->upstream = std::move(upstream_unix_path);
  impl_->path = (scratch_dir() / fmt::format("engine-proxy-{}.sock", ++next_id)).string();
  if (impl_->path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw std::runtime_error(fmt::format("engine_fault_proxy: socket path {} is longer than a unix socket allows; "
                                         "set TMPDIR to a shorter directory",
                                         impl_->path));
  }
  impl_->acceptor.open();
  impl_->acceptor.bind(unix_endpoint(impl_->path));
  impl_->acceptor.listen();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] {
    impl_->ioc.run();
    impl_->ran_out.set_value();
  });
}

engine_fault_proxy::~engine_fault_proxy() {
  try {
    impl_->on_io([this] {
      boost::system::error_code ignored;
      impl_->acceptor.close(ignored);
      for (auto& w : impl_->connections) {
        if (auto c = w.lock()) c->close();
      }
      impl_->connections.clear();
    });
  } catch (const std::exception&) {
    // The loop is stopped below instead; the sockets then close with the io_context.
  }
  // With every socket closed each coroutine ends on its own, so run() runs out of work; stop()
  // is only for one that does not, so that the destructor cannot hang a test.
  impl_->busy.reset();
  if (impl_->ran_out.get_future().wait_for(10s) != std::future_status::ready) impl_->ioc.stop();
  impl_->thread.join();
  std::error_code ignored;
  std::filesystem::remove(impl_->path, ignored);
}

const std::string& engine_fault_proxy::socket_path() const noexcept { return impl_->path; }

std::string engine_fault_proxy::docker_host() const { return "unix://" + impl_->path; }

int engine_fault_proxy::add_rule(std::string method, std::string target_part, action act, int times) {
  if (times == 0 || times < -1) {
    throw std::invalid_argument(
        fmt::format("engine_fault_proxy::add_rule: times is {}; use a positive count, or -1 for every match", times));
  }
  std::lock_guard lock(impl_->mutex);
  impl::rule r;
  r.method = std::move(method);
  r.target_part = std::move(target_part);
  r.act = act;
  r.remaining = times;
  impl_->rules.push_back(std::move(r));
  return static_cast<int>(impl_->rules.size()) - 1;
}

void engine_fault_proxy::clear_rules() {
  std::lock_guard lock(impl_->mutex);
  for (auto& r : impl_->rules) r.retired = true;
}

int engine_fault_proxy::matched(int id) const {
  std::lock_guard lock(impl_->mutex);
  if (id < 0 || static_cast<std::size_t>(id) >= impl_->rules.size()) {
    throw std::out_of_range(fmt::format("engine_fault_proxy::matched: no rule has id {}", id));
  }
  return impl_->rules[static_cast<std::size_t>(id)].matched;
}

void engine_fault_proxy::hang_all(bool on) {
  std::lock_guard lock(impl_->mutex);
  impl_->hang = on;
}

int engine_fault_proxy::stalled() const { return impl_->stalled.load(); }

}  // namespace sandlot::itest
