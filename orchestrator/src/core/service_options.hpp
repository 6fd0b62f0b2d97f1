// What the lease core is told at start: the budget, limits and timings (from app/config.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "broker.hpp"
#include "image_gate.hpp"
#include "warm_pool.hpp"

namespace sandlot::orchestrator {

/// What one slot of the budget entitles a lease to: a lease of weight w may ask for w times
/// these (the daemon's --max-memory, --max-cpus, --max-pids, --max-disk per slot).
struct slot_share {
  std::int64_t memory_mb = 0;
  double cpus = 0;
  int pids = 0;
  std::int64_t disk_mb = 0;
};

struct service_options {
  std::string instance = "orchestratord";
  int slots = 4;
  std::vector<std::string> prepull;
  std::vector<std::string> allowed_registries;  // beyond loopback ones
  image_gate::options gate;
  std::chrono::milliseconds reap_interval{250};
  std::chrono::seconds orphan_sweep_interval{10};
  std::chrono::minutes keep_final{10};      // how long a final lease still answers GET
  std::size_t exec_output_limit = 4 * 1024 * 1024;  // per stream (--max-output-bytes)
  int max_queued_per_run = 1000;  // more queued leases of one run get 429
  int fixture_port_min = 41000;  // loopback TCP ports handed to fixtures that ask for one
  int fixture_port_max = 41999;
  std::chrono::seconds fixture_make_timeout{300};  // pull and create of a fixture's sandbox
  std::chrono::minutes keep_runs{60};  // how long an idle run's timeline is kept
  std::size_t keep_runs_count = 100;   // most runs remembered; the oldest idle ones go first
  std::size_t max_run_records = 5000;  // lease records per run; the oldest ended ones go first

  // What a lease may ask for: host network only when allowed, and per slot of its weight at most
  // these (--max-memory, --max-cpus, --max-pids, --max-disk; defaults from sizing).
  bool allow_host_network = false;
  int max_ttl_s = 3600;
  slot_share per_slot{2048, 2.0, 1024, 2048};
  int max_fixtures = 8;  // live fixtures at once: their own budget beside --slots
  std::chrono::seconds shutdown_timeout{25};  // then the daemon exits anyway, saying what is left
  schedule order = schedule::duration;  // --schedule
  warm_options warm;  // --warm: ready sandboxes kept in idle capacity (warm_pool.hpp)
};

}  // namespace sandlot::orchestrator
