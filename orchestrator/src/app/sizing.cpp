#include "sizing.hpp"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

namespace sandlot::orchestrator {

namespace {

constexpr std::int64_t mib = std::int64_t{1} << 20;
constexpr double gib = 1024.0 * 1024.0 * 1024.0;

// No host has an exbibyte; cgroup v1 spells "no limit" as INT64_MAX rounded down to a page.
constexpr std::int64_t no_memory_limit_from = std::int64_t{1} << 60;

std::string_view trim(std::string_view s) {
  const auto* ws = " \t\r\n";
  auto first = s.find_first_not_of(ws);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(ws) - first + 1);
}

template <class T>
std::optional<T> to_number(std::string_view s) {
  s = trim(s);
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto nl = text.find('\n');
    lines.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// A floor that does not lose a whole slot to rounding (1.2 × 2.5 must give 3, not 2), and
// that cannot overflow int however large the host.
int whole_slots(double x, int max_slots) {
  if (!(x > 0)) return 0;
  return static_cast<int>(std::floor(std::min(x + 1e-9, static_cast<double>(max_slots) + 1)));
}

std::optional<std::string> read_file(const std::filesystem::path& p) {
  // /proc and cgroup files report size 0; read them as streams.
  std::ifstream in(p);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// This process's cgroup directory under `mount` and every ancestor up to the mount itself. A
// limit anywhere above us binds us too. In a container without a cgroup namespace the path names
// the host's hierarchy, which does not exist under the container's mount; the mount itself
// (the container's own cgroup) is still checked.
std::vector<std::filesystem::path> cgroup_dirs(const std::filesystem::path& mount,
                                               const std::optional<std::string>& path) {
  std::vector<std::filesystem::path> dirs;
  std::filesystem::path rel = path ? std::filesystem::path(*path).relative_path() : "";
  for (;;) {
    std::error_code ec;
    if (std::filesystem::is_directory(mount / rel, ec)) dirs.push_back(mount / rel);
    if (rel.empty()) break;
    rel = rel.parent_path();
  }
  return dirs;
}

template <class T>
void keep_lowest(std::optional<T>& lowest, std::optional<T> v) {
  if (v && (!lowest || *v < *lowest)) lowest = v;
}

int affinity_cpus() {
  // The mask may be wider than cpu_set_t's 1024 CPUs; sched_getaffinity says so with EINVAL.
  for (std::size_t n = 1024; n <= (std::size_t{1} << 20); n *= 2) {
    std::unique_ptr<cpu_set_t, void (*)(cpu_set_t*)> set(CPU_ALLOC(n),
                                                         [](cpu_set_t* s) { CPU_FREE(s); });
    if (!set) break;
    const std::size_t size = CPU_ALLOC_SIZE(n);
    if (::sched_getaffinity(0, size, set.get()) == 0) {
      return std::max(1, CPU_COUNT_S(size, set.get()));
    }
    if (errno != EINVAL) break;
  }
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

std::string format_gib(std::int64_t bytes) {
  return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / gib);
}

}  // namespace

slots_estimate estimate_slots(const host_resources& host, const sandbox_size& sandbox,
                              const sizing_policy& policy) {
  slots_estimate e;
  e.cpus = static_cast<double>(host.affinity_cpus);
  if (host.cpu_quota && *host.cpu_quota < e.cpus) e.cpus = *host.cpu_quota;
  e.memory_bytes = host.mem_available_bytes;
  if (host.mem_limit_bytes && *host.mem_limit_bytes < e.memory_bytes) {
    e.memory_bytes = *host.mem_limit_bytes;
  }

  const double sandbox_bytes =
      static_cast<double>(std::max<std::int64_t>(1, sandbox.memory_mb) * mib);
  e.by_cpus = whole_slots(e.cpus * policy.cpu_oversubscription / std::max(sandbox.cpus, 0.01),
                          policy.max_slots);
  e.by_memory =
      whole_slots(static_cast<double>(e.memory_bytes) * policy.memory_fraction / sandbox_bytes,
                  policy.max_slots);

  const int fit = std::min(e.by_cpus, e.by_memory);
  if (fit < 1) {
    e.slots = 1;
    e.limited_by = "the minimum of 1";
  } else if (fit > policy.max_slots) {
    e.slots = policy.max_slots;
    e.limited_by = fmt::format("the maximum of {}", policy.max_slots);
  } else {
    e.slots = fit;
    if (e.by_cpus < e.by_memory) {
      e.limited_by = "cpus";
    } else if (e.by_memory < e.by_cpus) {
      e.limited_by = "memory";
    } else {
      e.limited_by = "cpus and memory";
    }
  }

  std::string cpus = fmt::format("cpus {:g}", e.cpus);
  if (host.cpu_quota && *host.cpu_quota < static_cast<double>(host.affinity_cpus)) {
    cpus += fmt::format(" (cgroup quota; {} in the affinity mask)", host.affinity_cpus);
  }
  std::string memory = fmt::format("memory {}", format_gib(e.memory_bytes));
  if (host.mem_limit_bytes && *host.mem_limit_bytes < host.mem_available_bytes) {
    memory += fmt::format(" (cgroup limit; {} available)", format_gib(host.mem_available_bytes));
  } else {
    memory += " available";
  }
  e.explanation = fmt::format(
      "slots auto: {} ({} × {:g} / {:g} CPU per sandbox → {}, {} × {:g} / {} MiB per sandbox → {}; "
      "limited by {})",
      e.slots, cpus, policy.cpu_oversubscription, sandbox.cpus, e.by_cpus, memory,
      policy.memory_fraction, sandbox.memory_mb, e.by_memory, e.limited_by);
  return e;
}

std::optional<std::int64_t> parse_meminfo_available(std::string_view meminfo) {
  constexpr std::string_view key = "MemAvailable:";
  for (auto line : lines_of(meminfo)) {
    if (line.substr(0, key.size()) != key) continue;
    auto rest = trim(line.substr(key.size()));
    std::int64_t scale = 1;
    if (rest.size() > 2 && rest.substr(rest.size() - 2) == "kB") {  // the kernel's only unit here
      scale = 1024;
      rest.remove_suffix(2);
    }
    auto v = to_number<std::int64_t>(rest);
    if (!v || *v < 0) return std::nullopt;
    return *v * scale;
  }
  return std::nullopt;
}

std::optional<double> parse_cpu_max(std::string_view cpu_max) {
  auto s = trim(cpu_max);
  auto space = s.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  return parse_cfs_quota(s.substr(0, space), s.substr(space + 1));  // "max" fails to parse: none
}

std::optional<double> parse_cfs_quota(std::string_view quota_us, std::string_view period_us) {
  auto quota = to_number<std::int64_t>(quota_us);
  auto period = to_number<std::int64_t>(period_us);
  if (!quota || !period || *quota <= 0 || *period <= 0) return std::nullopt;  // -1: no quota
  return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<std::int64_t> parse_memory_limit(std::string_view text) {
  auto v = to_number<std::int64_t>(text);  // "max" fails to parse: no limit
  if (!v || *v <= 0 || *v >= no_memory_limit_from) return std::nullopt;
  return v;
}

std::optional<std::string> parse_cgroup_path(std::string_view proc_self_cgroup,
                                             std::string_view controller) {
  // Lines are "hierarchy-id:controller,controller:path"; cgroup v2's is "0::path".
  for (auto line : lines_of(proc_self_cgroup)) {
    auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    auto controllers = line.substr(first + 1, second - first - 1);
    auto path = std::string(trim(line.substr(second + 1)));
    if (controller.empty()) {
      if (controllers.empty()) return path;
      continue;
    }
    while (!controllers.empty()) {
      auto comma = controllers.find(',');
      if (controllers.substr(0, comma) == controller) return path;
      if (comma == std::string_view::npos) break;
      controllers.remove_prefix(comma + 1);
    }
  }
  return std::nullopt;
}

host_resources read_host_resources(const std::filesystem::path& root) {
  host_resources h;
  h.affinity_cpus = affinity_cpus();  // already narrowed by a cgroup cpuset

  if (auto meminfo = read_file(root / "proc/meminfo")) {
    h.mem_available_bytes = parse_meminfo_available(*meminfo).value_or(0);
  }

  const std::string self = read_file(root / "proc/self/cgroup").value_or("");
  const auto sys_cgroup = root / "sys/fs/cgroup";
  // Both versions are tried: a hybrid host mounts v1 controllers and an (empty) v2 tree.
  for (const auto& dir : cgroup_dirs(sys_cgroup, parse_cgroup_path(self, ""))) {
    if (auto s = read_file(dir / "cpu.max")) keep_lowest(h.cpu_quota, parse_cpu_max(*s));
    if (auto s = read_file(dir / "memory.max"))
      keep_lowest(h.mem_limit_bytes, parse_memory_limit(*s));
  }
  for (const auto& dir : cgroup_dirs(sys_cgroup / "cpu", parse_cgroup_path(self, "cpu"))) {
    auto quota = read_file(dir / "cpu.cfs_quota_us");
    auto period = read_file(dir / "cpu.cfs_period_us");
    if (quota && period) keep_lowest(h.cpu_quota, parse_cfs_quota(*quota, *period));
  }
  for (const auto& dir : cgroup_dirs(sys_cgroup / "memory", parse_cgroup_path(self, "memory"))) {
    if (auto s = read_file(dir / "memory.limit_in_bytes")) {
      keep_lowest(h.mem_limit_bytes, parse_memory_limit(*s));
    }
  }
  return h;
}

}  // namespace sandlot::orchestrator

namespace sandlot::orchestrator {

slot_share share_per_slot(const host_resources& host, int slots, const sandbox_size& sandbox,
                          const sizing_policy& policy) {
  // The same usable figures estimate_slots works from.
  const slots_estimate usable = estimate_slots(host, sandbox, policy);
  const double n = std::max(1, slots);
  slot_share s;
  s.memory_mb = std::max<std::int64_t>(
      sandbox.memory_mb,
      static_cast<std::int64_t>(static_cast<double>(usable.memory_bytes) * policy.memory_fraction / n / mib));
  s.cpus = std::max(sandbox.cpus, std::floor(usable.cpus * policy.cpu_oversubscription / n * 100) / 100);
  // No host figure bounds processes as such; 4× the default sandbox's pids per slot.
  s.pids = 4 * protocol::lease_request{}.pids_limit;
  s.disk_mb = 2048;
  return s;
}

}  // namespace sandlot::orchestrator
