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
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "async_event.hpp"
#include "broker.hpp"
#include "docker_provider.hpp"
#include "image_gate.hpp"
#include "metrics.hpp"

namespace sandlot::orchestrator {

struct service_options {
  std::string instance = "orchestratord";
  int slots = 4;
  std::vector<std::string> prepull;
  std::vector<std::string> allowed_registries;  // beyond loopback ones
  image_gate::options gate;
  std::chrono::milliseconds reap_interval{250};
  std::chrono::seconds orphan_sweep_interval{10};
  std::chrono::minutes keep_final{10};      // how long a final lease still answers GET
  std::size_t exec_output_limit = 8 * 1024 * 1024;
};

class lease_service {
 public:
  using clock = std::chrono::steady_clock;

  lease_service(boost::asio::any_io_executor ex, docker_provider& provider, service_options opts);
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
  /// DELETE /v1/leases/{id}: returns once the sandbox is gone and the slots are back.
  boost::asio::awaitable<protocol::lease_view> release(const std::string& id);

  protocol::status_view status() const;
  std::string metrics_text() const;

 private:
  struct lease;
  using lease_ptr = std::shared_ptr<lease>;

  lease_ptr find(const std::string& id) const;
  /// 410 lease_gone for a final lease, with the reason it ended.
  static protocol::api_error gone(const lease& l);
  protocol::lease_view view(const lease& l) const;
  void set_state(lease& l, protocol::lease_state s, std::optional<std::string> waiting_for);
  void touch(lease& l);
  void pump();
  boost::asio::awaitable<void> lifecycle(lease_ptr l);
  boost::asio::awaitable<void> finish(lease_ptr l, protocol::lease_state final_state,
                                      std::optional<protocol::error_body> error);
  boost::asio::awaitable<void> end_lease(lease_ptr l, protocol::lease_state final_state,
                                         std::optional<protocol::error_body> error);
  boost::asio::awaitable<void> reaper();
  boost::asio::awaitable<void> sweep_orphans();
  boost::asio::awaitable<void> prepull();
  std::string next_lease_name(const protocol::lease_request& req);

  boost::asio::any_io_executor ex_;
  docker_provider& provider_;
  service_options opts_;
  broker broker_;
  image_gate gate_;
  std::map<std::string, lease_ptr> leases_;
  std::map<std::string, std::string> by_request_id_;  // run + request_id → lease id
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
