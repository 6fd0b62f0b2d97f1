// client::event_stream against a scripted loopback server: events arrive one by one as they are
// sent, stop() ends a stream the server keeps open, and an error answer becomes client::error.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <sandlot/client.hpp>

namespace {

using sandlot::client::event_stream;

/// One connection on 127.0.0.1: reads the request head, then runs `script` with a send function.
class one_shot_server {
 public:
  explicit one_shot_server(std::function<void(const std::function<void(const std::string&)>&)> script) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    REQUIRE(::listen(fd_, 1) == 0);
    thread_ = std::thread([this, script = std::move(script)] {
      int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string head;
      char c = 0;
      while (head.find("\r\n\r\n") == std::string::npos && ::read(conn, &c, 1) == 1) head += c;
      request_ = head;
      script([conn](const std::string& bytes) { [[maybe_unused]] auto n = ::write(conn, bytes.data(), bytes.size()); });
      ::close(conn);
    });
  }
  ~one_shot_server() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& request() const { return request_; }

 private:
  int fd_ = -1;
  unsigned short port_ = 0;
  std::thread thread_;
  std::string request_;
};

/// A latch the server's script waits on until the client has seen what it sent.
struct latch {
  std::mutex m;
  std::condition_variable cv;
  int count = 0;
  void bump() {
    std::lock_guard<std::mutex> lock(m);
    ++count;
    cv.notify_all();
  }
  void wait_for(int n) {
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return count >= n; });
  }
};

constexpr const char* stream_head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

}  // namespace

TEST_CASE("status events arrive one by one and the stream ends when the server closes it", "[event_stream]") {
  latch seen;
  one_shot_server server([&](const auto& send) {
    send(stream_head);
    send("event: status\nid: 1\ndata: {\"slots_total\":2,\"seq\":1}\n\n");
    seen.wait_for(1);  // the first event reached the callback before the second was sent
    send(": keep-alive\n\nevent: status\nid: 2\ndata: {\"slots_total\":3,\"seq\":2}\n\n");
    seen.wait_for(2);
  });
  sandlot::client::client c(server.url());
  event_stream events(c);
  std::vector<int> totals;
  auto end = events.run([&](const sandlot::protocol::status_view& st) {
    totals.push_back(st.slots_total);
    seen.bump();
    return true;
  });
  CHECK(end == event_stream::end::closed);
  CHECK(totals == std::vector<int>{2, 3});
  CHECK(server.request().rfind("GET /v1/events HTTP/1.1", 0) == 0);
}

TEST_CASE("stop() ends a stream the server keeps open", "[event_stream]") {
  latch done;
  one_shot_server server([&](const auto& send) {
    send(stream_head);
    send("event: status\ndata: {\"seq\":1}\n\n");
    done.wait_for(1);  // hold the connection open until the client has stopped
  });
  sandlot::client::client c(server.url());
  event_stream events(c);
  latch got;
  std::thread stopper([&] {
    got.wait_for(1);
    events.stop();
  });
  auto end = events.run([&](const sandlot::protocol::status_view&) {
    got.bump();
    return true;
  });
  stopper.join();
  done.bump();
  CHECK(end == event_stream::end::stopped);
}

TEST_CASE("an error answer to the stream request becomes a client error", "[event_stream]") {
  one_shot_server server([](const auto& send) {
    send("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 60\r\n"
         "Connection: close\r\n\r\n{\"error\":{\"code\":\"overloaded\",\"message\":\"too many streams\"}}");
  });
  sandlot::client::client c(server.url());
  event_stream events(c);
  try {
    events.run([](const auto&) { return true; });
    FAIL("no error");
  } catch (const sandlot::client::error& e) {
    CHECK(e.status() == 503);
    CHECK(e.code() == "overloaded");
  }
}
