// Network modes: `none` (the default) leaves a sandbox only a loopback of its own; `host` shares
// the host's interfaces, namespace and loopback. These machines run dockerd with --bridge=none, so
// there is no third mode, and every connection here goes to a loopback address.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <array>
#include <filesystem>

#include "support.hpp"

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using sandlot::testing::lease_sandbox;

namespace {

// The daemon's port when SANDLOT_URL names a loopback host; these tests never connect elsewhere.
std::optional<std::string> daemon_loopback_port() {
  constexpr std::string_view scheme = "http://";
  const std::string& url = sandlot::testing::default_client().url();
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string authority = url.substr(scheme.size());
  authority = authority.substr(0, authority.find('/'));
  auto colon = authority.rfind(':');
  const std::string host = authority.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  const bool loopback = host == "localhost" || host.rfind("127.", 0) == 0;
  if (!loopback || port.empty()) return std::nullopt;
  return port;
}

// One plain HTTP/1.0 request with busybox nc (its wget crashes in this static build); the daemon
// closes the connection after answering, which ends nc.
sandlot::protocol::exec_result http_get(const sandlot::client::lease& sb, const std::string& port,
                                        const std::string& path) {
  return sb.exec({"nc", "-w", "3", "127.0.0.1", port}, "GET " + path + " HTTP/1.0\r\n\r\n", {},
                 /*timeout_s=*/15);
}

std::string net_namespace_in(const sandlot::client::lease& sb) {
  auto r = sb.exec({"readlink", "/proc/self/ns/net"});
  REQUIRE(r.exit_code == 0);
  return sandlot::e2e::chomp(r.stdout_data);
}

}  // namespace

TEST_CASE("a sandbox with network none has only a loopback interface", "[network]") {
  auto sb = lease_sandbox();  // network none is the default
  CHECK(sb.sandbox().network == "none");
  auto r = sb.exec({"cat", "/proc/net/dev"});
  REQUIRE(r.exit_code == 0);
  CHECK(sandlot::e2e::interfaces(r.stdout_data) == std::set<std::string>{"lo"});
}

TEST_CASE("a sandbox with network host sees the host's interfaces", "[network]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.network = sandlot::protocol::network_mode::host;
  auto sb = lease_sandbox(req);
  CHECK(sb.sandbox().network == "host");

  auto r = sb.exec({"cat", "/proc/net/dev"});
  REQUIRE(r.exit_code == 0);
  auto inside = sandlot::e2e::interfaces(r.stdout_data);
  // The test runs on the daemon's host (loopback only), so it sees the same interfaces.
  auto host = sandlot::e2e::host_interfaces();
  CHECK(inside == host);
  CHECK(inside.count("lo") == 1);
  if (host.size() > 1) CHECK(inside.size() > 1);
}

TEST_CASE("a sandbox with network none cannot reach the daemon on the host's loopback", "[network]") {
  auto port = daemon_loopback_port();
  if (!port) {
    WARN("skipped: SANDLOT_URL does not name a loopback address");
    return;
  }
  auto sb = lease_sandbox();
  // 127.0.0.1 inside is the sandbox's own loopback, where nothing listens on the daemon's port.
  auto r = http_get(sb, *port, "/healthz");
  CHECK(r.exit_code != 0);
  CHECK_FALSE(r.timed_out);
  CHECK_THAT(r.stdout_data, !Contains("200"));
  CHECK_THAT(r.stderr_data, Contains("refused"));
}

TEST_CASE("a sandbox with network host reaches the daemon's healthz on 127.0.0.1", "[network]") {
  auto port = daemon_loopback_port();
  if (!port) {
    WARN("skipped: SANDLOT_URL does not name a loopback address");
    return;
  }
  auto req = sandlot::e2e::request_for_this_test();
  req.network = sandlot::protocol::network_mode::host;
  auto sb = lease_sandbox(req);
  auto r = http_get(sb, *port, "/healthz");
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.stdout_data, Contains("HTTP/1.0 200") || Contains("HTTP/1.1 200"));
  CHECK_THAT(r.stdout_data, Contains("\"status\":\"ok\""));
}

TEST_CASE("a server on one sandbox's loopback answers there and not in another sandbox", "[network]") {
  if (sandlot::testing::default_client().status().slots_total < 2) {
    WARN("skipped: needs an orchestratord with --slots 2 or more");
    return;
  }
  auto a = lease_sandbox();
  auto b = lease_sandbox();
  auto started = a.exec({"sh", "-c",
                         "mkdir -p /tmp/www && echo served-by-a > /tmp/www/index.html && "
                         "httpd -p 127.0.0.1:8099 -h /tmp/www"});
  INFO("httpd: " << started.stderr_data);
  REQUIRE(started.exit_code == 0);

  // httpd goes to the background as it starts; wait until it answers.
  sandlot::protocol::exec_result in_a;
  bool answered = sandlot::e2e::eventually(
      [&] {
        in_a = http_get(a, "8099", "/index.html");
        return in_a.exit_code == 0;
      },
      10s);
  REQUIRE(answered);
  CHECK_THAT(in_a.stdout_data, Contains("served-by-a"));

  auto in_b = http_get(b, "8099", "/index.html");
  CHECK(in_b.exit_code != 0);
  CHECK_THAT(in_b.stdout_data, !Contains("served-by-a"));
}

TEST_CASE("network host shares the host's network namespace and network none does not", "[network]") {
  const std::string host_ns = std::filesystem::read_symlink("/proc/self/ns/net").string();
  {
    auto none = lease_sandbox();
    CHECK(net_namespace_in(none) != host_ns);
  }
  auto req = sandlot::e2e::request_for_this_test();
  req.network = sandlot::protocol::network_mode::host;
  auto host = lease_sandbox(req);
  CHECK(net_namespace_in(host) == host_ns);
}

TEST_CASE("a sandbox with network host has the host's hostname", "[network]") {
  std::array<char, 256> name{};
  REQUIRE(::gethostname(name.data(), name.size() - 1) == 0);
  auto req = sandlot::e2e::request_for_this_test();
  req.network = sandlot::protocol::network_mode::host;
  auto sb = lease_sandbox(req);
  CHECK(sandlot::e2e::chomp(sb.exec({"hostname"}).stdout_data) == std::string(name.data()));
}
