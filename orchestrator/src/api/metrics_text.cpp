#include "metrics_text.hpp"

#include <fmt/format.h>

namespace sandlot::orchestrator {

using protocol::lease_state;

std::string render_metrics(const core_metrics& m) {
  std::string out;
  // Not "sandlot_slots_total": a _total suffix tells Prometheus tools a counter, and promtool
  // refuses it on a gauge (scripts/check-metrics). GET /v1/status keeps its "slots_total" field.
  render_metric(out, "sandlot_slots_budget", "gauge", "Slot budget (--slots, or what --slots auto derived).",
                m.slots_total);
  render_metric(out, "sandlot_slots_in_use", "gauge", "Slots held by admitted leases.", m.slots_in_use);
  render_metric(out, "sandlot_queue_length", "gauge", "Leases waiting for slots.", m.queue_length);
  render_metric(out, "sandlot_ready", "gauge", "1 once every prepull finished.", m.ready ? 1 : 0);
  out += "# HELP sandlot_leases Live leases by state.\n# TYPE sandlot_leases gauge\n";
  for (auto s : {lease_state::queued, lease_state::pulling, lease_state::starting, lease_state::ready}) {
    auto it = m.live.find(s);
    out += fmt::format("sandlot_leases{{state=\"{}\"}} {}\n", protocol::to_string(s), it == m.live.end() ? 0 : it->second);
  }
  out += "# HELP sandlot_leases_ended_total Leases that ended, by final state.\n"
         "# TYPE sandlot_leases_ended_total counter\n";
  for (auto s : {lease_state::released, lease_state::failed, lease_state::expired}) {
    auto it = m.counts->ended.find(s);
    out += fmt::format("sandlot_leases_ended_total{{state=\"{}\"}} {}\n", protocol::to_string(s),
                       it == m.counts->ended.end() ? 0 : it->second);
  }
  render_metric(out, "sandlot_leases_created_total", "counter", "Leases created.",
                static_cast<double>(m.counts->created));
  render_metric(out, "sandlot_backfills_total", "counter",
                "Leases admitted past a wide lease's reservation, expected to end before it (backfill).",
                static_cast<double>(m.counts->backfilled));
  render_metric(out, "sandlot_pulls_started_total", "counter", "Pull attempts sent to the engine.",
                static_cast<double>(m.pulls_started));
  render_metric(out, "sandlot_pulls_failed_total", "counter", "Pull attempts that failed.",
                static_cast<double>(m.pulls_failed));
  render_metric(out, "sandlot_pull_bytes_total", "counter", "Bytes the engine reported fetched by pulls that succeeded.",
                static_cast<double>(m.pull_bytes));
  render_metric(out, "sandlot_pull_seconds_total", "counter", "Seconds spent in pulls that succeeded.", m.pull_seconds);
  render_metric(out, "sandlot_pulls_succeeded_total", "counter", "Pulls that succeeded.",
                static_cast<double>(m.pulls_finished));
  out += "# HELP sandlot_engine_errors_total Engine failures that cost a lease its start or an image its pull, by reason.\n"
         "# TYPE sandlot_engine_errors_total counter\n";
  for (const auto& [reason, n] : m.counts->engine_errors) {
    out += fmt::format("sandlot_engine_errors_total{{reason=\"{}\"}} {}\n", reason, n);
  }
  render_metric(out, "sandlot_draining", "gauge", "1 while the daemon drains (POST /v1/drain).", m.draining ? 1 : 0);
  render_metric(out, "sandlot_evictions_total", "counter", "Leases ended by the operator (POST /v1/leases/{id}/evict).",
                static_cast<double>(m.evictions));
  render_metric(out, "sandlot_event_streams", "gauge", "Open GET /v1/events streams.",
                static_cast<double>(m.event_streams));
  m.counts->wait_seconds.render(out, "sandlot_lease_wait_seconds", "Time a lease waited for slots (queued to admitted).");
  m.counts->gate_seconds.render(out, "sandlot_lease_gate_seconds", "Time an admitted lease spent at the image gate.");
  m.counts->ready_seconds.render(out, "sandlot_lease_ready_seconds", "Time from admission to a ready sandbox.");
  // Warm pools (--warm): served always, zero without it, so dashboards need no second query.
  int warm_ready = 0;
  for (const auto& [image, n] : m.warm_ready) warm_ready += n;
  render_metric(out, "sandlot_warm_ready", "gauge", "Ready, never-used warm sandboxes (all images).", warm_ready);
  render_metric(out, "sandlot_warm_hits_total", "counter", "Leases served by a warm sandbox.",
                static_cast<double>(m.warm_hits));
  render_metric(out, "sandlot_warm_misses_total", "counter",
                "Leases of a warmed image that were created cold (none ready, or other limits).",
                static_cast<double>(m.warm_misses));
  render_metric(out, "sandlot_warm_evictions_total", "counter", "Warm sandboxes removed unused: a lease needed their slot, or their demand passed.",
                static_cast<double>(m.warm_evictions));
  m.counts->warm_adoption_seconds.render(out, "sandlot_warm_adoption_seconds",
                                         "Time from admission to ready for leases served by a warm sandbox.");
  // A pool of engines (--engine): one series per engine. Engine names are [A-Za-z0-9_.-] (config),
  // so they need no escaping as label values.
  if (!m.engines.empty()) {
    const auto per_engine = [&](const char* name, const char* type, const char* help, auto value) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
      for (const auto& e : m.engines) out += fmt::format("{}{{engine=\"{}\"}} {}\n", name, e.name, value(e));
    };
    per_engine("sandlot_engine_up", "gauge", "1 while the engine answers its probes.",
               [](const protocol::engine_status& e) { return e.up ? 1 : 0; });
    per_engine("sandlot_engine_slots", "gauge", "The engine's share of the budget (its slots=).",
               [](const protocol::engine_status& e) { return e.slots; });
    per_engine("sandlot_engine_slots_in_use", "gauge", "Slots of the sandboxes placed on the engine.",
               [](const protocol::engine_status& e) { return e.in_use; });
    per_engine("sandlot_engine_pulls_total", "counter", "Pulls this daemon made on the engine.",
               [](const protocol::engine_status& e) { return e.pulls; });
  }
  return out;
}

}  // namespace sandlot::orchestrator
