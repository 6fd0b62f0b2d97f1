// A lease's life after create(): admission by the broker, start-up (the image gate, the run's
// pinned image, the sandbox), and its end (sandbox removed, then the slots back). The stages and
// their arrows are drawn in lease.hpp; move_to() is the only place a stage changes.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
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
using protocol::api_error;
using protocol::errc;
using protocol::lease_state;

namespace {

double seconds_between(lease::clock::time_point a, lease::clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string_view to_string(lease_stage s) noexcept {
  switch (s) {
    case lease_stage::queued: return "queued";
    case lease_stage::starting: return "starting";
    case lease_stage::stopping: return "stopping";
    case lease_stage::ready: return "ready";
    case lease_stage::ending: return "ending";
    case lease_stage::ended: return "ended";
  }
  return "ended";
}

bool allowed(lease_stage from, lease_stage to) noexcept {
  using s = lease_stage;
  switch (from) {
    case s::queued: return to == s::starting || to == s::ending;
    case s::starting: return to == s::stopping || to == s::ready || to == s::ending;
    case s::stopping: return to == s::ending;
    case s::ready: return to == s::ending;
    case s::ending: return to == s::ended;
    case s::ended: return false;
  }
  return false;
}

void lease_service::move_to(lease& l, lease_stage to) {
  if (!allowed(l.stage, to)) {
    // A bug, not a client's doing: say so loudly, and keep the lease where it is.
    spdlog::error("lease {}: refused stage change {} → {} (a bug; please report it)", l.id, to_string(l.stage),
                  to_string(to));
    return;
  }
  const bool was_starting = l.starting_up();
  l.stage = to;
  starting_up_ += static_cast<int>(l.starting_up()) - static_cast<int>(was_starting);
}

void lease_service::set_state(lease& l, lease_state s, std::optional<std::string> waiting_for) {
  if (l.state != s) {
    l.state_since = clock::now();
    if (!l.ended()) {
      --live_by_state_[l.state];
      ++live_by_state_[s];
    }
  }
  l.state = s;
  l.waiting_for = std::move(waiting_for);
  events_.publish_lease(l.id, s, l.req.run);
  l.changed.notify_all();
}

void lease_service::publish_budget() {
  events_.publish(event_kind::budget, {}, fmt::format("in_use={}/total={}", broker_.slots_in_use(),
                                                      broker_.slots_total()));
  budget_changed_.notify_all();
  warm_wake_.notify_all();
}

void lease_service::admit_waiting() {
  // While shutting down, slots freed by ending leases must not start queued ones; while draining,
  // nothing new starts either (the queue stays, in order, for POST /v1/resume).
  if (shutting_down_ || draining_) return;
  bool admitted = false;
  std::string last_image;
  for (auto& a : broker_.admit()) {
    auto it = leases_.find(a.lease_id);
    if (it == leases_.end()) continue;
    auto l = it->second;
    move_to(*l, lease_stage::starting);
    l->lanes = std::move(a.lanes);
    l->expected_s = a.expected_s;
    l->backfilled = a.backfilled;
    if (a.backfilled) ++telemetry_.backfilled;
    l->admitted_at = clock::now();
    runs_.lease_admitted(*l);
    telemetry_.wait_seconds.observe(seconds_between(l->created_at, *l->admitted_at));
    warm_admitted(*l);
    last_image = l->req.image;
    admitted = true;
    asio::co_spawn(ex_, start_up(l), asio::detached);
  }
  if (admitted) {
    // The lease never waits for a warm sandbox: those beyond idle capacity go now.
    trim_warm(last_image);
    publish_budget();
  }
  // Nobody still queued is woken: a long-poll on a queued lease returns at ready, at its end or at
  // its deadline, never for a new position, and waking every one of 10,000 queued leases on each
  // create made queueing O(n²).
  // Tests that each hold a lock the other waits for would wait until their leases time out:
  // fail the waiting leases now, saying why.
  std::string why;
  for (const auto& id : broker_.lock_cycle(why)) {
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second->ending()) continue;
    auto message = fmt::format("lease {} would wait forever: a lock wait cycle between tests ({}); take locks in "
                               "one order in every test, or take them all in one lease",
                               id, why);
    spdlog::warn("{}", message);
    asio::co_spawn(ex_, request_end(it->second, end_request{lease_state::failed, error_body_of(errc::conflict, message)}),
                   asio::detached);
  }
}

asio::awaitable<void> lease_service::start_up(lease_ptr l) {
  std::exception_ptr failure;
  try {
    co_await pass_gate(l);
    if (l->stage == lease_stage::starting) co_await make_sandbox(l);
  } catch (...) {
    failure = std::current_exception();
  }
  // A warm sandbox claimed at admission and not adopted (a failure or a stop came first).
  if (l->warm_claim) {
    warm_adopted_.erase(l->warm_claim->id);
    discard_warm(std::move(*l->warm_claim));
    l->warm_claim.reset();
  }
  // Refills held back for this start-up may go now (once its stage changes below).
  warm_wake_.notify_all();
  // A release or expiry asked for during start-up wins over how the start-up went.
  std::optional<end_request> end = l->end;
  if (!end && failure) end = start_failure(*l, failure);
  if (end) {
    if (end->final_state == lease_state::failed && end->error) {
      spdlog::warn("lease {} failed: {}", l->id, end->error->message);
    }
    co_await tear_down(l, std::move(*end));
    co_return;
  }
  const auto now = clock::now();
  l->ready_at = now;
  telemetry_.ready_seconds.observe(seconds_between(*l->admitted_at, now));
  if (l->warm) telemetry_.warm_adoption_seconds.observe(seconds_between(*l->admitted_at, now));
  move_to(*l, lease_stage::ready);
  heartbeat(*l);
  set_state(*l, lease_state::ready, std::nullopt);
  spdlog::info("lease {} ready in {:.3f}s (sandbox {}{})", l->id, seconds_between(l->created_at, now),
               l->sandbox->name, l->warm ? ", warm" : "");
}

asio::awaitable<void> lease_service::until_stopped(lease_ptr l, bool only_at_shutdown) {
  // (Re-checking each second covers a stop that lands before the waiter is registered.)
  while (l->stage == lease_stage::starting) co_await l->stop_requested.wait_until(clock::now() + 1s);
  if (!only_at_shutdown) co_return;
  while (!shutting_down_) co_await l->stop_requested.wait_until(clock::now() + 1s);
  // A slow engine gets a moment to finish the create (its sandbox is then removed by id); one that
  // stalls it does not hold the shutdown past its bound.
  asio::steady_timer grace(ex_, std::min<clock::duration>(5s, opts_.shutdown_timeout / 3));
  co_await grace.async_wait(asio::use_awaitable);
}

asio::awaitable<void> lease_service::pass_gate(lease_ptr l) {
  using namespace asio::experimental::awaitable_operators;
  // At the gate: pull time is apart from the ready timeout.
  if (!gate_.known_present(l->req.image)) set_state(*l, lease_state::pulling, "image");
  const auto gate_start = clock::now();
  // A release while waiting at the gate must not wait for someone else's pull to finish.
  auto at_gate = co_await (capture(gate_.ensure(l->req.image)) || until_stopped(l, false));
  if (at_gate.index() != 0) co_return;
  if (auto failure = std::get<0>(at_gate)) std::rethrow_exception(failure);
  l->pulled_at = clock::now();
  l->pull_s = seconds_between(gate_start, *l->pulled_at);
  telemetry_.gate_seconds.observe(l->pull_s);
}

asio::awaitable<void> lease_service::make_sandbox(lease_ptr l) {
  const std::string image_id = co_await pinned_image(l->req.run, l->req.image);
  if (l->stage != lease_stage::starting) co_return;
  if (l->warm_claim) {
    warm_sandbox claimed = std::move(*l->warm_claim);
    l->warm_claim.reset();
    // Made from the bits this run is pinned to: adopt it. (A tag moved since it was made: it is
    // stale for this run, and goes.)
    if (claimed.image_id == image_id) {
      warm_.hit(l->req.image);
      l->warm = true;
      l->sandbox = std::move(claimed.sandbox);
      l->sandbox->image = l->req.image;
      l->sandbox_name = l->sandbox->name;
      l->sandbox_engine = l->sandbox->engine;
      co_return;
    }
    spdlog::info("warm sandbox {} was made from {} but run '{}' is pinned to {}; creating one", claimed.id,
                 claimed.image_id.substr(0, 19), l->req.run, image_id.substr(0, 19));
    warm_adopted_.erase(claimed.id);
    warm_.miss(l->req.image);
    discard_warm(std::move(claimed));
  }
  set_state(*l, lease_state::starting, "sandbox");
  // A create that the timeout cuts short may still land in the engine: tear_down removes by
  // lease, and the orphan sweep catches any that arrive later.
  // A release waits for the create, so that the sandbox it makes is removed by id. A shutdown
  // waits a few seconds at most for an engine that stalls the create: tear_down then removes by
  // label, the final sweep removes what landed, and the next start removes what lands later.
  using namespace asio::experimental::awaitable_operators;
  const sandbox_spec spec{l->id, l->name, l->req, image_id};
  const std::chrono::seconds limit(l->req.ready_timeout_s);
  auto raced = co_await (capture(within(limit, provider_.create(spec))) || until_stopped(l, true));
  if (raced.index() != 0) co_return;
  auto& [made, failure] = std::get<0>(raced);
  if (failure) std::rethrow_exception(failure);
  if (!*made) {
    throw api_error(errc::ready_timeout, fmt::format("sandbox for image '{}' was not ready within ready_timeout_s={}; "
                                                     "raise ready_timeout_s or check the engine's load",
                                                     l->req.image, l->req.ready_timeout_s));
  }
  l->sandbox = std::move(**made);
  l->sandbox_name = l->sandbox->name;
  l->sandbox_engine = l->sandbox->engine;
}

end_request lease_service::start_failure(const lease& l, std::exception_ptr failure) {
  auto failed = [](errc code, std::string message) {
    return end_request{lease_state::failed, error_body_of(code, std::move(message))};
  };
  try {
    std::rethrow_exception(failure);
  } catch (const api_error& e) {
    return failed(e.code(), e.message());
  } catch (const provider_error& e) {
    ++telemetry_.engine_errors[std::string(to_string(e.reason()))];
    const auto message = fmt::format("could not start a sandbox from image '{}': {}", l.req.image, e.what());
    // An engine that took the connection and never answered is its own error: the lease fails
    // with engine_unavailable, not as if the image or the sandbox were at fault.
    if (e.reason() == provider_failure::timed_out) return failed(errc::engine_unavailable, message);
    if (e.reason() == provider_failure::engine_lost) return failed(errc::engine_lost, message);
    if (e.reason() == provider_failure::image_not_found) {
      gate_.invalidate(l.req.image);  // removed behind our back; the next lease pulls again
      runs_.unpin(l.req.run, l.req.image);
    }
    return failed(errc::sandbox_failed, message);
  } catch (const std::exception& e) {
    return failed(errc::internal, e.what());
  }
}

asio::awaitable<std::string> lease_service::pinned_image(std::string run, std::string image) {
  // Every lease of a run gets the bits its first lease got, even if the tag moves meanwhile (a
  // push and another pull of the same tag mid-run).
  if (auto pinned = runs_.pinned(run, image)) co_return *pinned;
  std::string id = co_await provider_.image_id(image);
  // A lease of the same run that got here first wins; both then use its id.
  co_return runs_.pin(run, image, std::move(id));
}

asio::awaitable<void> lease_service::request_end(lease_ptr l, end_request end) {
  if (l->ended()) co_return;
  if (l->starting_up()) {
    // The start-up owns the lease until it reaches ready or fails; ask it to stop and wait for
    // the lease to become final.
    if (l->stage == lease_stage::starting) {
      l->end = std::move(end);
      move_to(*l, lease_stage::stopping);
    }
    l->stop_requested.notify_all();
  } else {
    co_await tear_down(l, std::move(end));
  }
  while (!l->ended()) co_await l->changed.wait();
}

asio::awaitable<void> lease_service::remove_sandbox_of(lease_ptr l) {
  for (int attempt = 1; attempt <= 3; ++attempt) {
    std::string failure;
    try {
      if (l->sandbox) {
        co_await provider_.remove(l->sandbox->id);
      } else if (l->create_sent()) {
        co_await provider_.remove_lease(l->id);  // a create cut short may have left one
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (failure.empty()) co_return;
    spdlog::error("lease {}: removing its sandbox failed (attempt {}/3): {}", l->id, attempt, failure);
    if (attempt == 3) {
      // The orphan sweep retries later; keeping the slot forever would wedge the queue.
      spdlog::error("lease {}: giving its slot back; the orphan sweep will retry the removal", l->id);
    } else {
      asio::steady_timer t(ex_, std::chrono::milliseconds(500 * attempt));
      co_await t.async_wait(asio::use_awaitable);
    }
  }
}

asio::awaitable<void> lease_service::tear_down(lease_ptr l, end_request end) {
  if (l->stage == lease_stage::ending || l->ended()) {
    while (!l->ended()) co_await l->changed.wait();
    co_return;
  }
  move_to(*l, lease_stage::ending);
  if (!l->end) l->end = end;  // what renew and exec now answer
  // Its fixture holds go with it; a fixture it was still making passes to the next holder.
  fixtures_.lease_ended(l->id);
  if (!l->admitted_at) {
    broker_.cancel(l->id);
  } else {
    // The slot comes back only once the engine confirmed the sandbox is gone.
    co_await remove_sandbox_of(l);
    if (warm_.enabled() && warm_eligible(l->req)) warm_.lease_let_go(warm_key::of(l->req), clock::now());
    if (l->warm) std::erase_if(warm_adopted_, [&](const auto& a) { return a.second == l->id; });
    broker_.release(l->id);
    publish_budget();
  }
  // Holds taken while the sandbox was being removed go too.
  fixtures_.lease_ended(l->id);
  l->ended_at = clock::now();
  runs_.touch(l->req.run, l->ended_at);
  // Only a lease its test released says how long the test holds its slots; one that failed or
  // expired says how long it took to fail.
  if (l->admitted_at && end.final_state == lease_state::released) {
    durations_.learn(l->req.run, l->req.test, seconds_between(*l->admitted_at, l->ended_at), unix_now());
  }
  l->error = std::move(end.error);
  // What is kept of an ended lease (for GET and the run's timeline) need not hold its environment,
  // up to 1 MiB a lease.
  std::map<std::string, std::string>().swap(l->req.env);
  --live_by_state_[l->state];
  move_to(*l, lease_stage::ended);
  live_.erase(l->id);
  ended_order_.push_back(l->id);
  runs_.lease_ended(*l);
  set_state(*l, end.final_state, std::nullopt);
  spdlog::info("lease {} {} after {:.3f}s", l->id, protocol::to_string(end.final_state),
               seconds_between(l->created_at, l->ended_at));
  admit_waiting();
}

}  // namespace sandlot::orchestrator
