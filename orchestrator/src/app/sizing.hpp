// `--slots auto`: a slot budget derived from the host's usable CPUs and memory and the default size
// of a sandbox. The arithmetic and the parsing of /proc and cgroup files are pure functions over
// strings and plain facts, so they are unit-tested without the machine; read_host_resources() is
// the only part that looks at the machine. docs/sizing.md explains the formula.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <sandlot/protocol.hpp>
#include <string>
#include <string_view>

#include "service_options.hpp"

namespace sandlot::orchestrator {

/// What the host offers this process, as measured. Limits that are not set are nullopt.
struct host_resources {
  int affinity_cpus = 1;                        // CPUs in the sched_getaffinity mask
  std::optional<double> cpu_quota;              // cgroup CPU quota in CPUs (quota / period)
  std::int64_t mem_available_bytes = 0;         // MemAvailable from /proc/meminfo
  std::optional<std::int64_t> mem_limit_bytes;  // cgroup memory limit
};

/// What one slot stands for: a sandbox of the lease defaults, so the two cannot drift.
struct sandbox_size {
  double cpus = protocol::lease_request{}.cpus;
  std::int64_t memory_mb = protocol::lease_request{}.memory_mb;
};

/// The factors of the formula; docs/sizing.md says why these values.
struct sizing_policy {
  double cpu_oversubscription = 2.5;  // sandboxes per CPU a sandbox may use: e2e tests mostly wait
  double memory_fraction = 0.75;      // of the usable memory; the rest is for engine, tests, cache
  int max_slots = 4096;               // the --slots range
};

struct slots_estimate {
  int slots = 1;
  double cpus = 0;                // usable: affinity, capped by the quota
  std::int64_t memory_bytes = 0;  // usable: MemAvailable, capped by the limit
  int by_cpus = 0;                // floor(cpus × oversubscription / sandbox cpus)
  int by_memory = 0;              // floor(memory × fraction / sandbox memory)
  std::string limited_by;         // "cpus", "memory", "the minimum of 1" or "the maximum of 4096"
  std::string explanation;        // one line for the log, e.g. "slots auto: 5 (cpus 2 → 5, ...)"
};

/// slots = clamp(min(by_cpus, by_memory), 1, max_slots). Pure: same facts, same answer.
slots_estimate estimate_slots(const host_resources& host, const sandbox_size& sandbox = {},
                              const sizing_policy& policy = {});

/// The host's usable memory × memory_fraction and CPUs × oversubscription, divided by `slots`,
/// and never less than a default sandbox (so default leases always fit). Pure.
slot_share share_per_slot(const host_resources& host, int slots, const sandbox_size& sandbox = {},
                          const sizing_policy& policy = {});

/// MemAvailable in bytes from the text of /proc/meminfo; nullopt if the line is missing.
std::optional<std::int64_t> parse_meminfo_available(std::string_view meminfo);

/// The quota in CPUs from cgroup v2 cpu.max ("150000 100000"); nullopt for "max" or bad text.
std::optional<double> parse_cpu_max(std::string_view cpu_max);

/// The quota in CPUs from cgroup v1 cpu.cfs_quota_us and cpu.cfs_period_us; nullopt for -1.
std::optional<double> parse_cfs_quota(std::string_view quota_us, std::string_view period_us);

/// A cgroup memory limit in bytes (v2 memory.max or v1 memory.limit_in_bytes); nullopt for "max"
/// and for v1's "unlimited" (a page-rounded INT64_MAX) or anything else no host could have.
std::optional<std::int64_t> parse_memory_limit(std::string_view text);

/// This process's cgroup path for a v1 controller ("cpu", "memory") or, with an empty controller,
/// the v2 path, from the text of /proc/self/cgroup; nullopt if it is not listed.
std::optional<std::string> parse_cgroup_path(std::string_view proc_self_cgroup,
                                             std::string_view controller);

/// Measures the host: sched_getaffinity, /proc/meminfo and the cgroup limits (v2 and v1) of this
/// process's cgroup and its ancestors, the tightest winning. `root` lets tests point /proc and
/// /sys at a fake tree; the affinity is always the real one.
host_resources read_host_resources(const std::filesystem::path& root = "/");

}  // namespace sandlot::orchestrator
