// Sandboxes are isolated from each other and from the host, and run without privileges: separate
// filesystems, hostnames, process lists and namespaces; no capabilities, no new privileges.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <vector>

#include "support.hpp"

using Catch::Matchers::Contains;
using sandlot::testing::lease_sandbox;

namespace {

// Two leases held at once need two slots; with fewer the second would wait for the first forever.
bool two_slots_available() {
  return sandlot::testing::default_client().status().slots_total >= 2;
}

// The namespace links of a process (`pid:[4026531836]`, ...), as `readlink /proc/<pid>/ns/<kind>`.
const std::vector<std::string> namespace_kinds = {"pid", "mnt", "uts", "ipc", "net"};

// One exec: the shell that reads the links shares every namespace with whatever the sandbox runs.
std::map<std::string, std::string> namespaces_in(const sandlot::client::lease& sb) {
  std::vector<std::string> argv = {
      "sh", "-c", "for kind in \"$@\"; do readlink /proc/self/ns/$kind; done", "sh"};
  argv.insert(argv.end(), namespace_kinds.begin(), namespace_kinds.end());
  auto r = sb.exec(argv);
  INFO("stderr: " << r.stderr_data);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> out;
  std::istringstream lines(r.stdout_data);
  std::string line;
  for (const auto& kind : namespace_kinds) {
    std::getline(lines, line);
    out[kind] = line;
  }
  return out;
}

std::map<std::string, std::string> namespaces_of_this_process() {
  std::map<std::string, std::string> out;
  for (const auto& kind : namespace_kinds) {
    out[kind] = std::filesystem::read_symlink("/proc/self/ns/" + kind).string();
  }
  return out;
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

TEST_CASE("a process running in one sandbox is absent from another's process list", "[isolation]") {
  if (!two_slots_available()) {
    WARN("skipped: needs an orchestratord with --slots 2 or more");
    return;
  }
  auto a = lease_sandbox();
  auto b = lease_sandbox();
  // A sleep of a length nothing else uses, left running in a.
  REQUIRE(a.exec({"sh", "-c", "sleep 417 >/dev/null 2>&1 &"}).exit_code == 0);
  CHECK_THAT(a.exec({"ps", "-o", "args"}).stdout_data, Contains("sleep 417"));
  auto in_b = b.exec({"ps", "-o", "args"});
  REQUIRE(in_b.exit_code == 0);
  CHECK_THAT(in_b.stdout_data, !Contains("sleep 417"));
}

TEST_CASE("a sandbox sees none of the host's processes", "[isolation]") {
  auto sb = lease_sandbox();
  auto ps = sb.exec({"ps", "-o", "pid,args"});
  REQUIRE(ps.exit_code == 0);
  INFO("ps in the sandbox:\n" << ps.stdout_data);
  // This very test, its ctest parent and the daemon all run on the host.
  CHECK_THAT(ps.stdout_data,
             !Contains("sandlot-e2e") && !Contains("orchestratord") && !Contains("ctest"));
  // Pid 1 is the sandbox's own init, not the host's.
  CHECK_THAT(sb.exec({"cat", "/proc/1/cmdline"}).stdout_data, Contains("init"));
  auto count = sb.exec({"sh", "-c", "ls -d /proc/[0-9]* | wc -l"});
  CHECK(std::stoi(sandlot::e2e::trim(count.stdout_data)) < 10);
}

TEST_CASE("each sandbox has pid mount uts ipc and network namespaces of its own", "[isolation]") {
  if (!two_slots_available()) {
    WARN("skipped: needs an orchestratord with --slots 2 or more");
    return;
  }
  auto a = lease_sandbox();
  auto b = lease_sandbox();
  auto in_a = namespaces_in(a);
  auto in_b = namespaces_in(b);
  auto host = namespaces_of_this_process();
  for (const auto& kind : namespace_kinds) {
    INFO(kind << ": a " << in_a[kind] << ", b " << in_b[kind] << ", host " << host[kind]);
    CHECK_THAT(in_a[kind], Catch::Matchers::StartsWith(kind + ":["));
    CHECK(in_a[kind] != in_b[kind]);
    CHECK(in_a[kind] != host[kind]);
    CHECK(in_b[kind] != host[kind]);
  }
}
