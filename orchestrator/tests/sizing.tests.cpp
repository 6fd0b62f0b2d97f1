// `--slots auto`: the formula over measured host facts, and the parsing of the files they come
// from.
#include "sizing.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

using sandlot::orchestrator::estimate_slots;
using sandlot::orchestrator::host_resources;
using sandlot::orchestrator::parse_cfs_quota;
using sandlot::orchestrator::parse_cgroup_path;
using sandlot::orchestrator::parse_cpu_max;
using sandlot::orchestrator::parse_meminfo_available;
using sandlot::orchestrator::parse_memory_limit;
using sandlot::orchestrator::read_host_resources;
using sandlot::orchestrator::sandbox_size;

constexpr std::int64_t mib = std::int64_t{1} << 20;
constexpr std::int64_t gib = std::int64_t{1} << 30;

// The head of this repository's 2-core, 24 GiB reference machine's /proc/meminfo.
constexpr const char* reference_meminfo =
    "MemTotal:       24684092 kB\n"
    "MemFree:        20011520 kB\n"
    "MemAvailable:   23694244 kB\n"
    "Buffers:          381232 kB\n"
    "Cached:          3228764 kB\n";

host_resources host(int cpus, std::int64_t mem_available_bytes) {
  host_resources h;
  h.affinity_cpus = cpus;
  h.mem_available_bytes = mem_available_bytes;
  return h;
}

/// A fake root with /proc and /sys files under the temp directory, removed when the test ends.
/// The pid keeps parallel test processes apart.
class fake_root {
 public:
  explicit fake_root(const std::string& name)
      : root_(std::filesystem::temp_directory_path() /
              ("sandlot-sizing-" + std::to_string(::getpid()) + "-" + name)) {
    std::filesystem::remove_all(root_);
  }
  ~fake_root() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  fake_root(const fake_root&) = delete;
  fake_root& operator=(const fake_root&) = delete;

  void write(const std::string& relative, const std::string& content) {
    const auto p = root_ / relative;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  const std::filesystem::path& path() const { return root_; }

 private:
  std::filesystem::path root_;
};

}  // namespace

TEST_CASE("a host with more memory than CPUs gets its CPUs times the oversubscription",
          "[sizing]") {
  const auto e = estimate_slots(host(2, 24 * gib));
  CHECK(e.by_cpus == 5);     // 2 × 2.5
  CHECK(e.by_memory == 72);  // 24 GiB × 0.75 / 256 MiB
  CHECK(e.slots == 5);
  CHECK(e.limited_by == "cpus");
}

TEST_CASE("a host with many CPUs and little memory gets what three quarters of its memory holds",
          "[sizing]") {
  const auto e = estimate_slots(host(64, 4 * gib));
  CHECK(e.by_cpus == 160);
  CHECK(e.by_memory == 12);  // 3 GiB of 256 MiB sandboxes
  CHECK(e.slots == 12);
  CHECK(e.limited_by == "memory");
}

TEST_CASE("a tiny host still gets one slot", "[sizing]") {
  host_resources h = host(1, 200 * mib);
  h.cpu_quota = 0.25;
  const auto e = estimate_slots(h);
  CHECK(e.by_cpus == 0);
  CHECK(e.by_memory == 0);
  CHECK(e.slots == 1);
  CHECK(e.limited_by == "the minimum of 1");
}

TEST_CASE("a huge host is capped at the largest budget --slots accepts", "[sizing]") {
  const auto e = estimate_slots(host(4096, 8192 * gib));
  CHECK(e.slots == 4096);
  CHECK(e.limited_by == "the maximum of 4096");
}

TEST_CASE("a cgroup v2 CPU quota wins over a wider affinity mask", "[sizing]") {
  host_resources h = host(8, 24 * gib);
  h.cpu_quota = parse_cpu_max("150000 100000\n");
  REQUIRE(h.cpu_quota.has_value());
  CHECK(*h.cpu_quota == Approx(1.5));
  const auto e = estimate_slots(h);
  CHECK(e.cpus == Approx(1.5));
  CHECK(e.slots == 3);  // floor(1.5 × 2.5)
  CHECK_THAT(e.explanation, Catch::Contains("cgroup quota"));
}

TEST_CASE("a cgroup v1 CPU quota wider than the affinity mask changes nothing", "[sizing]") {
  host_resources h = host(2, 24 * gib);
  h.cpu_quota = parse_cfs_quota("800000\n", "100000\n");
  REQUIRE(h.cpu_quota.has_value());
  CHECK(*h.cpu_quota == Approx(8));
  CHECK(estimate_slots(h).slots == 5);
}

TEST_CASE("a fractional CPU count does not lose a slot to rounding", "[sizing]") {
  host_resources h = host(4, 24 * gib);
  h.cpu_quota = parse_cfs_quota("120000", "100000");
  CHECK(estimate_slots(h).by_cpus == 3);  // 1.2 × 2.5 is 3 even though 1.2 is not exact
}

TEST_CASE("a cgroup memory limit below MemAvailable caps the memory", "[sizing]") {
  host_resources h = host(16, *parse_meminfo_available(reference_meminfo));
  h.mem_limit_bytes = parse_memory_limit("2147483648\n");
  const auto e = estimate_slots(h);
  CHECK(e.memory_bytes == 2 * gib);
  CHECK(e.by_memory == 6);  // 1.5 GiB of 256 MiB sandboxes
  CHECK(e.slots == 6);
  CHECK(e.limited_by == "memory");
  CHECK_THAT(e.explanation, Catch::Contains("cgroup limit"));
}

TEST_CASE("bigger sandboxes mean fewer slots", "[sizing]") {
  sandbox_size big;
  big.cpus = 2;
  big.memory_mb = 1024;
  const auto e = estimate_slots(host(8, 8 * gib), big);
  CHECK(e.by_cpus == 10);   // 8 × 2.5 / 2
  CHECK(e.by_memory == 6);  // 6 GiB of 1 GiB sandboxes
  CHECK(e.slots == 6);
}

TEST_CASE("a slot is a sandbox of the lease defaults", "[sizing]") {
  const sandbox_size s;
  const sandlot::protocol::lease_request defaults;
  CHECK(s.cpus == defaults.cpus);
  CHECK(s.memory_mb == defaults.memory_mb);
}

TEST_CASE("the log line says how the reference machine gets its number", "[sizing]") {
  const auto available = parse_meminfo_available(reference_meminfo);
  REQUIRE(available.has_value());
  CHECK(*available == std::int64_t{23694244} * 1024);
  CHECK(estimate_slots(host(2, *available)).explanation ==
        "slots auto: 5 (cpus 2 × 2.5 / 1 CPU per sandbox → 5, memory 22.6 GiB available × 0.75 / "
        "256 MiB per sandbox → 67; limited by cpus)");
}

TEST_CASE("meminfo without MemAvailable gives no figure", "[sizing]") {
  CHECK_FALSE(parse_meminfo_available("MemTotal:       24684092 kB\nMemFree: 1 kB\n").has_value());
  CHECK_FALSE(parse_meminfo_available("").has_value());
  CHECK_FALSE(parse_meminfo_available("MemAvailable:   lots kB\n").has_value());
}

TEST_CASE("cgroup values that mean no limit are not limits", "[sizing]") {
  CHECK_FALSE(parse_cpu_max("max 100000\n").has_value());
  CHECK_FALSE(parse_cfs_quota("-1\n", "100000\n").has_value());
  CHECK_FALSE(parse_memory_limit("max\n").has_value());
  CHECK_FALSE(parse_memory_limit("9223372036854771712\n").has_value());  // v1's "unlimited"
  CHECK_FALSE(parse_cpu_max("").has_value());
  CHECK_FALSE(parse_memory_limit("").has_value());
}

TEST_CASE("the cgroup path of a controller is read from proc self cgroup", "[sizing]") {
  const std::string v1 =
      "9:name=systemd:/\n"
      "4:memory:/process_api/1c0860c7\n"
      "2:cpu,cpuacct:/ci/job-7\n"
      "0::/\n";
  CHECK(parse_cgroup_path(v1, "memory") == "/process_api/1c0860c7");
  CHECK(parse_cgroup_path(v1, "cpu") == "/ci/job-7");
  CHECK(parse_cgroup_path(v1, "cpuacct") == "/ci/job-7");
  CHECK(parse_cgroup_path(v1, "") == "/");
  CHECK_FALSE(parse_cgroup_path(v1, "pids").has_value());
  CHECK(parse_cgroup_path("0::/user.slice/ci.scope\n", "") == "/user.slice/ci.scope");
}

TEST_CASE(
    "the host reader takes the tightest cgroup v1 limits of the process's cgroup and its "
    "ancestors",
    "[sizing]") {
  fake_root root("v1");
  root.write("proc/meminfo", reference_meminfo);
  root.write("proc/self/cgroup", "4:memory:/ci/job\n2:cpu,cpuacct:/ci/job\n0::/\n");
  root.write("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
  root.write("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
  root.write("sys/fs/cgroup/cpu/ci/job/cpu.cfs_quota_us", "150000\n");
  root.write("sys/fs/cgroup/cpu/ci/job/cpu.cfs_period_us", "100000\n");
  root.write("sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  root.write("sys/fs/cgroup/memory/ci/memory.limit_in_bytes", "2147483648\n");  // the parent's
  root.write("sys/fs/cgroup/memory/ci/job/memory.limit_in_bytes", "9223372036854771712\n");

  const auto h = read_host_resources(root.path());
  CHECK(h.affinity_cpus >= 1);
  CHECK(h.mem_available_bytes == std::int64_t{23694244} * 1024);
  REQUIRE(h.cpu_quota.has_value());
  CHECK(*h.cpu_quota == Approx(1.5));
  CHECK(h.mem_limit_bytes == 2 * gib);
}

TEST_CASE("the host reader reads cgroup v2 cpu max and memory max", "[sizing]") {
  fake_root root("v2");
  root.write("proc/meminfo", reference_meminfo);
  root.write("proc/self/cgroup", "0::/ci.slice/job.scope\n");
  root.write("sys/fs/cgroup/ci.slice/cpu.max", "max 100000\n");
  root.write("sys/fs/cgroup/ci.slice/job.scope/cpu.max", "50000 100000\n");
  root.write("sys/fs/cgroup/ci.slice/job.scope/memory.max", "1073741824\n");

  const auto h = read_host_resources(root.path());
  REQUIRE(h.cpu_quota.has_value());
  CHECK(*h.cpu_quota == Approx(0.5));
  CHECK(h.mem_limit_bytes == gib);
}

TEST_CASE("the host reader finds no limits where no cgroup files are", "[sizing]") {
  fake_root root("bare");
  root.write("proc/meminfo", reference_meminfo);
  const auto h = read_host_resources(root.path());
  CHECK_FALSE(h.cpu_quota.has_value());
  CHECK_FALSE(h.mem_limit_bytes.has_value());
}

TEST_CASE("this machine gives a budget within the --slots range", "[sizing]") {
  const auto h = read_host_resources();
  CHECK(h.affinity_cpus >= 1);
  CHECK(h.mem_available_bytes > 0);
  const auto e = estimate_slots(h);
  CHECK(e.slots >= 1);
  CHECK(e.slots <= 4096);
  CHECK_THAT(e.explanation, Catch::StartsWith("slots auto: " + std::to_string(e.slots) + " ("));
}
