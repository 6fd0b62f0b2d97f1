// GET /v1/events: the status as server-sent events (docs/api.md). A route on the streaming seam:
// it owns its connection until the client goes, the daemon stops, or a write stalls.
#pragma once

#include <chrono>
#include <cstddef>

#include "router.hpp"

namespace sandlot::orchestrator {

struct event_stream_limits {
  std::size_t max_streams = 32;                        // beyond: 503 overloaded
  std::chrono::milliseconds min_interval{250};         // at most one status event per interval
  std::chrono::milliseconds keep_alive{15000};         // a comment line when nothing changed
  std::chrono::milliseconds write_timeout{30000};      // a client that reads nothing for this long is dropped
};

/// The handler for GET /v1/events on `service`'s event hub.
stream_handler make_event_stream(lease_service& service, event_stream_limits limits = {});

}  // namespace sandlot::orchestrator
