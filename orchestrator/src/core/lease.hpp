// One lease as the core keeps it, and the stages of its life.
//
//   queued ──admit──▶ starting ──sandbox up──▶ ready ──release/expire/fail──▶ ending ──▶ ended
//     │                 │  ▲                                                     ▲
//     │                 └──┴─ end asked for during start-up: stopping ───────────┤
//     └──────────────── released or failed while queued ─────────────────────────┘
//
// The stage is the core's own; `state` is what the API shows (queued, pulling, starting, ready,
// released, failed, expired). Every change of stage goes through lease_service::move_to, which
// refuses a transition not drawn above.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sandlot/protocol.hpp>

#include "async_event.hpp"
#include "warm_pool.hpp"

namespace sandlot::orchestrator {

enum class lease_stage {
  queued,    // in the broker's queue; holds nothing
  starting,  // holds its slots; its start-up (the image gate, then create) runs and owns it
  stopping,  // an end was asked for during start-up; the start-up hands over when it sees it
  ready,     // holds its slots and a running sandbox: commands are allowed
  ending,    // its sandbox is being removed; the slots come back once it is gone
  ended,     // final: kept only for GET and the run's timeline
};

std::string_view to_string(lease_stage s) noexcept;
/// The arrows of the picture above.
bool allowed(lease_stage from, lease_stage to) noexcept;

/// How a lease is to end: its final state and, unless released by its holder, why.
struct end_request {
  protocol::lease_state final_state = protocol::lease_state::released;
  std::optional<protocol::error_body> error;
};

struct lease {
  using clock = std::chrono::steady_clock;

  std::string id;
  std::string name;
  protocol::lease_request req;
  lease_stage stage = lease_stage::queued;
  protocol::lease_state state = protocol::lease_state::queued;  // as the API shows it
  std::optional<std::string> waiting_for = "slots";
  std::optional<protocol::error_body> error;  // once ended
  std::optional<protocol::sandbox_info> sandbox;
  std::optional<end_request> end;  // set on entering stopping or ending: what renew and exec answer

  clock::time_point created_at = clock::now();
  clock::time_point state_since = created_at;    // when `state` last changed
  std::optional<clock::time_point> admitted_at;  // holds slots from then until they are given back
  std::optional<clock::time_point> pulled_at;    // passed the gate
  std::optional<clock::time_point> ready_at;
  clock::time_point ended_at{};
  clock::time_point expires_at{};
  double pull_s = 0;                  // time at the gate
  double expected_s = 0;              // hold time the broker expected (learned, or the average)
  bool backfilled = false;            // admitted past a wide lease's reservation
  std::vector<int> lanes;             // slot lanes while admitted (kept for the report)
  std::string sandbox_name;           // kept after release, for the report
  std::string sandbox_engine;         // the pool engine it ran on (empty with one engine), ditto
  std::string test_outcome;           // "passed" / "failed", reported by the client
  // Warm pools (warm_pool.hpp): a ready sandbox claimed for it at admission, until its start-up
  // adopts it (its run's image id matches) or discards it; `warm` once it was adopted.
  std::optional<warm_sandbox> warm_claim;
  bool warm = false;

  int active_execs = 0;  // commands and file transfers in flight
  int active_polls = 0;  // GET ?wait_s=N calls waiting: a client blocked in one is alive
  async_event changed;         // every change of state
  async_event stop_requested;  // an end was asked for during start-up

  bool starting_up() const noexcept { return stage == lease_stage::starting || stage == lease_stage::stopping; }
  /// An end was asked for or is under way, but the lease is not final yet.
  bool ending() const noexcept { return stage == lease_stage::stopping || stage == lease_stage::ending; }
  bool ended() const noexcept { return stage == lease_stage::ended; }
  /// The engine may have been asked for its sandbox (the API state reached "starting").
  bool create_sent() const noexcept { return sandbox.has_value() || state == protocol::lease_state::starting; }
};

}  // namespace sandlot::orchestrator
