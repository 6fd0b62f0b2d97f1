// The core's figures for /metrics: counters fed by the event hub, latency histograms observed by
// the lease lifecycle, and the live gauges read when asked. api/metrics_text renders them.
#pragma once

#include <cstdint>
#include <map>

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
  std::map<protocol::lease_state, std::uint64_t> ended;  // by final state
  histogram wait_seconds{default_latency_buckets()};       // queued → admitted (slot wait)
  histogram gate_seconds{default_latency_buckets()};       // time at the image gate
  histogram ready_seconds{default_latency_buckets()};      // admitted → ready (gate + start)

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
  const lease_telemetry* counts = nullptr;  // valid while the lease service lives
};

}  // namespace sandlot::orchestrator
