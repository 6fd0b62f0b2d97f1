// What the lease core does on its own: prepulls at start, the reaper (expiry of leases whose
// client stopped heartbeating, idle fixtures, forgetting old records), the orphan sweep (sandboxes
// nobody owns any more), and shutdown.
#include <malloc.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ids.hpp"
#include "lease_service.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using protocol::errc;
using protocol::lease_state;

asio::awaitable<void> lease_service::start() {
  spdlog::info("{}", co_await provider_.connect());
  if (int removed = co_await provider_.remove_all_own(); removed > 0) {
    spdlog::warn("removed {} sandbox(es) an earlier orchestratord instance '{}' left behind", removed,
                 opts_.instance);
  }
  asio::co_spawn(ex_, reaper(), asio::detached);
  asio::co_spawn(ex_, sweeper(), asio::detached);
  asio::co_spawn(ex_, prepull(), asio::detached);
}

asio::awaitable<void> lease_service::prepull() {
  // All prepulls go through the gate at once; its cap limits how many reach the registry.
  std::vector<std::string> images = opts_.prepull;
  int pending = static_cast<int>(images.size());
  async_event all_done;
  for (const auto& image : images) {
    asio::co_spawn(
        ex_,
        [this, image, &pending, &all_done]() -> asio::awaitable<void> {
          try {
            co_await gate_.ensure(image);
            spdlog::info("prepull: {} is present", image);
          } catch (const std::exception& e) {
            spdlog::error("prepull: {}", e.what());
          }
          if (--pending == 0) all_done.notify_all();
        },
        asio::detached);
  }
  while (pending > 0) co_await all_done.wait();
  prepull_done_ = true;
  spdlog::info("ready: {} prepull(s) finished", images.size());
}

void lease_service::expire_overdue(clock::time_point now) {
  for (auto& [id, l] : leases_) {
    if (l->ended() || l->ending() || l->active_execs > 0 || l->active_polls > 0 || now < l->expires_at) continue;
    auto message = fmt::format("lease {} expired: not renewed within ttl_s={}; the client stopped "
                               "heartbeating (crashed or hung?)",
                               id, l->req.ttl_s);
    spdlog::warn("{}", message);
    asio::co_spawn(ex_, request_end(l, end_request{lease_state::expired, error_body_of(errc::lease_gone, message)}),
                   asio::detached);
  }
}

void lease_service::forget_old(clock::time_point now) {
  for (auto it = leases_.begin(); it != leases_.end();) {
    it = (it->second->ended() && now - it->second->ended_at > opts_.keep_final) ? leases_.erase(it) : std::next(it);
  }
}

asio::awaitable<void> lease_service::reaper() {
  asio::steady_timer timer(ex_);
  auto next_prune = clock::now();
  while (!shutting_down_) {
    timer.expires_after(opts_.reap_interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (shutting_down_) break;
    const auto now = clock::now();
    expire_overdue(now);
    fixtures_.reap_idle(now);
    forget_old(now);
    if (now < next_prune) continue;
    // Bookkeeping that walks every run's records: every few seconds is plenty.
    next_prune = now + 5s;
    runs_.prune(now, [this](const std::string& fixture_id) { fixtures_.forget(fixture_id); });
    for (auto it = by_request_id_.begin(); it != by_request_id_.end();) {
      it = leases_.count(it->second) == 0 ? by_request_id_.erase(it) : std::next(it);
    }
    gate_.prune(max_gate_images);
    // Request bodies and engine answers of up to a few MiB come and go; give the freed pages back
    // so the daemon's resident size shows what it holds, not its busiest moment.
    ::malloc_trim(0);
  }
}

asio::awaitable<void> lease_service::sweeper() {
  // Apart from the reaper: a sweep waits on the engine, and expiries must never wait on a sweep.
  asio::steady_timer timer(ex_);
  while (!shutting_down_) {
    // Timed from the end of the last sweep, so a slow engine spaces sweeps out instead of stacking them.
    timer.expires_after(opts_.orphan_sweep_interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (shutting_down_) break;
    try {
      co_await sweep_orphans();
    } catch (const std::exception& e) {
      spdlog::warn("orphan sweep failed, retried in {} s: {}", opts_.orphan_sweep_interval.count(), e.what());
    }
  }
}

asio::awaitable<void> lease_service::remove_orphan(std::string sandbox_id, std::string lease_id) {
  spdlog::warn("removing orphaned sandbox {} (lease {})", sandbox_id.substr(0, 12), lease_id);
  try {
    co_await provider_.remove(sandbox_id);
  } catch (const std::exception& e) {
    spdlog::warn("removing orphaned sandbox {} failed; the next sweep retries: {}", sandbox_id.substr(0, 12),
                 e.what());
  }
  orphans_in_removal_.erase(sandbox_id);
}

asio::awaitable<void> lease_service::sweep_orphans() {
  // Sandboxes of this instance whose lease is unknown or already final: left by a create that was
  // cut short, or by a removal that failed. Live leases (even mid-create) are never touched.
  for (const auto& s : co_await provider_.list_own()) {
    auto it = leases_.find(s.lease_id);
    if (it != leases_.end() && !it->second->ended()) {
      // A ready lease whose sandbox stopped behind our back (the engine restarted, or its init
      // died): fail it with the reason now, rather than on the test's next command.
      auto& l = it->second;
      if (l->stage == lease_stage::ready && l->sandbox && l->sandbox->id == s.id && !s.running) {
        auto message = fmt::format("lease {}'s sandbox {} stopped (state '{}'): the engine restarted or the "
                                   "sandbox's init exited; lease a new one",
                                   s.lease_id, l->sandbox_name, s.state);
        spdlog::warn("{}", message);
        asio::co_spawn(ex_,
                       request_end(l, end_request{lease_state::failed, error_body_of(errc::sandbox_failed, message)}),
                       asio::detached);
      }
      continue;
    }
    if (fixtures_.alive(s.lease_id)) continue;
    // Another daemon's (same instance name, another host or still running): not ours to remove.
    if (!provider_.may_reap(s)) continue;
    // Each removal is a task of its own: one the engine stalls holds up neither the rest of the
    // sweep nor the next one, which skips it while it is still under way.
    if (!orphans_in_removal_.insert(s.id).second) continue;
    asio::co_spawn(ex_, remove_orphan(s.id, s.lease_id), asio::detached);
  }
}

asio::awaitable<void> lease_service::shutdown() {
  shutting_down_ = true;
  stopping_.notify_all();
  fixtures_.stop_rebuilding();
  spdlog::info("shutting down: failing queued leases and removing every sandbox");
  std::vector<lease_ptr> live;
  for (auto& [id, l] : leases_) {
    if (!l->ended()) live.push_back(l);
  }
  int pending = static_cast<int>(live.size());
  async_event all_done;
  for (auto& l : live) {
    asio::co_spawn(
        ex_,
        [this, l, &pending, &all_done]() -> asio::awaitable<void> {
          try {
            end_request end{lease_state::failed,
                            error_body_of(errc::shutting_down, "orchestratord shut down; the sandbox was removed")};
            co_await request_end(l, std::move(end));
          } catch (const std::exception& e) {
            spdlog::error("shutdown of lease {}: {}", l->id, e.what());
          }
          if (--pending == 0) all_done.notify_all();
        },
        asio::detached);
  }
  while (pending > 0) co_await all_done.wait();
  co_await fixtures_.shutdown();
  try {
    co_await provider_.remove_all_own();
  } catch (const std::exception& e) {
    spdlog::error("final sweep failed: {}", e.what());
  }
  spdlog::info("shutdown complete: {} lease(s) ended", live.size());
}

}  // namespace sandlot::orchestrator
