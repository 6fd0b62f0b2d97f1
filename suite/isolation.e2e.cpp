// Sandboxes are isolated from each other and run without privileges: separate filesystems and
// hostnames, no capabilities, no way to gain new privileges.
#include <catch2/catch.hpp>

#include "support.hpp"

using sandlot::testing::lease_sandbox;

namespace {

// Two leases held at once need two slots; with fewer the second would wait for the first forever.
bool two_slots_available() {
  return sandlot::testing::default_client().status().slots_total >= 2;
}

}  // namespace

TEST_CASE("a file written in one sandbox is absent from another", "[isolation]") {
  if (!two_slots_available()) {
    WARN("skipped: needs an orchestratord with --slots 2 or more");
    return;
  }
  auto a = lease_sandbox();
  auto b = lease_sandbox();
  REQUIRE(a.sandbox().id != b.sandbox().id);

  REQUIRE(a.exec({"sh", "-c", "echo only-in-a > /tmp/marker"}).exit_code == 0);
  CHECK(a.exec({"cat", "/tmp/marker"}).stdout_data == "only-in-a\n");
  CHECK(b.exec({"test", "-e", "/tmp/marker"}).exit_code != 0);
}

TEST_CASE("each sandbox has its own hostname and its lease reports it", "[isolation]") {
  if (!two_slots_available()) {
    WARN("skipped: needs an orchestratord with --slots 2 or more");
    return;
  }
  auto a = lease_sandbox();
  auto b = lease_sandbox();
  auto host_a = sandlot::e2e::chomp(a.exec({"hostname"}).stdout_data);
  auto host_b = sandlot::e2e::chomp(b.exec({"hostname"}).stdout_data);
  CHECK_FALSE(host_a.empty());
  CHECK(host_a != host_b);
  CHECK(host_a == a.sandbox().hostname);
  CHECK(host_b == b.sandbox().hostname);
  CHECK(a.name() != b.name());
}

TEST_CASE("a sandbox runs with no capabilities and cannot gain privileges", "[isolation]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"cat", "/proc/self/status"});
  REQUIRE(r.exit_code == 0);
  CHECK(sandlot::e2e::status_field(r.stdout_data, "CapEff") == "0000000000000000");
  CHECK(sandlot::e2e::status_field(r.stdout_data, "CapPrm") == "0000000000000000");
  CHECK(sandlot::e2e::status_field(r.stdout_data, "NoNewPrivs") == "1");
  // Without CAP_SYS_ADMIN even root cannot mount.
  CHECK(sb.exec({"mount", "-t", "tmpfs", "none", "/mnt"}).exit_code != 0);
}
