// The lease core's front: the API layer calls these, one per endpoint. It owns the leases and
// ties the broker (slots), the image gate (pulls), the provider (sandboxes), the fixtures and the
// runs together; every state change is published on the event hub.
//
// Where things are:
//   lease_service.cpp    requests: create, get, renew, release, commands, fixtures, runs, status
//   lease_lifecycle.cpp  admission, start-up (gate, create), and the end of a lease
//   housekeeping.cpp     the reaper (expiry), the orphan sweep, prepulls and shutdown
//   operator_control.cpp the operator's view and hands: lanes, why, drain, slots, evict
//
// Every member runs on one io_context thread: no locks, and no state is touched across threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "async_event.hpp"
#include "broker.hpp"
#include "commands.hpp"
#include "duration_book.hpp"
#include "event_hub.hpp"
#include "fixture_registry.hpp"
#include "image_gate.hpp"
#include "lease.hpp"
#include "run_registry.hpp"
#include "run_timeline.hpp"
#include "sandbox_provider.hpp"
#include "service_options.hpp"
#include "telemetry.hpp"
#include "warm_pool.hpp"

namespace sandlot::orchestrator {

class lease_service {
 public:
  using clock = std::chrono::steady_clock;

  lease_service(boost::asio::any_io_executor ex, sandbox_provider& provider, service_options opts);
  ~lease_service();

  /// Connects to the provider, removes what an earlier instance left, starts prepulls, the reaper
  /// and the orphan sweep. Throws if the provider cannot be reached.
  boost::asio::awaitable<void> start();
  /// Fails queued leases, removes every sandbox, stops the reaper.
  boost::asio::awaitable<void> shutdown();

  bool ready() const noexcept { return prepull_done_; }
  bool draining() const noexcept { return draining_; }
  bool shutting_down() const noexcept { return shutting_down_; }
  /// Notified once shutdown begins: streams that outlive requests (GET /v1/events) end on it.
  async_event& stopping() noexcept { return stopping_; }
  /// GET /v1/events streams open now (the API counts them; /metrics shows them).
  void set_event_streams(std::size_t n) noexcept { event_streams_ = n; }
  const service_options& options() const noexcept { return opts_; }
  /// What has been learned of test durations (app/duration_store.* loads and saves it).
  duration_book& durations() noexcept { return durations_; }
  event_hub& events() noexcept { return events_; }

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
  /// GET /v1/runs: every run still remembered, oldest first.
  std::vector<run_listing> runs() const { return runs_.list(broker_.slots_total()); }
  /// DELETE /v1/runs/{id}: the run is over; its fixtures are torn down now.
  boost::asio::awaitable<run_timeline> end_run(const std::string& id);

  protocol::status_view status() const;
  /// The `warm` object of GET /v1/status, or nullopt without --warm.
  std::optional<protocol::warm_status> warm_status() const;

  // --- the operator (operator_control.cpp)
  /// GET /v1/leases?run=R: the live leases (not ended), oldest first; every run when `run` is empty.
  std::vector<protocol::lease_view> live_leases(const std::string& run) const;
  /// GET /v1/leases/{id}/why.
  protocol::why_view why(const std::string& id) const;
  /// POST /v1/drain?wait_s=N: stops admitting; returns once nothing holds slots or after wait_s.
  boost::asio::awaitable<protocol::drain_view> drain(int wait_s);
  /// POST /v1/resume: admits again.
  protocol::drain_view resume();
  /// PUT /v1/slots: a new budget; queued leases wider than it fail.
  protocol::slots_view set_slots(int slots);
  /// POST /v1/leases/{id}/evict: ends the lease as failed (code evicted) with the operator's reason.
  boost::asio::awaitable<protocol::lease_view> evict(const std::string& id, std::string reason);
  /// What /metrics shows.
  core_metrics metrics() const;
  /// True when nothing is in use: no lease queued, starting or held, no fixture alive and no
  /// fixture being built. --idle-exit stops the daemon only then.
  bool idle() const;

 private:
  // --- requests (lease_service.cpp)
  /// 403 for host network when not allowed; 400 naming the field and limit for more than
  /// `weight` slots' share of memory, CPUs, pids or disk.
  void check_asks(protocol::network_mode network, int weight, std::int64_t memory_mb, double cpus, int pids,
                  std::int64_t disk_mb, std::string_view what) const;
  /// 400/429/503 for a request this daemon cannot queue, before anything is recorded.
  void check_request(const protocol::lease_request& req) const;
  lease_ptr find(const std::string& id) const;
  /// The lease if it may run commands (410 if it ended or is ending, 409 while not ready); a heartbeat.
  lease_ptr commandable(const std::string& id);
  struct busy_guard;
  /// 410 lease_gone for a final lease, with the reason it ended.
  static protocol::api_error gone(const lease& l);
  /// 410 lease_gone for a lease whose end has begun (its sandbox is being removed).
  static protocol::api_error ending(const lease& l);
  protocol::lease_view view(const lease& l) const;
  void heartbeat(lease& l);
  protocol::drain_view drain_status() const;
  std::vector<protocol::lane_view> lane_views(clock::time_point now) const;
  std::vector<protocol::run_summary> run_summaries() const;
  std::string next_lease_name(const protocol::lease_request& req);
  /// How long a lease of this test is expected to hold its slots: learned, else its run's
  /// average, else 0 (unknown: the broker's default).
  double expected_hold(const protocol::lease_request& req) const;

  // --- lifecycle (lease_lifecycle.cpp)
  /// The one way a lease's stage changes; refuses a move the picture in lease.hpp does not draw.
  void move_to(lease& l, lease_stage to);
  /// The API-visible state; publishes it and wakes the lease's waiters.
  void set_state(lease& l, protocol::lease_state s, std::optional<std::string> waiting_for);
  /// Slots admitted or given back: the budget's use, on the event hub.
  void publish_budget();
  /// Starts every queued lease the broker can admit now, and fails lock-cycle waiters.
  void admit_waiting();
  boost::asio::awaitable<void> start_up(lease_ptr l);
  /// Returns once an end was asked for during the lease's start-up (`only_at_shutdown`: and the
  /// daemon has been shutting down for a few seconds).
  boost::asio::awaitable<void> until_stopped(lease_ptr l, bool only_at_shutdown);
  boost::asio::awaitable<void> pass_gate(lease_ptr l);
  boost::asio::awaitable<void> make_sandbox(lease_ptr l);
  /// Why a start-up failed, as the lease's end.
  end_request start_failure(const lease& l, std::exception_ptr failure);
  /// The image id the run's leases of `image` are made from: looked up once per run.
  boost::asio::awaitable<std::string> pinned_image(std::string run, std::string image);
  /// Ends a lease whoever owns it now (its start-up, or nobody) and waits until it is final.
  boost::asio::awaitable<void> request_end(lease_ptr l, end_request end);
  /// Removes the sandbox, gives the slots back and makes the lease final.
  boost::asio::awaitable<void> tear_down(lease_ptr l, end_request end);
  boost::asio::awaitable<void> remove_sandbox_of(lease_ptr l);

  // --- housekeeping (housekeeping.cpp)
  boost::asio::awaitable<void> reaper();
  void expire_overdue(clock::time_point now);
  void forget_old(clock::time_point now);
  boost::asio::awaitable<void> sweeper();
  boost::asio::awaitable<void> sweep_orphans();
  boost::asio::awaitable<void> remove_orphan(std::string sandbox_id, std::string lease_id);
  boost::asio::awaitable<void> prepull();
  /// An engine of the provider's pool went away (its leases fail engine_lost) or came back; the
  /// budget follows the slots that are up.
  void engine_changed(capacity_change c);
  /// A new budget: queued leases wider than it fail, saying `why` it shrank and what to do.
  void resize_budget(int slots, const std::string& why);

  // --- warm pools (warm_pool.cpp's bookkeeping; the engine work in housekeeping.cpp)
  /// At admission: claims a matching warm sandbox for `l` (or counts a miss), records demand.
  void warm_admitted(lease& l);
  /// Evicts warm sandboxes beyond idle capacity, other images than `keep_image` first.
  void trim_warm(const std::string& keep_image);
  /// Trims, then starts creates for keys below target within idle capacity.
  void fill_warm();
  boost::asio::awaitable<void> warm_filler();
  boost::asio::awaitable<void> make_warm(std::string id, warm_key key);
  /// Forgets `w` and removes its sandbox in the background (the orphan sweep retries a failure).
  void discard_warm(warm_sandbox w);
  boost::asio::awaitable<void> remove_warm(std::string sandbox_id);

  boost::asio::any_io_executor ex_;
  sandbox_provider& provider_;
  service_options opts_;
  event_hub events_;
  lease_telemetry telemetry_{events_};
  broker broker_;
  duration_book durations_;
  image_gate gate_;
  command_runner commands_;
  run_registry runs_;
  fixture_registry fixtures_;
  // Every lease the daemon remembers (live, and ended ones for keep_final), and the indexes that
  // keep status, metrics, expiry and warm refills from walking them all on each event.
  std::map<std::string, lease_ptr> leases_;
  std::map<std::string, lease_ptr> live_;               // created and not yet ended, by id
  std::map<protocol::lease_state, int> live_by_state_;  // live_ counted by API state, for /metrics
  int starting_up_ = 0;                                 // live leases in stage starting or stopping
  std::deque<std::string> ended_order_;                 // ended lease ids, oldest end first
  std::map<std::string, std::string> by_request_id_;  // run + request_id → lease id
  std::set<std::string> orphans_in_removal_;  // sandbox ids the sweep is removing now
  static constexpr std::size_t max_gate_images = 256;  // images the gate remembers beyond busy ones
  std::uint64_t name_counter_ = 0;
  bool prepull_done_ = false;
  bool shutting_down_ = false;
  bool draining_ = false;        // POST /v1/drain: nothing is admitted until POST /v1/resume
  async_event budget_changed_;   // slots admitted or given back: drain's wait
  async_event stopping_;
  std::uint64_t evictions_ = 0;
  warm_pool warm_;
  std::map<std::string, std::string> warm_adopted_;  // warm id → lease id, from its claim until that lease ends
  async_event warm_wake_;  // slots came back or a warm sandbox was taken: fill again now
  std::uint64_t warm_evictions_ = 0;
  std::size_t event_streams_ = 0;
};

}  // namespace sandlot::orchestrator
