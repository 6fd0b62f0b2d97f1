// Where a run's time went: the timeline of each lease of one run, its summary (wall time, sum of
// test times, speedup, ideal, efficiency) and the HTML report with an SVG lane per slot.
//
// Pure functions over plain records (core/run_timeline.hpp), so they are unit-tested without a
// daemon. The core fills a run_timeline; GET /v1/runs/{id} answers to_json(), GET /v1/runs/{id}/report.html
// answers render_html().
#pragma once

#include <optional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "run_timeline.hpp"

namespace sandlot::orchestrator {

/// Figures over the leases of a run. A lease's test time is the time it held its slots
/// (admitted to ended, or to now while live).
struct run_summary {
  int leases = 0;
  int failed = 0;   // failed or expired leases
  double wall_s = 0;        // first queued to last ended (or now while leases live)
  double sum_test_s = 0;    // sum of test times
  double slot_s = 0;        // sum of test time × slots
  double longest_s = 0;     // longest test time
  double ideal_s = 0;       // max(slot_s / slots_total, longest_s)
  double speedup = 0;       // sum_test_s / wall_s
  double efficiency = 0;    // ideal_s / wall_s
  double queue_s = 0;       // sum of queued → admitted
  double pull_s = 0;        // sum of time at the gate
};

run_summary summarize(const run_timeline& run);

/// The body of GET /v1/runs/{id}: the run, its summary and its leases and fixtures.
nlohmann::json to_json(const run_timeline& run);

/// A self-contained HTML page (inline SVG and CSS, no scripts, no external resources).
std::string render_html(const run_timeline& run);

}  // namespace sandlot::orchestrator
