// The operator's view and hands on a running daemon: the slot lanes and who holds them, why a
// lease waits, drain and resume, a new budget, and ending one lease by force. Each is an endpoint
// first (docs/api.md, "Runtime control"); the `sandlot` CLI and the dashboard are only clients.
#include <algorithm>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ids.hpp"
#include "lease_service.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using protocol::api_error;
using protocol::errc;
using protocol::lease_state;

namespace {

double seconds_since(lease::clock::time_point t, lease::clock::time_point now) {
  return std::max(0.0, std::chrono::duration<double>(now - t).count());
}

protocol::holder_view holder_of(const lease& l, lease::clock::time_point now) {
  protocol::holder_view h;
  h.lease = l.id;
  h.name = l.name;
  h.test = l.req.test;
  h.run = l.req.run;
  h.slots = l.req.slots;
  h.since_s = seconds_since(l.admitted_at.value_or(l.created_at), now);
  return h;
}

}  // namespace

std::vector<protocol::lane_view> lease_service::lane_views(clock::time_point now) const {
  std::vector<protocol::lane_view> lanes(static_cast<std::size_t>(std::max(broker_.lanes(), broker_.slots_total())));
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    lanes[i].lane = static_cast<int>(i);
    lanes[i].retiring = static_cast<int>(i) >= broker_.slots_total();
  }
  for (const auto& h : broker_.holdings()) {
    auto it = leases_.find(h.lease_id);
    if (it == leases_.end()) continue;
    const lease& l = *it->second;
    for (int lane : h.lanes) {
      if (lane < 0 || static_cast<std::size_t>(lane) >= lanes.size()) continue;
      auto& v = lanes[static_cast<std::size_t>(lane)];
      v.lease = l.id;
      v.name = l.name;
      v.test = l.req.test;
      v.run = l.req.run;
      v.state = l.state;
      v.since_s = seconds_since(l.admitted_at.value_or(l.created_at), now);
    }
  }
  return lanes;
}

std::vector<protocol::run_summary> lease_service::run_summaries() const { return runs_.list(broker_.slots_total()); }

std::vector<protocol::lease_view> lease_service::live_leases(const std::string& run) const {
  std::vector<const lease*> live;
  for (const auto& [id, l] : live_) {
    if (run.empty() || l->req.run == run) live.push_back(l.get());
  }
  std::stable_sort(live.begin(), live.end(), [](const lease* a, const lease* b) { return a->created_at < b->created_at; });
  std::vector<protocol::lease_view> out;
  out.reserve(live.size());
  for (const auto* l : live) out.push_back(view(*l));
  return out;
}

protocol::why_view lease_service::why(const std::string& id) const {
  const auto l = find(id);
  const auto now = clock::now();
  protocol::why_view w;
  w.lease = view(*l);
  w.since_s = seconds_since(l->state_since, now);
  w.waiting_for = w.lease.waiting_for;
  if (l->state == lease_state::ready || l->ending() || l->ended()) w.waiting_for.reset();
  const std::string reason = w.waiting_for.value_or("");

  if (reason == "slots" || reason == "draining") {
    for (const auto& h : broker_.holdings()) {
      if (auto it = leases_.find(h.lease_id); it != leases_.end()) w.holders.push_back(holder_of(*it->second, now));
    }
  } else if (reason.rfind("lock:", 0) == 0) {
    const std::string lock = reason.substr(5);
    for (const auto& h : broker_.holdings()) {
      const bool holds = std::any_of(h.locks.begin(), h.locks.end(), [&](const lock_request& r) { return r.name == lock; });
      if (!holds) continue;
      if (auto it = leases_.find(h.lease_id); it != leases_.end()) w.holders.push_back(holder_of(*it->second, now));
    }
  } else if (reason == "image") {
    for (auto& img : gate_.snapshot()) {
      if (img.image == l->req.image) w.pull = std::move(img);
    }
  }

  if (!w.waiting_for) {
    w.summary = l->ended() ? fmt::format("{} {:.1f}s ago{}", protocol::to_string(l->state), w.since_s,
                                         l->error ? ": " + l->error->message : std::string())
                           : fmt::format("{} for {:.1f}s; it waits for nothing", protocol::to_string(l->state),
                                         w.since_s);
  } else if (reason == "slots") {
    w.summary = fmt::format("queued at position {} for {} slot(s); {} of {} are held by {} lease(s)",
                            w.lease.position.value_or(0), l->req.slots, broker_.slots_in_use(),
                            broker_.slots_total(), w.holders.size());
    // The schedule's part: the reservation, and what this lease is expected to take.
    if (auto r = broker_.reserved()) {
      w.summary += r->lease_id == l->id
                       ? fmt::format("; it holds the reservation, expected to start in about {:.0f}s (leases "
                                     "expected to end before then run meanwhile)",
                                     r->starts_in_s)
                       : fmt::format("; lease {} ahead holds the reservation, expected to start in about {:.0f}s",
                                     r->lease_id, r->starts_in_s);
    }
    if (const double e = broker_.expected(l->id); e > 0) w.summary += fmt::format("; expected to take {:.1f}s", e);
  } else if (reason == "draining") {
    w.summary = fmt::format("queued: the daemon is draining (POST /v1/resume admits again); {} lease(s) still "
                            "hold slots",
                            w.holders.size());
  } else if (reason.rfind("lock:", 0) == 0) {
    w.summary = fmt::format("queued for lock '{}', held by {} lease(s)", reason.substr(5), w.holders.size());
  } else if (reason == "image" && w.pull) {
    const auto& p = *w.pull;
    w.summary = p.bytes_total ? fmt::format("waiting for the pull of {} ({}): {} of {} bytes", p.image, p.state,
                                            p.bytes_done.value_or(0), *p.bytes_total)
                              : fmt::format("waiting for the pull of {} ({})", p.image, p.state);
  } else {
    w.summary = fmt::format("{} for {:.1f}s, waiting for {}", protocol::to_string(l->state), w.since_s, reason);
  }
  return w;
}

protocol::drain_view lease_service::drain_status() const {
  protocol::drain_view d;
  d.draining = draining_;
  d.slots_in_use = broker_.slots_in_use();
  d.drained = d.slots_in_use == 0;
  d.live = static_cast<int>(live_.size());
  d.queue_length = broker_.queue_length();
  return d;
}

asio::awaitable<protocol::drain_view> lease_service::drain(int wait_s) {
  if (!draining_) {
    draining_ = true;
    spdlog::warn("draining: no lease is admitted until POST /v1/resume ({} hold slots, {} queued)",
                 broker_.slots_in_use(), broker_.queue_length());
    events_.publish(event_kind::budget, {}, "draining");
    // Queued leases now wait for the drain: their waiters see the new reason.
    for (auto& [id, l] : live_) {
      if (l->stage == lease_stage::queued) l->changed.notify_all();
    }
  }
  const auto deadline = clock::now() + std::chrono::seconds(std::clamp(wait_s, 0, 300));
  while (draining_ && broker_.slots_in_use() > 0 && !shutting_down_ && clock::now() < deadline) {
    co_await budget_changed_.wait_until(deadline);
  }
  co_return drain_status();
}

protocol::drain_view lease_service::resume() {
  if (draining_) {
    draining_ = false;
    spdlog::info("resumed: admitting again ({} queued)", broker_.queue_length());
    events_.publish(event_kind::budget, {}, "resumed");
    budget_changed_.notify_all();
    admit_waiting();
  }
  return drain_status();
}

protocol::slots_view lease_service::set_slots(int slots) {
  if (slots < 1 || slots > 4096) {
    throw api_error(errc::invalid_field, fmt::format("field 'slots' is {} but must be from 1 to 4096", slots));
  }
  protocol::slots_view v;
  v.previous = broker_.slots_total();
  spdlog::warn("budget resized from {} to {} slot(s) by the operator ({} in use)", v.previous, slots,
               broker_.slots_in_use());
  resize_budget(slots, "(PUT /v1/slots); ask for fewer slots, or grow the budget again");
  v.slots_total = broker_.slots_total();
  v.slots_in_use = broker_.slots_in_use();
  v.queue_length = broker_.queue_length();
  return v;
}

void lease_service::resize_budget(int slots, const std::string& why) {
  const auto dropped = broker_.resize(slots);
  for (const auto& id : dropped) {
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;
    auto message = fmt::format("lease {} asks for {} slot(s) but the budget shrank to {} {}", id,
                               it->second->req.slots, slots, why);
    spdlog::warn("{}", message);
    // Already out of the broker's queue: the end only records it and wakes its waiters.
    asio::co_spawn(ex_, request_end(it->second, end_request{lease_state::failed, error_body_of(errc::invalid_field, message)}),
                   asio::detached);
  }
  publish_budget();
  admit_waiting();
}

asio::awaitable<protocol::lease_view> lease_service::evict(const std::string& id, std::string reason) {
  auto l = find(id);
  if (l->ended() || l->ending()) {
    // Already over or on its way out: answer what it is (or will be) without a second end.
    while (!l->ended()) co_await l->changed.wait();
    co_return view(*l);
  }
  if (reason.empty()) reason = "no reason given";
  auto message = fmt::format("lease {} was evicted by the operator: {}", id, reason);
  spdlog::warn("{}", message);
  ++evictions_;
  end_request end{lease_state::failed, error_body_of(errc::evicted, message)};
  co_await request_end(l, std::move(end));
  co_return view(*l);
}

}  // namespace sandlot::orchestrator
