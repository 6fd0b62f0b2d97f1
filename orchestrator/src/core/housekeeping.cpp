// What the lease core does on its own: prepulls at start, the reaper (expiry of leases whose
// client stopped heartbeating, idle fixtures, forgetting old records), the orphan sweep (sandboxes
// nobody owns any more), and shutdown.
#include <malloc.h>

#include <algorithm>
#include <set>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ids.hpp"
#include "lease_service.hpp"
#include "within.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using protocol::errc;
using protocol::lease_state;

asio::awaitable<void> lease_service::start() {
  spdlog::info("{}", co_await provider_.connect());
  provider_.on_capacity_change([this](capacity_change c) { engine_changed(std::move(c)); });
  // A pool with an engine down at start serves only the slots that are up.
  if (const int up = provider_.slots_total(); up > 0 && up != broker_.slots_total()) {
    if (provider_.engines().empty()) {
      // One engine that sizes itself (a cluster's nodes): its figure is the budget.
      spdlog::info("budget {} slot(s) as the engine gives them, not --slots {}", up, broker_.slots_total());
    } else {
      spdlog::warn("budget {} slot(s), not {}: only the engines that answer count until the others join", up,
                   broker_.slots_total());
    }
    resize_budget(up, "while an engine of the pool is down; ask for fewer slots, or start that engine");
  }
  if (int removed = co_await provider_.remove_all_own(); removed > 0) {
    spdlog::warn("removed {} sandbox(es) an earlier orchestratord instance '{}' left behind", removed,
                 opts_.instance);
  }
  asio::co_spawn(ex_, reaper(), asio::detached);
  asio::co_spawn(ex_, sweeper(), asio::detached);
  asio::co_spawn(ex_, prepull(), asio::detached);
  if (warm_.enabled()) asio::co_spawn(ex_, warm_filler(), asio::detached);
}

void lease_service::engine_changed(capacity_change c) {
  if (!c.up) {
    const std::set<std::string> lost(c.lost_sandboxes.begin(), c.lost_sandboxes.end());
    // Collected first: an end may run up to its first suspension inside co_spawn.
    std::vector<lease_ptr> gone;
    for (const auto& [id, l] : live_) {
      if (l->sandbox && lost.contains(l->sandbox->id) && !l->ending()) gone.push_back(l);
      // Claimed at admission and not adopted yet: the start-up makes one instead.
      if (l->warm_claim && lost.contains(l->warm_claim->sandbox.id)) {
        warm_adopted_.erase(l->warm_claim->id);
        l->warm_claim.reset();
      }
    }
    for (const auto& id : lost) warm_.lose_sandbox(id);
    for (const auto& l : gone) {
      auto message = fmt::format("lease {} lost its sandbox: engine {} went away ({}); the test must run again",
                                 l->id, c.engine, c.reason);
      spdlog::warn("{}", message);
      asio::co_spawn(ex_, request_end(l, end_request{lease_state::failed, error_body_of(errc::engine_lost, message)}),
                     asio::detached);
    }
    events_.publish(event_kind::budget, {}, fmt::format("engine {} down: {}", c.engine, c.reason));
  } else {
    events_.publish(event_kind::budget, {}, fmt::format("engine {} up", c.engine));
  }
  // The budget follows the engines that are up; with none up it stays, and creates fail engine_lost.
  if (c.slots_total > 0 && c.slots_total != broker_.slots_total()) {
    resize_budget(c.slots_total, c.up ? std::string("as engine " + c.engine + " rejoined")
                                      : fmt::format("while engine {} is down; ask for fewer slots, or start it again",
                                                    c.engine));
  }
  warm_wake_.notify_all();
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
  // Collected first: an end may run up to its first suspension inside co_spawn, and a queued
  // lease's end leaves live_ without one.
  std::vector<lease_ptr> overdue;
  for (const auto& [id, l] : live_) {
    if (l->ending() || l->active_execs > 0 || l->active_polls > 0 || now < l->expires_at) continue;
    overdue.push_back(l);
  }
  for (auto& l : overdue) {
    auto message = fmt::format("lease {} expired: not renewed within ttl_s={}; the client stopped "
                               "heartbeating (crashed or hung?)",
                               l->id, l->req.ttl_s);
    spdlog::warn("{}", message);
    asio::co_spawn(ex_, request_end(l, end_request{lease_state::expired, error_body_of(errc::lease_gone, message)}),
                   asio::detached);
  }
}

void lease_service::forget_old(clock::time_point now) {
  // Leases end in ended_order_'s order, so the ones due to be forgotten are at its front.
  while (!ended_order_.empty()) {
    auto it = leases_.find(ended_order_.front());
    if (it != leases_.end()) {
      const lease& l = *it->second;
      if (now - l.ended_at <= opts_.keep_final) break;
      if (!l.req.request_id.empty()) {
        auto key = by_request_id_.find(l.req.run + "\n" + l.req.request_id);
        if (key != by_request_id_.end() && key->second == l.id) by_request_id_.erase(key);
      }
      leases_.erase(it);
    }
    ended_order_.pop_front();
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
    // A warm sandbox the pool keeps is nobody's orphan; one that stopped is of no use to a lease.
    if (warm_.holds(s.lease_id)) {
      if (!s.running) {
        if (auto lost = warm_.lose(s.lease_id)) {
          spdlog::warn("warm sandbox {} stopped (state '{}'); removing it, the pool makes another", lost->id, s.state);
          discard_warm(std::move(*lost));
        }
      }
      continue;
    }
    // An adopted warm sandbox is labelled with the pool's id: it belongs to the lease that took it.
    const auto adopted = warm_adopted_.find(s.lease_id);
    const std::string& lease_id = adopted == warm_adopted_.end() ? s.lease_id : adopted->second;
    auto it = leases_.find(lease_id);
    if (it != leases_.end() && !it->second->ended()) {
      // A ready lease whose sandbox stopped behind our back (the engine restarted, or its init
      // died): fail it with the reason now, rather than on the test's next command.
      auto& l = it->second;
      if (l->stage == lease_stage::ready && l->sandbox && l->sandbox->id == s.id && !s.running) {
        auto message = fmt::format("lease {}'s sandbox {} stopped (state '{}'): the engine restarted or the "
                                   "sandbox's init exited; lease a new one",
                                   lease_id, l->sandbox_name, s.state);
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
  // Warm sandboxes go with the final sweep below; none is handed out or made from now on.
  warm_.take_all();
  warm_wake_.notify_all();
  spdlog::info("shutting down: failing queued leases and removing every sandbox");
  std::vector<lease_ptr> live;
  live.reserve(live_.size());
  for (auto& [id, l] : live_) live.push_back(l);
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

// --- warm pools -------------------------------------------------------------------------------

void lease_service::warm_admitted(lease& l) {
  if (!warm_.enabled() || !warm_eligible(l.req)) return;
  const auto key = warm_key::of(l.req);
  warm_.lease_held(key, clock::now());
  if (auto w = warm_.claim(key)) {
    // Claimed now, before the slot count is compared with the pool, so the lease's own sandbox is
    // never the one evicted to make room for it. Adopted (or discarded) by its start-up.
    warm_adopted_[w->id] = l.id;
    l.warm_claim = std::move(*w);
  } else if (warm_.tracks(l.req.image, clock::now())) {
    warm_.miss(l.req.image);
  }
}

void lease_service::trim_warm(const std::string& keep_image) {
  if (!warm_.enabled()) return;
  const int idle = broker_.slots_total() - broker_.slots_in_use();
  const int before = warm_.count();
  for (auto& w : warm_.trim(idle, keep_image, clock::now())) {
    spdlog::info("warm sandbox {} ({}) evicted: its slot is needed, or its image's demand passed", w.id,
                 w.key.image);
    discard_warm(std::move(w));
  }
  // Ready ones are removed now; ones still being made when their create returns.
  warm_evictions_ += static_cast<std::uint64_t>(before - warm_.count());
}

void lease_service::fill_warm() {
  trim_warm({});
  // While draining nothing new is made (the operator is emptying the daemon), nor at shutdown.
  // Nor while a lease starts: a refill would compete with it for the engine and this thread.
  if (shutting_down_ || draining_) return;
  if (starting_up_ > 0) return;
  const int idle = broker_.slots_total() - broker_.slots_in_use() - warm_.count();
  if (idle <= 0) return;
  for (auto& c : warm_.plan_fill(idle, clock::now(), [] { return "warm-" + random_id(); })) {
    asio::co_spawn(ex_, make_warm(std::move(c.id), std::move(c.key)), asio::detached);
  }
}

asio::awaitable<void> lease_service::warm_filler() {
  spdlog::info("warm pools: {}", warm_.options().auto_size ? "auto (recent demand per image)" : "fixed counts");
  while (!shutting_down_) {
    fill_warm();
    // Woken when slots come back or are taken; the second covers auto demand that decays.
    co_await warm_wake_.wait_until(clock::now() + 1s);
  }
}

asio::awaitable<void> lease_service::make_warm(std::string id, warm_key key) {
  std::optional<protocol::sandbox_info> made;
  std::string image_id;
  std::exception_ptr failure;
  try {
    // Through the gate like a lease: one pull per image, whoever asks.
    co_await gate_.ensure(key.image);
    image_id = co_await provider_.image_id(key.image);
    const sandbox_spec spec{id, id, key.request(), image_id};
    const std::chrono::seconds limit(300);
    made = co_await within(limit, provider_.create(spec));
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure || !made) {
    std::string why = "no answer within 300 s";
    try {
      if (failure) std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      why = e.what();
    }
    spdlog::warn("warm sandbox of {} could not be made (retried in {} s): {}", key.image,
                 warm_.options().retry_after.count(), why);
    warm_.create_failed(id, clock::now());
    // A create cut short may still land: the orphan sweep removes it (the pool no longer holds it).
    co_return;
  }
  const std::string sandbox_id = made->id;
  if (!warm_.made(id, std::move(image_id), std::move(*made))) {
    // Evicted while being made, or the daemon is stopping.
    co_await remove_warm(sandbox_id);
    co_return;
  }
  spdlog::debug("warm sandbox {} of {} ready", id, key.image);
}

void lease_service::discard_warm(warm_sandbox w) {
  asio::co_spawn(ex_, remove_warm(std::move(w.sandbox.id)), asio::detached);
}

asio::awaitable<void> lease_service::remove_warm(std::string sandbox_id) {
  try {
    co_await provider_.remove(sandbox_id);
  } catch (const std::exception& e) {
    spdlog::warn("removing warm sandbox {} failed; the orphan sweep retries: {}", sandbox_id.substr(0, 12), e.what());
  }
  warm_wake_.notify_all();
}

}  // namespace sandlot::orchestrator
