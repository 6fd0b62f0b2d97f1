// A run's timeline as plain records: what the core knows of each lease and fixture of one run.
// The core fills it (GET /v1/runs/{id}); report/run_report.hpp turns it into figures, JSON and HTML.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sandlot::orchestrator {

struct lock_record {
  std::string name;
  std::string mode;  // "shared" | "exclusive"
};

/// One lease of the run. Times are seconds since the run's first lease was queued; a phase the
/// lease never reached is nullopt.
struct lease_record {
  std::string id;
  std::string name;
  std::string test;
  std::string image;
  std::string state;         // lease state: queued, pulling, starting, ready, released, failed, expired
  std::string test_outcome;  // "passed" | "failed" as reported by the client, "" if unknown
  int slots = 1;
  std::vector<int> lanes;  // 0-based slot lanes it held while admitted
  std::vector<lock_record> locks;
  std::optional<double> queued_s;    // created and queued
  std::optional<double> admitted_s;  // got its slots (and locks)
  std::optional<double> pulled_s;    // passed the image gate
  std::optional<double> ready_s;     // sandbox ready
  std::optional<double> ended_s;     // released, failed or expired
  double pull_s = 0;                 // time spent waiting at the image gate
  std::optional<double> expected_s;  // hold time the broker expected when it admitted the lease
  bool backfilled = false;           // admitted past a wide lease's reservation
  std::string sandbox;               // container name, once it had one
  std::string engine;                // the pool engine it was placed on (empty with one engine)
  bool warm = false;                 // served by a warm sandbox (--warm) instead of a fresh create
  std::string error;                 // why it failed or expired
};

/// A once-per-run fixture of the run.
struct fixture_record {
  std::string id;
  std::string name;
  std::string state;  // creating, ready, gone
  int creations = 0;  // sandboxes made for it (more than one only after a creator died)
  int holders = 0;    // leases holding it now
  int acquisitions = 0;
  std::optional<int> port;
  std::optional<double> created_s;
  std::optional<double> ready_s;
  std::optional<double> ended_s;
};

struct run_timeline {
  std::string run;
  int slots_total = 1;
  std::string started_at;  // UTC, ISO 8601, of the first lease's queueing
  double started_unix_s = 0;  // the same instant, in seconds since the epoch (to line up runs)
  double now_s = 0;        // seconds since started_at when the timeline was taken
  bool ended = false;      // DELETE /v1/runs/{id} was called
  std::vector<lease_record> leases;  // in creation order
  std::vector<fixture_record> fixtures;
  std::map<std::string, int> engine_slots;    // with a pool: each engine's slots, by name
  std::map<std::string, std::string> images;  // each reference the run used → the image id it was pinned to
};

}  // namespace sandlot::orchestrator
