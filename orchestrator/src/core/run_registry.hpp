// The runs the daemon remembers: each run's leases and fixtures in order (its timeline), the image
// ids its leases are pinned to, and when it was last active. Forgotten a while after it goes
// idle (--keep-runs), or when more than --keep-runs-count are remembered.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fixture.hpp"
#include "lease.hpp"
#include "run_timeline.hpp"
#include "service_options.hpp"

namespace sandlot::orchestrator {

using lease_ptr = std::shared_ptr<lease>;

/// One line of GET /v1/runs.
/// What GET /v1/runs and the status list for a run.
using run_listing = protocol::run_summary;

class run_registry {
 public:
  using clock = std::chrono::steady_clock;

  explicit run_registry(const service_options& opts) : opts_(opts) {}

  /// Adds a new lease to its run (starting the run on its first record); beyond max_run_records
  /// the run's oldest ended lease record goes.
  void add_lease(const lease_ptr& l);
  /// The lease was given its slots (its admitted_at is set); kept in the run's running totals.
  void lease_admitted(const lease& l);
  /// The lease is final (its ended_at is set).
  void lease_ended(const lease& l);
  void add_fixture(const fixture_ptr& f);
  void touch(const std::string& run, clock::time_point when);

  /// The image id the run's leases of `image` are made from, once one was pinned.
  std::optional<std::string> pinned(const std::string& run, const std::string& image) const;
  /// Pins `image` to `id` unless a lease of the run got there first; returns the id to use.
  std::string pin(const std::string& run, const std::string& image, std::string id);
  /// The image went away from the engine: the run's next lease pins it anew.
  void unpin(const std::string& run, const std::string& image);

  /// Forgets idle runs past keep_runs, then the least recently active beyond keep_runs_count.
  /// `forget_fixture` is told of each fixture that goes with its run.
  void prune(clock::time_point now, const std::function<void(const std::string& fixture_id)>& forget_fixture);

  bool exists(const std::string& run) const { return runs_.count(run) != 0; }
  /// 404 (api_error) for a run not remembered.
  run_timeline timeline(const std::string& run, int slots_total) const;
  /// `slots_total` is the budget the efficiency is measured against (ideal = max(slot time ÷
  /// slots_total, longest lease), as the run report has it).
  std::vector<run_listing> list(int slots_total) const;
  std::vector<fixture_ptr> fixtures_of(const std::string& run) const;
  void mark_ended(const std::string& run);

 private:
  /// What GET /v1/runs and the status say of a run, kept up to date lease by lease so that a
  /// status costs O(runs), not O(leases): live count and efficiency without a pass over them.
  struct totals {
    std::optional<clock::time_point> first;  // the first lease's queueing: the wall's start
    std::size_t live = 0;           // leases not ended
    double ended_slot_s = 0;        // slot-seconds held by ended leases
    double ended_longest_s = 0;     // longest hold among them
    clock::time_point last_end{};   // latest end so far
    int running_slots = 0;          // slots held by live admitted leases
    double running_slot_start = 0;  // Σ slots × admitted_at (seconds from `first`) over them
    std::multiset<clock::time_point> running_since;  // their admitted_at: the earliest is the longest
  };
  struct record {
    std::string id;
    clock::time_point first_queued;
    std::chrono::system_clock::time_point started_wall;
    clock::time_point last_activity;
    std::vector<lease_ptr> leases;
    std::vector<fixture_ptr> fixtures;
    bool ended = false;
    bool trimmed = false;  // its oldest lease records were dropped (max_run_records)
    std::map<std::string, std::string> images;  // reference → image id, fixed by its first lease
    totals sums;
    bool live() const;
    /// ideal ÷ wall so far, over the leases admitted (the run report's summary); none before a
    /// lease held a slot.
    std::optional<double> efficiency(int slots_total, clock::time_point now) const;
  };
  record& open(const std::string& run, clock::time_point when);
  const record& find(const std::string& run) const;

  const service_options& opts_;
  std::map<std::string, record> runs_;
};

}  // namespace sandlot::orchestrator
