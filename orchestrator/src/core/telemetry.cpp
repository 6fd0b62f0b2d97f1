#include "telemetry.hpp"

namespace sandlot::orchestrator {

lease_telemetry::lease_telemetry(event_hub& hub) : hub_(hub) {
  subscription_ = hub_.subscribe([this](const core_event& e) {
    if (e.kind != event_kind::lease) return;
    // Lease events carry the API's word for the state (protocol::to_string).
    const auto state = protocol::lease_state_from_string(e.state);
    if (state == protocol::lease_state::queued) ++created;
    if (protocol::is_final(state)) ++ended[state];
  });
}

lease_telemetry::~lease_telemetry() { hub_.unsubscribe(subscription_); }

}  // namespace sandlot::orchestrator
