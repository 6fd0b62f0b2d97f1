// The fake API server itself, seen through a raw Beast client: what a Kubernetes client reads on
// the wire (status codes, metav1.Status bodies, chunked watch framing, channel.k8s.io frames).
#include "kube/fake_apiserver.hpp"

#include <signal.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using sandlot::test::fake_apiserver;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
const std::string pods_path = "/api/v1/namespaces/sandlot/pods";
const std::string image = "127.0.0.1:5000/sandlot/busybox:1";

/// Runs one client coroutine to its end on a private io_context; every operation in it has a
/// Beast timeout, so a fake that does not answer fails the test instead of hanging it.
template <class T>
T run(asio::awaitable<T> op) {
  asio::io_context ioc;
  auto f = asio::co_spawn(ioc, std::move(op), asio::use_future);
  ioc.run();
  return f.get();
}

/// Waits for `done` with a deadline, checking every few milliseconds.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = 2s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct reply {
  int status = 0;
  std::string content_type;
  json body;
};

asio::awaitable<reply> call(unsigned short port, http::verb verb, std::string target, std::string body = "",
                            std::string token = "") {
  beast::tcp_stream stream(co_await asio::this_coro::executor);
  stream.expires_after(5s);
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  co_await stream.async_connect(ep, asio::use_awaitable);
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, fmt::format("127.0.0.1:{}", port));
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::use_awaitable);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  co_await http::async_read(stream, buf, res, asio::use_awaitable);
  reply r;
  r.status = static_cast<int>(res.result_int());
  r.content_type = std::string(res[http::field::content_type]);
  r.body = json::parse(res.body(), nullptr, false);
  co_return r;
}

reply get(const fake_apiserver& api, const std::string& target, const std::string& token = "") {
  return run(call(api.port(), http::verb::get, target, "", token));
}

reply post_pod(const fake_apiserver& api, const json& pod, const std::string& token = "") {
  return run(call(api.port(), http::verb::post, pods_path, pod.dump(), token));
}

json pod_manifest(const std::string& name, const json& labels = json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"labels", labels}}},
          {"spec", {{"containers", json::array({{{"name", "sandbox"}, {"image", image}}})}}}};
}

bool has_condition(const json& pod, const std::string& type) {
  for (const auto& c : pod["status"].value("conditions", json::array())) {
    if (c.value("type", "") == type && c.value("status", "") == "True") return true;
  }
  return false;
}

bool running(const fake_apiserver& api, const std::string& name) {
  for (const auto& p : api.pods()) {
    if (p["metadata"]["name"] == name && p["status"].value("phase", "") == "Running") return true;
  }
  return false;
}

fake_apiserver::options quick() {
  fake_apiserver::options o;
  o.start_delay = 30ms;
  o.delete_delay = 20ms;
  return o;
}

/// A watch read as raw bytes: the response head, then one chunk at a time.
class watch_stream {
 public:
  watch_stream(unsigned short port, const std::string& target) {
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    stream_.socket().connect(ep);
    const std::string req = fmt::format("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n\r\n", target, port);
    asio::write(stream_.socket(), asio::buffer(req));
    head_ = read_until("\r\n\r\n");
  }

  const std::string& head() const { return head_; }

  /// The next event, or nothing at the final chunk. Each event must be exactly one chunk holding
  /// one JSON object and its newline.
  std::optional<json> next() {
    const std::string size_line = read_until("\r\n");
    const auto size = std::stoul(size_line, nullptr, 16);
    const std::string data = read_exactly(size + 2);
    REQUIRE(data.substr(size) == "\r\n");
    if (size == 0) return std::nullopt;
    REQUIRE(data[size - 1] == '\n');
    REQUIRE(data.find('\n') == size - 1);
    return json::parse(data.substr(0, size - 1));
  }

  /// Events until `stop` says so (that one included).
  std::vector<json> until(const std::function<bool(const json&)>& stop) {
    std::vector<json> seen;
    for (;;) {
      auto e = next();
      REQUIRE(e.has_value());
      seen.push_back(*e);
      if (stop(*e)) return seen;
    }
  }

 private:
  // Reads with Beast's timeout on the stream, so that a silent server fails the test.
  std::string read_until(const std::string& delim) {
    return drive([&]() -> asio::awaitable<std::string> {
      auto [ec, n] = co_await asio::async_read_until(stream_, asio::dynamic_buffer(pending_), delim, tuple_awaitable);
      if (ec) throw boost::system::system_error(ec);
      std::string out = pending_.substr(0, n);
      pending_.erase(0, n);
      co_return out;
    });
  }

  std::string read_exactly(std::size_t n) {
    return drive([&]() -> asio::awaitable<std::string> {
      if (pending_.size() < n) {
        auto [ec, got] = co_await asio::async_read(stream_, asio::dynamic_buffer(pending_),
                                                   asio::transfer_exactly(n - pending_.size()), tuple_awaitable);
        (void)got;
        if (ec) throw boost::system::system_error(ec);
      }
      std::string out = pending_.substr(0, n);
      pending_.erase(0, n);
      co_return out;
    });
  }

  template <class F>
  std::string drive(F make) {
    stream_.expires_after(5s);
    ioc_.restart();
    auto f = asio::co_spawn(ioc_, make(), asio::use_future);
    ioc_.run();
    return f.get();
  }

  asio::io_context ioc_;
  beast::tcp_stream stream_{ioc_};
  std::string pending_;
  std::string head_;
};

struct exec_result {
  int refused = 0;  // the HTTP status when the upgrade was refused
  json refusal;
  std::string protocol;
  std::string out;
  std::string err;
  json status;
  int status_frames = 0;
};

std::string exec_target(const std::string& pod, const std::vector<std::string>& argv, bool with_stdin) {
  std::string t = fmt::format("{}/{}/exec?stdout=true&stderr=true{}", pods_path, pod, with_stdin ? "&stdin=true" : "");
  for (const auto& a : argv) {
    t += "&command=";
    for (const char c : a) {
      const auto ch = static_cast<unsigned char>(c);
      if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '/') {
        t += static_cast<char>(ch);
      } else {
        t += fmt::format("%{:02X}", ch);
      }
    }
  }
  return t;
}

/// One exec as a client does it: offer `protocols`, send `stdin` (then, on v5, close it), read
/// every frame until the server closes.
asio::awaitable<exec_result> exec(unsigned short port, std::string target, std::string protocols,
                                  std::optional<std::string> stdin_data) {
  exec_result r;
  websocket::stream<beast::tcp_stream> ws(co_await asio::this_coro::executor);
  beast::get_lowest_layer(ws).expires_after(5s);
  const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  co_await beast::get_lowest_layer(ws).async_connect(ep, asio::use_awaitable);
  beast::get_lowest_layer(ws).expires_never();
  ws.set_option(websocket::stream_base::timeout{5s, 5s, false});
  ws.set_option(websocket::stream_base::decorator(
      [protocols](websocket::request_type& req) { req.set(http::field::sec_websocket_protocol, protocols); }));
  websocket::response_type res;
  const std::string host = fmt::format("127.0.0.1:{}", port);
  auto [hec] = co_await ws.async_handshake(res, host, target, tuple_awaitable);
  if (hec) {
    r.refused = static_cast<int>(res.result_int());
    r.refusal = json::parse(res.body(), nullptr, false);
    co_return r;
  }
  r.protocol = std::string(res[http::field::sec_websocket_protocol]);
  ws.binary(true);
  if (stdin_data) {
    const std::string frame = std::string(1, '\0') + *stdin_data;
    co_await ws.async_write(asio::buffer(frame), asio::use_awaitable);
    if (r.protocol == "v5.channel.k8s.io") {
      const std::string close_stdin{static_cast<char>(255), '\0'};
      co_await ws.async_write(asio::buffer(close_stdin), asio::use_awaitable);
    }
  }
  beast::flat_buffer buf;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buf, tuple_awaitable);
    (void)n;
    if (ec == websocket::error::closed) break;
    if (ec) throw boost::system::system_error(ec);
    const std::string frame = beast::buffers_to_string(buf.data());
    buf.consume(buf.size());
    REQUIRE_FALSE(frame.empty());
    const std::string data = frame.substr(1);
    switch (frame[0]) {
      case 1:
        r.out += data;
        break;
      case 2:
        r.err += data;
        break;
      case 3:
        if (!data.empty()) {
          r.status = json::parse(data);
          ++r.status_frames;
        }
        break;
      default:
        FAIL("a frame on channel " << static_cast<int>(frame[0]));
    }
  }
  co_return r;
}

/// Starts `sh -c 'echo $$; exec sleep 30'` and returns its pid once printed; `leave` then either
/// drops the connection or keeps it open until the test ends the server.
struct sleeper {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  pid_t pid = -1;

  explicit sleeper(unsigned short port) {
    auto start = [this, port]() -> asio::awaitable<void> {
      const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
      beast::get_lowest_layer(ws).expires_after(5s);
      co_await beast::get_lowest_layer(ws).async_connect(ep, asio::use_awaitable);
      // No idle timeout: its timer would keep run() below busy after the pid has arrived.
      ws.set_option(websocket::stream_base::decorator(
          [](websocket::request_type& req) { req.set(http::field::sec_websocket_protocol, "v5.channel.k8s.io"); }));
      const std::string host = fmt::format("127.0.0.1:{}", port);
      const std::string target = exec_target("sleepy", {"sh", "-c", "echo $$; exec sleep 30"}, false);
      co_await ws.async_handshake(host, target, asio::use_awaitable);
      beast::get_lowest_layer(ws).expires_after(5s);
      std::string out;
      beast::flat_buffer buf;
      while (out.find('\n') == std::string::npos) {
        co_await ws.async_read(buf, asio::use_awaitable);
        const std::string frame = beast::buffers_to_string(buf.data());
        buf.consume(buf.size());
        if (!frame.empty() && frame[0] == 1) out += frame.substr(1);
      }
      pid = static_cast<pid_t>(std::stol(out));
    };
    auto f = asio::co_spawn(ioc, start(), asio::use_future);
    ioc.run();
    f.get();
    beast::get_lowest_layer(ws).expires_never();
  }
  sleeper(const sleeper&) = delete;
  sleeper& operator=(const sleeper&) = delete;
  // Gone without a close frame, as a client that crashed or timed out.
  ~sleeper() {
    boost::system::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
  }
};

bool gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace

TEST_CASE("a created pod is scheduled and turns Ready on a chunked watch, then goes away", "[kube][fake]") {
  fake_apiserver api(quick());
  const auto created = post_pod(api, pod_manifest("web-1", {{"app", "web"}, {"tier", "front"}}));
  REQUIRE(created.status == 201);
  CHECK(created.content_type == "application/json");
  const json& pod = created.body;
  CHECK(pod["kind"] == "Pod");
  CHECK(pod["metadata"]["namespace"] == "sandlot");
  CHECK(pod["metadata"]["uid"].get<std::string>().size() == 36);
  CHECK(pod["metadata"]["creationTimestamp"].get<std::string>().back() == 'Z');
  CHECK(pod["status"]["phase"] == "Pending");
  CHECK(pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent");
  const std::string rv = pod["metadata"]["resourceVersion"];

  watch_stream w(api.port(), pods_path + "?watch=1&fieldSelector=metadata.name%3Dweb-1&resourceVersion=" + rv +
                                 "&timeoutSeconds=5");
  CHECK_THAT(w.head(), Catch::StartsWith("HTTP/1.1 200 OK\r\n") && Catch::Contains("Transfer-Encoding: chunked") &&
                           Catch::Contains("Content-Type: application/json"));
  const auto events = w.until([](const json& e) { return has_condition(e["object"], "Ready"); });
  std::vector<std::string> waiting;
  for (const auto& e : events) {
    CHECK(e["type"] == "MODIFIED");
    const auto& statuses = e["object"]["status"].value("containerStatuses", json::array());
    if (!statuses.empty() && statuses[0]["state"].contains("waiting")) {
      waiting.push_back(statuses[0]["state"]["waiting"]["reason"]);
    }
  }
  CHECK(waiting == std::vector<std::string>{"ContainerCreating"});
  const json ready = events.back()["object"];
  CHECK(ready["status"]["phase"] == "Running");
  CHECK(std::stoull(ready["metadata"]["resourceVersion"].get<std::string>()) > std::stoull(rv));
  const auto& status = ready["status"]["containerStatuses"][0];
  CHECK(status["ready"] == true);
  CHECK(status["state"].contains("running"));
  CHECK_THAT(status["imageID"].get<std::string>(), Catch::StartsWith("127.0.0.1:5000/sandlot/busybox@sha256:"));
  CHECK_THAT(ready["status"]["podIP"].get<std::string>(), Catch::StartsWith("127."));
  const std::string node = ready["spec"]["nodeName"];
  CHECK(api.watches() == 1);

  // The node's kubelet now lists the image, by tag and by digest.
  const auto nodes = get(api, "/api/v1/nodes");
  REQUIRE(nodes.status == 200);
  CHECK(nodes.body["kind"] == "NodeList");
  bool listed = false;
  for (const auto& n : nodes.body["items"]) {
    if (n["metadata"]["name"] != node) continue;
    CHECK(n["status"]["allocatable"]["pods"] == "110");
    for (const auto& i : n["status"]["images"]) {
      const auto names = i["names"].get<std::vector<std::string>>();
      if (std::find(names.begin(), names.end(), image) != names.end()) listed = names.size() == 2;
    }
  }
  CHECK(listed);

  // Selectors: equality, inequality, existence; query values are URL-decoded.
  CHECK(get(api, pods_path + "?labelSelector=app%3Dweb%2Ctier").body["items"].size() == 1);
  CHECK(get(api, pods_path + "?labelSelector=app%21%3Dweb").body["items"].empty());
  CHECK(get(api, pods_path + "?labelSelector=%21tier").body["items"].empty());
  const auto list = get(api, pods_path + "?labelSelector=app%3D%3Dweb");
  CHECK(list.body["kind"] == "PodList");
  CHECK(list.body["metadata"].contains("resourceVersion"));
  REQUIRE(list.body["items"].size() == 1);
  CHECK_FALSE(list.body["items"][0].contains("kind"));  // list items carry no type meta, as on the real server

  CHECK(get(api, pods_path + "/web-1").status == 200);
  CHECK(api.pod_gets() == 1);
  const auto deleted = run(call(api.port(), http::verb::delete_, pods_path + "/web-1?gracePeriodSeconds=0"));
  REQUIRE(deleted.status == 200);
  CHECK(deleted.body["metadata"].contains("deletionTimestamp"));
  const auto end = w.until([](const json& e) { return e["type"] == "DELETED"; });
  CHECK(end.front()["object"]["metadata"].contains("deletionTimestamp"));
  CHECK(api.pods().empty());
}

TEST_CASE("a watch without a version starts with the pods that exist and deletecollection goes by label", "[kube][fake]") {
  fake_apiserver api(quick());
  const std::vector<std::pair<std::string, std::string>> teams{{"a-1", "a"}, {"a-2", "a"}, {"b-1", "b"}};
  for (const auto& [name, team] : teams) {
    REQUIRE(post_pod(api, pod_manifest(name, {{"team", team}})).status == 201);
  }
  watch_stream w(api.port(), pods_path + "?watch=true&labelSelector=team%3Da&timeoutSeconds=5");
  const auto first = w.next();
  const auto second = w.next();
  REQUIRE((first && second));
  CHECK((*first)["type"] == "ADDED");
  CHECK((*second)["object"]["metadata"]["name"] == "a-2");

  const auto removed = run(call(api.port(), http::verb::delete_, pods_path + "?labelSelector=team%3Da"));
  REQUIRE(removed.status == 200);
  CHECK(removed.body["kind"] == "PodList");
  CHECK(removed.body["items"].size() == 2);
  int deleted = 0;
  w.until([&](const json& e) { return e["type"] == "DELETED" && ++deleted == 2; });
  const auto left = api.pods();
  REQUIRE(left.size() == 1);
  CHECK(left[0]["metadata"]["name"] == "b-1");
  const auto requests = api.requests();
  CHECK(std::find(requests.begin(), requests.end(), "DELETE " + pods_path + "?labelSelector=team%3Da") != requests.end());

  // A short watch ends by itself with the final chunk.
  watch_stream brief(api.port(), pods_path + "?watch=1&labelSelector=team%3Dnobody&timeoutSeconds=1");
  CHECK_FALSE(brief.next().has_value());
}

TEST_CASE("errors are metav1.Status objects as the real server writes them", "[kube][fake]") {
  auto o = quick();
  o.token = "s3cret";
  fake_apiserver api(o);
  const auto anonymous = get(api, pods_path);
  CHECK(anonymous.status == 401);
  CHECK(anonymous.body["reason"] == "Unauthorized");

  const auto missing = get(api, pods_path + "/nope", "s3cret");
  CHECK(missing.status == 404);
  CHECK(missing.body == json::parse(R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
    "message":"pods \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404})"));

  REQUIRE(post_pod(api, pod_manifest("twice"), "s3cret").status == 201);
  const auto again = post_pod(api, pod_manifest("twice"), "s3cret");
  CHECK(again.status == 409);
  CHECK(again.body["reason"] == "AlreadyExists");
  CHECK(again.body["message"] == "pods \"twice\" already exists");

  const auto bad_label = post_pod(api, pod_manifest("labelled", {{"sandlot.dev/lease", "not ok!"}}), "s3cret");
  CHECK(bad_label.status == 422);
  CHECK(bad_label.body["reason"] == "Invalid");
  CHECK(bad_label.body["details"]["causes"][0]["field"] == "metadata.labels");
  CHECK_THAT(bad_label.body["message"].get<std::string>(),
             Catch::StartsWith("Pod \"labelled\" is invalid: metadata.labels: Invalid value: \"not ok!\": a valid label must"));
  CHECK(post_pod(api, pod_manifest("x", {{"k", std::string(64, 'v')}}), "s3cret").status == 422);

  auto empty = pod_manifest("Bad_Name");
  empty["spec"]["containers"] = json::array();
  const auto invalid = post_pod(api, empty, "s3cret");
  CHECK(invalid.status == 422);
  CHECK_THAT(invalid.body["message"].get<std::string>(),
             Catch::StartsWith("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123") &&
                 Catch::EndsWith(", spec.containers: Required value]"));

  CHECK(get(api, "/api/v1/namespaces/elsewhere", "s3cret").body["message"] == "namespaces \"elsewhere\" not found");
  CHECK(get(api, "/api/v1/namespaces/sandlot", "s3cret").body["status"]["phase"] == "Active");
  CHECK(run(call(api.port(), http::verb::put, pods_path + "/twice", "{}", "s3cret")).status == 405);
  CHECK(get(api, "/apis/apps/v1/nothing", "s3cret").status == 404);
  CHECK(get(api, "/version", "s3cret").body["gitVersion"] == "v1.30.0-sandlot-fake");
}

TEST_CASE("exec over WebSocket v5 carries stdin, stdout, stderr and the exit code", "[kube][fake]") {
  fake_apiserver api(quick());
  REQUIRE(post_pod(api, pod_manifest("shell")).status == 201);
  REQUIRE(eventually([&] { return running(api, "shell"); }));
  const auto argv = std::vector<std::string>{"sh", "-c", "cat; echo oops >&2; exit 3"};
  const auto r = run(exec(api.port(), exec_target("shell", argv, true), "v5.channel.k8s.io, v4.channel.k8s.io",
                          std::string("hello from stdin\n")));
  CHECK(r.protocol == "v5.channel.k8s.io");
  CHECK(r.out == "hello from stdin\n");
  CHECK(r.err == "oops\n");
  CHECK(r.status_frames == 1);
  CHECK(r.status == json::parse(R"({"metadata":{},"status":"Failure",
    "message":"command terminated with non-zero exit code: error executing command [sh -c cat; echo oops >&2; exit 3], exit code 3",
    "reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})"));

  const auto ok = run(exec(api.port(), exec_target("shell", {"true"}, false), "v5.channel.k8s.io", std::nullopt));
  CHECK(ok.status == json::parse(R"({"metadata":{},"status":"Success"})"));
  CHECK(api.exec_protocols() == std::vector<std::string>{"v5.channel.k8s.io", "v5.channel.k8s.io"});

  const auto absent = run(exec(api.port(), exec_target("nobody", {"true"}, false), "v5.channel.k8s.io", std::nullopt));
  CHECK(absent.refused == 404);
  CHECK(absent.refusal["reason"] == "NotFound");
}

TEST_CASE("an older server speaks v4 only and a command that cannot start fails without an exit code", "[kube][fake]") {
  auto o = quick();
  o.offer_v5 = false;
  fake_apiserver api(o);
  REQUIRE(post_pod(api, pod_manifest("old")).status == 201);
  REQUIRE(eventually([&] { return running(api, "old"); }));
  const auto refused = run(exec(api.port(), exec_target("old", {"true"}, true), "v5.channel.k8s.io", std::string("x")));
  CHECK(refused.refused == 400);
  CHECK(refused.refusal["kind"] == "Status");
  CHECK(api.exec_protocols().empty());

  const auto v4 = run(exec(api.port(), exec_target("old", {"sh", "-c", "echo hi"}, false),
                           "v5.channel.k8s.io, v4.channel.k8s.io", std::nullopt));
  CHECK(v4.protocol == "v4.channel.k8s.io");
  CHECK(v4.out == "hi\n");
  CHECK(v4.status["status"] == "Success");

  const auto missing = run(exec(api.port(), exec_target("old", {"/no/such/program"}, false), "v4.channel.k8s.io", std::nullopt));
  CHECK(missing.status["status"] == "Failure");
  CHECK(missing.status["reason"] == "InternalError");
  CHECK_THAT(missing.status["message"].get<std::string>(),
             Catch::StartsWith("Internal error occurred: error executing command in container:") &&
                 Catch::Contains("stat /no/such/program: no such file or directory"));
  const auto unknown = run(exec(api.port(), exec_target("old", {"no-such-program-here"}, false), "v4.channel.k8s.io", std::nullopt));
  CHECK_THAT(unknown.status["message"].get<std::string>(),
             Catch::Contains("exec: \"no-such-program-here\": executable file not found in $PATH"));
}

TEST_CASE("an exec command dies with its client, and none outlives the server", "[kube][fake]") {
  auto api = std::make_unique<fake_apiserver>(quick());
  REQUIRE(post_pod(*api, pod_manifest("sleepy")).status == 201);
  REQUIRE(eventually([&] { return running(*api, "sleepy"); }));

  pid_t dropped = -1;
  {
    sleeper s(api->port());
    dropped = s.pid;
    CHECK_FALSE(gone(dropped));
  }  // the connection closes without a word
  CHECK(eventually([&] { return gone(dropped); }));  // killed and reaped: not even a zombie

  sleeper kept(api->port());
  CHECK_FALSE(gone(kept.pid));
  api.reset();
  CHECK(gone(kept.pid));
}
