// The lease lifecycle: queued → pulling → starting → ready → released (or failed / expired).
// It ties the broker (slots), the image gate (pulls) and the provider (sandboxes) together, wakes
// long-polls on every state change, and reaps leases whose client stopped heartbeating.
//
// Every member runs on one io_context thread: no locks, and no state is touched across threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "async_event.hpp"
#include "broker.hpp"
#include "image_gate.hpp"
#include "service_options.hpp"
#include "metrics.hpp"
#include "run_timeline.hpp"
#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

class lease_service {
 public:
  using clock = std::chrono::steady_clock;

  lease_service(boost::asio::any_io_executor ex, sandbox_provider& provider, service_options opts);
  ~lease_service();

  /// Negotiates with the engine, removes what an earlier instance left, starts prepulls and the
  /// reaper. Throws if the engine cannot be reached.
  boost::asio::awaitable<void> start();
  /// Fails queued leases, removes every sandbox, stops the reaper.
  boost::asio::awaitable<void> shutdown();

  bool ready() const noexcept { return prepull_done_; }
  const service_options& options() const noexcept { return opts_; }

  /// POST /v1/leases. Second of the pair: false when request_id matched an existing lease.
  std::pair<protocol::lease_view, bool> create(protocol::lease_request req);
  /// GET /v1/leases/{id}?wait_s=N.
  boost::asio::awaitable<protocol::lease_view> get(const std::string& id, int wait_s);
  /// POST /v1/leases/{id}/renew.
  protocol::renew_response renew(const std::string& id);
  /// POST /v1/leases/{id}/exec.
  boost::asio::awaitable<protocol::exec_result> exec(const std::string& id, protocol::exec_request req);
  /// PUT /v1/leases/{id}/files?path=P&mode=M: writes one file (its directory must exist).
  boost::asio::awaitable<void> write_file(const std::string& id, std::string path, std::string data, unsigned mode);
  /// GET /v1/leases/{id}/files?path=P: one regular file's bytes.
  boost::asio::awaitable<std::string> read_file(const std::string& id, std::string path);
  /// DELETE /v1/leases/{id}: returns once the sandbox is gone and the slots are back.
  boost::asio::awaitable<protocol::lease_view> release(const std::string& id);

  /// POST /v1/leases/{id}/outcome: the test's result, for the run report (any state).
  void set_outcome(const std::string& id, const std::string& outcome);

  /// POST /v1/leases/{id}/fixtures: hold the run's fixture, creating it if nobody has.
  boost::asio::awaitable<protocol::fixture_view> acquire_fixture(const std::string& lease_id,
                                                                 protocol::fixture_request req);
  /// GET /v1/fixtures/{id}?lease=L&wait_s=N: returns once it is ready or gone, once L is to
  /// create it, or after N s.
  boost::asio::awaitable<protocol::fixture_view> get_fixture(const std::string& id, const std::string& lease_id,
                                                             int wait_s);
  /// POST /v1/fixtures/{id}/ready: the creator publishes it.
  protocol::fixture_view fixture_ready(const std::string& id, protocol::fixture_ready_request req);
  /// POST /v1/fixtures/{id}/fail: its creator could not set it up; it is torn down and every
  /// holder's wait ends with the creator's message.
  boost::asio::awaitable<protocol::fixture_view> fixture_failed(const std::string& id,
                                                                protocol::fixture_fail_request req);
  /// POST /v1/fixtures/{id}/exec?lease=L: while it is being set up, only its creator may.
  boost::asio::awaitable<protocol::exec_result> fixture_exec(const std::string& id, const std::string& lease_id,
                                                             protocol::exec_request req);

  /// GET /v1/runs/{id}.
  run_timeline run(const std::string& id) const;
  /// GET /v1/runs: every run still remembered, newest last.
  nlohmann::json runs() const;
  /// DELETE /v1/runs/{id}: the run is over; its fixtures are torn down now.
  boost::asio::awaitable<run_timeline> end_run(const std::string& id);

  protocol::status_view status() const;
  /// True when nothing is in use: no lease queued, starting or held, no fixture alive and no
  /// fixture being built. --idle-exit stops the daemon only then.
  bool idle() const;
  std::string metrics_text() const;

 private:
  struct lease;
  using lease_ptr = std::shared_ptr<lease>;
  struct fixture;
  using fixture_ptr = std::shared_ptr<fixture>;
  struct run_record {
    std::string id;
    clock::time_point first_queued;
    std::chrono::system_clock::time_point started_wall;
    clock::time_point last_activity;
    std::vector<lease_ptr> leases;
    std::vector<fixture_ptr> fixtures;
    bool ended = false;
    bool trimmed = false;  // its oldest lease records were dropped (max_run_records)
    std::map<std::string, std::string> images;  // reference → image id, fixed by its first lease
  };

  /// 403 for host network when not allowed; 400 naming the field and limit for more than
  /// `weight` slots' share of memory, CPUs, pids or disk.
  void check_asks(protocol::network_mode network, int weight, std::int64_t memory_mb, double cpus, int pids,
                  std::int64_t disk_mb, std::string_view what) const;
  lease_ptr find(const std::string& id) const;
  /// The lease, if it is ready for commands (410 if it ended, 409 while not ready yet); a heartbeat.
  lease_ptr ready_lease(const std::string& id);
  struct busy_guard;
  /// 410 lease_gone for a final lease, with the reason it ended.
  static protocol::api_error gone(const lease& l);
  /// 410 lease_gone for a lease whose end has begun (its sandbox is being removed).
  static protocol::api_error ending(const lease& l);
  protocol::lease_view view(const lease& l) const;
  void set_state(lease& l, protocol::lease_state s, std::optional<std::string> waiting_for);
  void touch(lease& l);
  void pump();
  boost::asio::awaitable<void> lifecycle(lease_ptr l);
  /// The image id the run's leases of `image` are made from: looked up once per run.
  boost::asio::awaitable<std::string> pinned_image(std::string run, std::string image);
  boost::asio::awaitable<void> finish(lease_ptr l, protocol::lease_state final_state,
                                      std::optional<protocol::error_body> error);
  boost::asio::awaitable<void> end_lease(lease_ptr l, protocol::lease_state final_state,
                                         std::optional<protocol::error_body> error);
  boost::asio::awaitable<void> reaper();
  boost::asio::awaitable<void> sweeper();
  boost::asio::awaitable<void> sweep_orphans();
  boost::asio::awaitable<void> remove_orphan(std::string container_id, std::string lease_id);
  boost::asio::awaitable<void> prepull();
  std::string next_lease_name(const protocol::lease_request& req);
  boost::asio::awaitable<protocol::exec_result> exec_in(std::string container_id, std::string what,
                                                        protocol::exec_request req);

  fixture_ptr find_fixture(const std::string& id) const;
  fixture_ptr live_fixture(const std::string& run, const std::string& name) const;
  protocol::fixture_view fixture_view_for(const fixture& f, const std::string& lease_id) const;
  /// Makes (or remakes, after its creator left) the fixture's sandbox for its first holder.
  boost::asio::awaitable<void> build_fixture(fixture_ptr f);
  boost::asio::awaitable<protocol::sandbox_info> make_fixture_sandbox(std::string fixture_id, std::string name,
                                                                      protocol::lease_request spec);
  boost::asio::awaitable<void> teardown_fixture(fixture_ptr f, std::string reason);
  void drop_fixture_hold(const fixture_ptr& f, const std::string& lease_id);
  /// Removes a container; on failure logs "<what> failed: <reason>" and returns false.
  boost::asio::awaitable<bool> remove_or_log(std::string container_id, std::string what);
  std::optional<int> pick_port();
  void prune_runs(clock::time_point now);

  boost::asio::any_io_executor ex_;
  sandbox_provider& provider_;
  service_options opts_;
  broker broker_;
  image_gate gate_;
  std::map<std::string, lease_ptr> leases_;
  std::map<std::string, std::string> by_request_id_;  // run + request_id → lease id
  std::map<std::string, run_record> runs_;
  std::map<std::string, fixture_ptr> fixtures_;  // by id, gone ones until their run is forgotten
  std::vector<int> ports_in_use_;
  std::set<std::string> orphans_in_removal_;  // container ids the sweep is removing now
  static constexpr std::size_t max_gate_images = 256;  // images the gate remembers beyond busy ones
  int fixture_builds_ = 0;  // build_fixture calls in progress; shutdown waits for them
  int next_port_ = 0;
  std::uint64_t name_counter_ = 0;
  bool prepull_done_ = false;
  bool shutting_down_ = false;
  bool reaper_running_ = false;
  async_event reaper_stopped_;
  async_event idle_;  // notified whenever a lease becomes final

  // Telemetry.
  std::map<protocol::lease_state, std::uint64_t> leases_total_;  // by final state
  std::uint64_t leases_created_ = 0;
  histogram wait_seconds_{default_latency_buckets()};   // queued → admitted (slot wait)
  histogram ready_seconds_{default_latency_buckets()};  // admitted → ready (gate + start)
  histogram pull_wait_seconds_{default_latency_buckets()};  // time at the gate
};

}  // namespace sandlot::orchestrator
