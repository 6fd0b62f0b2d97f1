// A once-per-run fixture as the core keeps it: one sandbox shared by the leases of a run that
// hold it, set up by its first holder (the creator) and torn down when the run ends or nobody
// has held it for its grace period.
//
//   creating ──creator says ready──▶ ready ──run ends / grace passes──▶ gone
//      └────── creator fails it, its sandbox cannot be made, run ends ──▶ gone
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <sandlot/protocol.hpp>

#include "async_event.hpp"

namespace sandlot::orchestrator {

enum class fixture_state { creating, ready, gone };
/// What a fixture is to one lease (fixture_view.role).
enum class fixture_role {
  creator,  // sets it up now
  waiting,  // holds it; waits for its creator
  user,     // holds a ready fixture
  none,     // does not hold it
};

std::string_view to_string(fixture_state s) noexcept;
std::string_view to_string(fixture_role r) noexcept;

struct fixture {
  using clock = std::chrono::steady_clock;

  std::string id;
  std::string name;
  std::string run;
  protocol::fixture_request spec;
  fixture_state state = fixture_state::creating;
  bool making = false;               // its sandbox is being (re)made
  std::string creator;               // the lease that sets it up, while creating
  std::vector<std::string> holders;  // lease ids, in the order they came
  std::optional<protocol::sandbox_info> sandbox;
  std::optional<int> port;
  nlohmann::json data = nlohmann::json::object();
  int creations = 0;
  int acquisitions = 0;
  std::optional<protocol::error_body> error;
  clock::time_point created_at = clock::now();
  clock::time_point idle_since = clock::now();
  std::optional<clock::time_point> ready_at;
  std::optional<clock::time_point> ended_at;
  async_event changed;

  bool gone() const noexcept { return state == fixture_state::gone; }
  bool held_by(const std::string& lease_id) const;
};

using fixture_ptr = std::shared_ptr<fixture>;

}  // namespace sandlot::orchestrator
