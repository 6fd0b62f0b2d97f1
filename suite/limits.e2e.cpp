// Resource limits from the lease request are enforced by the engine and visible inside the
// sandbox's cgroup: memory, pids and CPUs (with defaults when none are asked for), plus a
// read-only root filesystem on request. Going past a limit fails inside the sandbox, not outside.
// Works on cgroup v2 (one unified file per limit) and v1 (one hierarchy per controller).
#include <catch2/catch.hpp>

#include "support.hpp"

using sandlot::testing::lease_sandbox;

namespace {

// Reads the v2 file if the sandbox has a unified hierarchy, else the v1 one. The sh -c is the
// test's own script; argv stays explicit.
std::string read_cgroup(const sandlot::client::lease& sb, const std::string& v2, const std::string& v1) {
  auto r = sb.exec({"sh", "-c", "if [ -e \"$1\" ]; then cat \"$1\"; else cat \"$2\"; fi", "sh",
                    "/sys/fs/cgroup/" + v2, "/sys/fs/cgroup/" + v1});
  INFO("stderr: " << r.stderr_data);
  REQUIRE(r.exit_code == 0);
  return sandlot::e2e::chomp(r.stdout_data);
}

}  // namespace

TEST_CASE("the memory limit of the lease is the sandbox's cgroup memory limit", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.memory_mb = 96;
  auto sb = lease_sandbox(req);
  CHECK(read_cgroup(sb, "memory.max", "memory/memory.limit_in_bytes") == std::to_string(96LL * 1024 * 1024));
}

TEST_CASE("the pids limit of the lease is the sandbox's cgroup pids limit", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.pids_limit = 48;
  auto sb = lease_sandbox(req);
  CHECK(read_cgroup(sb, "pids.max", "pids/pids.max") == "48");
}

TEST_CASE("the CPU limit of the lease is the sandbox's CFS quota", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.cpus = 0.5;
  auto sb = lease_sandbox(req);
  // v2's cpu.max reads "<quota> <period>"; v1 keeps them in two files, joined here the same way.
  auto r = sb.exec({"sh", "-c",
                    "if [ -e /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
                    "else echo \"$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\"; fi"});
  INFO("stderr: " << r.stderr_data);
  REQUIRE(r.exit_code == 0);
  auto quota_period = sandlot::e2e::chomp(r.stdout_data);
  auto space = quota_period.find(' ');
  REQUIRE(space != std::string::npos);
  long long quota = std::stoll(quota_period.substr(0, space));
  long long period = std::stoll(quota_period.substr(space + 1));
  REQUIRE(period > 0);
  CHECK(quota * 2 == period);  // half a CPU, whatever period the engine picked
}

TEST_CASE("a read-only sandbox cannot write its root filesystem but can write its tmp directory", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.read_only = true;
  auto sb = lease_sandbox(req);
  auto root = sb.exec({"touch", "/probe"});
  CHECK(root.exit_code != 0);
  CHECK_THAT(root.stderr_data, Catch::Matchers::Contains("Read-only file system"));
  CHECK(sb.exec({"touch", "/tmp/probe"}).exit_code == 0);
}

TEST_CASE("a lease that asks for no limits gets the documented defaults", "[limits]") {
  auto sb = lease_sandbox();  // memory_mb 256 and pids_limit 256 unless asked otherwise
  CHECK(read_cgroup(sb, "memory.max", "memory/memory.limit_in_bytes") ==
        std::to_string(256LL * 1024 * 1024));
  CHECK(read_cgroup(sb, "pids.max", "pids/pids.max") == "256");
}

TEST_CASE("a command that allocates past the memory limit is killed and the sandbox lives on", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.memory_mb = 32;
  auto sb = lease_sandbox(req);
  // dd fills one 64 MiB buffer: twice the limit, with no swap to spill into.
  auto r = sb.exec({"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 128 + 9);  // SIGKILL from the kernel's OOM killer
  // A command within the limit still runs.
  auto small = sb.exec({"dd", "if=/dev/zero", "of=/dev/null", "bs=4M", "count=1"});
  CHECK(small.exit_code == 0);
}

TEST_CASE("forking past the pids limit fails inside the sandbox", "[limits]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.pids_limit = 16;
  auto sb = lease_sandbox(req);
  // Forty short sleeps at once cannot fit in sixteen pids; the shell reports the failed fork.
  auto r = sb.exec({"sh", "-c", "for i in $(seq 1 40); do sleep 1 & done; wait"}, std::nullopt, {},
                   /*timeout_s=*/30);
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.stderr_data, Catch::Matchers::Contains("can't fork"));
}

TEST_CASE("a fork bomb is contained by the pids limit and the daemon serves on", "[limits]") {
  const auto& c = sandlot::testing::default_client();
  auto req = sandlot::e2e::request_for_this_test();
  req.pids_limit = 32;
  auto sb = lease_sandbox(req);
  // The classic bomb, bounded by the exec timeout: it can never hold more than 32 pids.
  auto r = sb.exec({"sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 3"}, std::nullopt, {}, /*timeout_s=*/5);
  INFO("exit " << r.exit_code << " timed_out " << r.timed_out << " stderr: " << r.stderr_data.substr(0, 300));
  const auto pids = sb.exec({"cat", "/sys/fs/cgroup/pids/pids.max"}, std::nullopt, {}, 10);
  if (pids.exit_code == 0) CHECK(sandlot::e2e::trim(pids.stdout_data) == "32");
  // The daemon answers, and a new sandbox starts and runs commands while the bomb's sandbox lives.
  CHECK(c.status().slots_total >= 1);
  auto other = lease_sandbox();
  CHECK(other.exec({"echo", "fine"}).stdout_data == "fine\n");
  sb.release();  // removing a sandbox full of processes works
  CHECK(sandlot::e2e::error_from([&] { (void)c.get(sb.id()); }) == std::nullopt);
  CHECK(c.get(sb.id()).state == sandlot::protocol::lease_state::released);
}
