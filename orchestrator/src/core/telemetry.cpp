#include "telemetry.hpp"

namespace sandlot::orchestrator {

lease_telemetry::lease_telemetry(event_hub& hub) : hub_(hub) {
  subscription_ = hub_.subscribe([this](const core_event& e) {
    if (!e.lease_state) return;
    if (*e.lease_state == protocol::lease_state::queued) ++created;
    if (protocol::is_final(*e.lease_state)) ++ended[*e.lease_state];
  });
}

lease_telemetry::~lease_telemetry() { hub_.unsubscribe(subscription_); }

}  // namespace sandlot::orchestrator
