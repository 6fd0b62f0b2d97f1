// Once-per-run fixtures. The run shares one mock inference server: busybox httpd in a sandbox on
// the host network, listening on 127.0.0.1 at a port the daemon reserved. Each test registers its
// routes under its own lease name, so no two tests can collide on a hard-coded route, and a sandbox
// of the test calls them over loopback.
#include <catch2/catch.hpp>

#include "support.hpp"

using namespace std::chrono_literals;
using sandlot::testing::lease_sandbox;

namespace {

constexpr const char* http_ok_probe = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 \"$SANDLOT_PORT\"";

sandlot::protocol::fixture_request inference_spec() {
  sandlot::protocol::fixture_request spec;
  spec.name = "mock-inference";
  spec.image = sandlot::testing::default_image();
  spec.network = sandlot::protocol::network_mode::host;
  spec.port = true;
  // Once per run: it must outlive the gaps between its holders, which the daemon's longest-first
  // order can stretch to minutes. The run's end (DELETE /v1/runs/{id}) tears it down anyway.
  spec.grace_s = 900;
  return spec;
}

/// The run's mock inference server, started by whichever test gets there first.
sandlot::client::fixture inference_server(const sandlot::client::lease& holder) {
  return holder.hold_fixture(inference_spec(), [](const sandlot::client::fixture& f) {
    // httpd puts itself in the background; the sandbox's init keeps it running.
    auto start = f.exec({"sh", "-c", "mkdir -p /tmp/www && httpd -p 127.0.0.1:\"$SANDLOT_PORT\" -h /tmp/www"});
    if (start.exit_code != 0) throw std::runtime_error("httpd did not start: " + start.stderr_data);
    for (int i = 0; i < 50; ++i) {
      if (f.exec({"sh", "-c", http_ok_probe}).stdout_data.find("HTTP/1.") != std::string::npos) {
        return nlohmann::json{{"url", "http://127.0.0.1:" + std::to_string(*f.port())}};
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("httpd did not answer on its port within 5 s");
  });
}

/// Registers `body` at /<lease name>/<route> on the server.
void register_route(const sandlot::client::fixture& server, const std::string& path, const std::string& body) {
  auto r = server.exec({"sh", "-c", "mkdir -p \"$(dirname \"/tmp/www/$0\")\" && cat > \"/tmp/www/$0\"", path}, body);
  REQUIRE(r.exit_code == 0);
}

/// GET http://127.0.0.1:<port>/<path> from inside a host-network sandbox; the response body.
std::string call_from(const sandlot::client::lease& caller, int port, const std::string& path) {
  auto r = caller.exec({"sh", "-c", "printf 'GET /%s HTTP/1.0\\r\\n\\r\\n' \"$0\" | nc 127.0.0.1 \"$1\"", path,
                        std::to_string(port)});
  REQUIRE(r.exit_code == 0);
  auto blank = r.stdout_data.find("\r\n\r\n");
  REQUIRE(blank != std::string::npos);
  INFO("response: " << r.stdout_data);
  CHECK(r.stdout_data.rfind("HTTP/1.", 0) == 0);
  return r.stdout_data.substr(blank + 4);
}

/// A fixture of this test's own (a unique name), dropped as soon as nobody holds it.
sandlot::protocol::fixture_request private_spec(const std::string& prefix, int grace_s = 0) {
  sandlot::protocol::fixture_request spec;
  spec.name = prefix + "-" + sandlot::e2e::unique_request_id();
  spec.image = sandlot::testing::default_image();
  spec.grace_s = grace_s;
  return spec;
}

sandlot::protocol::lease_request host_network() {
  sandlot::protocol::lease_request req;
  req.network = sandlot::protocol::network_mode::host;
  return req;
}

/// A test of the model client: register a canned answer under this lease's name, call it.
void serve_and_call(const std::string& route, const nlohmann::json& answer) {
  auto sb = lease_sandbox(host_network());
  auto server = inference_server(sb);
  REQUIRE(server.port().has_value());
  CHECK(server.data().value("url", "") == "http://127.0.0.1:" + std::to_string(*server.port()));
  const std::string path = sb.name() + "/" + route;
  register_route(server, path, answer.dump());
  auto got = nlohmann::json::parse(call_from(sb, *server.port(), path), nullptr, false);
  CHECK(got == answer);
}

}  // namespace

TEST_CASE("the mock inference server answers completions registered under this lease's name", "[fixtures]") {
  serve_and_call("v1/completions", {{"choices", {{{"text", "four"}}}}, {"model", "mock"}});
}

TEST_CASE("the mock inference server answers embeddings registered under this lease's name", "[fixtures]") {
  serve_and_call("v1/embeddings", {{"data", {{{"embedding", {0.25, 0.5, 1}}}}}});
}

TEST_CASE("the mock inference server answers a chat route registered under this lease's name", "[fixtures]") {
  serve_and_call("v1/chat/completions", {{"choices", {{{"message", {{"role", "assistant"}, {"content", "hi"}}}}}}});
}

TEST_CASE("two leases register the same route under their own names and each gets its own answer", "[fixtures]") {
  auto a = lease_sandbox(host_network());
  auto b = lease_sandbox(host_network());
  REQUIRE(a.name() != b.name());
  auto server_a = inference_server(a);
  auto server_b = inference_server(b);
  CHECK(server_a.id() == server_b.id());  // one server for the run, held twice
  register_route(server_a, a.name() + "/v1/models", R"({"owner":"a"})");
  register_route(server_b, b.name() + "/v1/models", R"({"owner":"b"})");
  CHECK(call_from(a, *server_a.port(), a.name() + "/v1/models") == R"({"owner":"a"})");
  CHECK(call_from(b, *server_b.port(), b.name() + "/v1/models") == R"({"owner":"b"})");
}

TEST_CASE("a waiter takes over a fixture whose creator dies while making it", "[fixtures]") {
  const auto& c = sandlot::testing::default_client();
  auto creator = lease_sandbox();
  auto waiter = lease_sandbox();
  auto spec = private_spec("takeover");

  auto first = c.acquire_fixture(creator.id(), spec);
  REQUIRE(first.role == "creator");
  REQUIRE(first.sandbox.has_value());
  // The creator half-makes it, then dies.
  REQUIRE(c.fixture_exec(first.id, {{"sh", "-c", "echo half > /tmp/made-by"}, {}, {}, {}, 30}, creator.id()).exit_code == 0);
  auto second = c.acquire_fixture(waiter.id(), spec);
  CHECK(second.id == first.id);
  CHECK(second.role == "waiting");
  creator.release();

  auto now = c.get_fixture(first.id, waiter.id(), 30);
  REQUIRE(now.role == "creator");
  CHECK(now.creations == 2);
  REQUIRE(now.sandbox.has_value());
  CHECK(now.sandbox->id != first.sandbox->id);  // a fresh sandbox: nobody gets the half-made one
  auto made_by = c.fixture_exec(first.id, {{"cat", "/tmp/made-by"}, {}, {}, {}, 30}, waiter.id());
  CHECK(made_by.exit_code != 0);
  auto ready = c.fixture_ready(first.id, waiter.id(), {{"by", waiter.name()}});
  CHECK(ready.state == "ready");
  CHECK(ready.data.value("by", "") == waiter.name());
}

TEST_CASE("a fixture is torn down after its last holder lets go and its grace has passed", "[fixtures]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  auto spec = private_spec("short-lived", 1);
  auto f = sb.hold_fixture(spec, [](const sandlot::client::fixture&) { return nlohmann::json{{"ok", true}}; });
  CHECK(f.view().state == "ready");
  CHECK(f.view().creations == 1);
  sb.release();
  bool gone = sandlot::e2e::eventually([&] { return c.get_fixture(f.id(), "").state == "gone"; }, 10s);
  CHECK(gone);
  auto res = c.request("POST", "/v1/fixtures/" + f.id() + "/exec", R"({"argv":["true"]})");
  CHECK(res.status == 410);
}

TEST_CASE("only a fixture's creator may mark it ready", "[fixtures]") {
  const auto& c = sandlot::testing::default_client();
  auto creator = lease_sandbox();
  auto other = lease_sandbox();
  auto spec = private_spec("owned");
  auto made = c.acquire_fixture(creator.id(), spec);
  REQUIRE(made.role == "creator");
  c.acquire_fixture(other.id(), spec);
  auto res = c.request("POST", "/v1/fixtures/" + made.id + "/ready",
                       nlohmann::json{{"lease", other.id()}, {"data", nlohmann::json::object()}}.dump());
  CHECK(res.status == 409);
  CHECK(sandlot::e2e::error_of(res).code == "conflict");
}
