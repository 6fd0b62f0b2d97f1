// The core's figures for /metrics: counters fed by the event hub, latency histograms observed by
// the lease lifecycle, and the live gauges read when asked. api/metrics_text renders them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <sandlot/protocol.hpp>

#include "event_hub.hpp"
#include "metrics.hpp"

namespace sandlot::orchestrator {

class lease_telemetry {
 public:
  /// Counts leases created (their "queued" event) and ended (their final state's event).
  explicit lease_telemetry(event_hub& hub);
  ~lease_telemetry();
  lease_telemetry(const lease_telemetry&) = delete;
  lease_telemetry& operator=(const lease_telemetry&) = delete;

  std::uint64_t created = 0;
  std::uint64_t backfilled = 0;  // admissions past a wide lease's reservation (EASY backfill)
  std::map<protocol::lease_state, std::uint64_t> ended;  // by final state
  histogram wait_seconds{default_latency_buckets()};       // queued → admitted (slot wait)
  histogram gate_seconds{default_latency_buckets()};       // time at the image gate
  histogram ready_seconds{default_latency_buckets()};      // admitted → ready (gate + start)
  // admitted → ready for leases served by a warm sandbox: milliseconds, so finer buckets.
  histogram warm_adoption_seconds{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}};
  /// Engine failures that cost a lease its start or an image its pull, by provider_failure's
  /// name: a fixed set of labels.
  std::map<std::string, std::uint64_t, std::less<>> engine_errors;

 private:
  event_hub& hub_;
  int subscription_;
};

/// Everything /metrics shows, read at one moment.
struct core_metrics {
  int slots_total = 0;
  int slots_in_use = 0;
  int queue_length = 0;
  bool ready = false;
  std::map<protocol::lease_state, int> live;  // live leases by state
  std::uint64_t pulls_started = 0;
  std::uint64_t pulls_failed = 0;
  bool draining = false;
  std::uint64_t evictions = 0;
  std::size_t event_streams = 0;
  std::uint64_t pull_bytes = 0;        // bytes the engine reported pulled, all images
  double pull_seconds = 0;             // time spent in finished pull flights
  std::uint64_t pulls_finished = 0;
  bool warm_enabled = false;           // --warm given
  std::uint64_t warm_hits = 0;         // leases served by a warm sandbox
  std::uint64_t warm_misses = 0;       // leases of a warmed image that were created cold
  std::uint64_t warm_evictions = 0;    // warm sandboxes removed unused (a lease needed the slot, demand passed)
  std::map<std::string, int> warm_ready;  // ready warm sandboxes per image reference
  std::vector<protocol::engine_status> engines;  // a pool's engines; empty for one engine
  const lease_telemetry* counts = nullptr;  // valid while the lease service lives
};

}  // namespace sandlot::orchestrator
