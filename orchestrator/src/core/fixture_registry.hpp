// The fixtures of every run: acquiring (the first holder becomes the creator), waiting for one,
// its creator's ready or fail, exec in it, takeover when a creator's lease ends, teardown when its
// run ends or its grace passes, and the loopback ports handed to fixtures that ask for one.
// The lease service checks the leases; this class is told when one ends (lease_ended).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <sandlot/protocol.hpp>

#include "async_event.hpp"
#include "commands.hpp"
#include "event_hub.hpp"
#include "fixture.hpp"
#include "image_gate.hpp"
#include "run_registry.hpp"
#include "sandbox_provider.hpp"
#include "service_options.hpp"

namespace sandlot::orchestrator {

class fixture_registry {
 public:
  using clock = std::chrono::steady_clock;

  struct parts {
    boost::asio::any_io_executor ex;
    sandbox_provider& provider;
    image_gate& gate;
    run_registry& runs;
    command_runner& commands;
    event_hub& events;
    const service_options& opts;
  };
  explicit fixture_registry(parts p) : p_(p) {}

  /// Lease `lease_id` of `run` (ready; checked by the caller) holds the run's fixture `req.name`,
  /// creating it, and making its sandbox, if nobody has.
  boost::asio::awaitable<protocol::fixture_view> acquire(std::string lease_id, std::string run,
                                                         protocol::fixture_request req);
  /// Returns once it is ready or gone, once `lease_id` is to create it, or at `deadline`.
  boost::asio::awaitable<protocol::fixture_view> wait(std::string id, std::string lease_id, clock::time_point deadline);
  protocol::fixture_view mark_ready(const std::string& id, protocol::fixture_ready_request req);
  boost::asio::awaitable<protocol::fixture_view> mark_failed(std::string id, protocol::fixture_fail_request req);
  boost::asio::awaitable<protocol::exec_result> exec(std::string id, std::string lease_id, protocol::exec_request req);

  /// The lease ended: its holds go; a fixture it was setting up passes to the next holder.
  void lease_ended(const std::string& lease_id);
  /// Reaper tick: tears down ready fixtures nobody held for their grace period.
  void reap_idle(clock::time_point now);
  boost::asio::awaitable<void> end_run(std::string run);
  /// From now on a fixture whose creator leaves is torn down, not made anew (shutdown begins).
  void stop_rebuilding() noexcept { shutting_down_ = true; }
  /// Tears every fixture down and waits for sandboxes still being made.
  boost::asio::awaitable<void> shutdown();
  /// Forgets a gone fixture (its run was forgotten).
  void forget(const std::string& id) { fixtures_.erase(id); }

  bool alive(const std::string& id) const;  // known and not gone
  /// No fixture alive and none being built.
  bool idle() const;

  /// 404 (api_error) for an unknown fixture.
  fixture_ptr find(const std::string& id) const;

 private:
  fixture_ptr live_fixture(const std::string& run, const std::string& name) const;
  protocol::fixture_view view_for(const fixture& f, const std::string& lease_id) const;
  fixture_ptr open(const std::string& lease_id, const std::string& run, protocol::fixture_request req);
  /// Makes (or remakes, after its creator left) the fixture's sandbox for its first holder.
  boost::asio::awaitable<void> build(fixture_ptr f);
  /// The sandbox, or the reason it could not be made.
  boost::asio::awaitable<std::string> make_sandbox(fixture_ptr f);
  boost::asio::awaitable<protocol::sandbox_info> pull_and_create(std::string fixture_id, std::string name,
                                                                 protocol::lease_request spec);
  boost::asio::awaitable<void> teardown(fixture_ptr f, std::string reason);
  void drop_hold(const fixture_ptr& f, const std::string& lease_id);
  void set_state(fixture& f, fixture_state s);
  std::optional<int> pick_port();
  /// Removes a sandbox; on failure logs "<what> failed: <reason>" (the orphan sweep retries).
  boost::asio::awaitable<void> remove_or_log(std::string sandbox_id, std::string what);

  parts p_;
  std::map<std::string, fixture_ptr> fixtures_;  // by id, gone ones until their run is forgotten
  std::vector<int> ports_in_use_;
  int next_port_ = 0;
  int builds_ = 0;  // build() calls in progress; shutdown waits for them
  bool shutting_down_ = false;
  async_event builds_done_;
};

}  // namespace sandlot::orchestrator
