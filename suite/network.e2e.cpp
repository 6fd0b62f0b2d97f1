// Network modes: `none` (the default) leaves a sandbox only its loopback; `host` shares the
// host's interfaces. These machines run dockerd with --bridge=none, so there is no third mode.
#include <catch2/catch.hpp>

#include "support.hpp"

using sandlot::testing::lease_sandbox;

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
