#include "lease_service.hpp"

#include <malloc.h>

#include <algorithm>
#include <cctype>
#include <random>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

#include "image_ref.hpp"
#include "time_text.hpp"
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using protocol::api_error;
using protocol::errc;
using protocol::lease_state;

struct lease_service::lease {
  std::string id;
  std::string name;
  protocol::lease_request req;
  lease_state state = lease_state::queued;
  std::optional<std::string> waiting_for = "slots";
  std::optional<protocol::error_body> error;
  std::optional<protocol::sandbox_info> sandbox;

  clock::time_point created_at = clock::now();
  clock::time_point admitted_at{};
  std::optional<clock::time_point> pulled_at;  // passed the gate
  std::optional<clock::time_point> ready_at;
  clock::time_point ended_at{};
  clock::time_point expires_at{};
  double pull_s = 0;              // time at the gate
  std::vector<int> lanes;         // slot lanes while admitted (kept for the report)
  std::string sandbox_name;       // kept after release, for the report
  std::string test_outcome;       // "passed" / "failed", reported by the client
  std::vector<std::string> fixtures;  // ids of fixtures it holds

  bool admitted = false;          // holds slots
  bool lifecycle_active = false;  // pulling/starting coroutine running
  bool reached_engine = false;    // a create may have been sent
  bool finishing = false;         // teardown in progress
  // A stop asked for while the lifecycle runs; it ends the lease with this state and error.
  std::optional<std::pair<lease_state, std::optional<protocol::error_body>>> stop;
  int active_execs = 0;
  int active_polls = 0;  // GET ?wait_s=N calls waiting: a client blocked in one is alive
  async_event changed;         // every state change
  async_event stop_requested;  // `stop` was set
};

struct lease_service::fixture {
  std::string id;
  std::string name;
  std::string run;
  protocol::fixture_request spec;
  std::string state = "creating";  // creating → ready → gone
  bool making = false;             // its sandbox is being (re)made
  std::string creator;             // the holder that sets it up, while creating
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
};

namespace {

/// A waiting call (a long-poll) counts as a heartbeat on its lease for as long as it lives: the
/// reaper skips a lease with polls, and its expiry restarts when the call returns. Null: no lease.
template <class Lease>
class poll_hold {
 public:
  explicit poll_hold(Lease* l) : l_(l) {
    if (l_ != nullptr) ++l_->active_polls;
  }
  ~poll_hold() {
    if (l_ != nullptr) --l_->active_polls;
  }
  poll_hold(const poll_hold&) = delete;
  poll_hold& operator=(const poll_hold&) = delete;

 private:
  Lease* l_;
};

std::string random_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:012x}", rng() & 0xffffffffffffULL);
}

std::string slug(std::string_view s, std::size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) break;
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? std::string("x") : out;
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

protocol::error_body err(errc code, std::string message) {
  return protocol::error_body{std::string(protocol::code_string(code)), std::move(message)};
}

// Awaitable operators only end a race early on success, so a failure must be a value: these turn
// an awaitable's exception into a result.
asio::awaitable<std::exception_ptr> capture(asio::awaitable<void> a) {
  try {
    co_await std::move(a);
    co_return nullptr;
  } catch (...) {
    co_return std::current_exception();
  }
}

template <class T>
asio::awaitable<std::pair<std::optional<T>, std::exception_ptr>> capture(asio::awaitable<T> a) {
  try {
    co_return std::pair<std::optional<T>, std::exception_ptr>{co_await std::move(a), nullptr};
  } catch (...) {
    co_return std::pair<std::optional<T>, std::exception_ptr>{std::nullopt, std::current_exception()};
  }
}

/// An engine that took the connection and never answered is its own error: the lease fails with
/// engine_unavailable, not as if the image or the sandbox were at fault.
void throw_if_hung(const provider_error& e) {
  if (e.reason() == provider_failure::timed_out) throw api_error(errc::engine_unavailable, e.what());
}

/// Who holds a lease, for the broker's hold-and-wait rule: the test of a run. Anonymous leases
/// (no test name) never go ahead of the queue.
std::string holder_of(const protocol::lease_request& req) {
  return req.test.empty() ? std::string() : req.run + "\n" + req.test;
}

std::vector<lock_request> broker_locks(const std::vector<protocol::lock_spec>& locks) {
  std::vector<lock_request> out;
  for (const auto& l : locks) out.push_back(lock_request{l.name, l.mode == protocol::lock_mode::exclusive});
  return out;
}

}  // namespace

void lease_service::check_asks(protocol::network_mode network, int weight, std::int64_t memory_mb, double cpus,
                               int pids, std::int64_t disk_mb, std::string_view what) const {
  if (network == protocol::network_mode::host && !opts_.allow_host_network) {
    throw api_error(errc::forbidden,
                    fmt::format("{} asks for network \"host\", which this daemon does not allow: such a sandbox "
                                "reaches everything on the host's loopback, the daemon's API and the registry "
                                "included; use network \"none\", or start orchestratord with --allow-host-network",
                                what));
  }
  const auto& cap = opts_.per_slot;
  auto over = [&](std::string_view field, auto asked, auto per_slot, std::string_view flag) {
    const auto limit = per_slot * weight;
    if (asked <= limit) return;
    throw api_error(errc::invalid_field,
                    fmt::format("field '{}' is {} but {} may have at most {} ({} per slot × {} slot(s)); ask for "
                                "less, ask for more slots, or start orchestratord with a larger {}",
                                field, asked, what, limit, per_slot, weight, flag));
  };
  over("memory_mb", memory_mb, cap.memory_mb, "--max-memory");
  over("cpus", cpus, cap.cpus, "--max-cpus");
  over("pids_limit", static_cast<std::int64_t>(pids), static_cast<std::int64_t>(cap.pids), "--max-pids");
  over("disk_mb", disk_mb, cap.disk_mb, "--max-disk");
}

lease_service::lease_service(asio::any_io_executor ex, sandbox_provider& provider, service_options opts)
    : ex_(ex),
      provider_(provider),
      opts_(std::move(opts)),
      broker_(opts_.slots),
      gate_(
          ex,
          [this](const std::string& image) -> asio::awaitable<bool> {
            try {
              co_return co_await provider_.image_present(image);
            } catch (const provider_error& e) {
              throw_if_hung(e);
              throw;
            }
          },
          [this](const std::string& image, clock::time_point deadline) -> asio::awaitable<void> {
            // Checked at pull time, not at create: an image already in the engine may be used
            // whatever its registry; only reaching out to a registry is restricted.
            if (auto refusal = pull_refusal(parse_image_ref(image), opts_.allowed_registries);
                !refusal.empty()) {
              throw provider_error(provider_failure::not_allowed, refusal);
            }
            try {
              co_await provider_.pull(image, deadline);
            } catch (const provider_error& e) {
              throw_if_hung(e);
              throw;
            }
          },
          opts_.gate) {}

lease_service::~lease_service() = default;

asio::awaitable<void> lease_service::start() {
  spdlog::info("{}", co_await provider_.connect());
  if (int removed = co_await provider_.remove_all_own(); removed > 0) {
    spdlog::warn("removed {} sandbox(es) an earlier orchestratord instance '{}' left behind", removed,
                 opts_.instance);
  }
  reaper_running_ = true;
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

api_error lease_service::gone(const lease& l) {
  // An expiry's reason already reads "lease X expired: ..."; say it once.
  if (l.error && l.error->message.rfind(fmt::format("lease {} ", l.id), 0) == 0) {
    return api_error(errc::lease_gone, l.error->message);
  }
  return api_error(errc::lease_gone, fmt::format("lease {} is {}: {}", l.id, protocol::to_string(l.state),
                                                 l.error ? l.error->message : std::string("released by its holder")));
}

api_error lease_service::ending(const lease& l) {
  const auto& [state, error] = l.stop ? *l.stop : std::pair<lease_state, std::optional<protocol::error_body>>{
                                                      lease_state::released, std::nullopt};
  return api_error(errc::lease_gone, fmt::format("lease {} is ending ({}{}); its sandbox is being removed",
                                                 l.id, protocol::to_string(state),
                                                 error ? ": " + error->message : std::string()));
}

lease_service::lease_ptr lease_service::find(const std::string& id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    throw api_error(errc::not_found, fmt::format("no lease '{}'; it may have been released more than "
                                                 "{} minutes ago, or was never created here",
                                                 id, opts_.keep_final.count()));
  }
  return it->second;
}

std::string lease_service::next_lease_name(const protocol::lease_request& req) {
  return fmt::format("{}-{}-{}", slug(req.run.empty() ? "run" : req.run, 24),
                     slug(req.test.empty() ? "lease" : req.test, 40), ++name_counter_);
}

std::pair<protocol::lease_view, bool> lease_service::create(protocol::lease_request req) {
  if (shutting_down_) {
    throw api_error(errc::shutting_down, "orchestratord is shutting down; retry against a running daemon");
  }
  if (req.slots < 1 || req.slots > broker_.slots_total()) {
    throw api_error(errc::invalid_field,
                    fmt::format("field 'slots' is {} but this daemon has only {} slot(s); ask for at "
                                "most {} or start orchestratord with more --slots",
                                req.slots, broker_.slots_total(), broker_.slots_total()));
  }
  parse_image_ref(req.image);  // 400 with what is wrong, before anything is queued
  if (req.ttl_s > opts_.max_ttl_s) {
    throw api_error(errc::invalid_field,
                    fmt::format("field 'ttl_s' is {} but this daemon allows at most {}; heartbeat more often "
                                "(the client library renews every ttl_s/3), or start orchestratord with a larger "
                                "--max-ttl",
                                req.ttl_s, opts_.max_ttl_s));
  }
  check_asks(req.network, req.slots, req.memory_mb, req.cpus, req.pids_limit, req.disk_mb, "a lease");
  if (req.run.empty()) req.run = "anonymous";
  // The broker's queue, not the run's whole history: this runs on every create.
  if (const int queued = broker_.queued_in(req.run); queued >= opts_.max_queued_per_run) {
    throw api_error(errc::too_many_requests,
                    fmt::format("run '{}' already has {} leases queued (the limit is --max-queued-per-run={}); "
                                "wait for some to be admitted, or release those you no longer need",
                                req.run, queued, opts_.max_queued_per_run));
  }
  const std::string key = req.run + "\n" + req.request_id;
  if (!req.request_id.empty()) {
    if (auto it = by_request_id_.find(key); it != by_request_id_.end()) {
      if (auto l = leases_.find(it->second); l != leases_.end()) return {view(*l->second), false};
    }
  }
  auto l = std::make_shared<lease>();
  do {
    l->id = random_id();
  } while (leases_.count(l->id) != 0);
  l->name = next_lease_name(req);
  l->req = std::move(req);
  l->expires_at = clock::now() + std::chrono::seconds(l->req.ttl_s);
  broker::request queued{l->id, l->req.slots, l->req.run, holder_of(l->req), broker_locks(l->req.locks)};
  // Not refused: a test may queue a lease and then release the one in its way (the wide-lease
  // test does). If it never does, the log says why its lease waits forever.
  const std::string self_block = broker_.self_deadlock(queued);
  // First: if it throws, nothing is left behind.
  broker_.enqueue(std::move(queued));
  leases_[l->id] = l;
  auto& r = runs_[l->req.run];
  if (r.leases.empty() && r.fixtures.empty()) {
    r.id = l->req.run;
    r.first_queued = l->created_at;
    r.started_wall = std::chrono::system_clock::now();
  }
  r.last_activity = l->created_at;
  r.ended = false;
  if (r.leases.size() >= opts_.max_run_records) {
    // A run that never goes idle must not grow without bound: its oldest ended leases go.
    auto oldest = std::find_if(r.leases.begin(), r.leases.end(),
                               [](const lease_ptr& p) { return protocol::is_final(p->state); });
    if (oldest != r.leases.end()) {
      if (!r.trimmed) {
        spdlog::warn("run '{}' has {} leases recorded, the most kept per run; its timeline drops the oldest ended "
                     "ones from now on",
                     r.id, r.leases.size());
      }
      r.trimmed = true;
      r.leases.erase(oldest);
    }
  }
  r.leases.push_back(l);
  if (!l->req.request_id.empty()) by_request_id_[key] = l->id;
  ++leases_created_;
  spdlog::info("lease {} ({}) queued: image {}, {} slot(s), test '{}'", l->id, l->name, l->req.image,
               l->req.slots, l->req.test);
  if (!self_block.empty()) spdlog::warn("lease {} waits for its own test: {}", l->id, self_block);
  pump();
  // The view from before pump() says "queued"; an admitted lease reports its new state on GET.
  return {view(*l), true};
}

void lease_service::pump() {
  // While shutting down, slots freed by ending leases must not start queued ones.
  if (shutting_down_) return;
  for (auto& a : broker_.admit()) {
    auto it = leases_.find(a.lease_id);
    if (it == leases_.end()) continue;
    auto l = it->second;
    l->admitted = true;
    l->lanes = std::move(a.lanes);
    l->admitted_at = clock::now();
    wait_seconds_.observe(seconds_between(l->created_at, l->admitted_at));
    l->lifecycle_active = true;
    asio::co_spawn(ex_, lifecycle(l), asio::detached);
  }
  // Everyone still queued has moved up.
  for (auto& [id, l] : leases_) {
    if (l->state == lease_state::queued) l->changed.notify_all();
  }
  // Tests that each hold a lock the other waits for would wait until their leases time out:
  // fail the waiting leases now, saying why.
  std::string why;
  for (const auto& id : broker_.lock_cycle(why)) {
    auto it = leases_.find(id);
    if (it == leases_.end() || it->second->finishing || it->second->stop) continue;
    auto message = fmt::format("lease {} would wait forever: a lock wait cycle between tests ({}); take locks in "
                               "one order in every test, or take them all in one lease",
                               id, why);
    spdlog::warn("{}", message);
    asio::co_spawn(ex_, finish(it->second, lease_state::failed, err(errc::conflict, message)), asio::detached);
  }
}

void lease_service::set_state(lease& l, lease_state s, std::optional<std::string> waiting_for) {
  l.state = s;
  l.waiting_for = std::move(waiting_for);
  l.changed.notify_all();
}

void lease_service::touch(lease& l) {
  if (!protocol::is_final(l.state)) l.expires_at = clock::now() + std::chrono::seconds(l.req.ttl_s);
}

asio::awaitable<void> lease_service::lifecycle(lease_ptr l) {
  using namespace asio::experimental::awaitable_operators;
  std::optional<std::pair<lease_state, std::optional<protocol::error_body>>> outcome;
  try {
    // At the gate: pull time is apart from the ready timeout.
    if (!gate_.known_present(l->req.image)) set_state(*l, lease_state::pulling, "image");
    const auto gate_start = clock::now();
    // A release while waiting at the gate must not wait for someone else's pull to finish.
    // (Re-checking each second covers a stop that lands before the waiter is registered.)
    auto stopped = [l]() -> asio::awaitable<void> {
      while (!l->stop) co_await l->stop_requested.wait_until(clock::now() + 1s);
    };
    auto at_gate = co_await (capture(gate_.ensure(l->req.image)) || stopped());
    if (at_gate.index() == 0) {
      if (auto failure = std::get<0>(at_gate)) std::rethrow_exception(failure);
      l->pulled_at = clock::now();
      l->pull_s = seconds_between(gate_start, *l->pulled_at);
      pull_wait_seconds_.observe(l->pull_s);
    }

    std::string image_id;
    if (!l->stop) image_id = co_await pinned_image(l->req.run, l->req.image);
    if (!l->stop) {
      set_state(*l, lease_state::starting, "sandbox");
      l->reached_engine = true;
      // A create that the timer cuts short may still land in the engine: end_lease removes by
      // label, and the orphan sweep catches any that arrive later.
      asio::steady_timer ready_timer(ex_, std::chrono::seconds(l->req.ready_timeout_s));
      sandbox_spec spec{l->id, l->name, l->req, image_id};
      auto raced = co_await (capture(provider_.create(spec)) || ready_timer.async_wait(asio::use_awaitable));
      if (raced.index() == 1) {
        throw api_error(errc::ready_timeout,
                        fmt::format("sandbox for image '{}' was not ready within ready_timeout_s={}; "
                                    "raise ready_timeout_s or check the engine's load",
                                    l->req.image, l->req.ready_timeout_s));
      }
      auto& [sandbox, failure] = std::get<0>(raced);
      if (failure) std::rethrow_exception(failure);
      l->sandbox = std::move(sandbox);
      l->sandbox_name = l->sandbox->name;
    }
  } catch (const api_error& e) {
    outcome.emplace(lease_state::failed, err(e.code(), e.message()));
  } catch (const provider_error& e) {
    if (e.reason() == provider_failure::timed_out) {
      outcome.emplace(lease_state::failed,
                      err(errc::engine_unavailable,
                          fmt::format("could not start a sandbox from image '{}': {}", l->req.image, e.what())));
    } else if (e.reason() == provider_failure::image_not_found) {
      gate_.invalidate(l->req.image);  // removed behind our back; the next lease pulls again
      if (auto r = runs_.find(l->req.run); r != runs_.end()) r->second.images.erase(l->req.image);
    }
    if (!outcome) {
      outcome.emplace(lease_state::failed,
                      err(errc::sandbox_failed, fmt::format("could not start a sandbox from image '{}': {}",
                                                            l->req.image, e.what())));
    }
  } catch (const std::exception& e) {
    outcome.emplace(lease_state::failed, err(errc::internal, e.what()));
  }
  l->lifecycle_active = false;
  if (l->stop) outcome = l->stop;  // a release or expiry asked for during start-up wins
  if (outcome) {
    if (outcome->first == lease_state::failed && outcome->second) {
      spdlog::warn("lease {} failed: {}", l->id, outcome->second->message);
    }
    co_await end_lease(l, outcome->first, outcome->second);
    co_return;
  }
  const auto now = clock::now();
  l->ready_at = now;
  ready_seconds_.observe(seconds_between(l->admitted_at, now));
  touch(*l);
  set_state(*l, lease_state::ready, std::nullopt);
  spdlog::info("lease {} ready in {:.3f}s (sandbox {})", l->id, seconds_between(l->created_at, now),
               l->sandbox->name);
}

asio::awaitable<std::string> lease_service::pinned_image(std::string run, std::string image) {
  // Every lease of a run gets the bits its first lease got, even if the tag moves meanwhile (a
  // push and another pull of the same tag mid-run).
  if (auto r = runs_.find(run); r != runs_.end()) {
    if (auto it = r->second.images.find(image); it != r->second.images.end()) co_return it->second;
  }
  std::string id;
  try {
    id = co_await provider_.image_id(image);
  } catch (const provider_error& e) {
    throw_if_hung(e);
    throw;
  }
  if (auto r = runs_.find(run); r != runs_.end()) {
    // A lease of the same run that got here first wins; both then use its id.
    auto [it, inserted] = r->second.images.emplace(image, id);
    if (inserted) spdlog::info("run '{}': {} is pinned to {}", run, image, id.substr(0, 19));
    co_return it->second;
  }
  co_return id;
}

asio::awaitable<void> lease_service::finish(lease_ptr l, lease_state final_state,
                                            std::optional<protocol::error_body> error) {
  if (protocol::is_final(l->state)) co_return;
  if (l->lifecycle_active) {
    // The lifecycle coroutine owns the lease until it reaches ready or fails; ask it to stop
    // and wait for the lease to become final.
    if (!l->stop) l->stop.emplace(final_state, std::move(error));
    l->stop_requested.notify_all();
  } else {
    co_await end_lease(l, final_state, std::move(error));
  }
  while (!protocol::is_final(l->state)) co_await l->changed.wait();
}

asio::awaitable<void> lease_service::end_lease(lease_ptr l, lease_state final_state,
                                               std::optional<protocol::error_body> error) {
  if (l->finishing || protocol::is_final(l->state)) {
    while (!protocol::is_final(l->state)) co_await l->changed.wait();
    co_return;
  }
  l->finishing = true;
  if (!l->stop) l->stop.emplace(final_state, error);  // what renew and exec now answer
  // Its fixture holds go with it; a fixture it was still making passes to the next holder.
  for (const auto& fid : std::exchange(l->fixtures, {})) {
    if (auto f = fixtures_.find(fid); f != fixtures_.end()) drop_fixture_hold(f->second, l->id);
  }
  if (!l->admitted) {
    broker_.cancel(l->id);
  } else {
    // The slot comes back only once the engine confirmed the sandbox is gone.
    for (int attempt = 1; attempt <= 3; ++attempt) {
      std::string failure;
      try {
        if (l->sandbox) {
          co_await provider_.remove(l->sandbox->id);
        } else if (l->reached_engine) {
          co_await provider_.remove_lease(l->id);  // a create cut short may have left one
        }
      } catch (const std::exception& e) {
        failure = e.what();
      }
      if (failure.empty()) break;
      spdlog::error("lease {}: removing its sandbox failed (attempt {}/3): {}", l->id, attempt, failure);
      if (attempt == 3) {
        // The orphan sweep retries later; keeping the slot forever would wedge the queue.
        spdlog::error("lease {}: giving its slot back; the orphan sweep will retry the removal", l->id);
      } else {
        asio::steady_timer t(ex_, std::chrono::milliseconds(500 * attempt));
        co_await t.async_wait(asio::use_awaitable);
      }
    }
    broker_.release(l->id);
  }
  // Holds taken while the sandbox was being removed go too.
  for (const auto& fid : std::exchange(l->fixtures, {})) {
    if (auto f = fixtures_.find(fid); f != fixtures_.end()) drop_fixture_hold(f->second, l->id);
  }
  l->ended_at = clock::now();
  if (auto r = runs_.find(l->req.run); r != runs_.end()) r->second.last_activity = l->ended_at;
  l->error = std::move(error);
  // What is kept of an ended lease (for GET and the run's timeline) need not hold its environment,
  // up to 1 MiB a lease.
  std::map<std::string, std::string>().swap(l->req.env);
  ++leases_total_[final_state];
  set_state(*l, final_state, std::nullopt);
  spdlog::info("lease {} {} after {:.3f}s", l->id, protocol::to_string(final_state),
               seconds_between(l->created_at, l->ended_at));
  idle_.notify_all();
  pump();
}

asio::awaitable<protocol::lease_view> lease_service::get(const std::string& id, int wait_s) {
  auto l = find(id);
  touch(*l);
  const auto deadline = clock::now() + std::chrono::seconds(std::clamp(wait_s, 0, 300));
  // The call counts as a heartbeat for as long as it waits (wait_s may exceed ttl_s), as an exec
  // does; the reaper skips the lease meanwhile, and the expiry restarts when the call returns.
  const poll_hold<lease> hold(l.get());
  while (l->state != lease_state::ready && !protocol::is_final(l->state) && clock::now() < deadline) {
    co_await l->changed.wait_until(deadline);
  }
  touch(*l);
  co_return view(*l);
}

protocol::renew_response lease_service::renew(const std::string& id) {
  auto l = find(id);
  if (protocol::is_final(l->state)) throw gone(*l);
  if (l->finishing || l->stop) throw ending(*l);
  touch(*l);
  return {l->id, l->state, seconds_between(clock::now(), l->expires_at)};
}

lease_service::lease_ptr lease_service::ready_lease(const std::string& id) {
  auto l = find(id);
  if (protocol::is_final(l->state)) throw gone(*l);
  if (l->finishing || l->stop) throw ending(*l);
  if (l->state != lease_state::ready || !l->sandbox) {
    throw api_error(errc::lease_not_ready,
                    fmt::format("lease {} is {}, not ready; wait with GET /v1/leases/{}?wait_s=30 first",
                                id, protocol::to_string(l->state), id));
  }
  touch(*l);
  return l;
}

/// Marks a lease busy (an exec or file transfer in flight) for as long as it lives: the reaper
/// leaves it alone, and its expiry restarts when the work is done.
struct lease_service::busy_guard {
  lease_service& s;
  lease_ptr l;
  busy_guard(lease_service& service, lease_ptr lease) : s(service), l(std::move(lease)) { ++l->active_execs; }
  busy_guard(const busy_guard&) = delete;
  busy_guard& operator=(const busy_guard&) = delete;
  ~busy_guard() {
    --l->active_execs;
    s.touch(*l);
  }
};

asio::awaitable<protocol::exec_result> lease_service::exec(const std::string& id, protocol::exec_request req) {
  auto l = ready_lease(id);
  busy_guard guard(*this, l);
  try {
    co_return co_await exec_in(l->sandbox->id, "lease " + id, std::move(req));
  } catch (const api_error& e) {
    if (e.code() == errc::exec_failed && (protocol::is_final(l->state) || l->finishing)) {
      throw api_error(errc::lease_gone, fmt::format("lease {} ended while the command ran", id));
    }
    throw;
  }
}

asio::awaitable<protocol::exec_result> lease_service::exec_in(std::string container_id,
                                                              std::string what, protocol::exec_request req) {
  exec_spec spec;
  spec.argv = std::move(req.argv);
  for (const auto& [k, v] : req.env) spec.env.push_back(k + "=" + v);
  spec.workdir = std::move(req.workdir);
  spec.stdin_data = std::move(req.stdin_data);
  spec.timeout = std::chrono::seconds(req.timeout_s);
  spec.output_limit = opts_.exec_output_limit;
  const auto started = clock::now();
  exec_output out;
  try {
    out = co_await provider_.exec(container_id, spec);
  } catch (const provider_error& e) {
    throw api_error(e.reason() == provider_failure::timed_out ? errc::engine_unavailable : errc::exec_failed,
                    fmt::format("could not run '{}' in {}: {}", spec.argv.front(), what,
                                                   e.what()));
  }
  protocol::exec_result r;
  r.exit_code = out.exit_code;
  r.stdout_data = std::move(out.stdout_data);
  r.stderr_data = std::move(out.stderr_data);
  r.truncated = out.truncated;
  r.timed_out = out.timed_out;
  r.duration_s = seconds_between(started, clock::now());
  co_return r;
}

asio::awaitable<protocol::lease_view> lease_service::release(const std::string& id) {
  auto l = find(id);
  co_await finish(l, lease_state::released, std::nullopt);
  co_return view(*l);
}

asio::awaitable<void> lease_service::reaper() {
  asio::steady_timer timer(ex_);
  auto next_prune = clock::now();
  while (!shutting_down_) {
    timer.expires_after(opts_.reap_interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (shutting_down_) break;
    const auto now = clock::now();
    std::vector<std::string> forget;
    for (auto& [id, l] : leases_) {
      if (protocol::is_final(l->state)) {
        if (now - l->ended_at > opts_.keep_final) forget.push_back(id);
        continue;
      }
      if (l->finishing || l->stop || l->active_execs > 0 || l->active_polls > 0 || now < l->expires_at) {
        continue;
      }
      auto message = fmt::format("lease {} expired: not renewed within ttl_s={}; the client stopped "
                                 "heartbeating (crashed or hung?)",
                                 id, l->req.ttl_s);
      spdlog::warn("{}", message);
      asio::co_spawn(ex_, finish(l, lease_state::expired, err(errc::lease_gone, message)), asio::detached);
    }
    for (auto& [id, f] : fixtures_) {
      if (f->state == "ready" && f->holders.empty() && !f->making &&
          now - f->idle_since >= std::chrono::seconds(f->spec.grace_s)) {
        asio::co_spawn(ex_,
                       teardown_fixture(f, fmt::format("no holder for grace_s={} after the last one let go",
                                                       f->spec.grace_s)),
                       asio::detached);
      }
    }
    for (const auto& id : forget) leases_.erase(id);
    if (now < next_prune) continue;
    // Bookkeeping that walks every run's records: every few seconds is plenty.
    next_prune = now + 5s;
    prune_runs(now);
    for (auto it = by_request_id_.begin(); it != by_request_id_.end();) {
      it = leases_.count(it->second) == 0 ? by_request_id_.erase(it) : std::next(it);
    }
    gate_.prune(max_gate_images);
    // Request bodies and engine answers of up to a few MiB come and go; give the freed pages back
    // so the daemon's resident size shows what it holds, not its busiest moment.
    ::malloc_trim(0);
  }
  reaper_running_ = false;
  reaper_stopped_.notify_all();
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

asio::awaitable<void> lease_service::remove_orphan(std::string container_id, std::string lease_id) {
  spdlog::warn("removing orphaned sandbox {} (lease {})", container_id.substr(0, 12), lease_id);
  try {
    co_await provider_.remove(container_id);
  } catch (const std::exception& e) {
    spdlog::warn("removing orphaned sandbox {} failed; the next sweep retries: {}", container_id.substr(0, 12),
                 e.what());
  }
  orphans_in_removal_.erase(container_id);
}

asio::awaitable<void> lease_service::sweep_orphans() {
  // Sandboxes of this instance whose lease is unknown or already final: left by a create that was
  // cut short, or by a removal that failed. Live leases (even mid-create) are never touched.
  for (const auto& c : co_await provider_.list_own()) {
    const std::string& lease_id = c.lease_id;
    auto it = leases_.find(lease_id);
    if (it != leases_.end() && !protocol::is_final(it->second->state)) {
      // A ready lease whose sandbox stopped behind our back (the engine restarted, or its init
      // died): fail it with the reason now, rather than on the test's next command.
      auto& l = it->second;
      if (l->state == lease_state::ready && !l->finishing && !l->stop && l->sandbox && l->sandbox->id == c.id &&
          !c.running) {
        auto message = fmt::format("lease {}'s sandbox {} stopped (state '{}'): the engine restarted or the "
                                   "sandbox's init exited; lease a new one",
                                   lease_id, l->sandbox_name, c.state);
        spdlog::warn("{}", message);
        asio::co_spawn(ex_, finish(l, lease_state::failed, err(errc::sandbox_failed, message)), asio::detached);
      }
      continue;
    }
    if (auto f = fixtures_.find(lease_id); f != fixtures_.end() && f->second->state != "gone") continue;
    // Another daemon's (same instance name, another host or still running): not ours to remove.
    if (!provider_.may_reap(c)) continue;
    // Each removal is a task of its own: one the engine stalls holds up neither the rest of the
    // sweep nor the next one, which skips it while it is still under way.
    if (!orphans_in_removal_.insert(c.id).second) continue;
    asio::co_spawn(ex_, remove_orphan(c.id, lease_id), asio::detached);
  }
}

asio::awaitable<void> lease_service::shutdown() {
  shutting_down_ = true;
  spdlog::info("shutting down: failing queued leases and removing every sandbox");
  std::vector<lease_ptr> live;
  for (auto& [id, l] : leases_) {
    if (!protocol::is_final(l->state)) live.push_back(l);
  }
  int pending = static_cast<int>(live.size());
  async_event all_done;
  for (auto& l : live) {
    asio::co_spawn(
        ex_,
        [this, l, &pending, &all_done]() -> asio::awaitable<void> {
          try {
            co_await finish(l, lease_state::failed,
                            err(errc::shutting_down, "orchestratord shut down; the sandbox was removed"));
          } catch (const std::exception& e) {
            spdlog::error("shutdown of lease {}: {}", l->id, e.what());
          }
          if (--pending == 0) all_done.notify_all();
        },
        asio::detached);
  }
  while (pending > 0) co_await all_done.wait();
  for (auto& [id, f] : fixtures_) {
    if (f->state != "gone") co_await teardown_fixture(f, "orchestratord shut down");
  }
  // A fixture sandbox still being made is removed by its build once it lands; wait for that.
  while (fixture_builds_ > 0) co_await idle_.wait();
  try {
    co_await provider_.remove_all_own();
  } catch (const std::exception& e) {
    spdlog::error("final sweep failed: {}", e.what());
  }
  spdlog::info("shutdown complete: {} lease(s) ended", live.size());
}

protocol::lease_view lease_service::view(const lease& l) const {
  protocol::lease_view v;
  v.id = l.id;
  v.name = l.name;
  v.state = l.state;
  v.run = l.req.run;
  v.test = l.req.test;
  v.image = l.req.image;
  v.slots = l.req.slots;
  v.ttl_s = l.req.ttl_s;
  v.locks = l.req.locks;
  v.waiting_for = l.waiting_for;
  if (l.state == lease_state::queued) {
    int pos = broker_.position(l.id);
    if (pos >= 0) v.position = pos;
    if (auto why = broker_.waiting_for(l.id); !why.empty()) v.waiting_for = why;
  }
  if (!protocol::is_final(l.state)) v.expires_in_s = seconds_between(clock::now(), l.expires_at);
  v.sandbox = l.sandbox;
  if (protocol::is_final(l.state)) v.sandbox.reset();
  v.error = l.error;
  return v;
}

bool lease_service::idle() const {
  if (fixture_builds_ > 0) return false;
  for (const auto& [id, l] : leases_) {
    if (!protocol::is_final(l->state)) return false;
  }
  for (const auto& [id, f] : fixtures_) {
    if (f->state != "gone") return false;
  }
  return true;
}

protocol::status_view lease_service::status() const {
  protocol::status_view s;
  s.instance = opts_.instance;
  s.slots_total = broker_.slots_total();
  s.slots_in_use = broker_.slots_in_use();
  s.queue_length = broker_.queue_length();
  s.ready = prepull_done_;
  for (const auto& [id, l] : leases_) {
    if (!protocol::is_final(l->state)) s.leases.push_back(view(*l));
  }
  s.images = gate_.snapshot();
  return s;
}

std::string lease_service::metrics_text() const {
  std::string out;
  render_metric(out, "sandlot_slots_total", "gauge", "Slot budget (--slots).", broker_.slots_total());
  render_metric(out, "sandlot_slots_in_use", "gauge", "Slots held by admitted leases.", broker_.slots_in_use());
  render_metric(out, "sandlot_queue_length", "gauge", "Leases waiting for slots.", broker_.queue_length());
  render_metric(out, "sandlot_ready", "gauge", "1 once every prepull finished.", prepull_done_ ? 1 : 0);
  std::map<lease_state, int> by_state;
  for (const auto& [id, l] : leases_) {
    if (!protocol::is_final(l->state)) ++by_state[l->state];
  }
  out += "# HELP sandlot_leases Live leases by state.\n# TYPE sandlot_leases gauge\n";
  for (auto s : {lease_state::queued, lease_state::pulling, lease_state::starting, lease_state::ready}) {
    out += fmt::format("sandlot_leases{{state=\"{}\"}} {}\n", protocol::to_string(s), by_state[s]);
  }
  out += "# HELP sandlot_leases_ended_total Leases that ended, by final state.\n"
         "# TYPE sandlot_leases_ended_total counter\n";
  for (auto s : {lease_state::released, lease_state::failed, lease_state::expired}) {
    auto it = leases_total_.find(s);
    out += fmt::format("sandlot_leases_ended_total{{state=\"{}\"}} {}\n", protocol::to_string(s),
                       it == leases_total_.end() ? 0 : it->second);
  }
  render_metric(out, "sandlot_leases_created_total", "counter", "Leases created.",
                static_cast<double>(leases_created_));
  render_metric(out, "sandlot_pulls_started_total", "counter", "Pull attempts sent to the engine.",
                static_cast<double>(gate_.pulls_started()));
  render_metric(out, "sandlot_pulls_failed_total", "counter", "Pull attempts that failed.",
                static_cast<double>(gate_.pulls_failed()));
  wait_seconds_.render(out, "sandlot_lease_wait_seconds", "Time a lease waited for slots (queued to admitted).");
  pull_wait_seconds_.render(out, "sandlot_lease_gate_seconds", "Time an admitted lease spent at the image gate.");
  ready_seconds_.render(out, "sandlot_lease_ready_seconds", "Time from admission to a ready sandbox.");
  return out;
}

// --- files ----------------------------------------------------------------------------------

asio::awaitable<void> lease_service::write_file(const std::string& id, std::string path, std::string data,
                                                unsigned mode) {
  protocol::check_file_path("path", path);
  auto l = ready_lease(id);
  busy_guard guard(*this, l);
  try {
    co_await provider_.write_file(l->sandbox->id, path, std::move(data), mode);
  } catch (const provider_error& e) {
    const std::string dir = path.substr(0, std::max<std::size_t>(path.rfind('/'), 1));
    switch (e.reason()) {
      case provider_failure::not_found:
        throw api_error(errc::not_found, fmt::format("directory {} does not exist in lease {}'s sandbox; create it "
                                                     "first (exec mkdir -p {})", dir, id, dir));
      case provider_failure::read_only:
        // The engine refuses uploads into a read-only container anywhere, its tmpfs /tmp included.
        throw api_error(errc::conflict, fmt::format("lease {}'s sandbox has a read-only root filesystem and the "
                                                    "engine takes no file uploads into it; write under /tmp with "
                                                    "exec (sh -c 'cat > /tmp/file' with stdin) instead", id));
      default:
        throw api_error(errc::engine_error, fmt::format("could not write {} in lease {}: {}", path, id, e.what()));
    }
  }
}

asio::awaitable<std::string> lease_service::read_file(const std::string& id, std::string path) {
  protocol::check_file_path("path", path);
  auto l = ready_lease(id);
  busy_guard guard(*this, l);
  std::optional<std::string> data;
  try {
    data = co_await provider_.read_file(l->sandbox->id, path, opts_.exec_output_limit);
  } catch (const provider_error& e) {
    if (e.reason() == provider_failure::too_large) {
      throw api_error(errc::payload_too_large,
                      fmt::format("{} in lease {}: {}; read it in parts with exec", path, id, e.what()));
    }
    if (e.reason() == provider_failure::not_a_file) {
      throw api_error(errc::invalid_field, fmt::format("{} in lease {}'s sandbox is not a regular file", path, id));
    }
    throw api_error(errc::engine_error, fmt::format("could not read {} in lease {}: {}", path, id, e.what()));
  }
  if (!data) throw api_error(errc::not_found, fmt::format("no file {} in lease {}'s sandbox", path, id));
  co_return std::move(*data);
}

// --- outcomes and runs ------------------------------------------------------------------------

void lease_service::set_outcome(const std::string& id, const std::string& outcome) {
  find(id)->test_outcome = outcome;
}

void lease_service::prune_runs(clock::time_point now) {
  auto live = [](const run_record& r) {
    return std::any_of(r.leases.begin(), r.leases.end(),
                       [](const lease_ptr& l) { return !protocol::is_final(l->state); }) ||
           std::any_of(r.fixtures.begin(), r.fixtures.end(), [](const fixture_ptr& f) { return f->state != "gone"; });
  };
  auto forget = [&](std::map<std::string, run_record>::iterator it) {
    for (const auto& f : it->second.fixtures) fixtures_.erase(f->id);
    return runs_.erase(it);
  };
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = (!live(it->second) && now - it->second.last_activity > opts_.keep_runs) ? forget(it) : std::next(it);
  }
  // Beyond --keep-runs, the idle run that was active longest ago goes first.
  while (runs_.size() > opts_.keep_runs_count) {
    auto oldest = runs_.end();
    for (auto it = runs_.begin(); it != runs_.end(); ++it) {
      if (live(it->second)) continue;
      if (oldest == runs_.end() || it->second.last_activity < oldest->second.last_activity) oldest = it;
    }
    if (oldest == runs_.end()) break;  // every run is live: nothing to forget yet
    spdlog::info("forgetting run '{}' ({} leases): more than --keep-runs={} runs are remembered", oldest->first,
                 oldest->second.leases.size(), opts_.keep_runs_count);
    forget(oldest);
  }
}

run_timeline lease_service::run(const std::string& id) const {
  auto it = runs_.find(id);
  if (it == runs_.end()) {
    throw api_error(errc::not_found, fmt::format("no run '{}' here: runs are named by the leases' \"run\" field "
                                                 "(SANDLOT_RUN), and forgotten {} minutes after they go idle",
                                                 id, opts_.keep_runs.count()));
  }
  const run_record& r = it->second;
  const auto now = clock::now();
  auto since = [&](clock::time_point t) { return seconds_between(r.first_queued, t); };
  run_timeline t;
  t.run = r.id;
  t.slots_total = broker_.slots_total();
  t.started_at = utc_text(r.started_wall);
  t.now_s = since(now);
  t.started_unix_s = std::chrono::duration<double>(r.started_wall.time_since_epoch()).count();
  t.ended = r.ended;
  t.images = r.images;
  for (const auto& l : r.leases) {
    lease_record rec;
    rec.id = l->id;
    rec.name = l->name;
    rec.test = l->req.test;
    rec.image = l->req.image;
    rec.state = std::string(protocol::to_string(l->state));
    rec.test_outcome = l->test_outcome;
    rec.slots = l->req.slots;
    rec.lanes = l->lanes;
    for (const auto& lock : l->req.locks) rec.locks.push_back({lock.name, std::string(protocol::to_string(lock.mode))});
    rec.queued_s = since(l->created_at);
    if (l->admitted) rec.admitted_s = since(l->admitted_at);
    if (l->pulled_at) rec.pulled_s = since(*l->pulled_at);
    if (l->ready_at) rec.ready_s = since(*l->ready_at);
    if (protocol::is_final(l->state)) rec.ended_s = since(l->ended_at);
    rec.pull_s = l->pull_s;
    rec.sandbox = l->sandbox_name;
    if (l->error) rec.error = l->error->message;
    t.leases.push_back(std::move(rec));
  }
  for (const auto& f : r.fixtures) {
    fixture_record rec;
    rec.id = f->id;
    rec.name = f->name;
    rec.state = f->state;
    rec.creations = f->creations;
    rec.holders = static_cast<int>(f->holders.size());
    rec.acquisitions = f->acquisitions;
    rec.port = f->port;
    rec.created_s = since(f->created_at);
    if (f->ready_at) rec.ready_s = since(*f->ready_at);
    if (f->ended_at) rec.ended_s = since(*f->ended_at);
    t.fixtures.push_back(std::move(rec));
  }
  return t;
}

nlohmann::json lease_service::runs() const {
  auto out = nlohmann::json::array();
  std::vector<const run_record*> all;
  for (const auto& [id, r] : runs_) all.push_back(&r);
  std::sort(all.begin(), all.end(), [](auto* a, auto* b) { return a->first_queued < b->first_queued; });
  for (const auto* r : all) {
    const auto live = std::count_if(r->leases.begin(), r->leases.end(),
                                    [](const lease_ptr& l) { return !protocol::is_final(l->state); });
    out.push_back({{"run", r->id},
                   {"started_at", utc_text(r->started_wall)},
                   {"leases", r->leases.size()},
                   {"live_leases", live},
                   {"fixtures", r->fixtures.size()},
                   {"ended", r->ended}});
  }
  return out;
}

asio::awaitable<run_timeline> lease_service::end_run(const std::string& id) {
  run(id);  // 404 for an unknown run
  std::vector<fixture_ptr> live;
  for (const auto& f : runs_[id].fixtures) {
    if (f->state != "gone") live.push_back(f);
  }
  for (auto& f : live) co_await teardown_fixture(f, fmt::format("run '{}' ended", id));
  if (auto it = runs_.find(id); it != runs_.end()) it->second.ended = true;
  co_return run(id);
}

// --- fixtures ---------------------------------------------------------------------------------

lease_service::fixture_ptr lease_service::find_fixture(const std::string& id) const {
  auto it = fixtures_.find(id);
  if (it == fixtures_.end()) {
    throw api_error(errc::not_found, fmt::format("no fixture '{}'; get one with POST /v1/leases/{{id}}/fixtures", id));
  }
  return it->second;
}

lease_service::fixture_ptr lease_service::live_fixture(const std::string& run, const std::string& name) const {
  for (const auto& [id, f] : fixtures_) {
    if (f->run == run && f->name == name && f->state != "gone") return f;
  }
  return nullptr;
}

protocol::fixture_view lease_service::fixture_view_for(const fixture& f, const std::string& lease_id) const {
  protocol::fixture_view v;
  v.id = f.id;
  v.name = f.name;
  v.run = f.run;
  v.state = f.state;
  const bool holds = std::find(f.holders.begin(), f.holders.end(), lease_id) != f.holders.end();
  if (f.state == "creating") {
    v.role = (!f.making && f.creator == lease_id) ? "creator" : "waiting";
    v.creator = f.creator;
  } else {
    v.role = holds ? "user" : "none";
  }
  v.port = f.port;
  v.data = f.data;
  // A fixture being set up is its creator's alone: nobody else learns of a half-made sandbox.
  if (!f.making && (f.state == "ready" || v.role == "creator")) v.sandbox = f.sandbox;
  v.creations = f.creations;
  v.holders = static_cast<int>(f.holders.size());
  v.error = f.error;
  return v;
}

std::optional<int> lease_service::pick_port() {
  // A port no fixture holds and nothing listens on now; the cursor moves on so a port freed a
  // moment ago is not handed out again at once.
  const int span = opts_.fixture_port_max - opts_.fixture_port_min + 1;
  for (int i = 0; i < span; ++i) {
    const int port = opts_.fixture_port_min + (next_port_++ % span);
    if (std::find(ports_in_use_.begin(), ports_in_use_.end(), port) != ports_in_use_.end()) continue;
    asio::ip::tcp::acceptor probe(ex_);
    boost::system::error_code ec;
    probe.open(asio::ip::tcp::v4(), ec);
    if (!ec) probe.bind({asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
    if (ec) continue;
    ports_in_use_.push_back(port);
    return port;
  }
  return std::nullopt;
}

asio::awaitable<protocol::fixture_view> lease_service::acquire_fixture(const std::string& lease_id,
                                                                       protocol::fixture_request req) {
  auto l = find(lease_id);
  if (protocol::is_final(l->state)) throw gone(*l);
  if (l->finishing || l->stop) {
    throw api_error(errc::lease_gone, fmt::format("lease {} is ending; it can no longer hold a fixture", lease_id));
  }
  if (l->state != lease_state::ready) {
    throw api_error(errc::lease_not_ready, fmt::format("lease {} is {}; fixtures are held by ready leases: wait "
                                                       "with GET /v1/leases/{}?wait_s=30 first",
                                                       lease_id, protocol::to_string(l->state), lease_id));
  }
  parse_image_ref(req.image);
  check_asks(req.network, 1, req.memory_mb, req.cpus, req.pids_limit, req.disk_mb, "a fixture");
  touch(*l);
  auto f = live_fixture(l->req.run, req.name);
  if (f) {
    if (std::find(f->holders.begin(), f->holders.end(), lease_id) == f->holders.end()) {
      f->holders.push_back(lease_id);
      ++f->acquisitions;
      l->fixtures.push_back(f->id);
    }
    spdlog::info("fixture {} ({}) of run {}: lease {} holds it ({} holder(s))", f->id, f->name, f->run, lease_id,
                 f->holders.size());
    co_return fixture_view_for(*f, lease_id);
  }
  // Fixtures live outside the slot budget (a fixture held for a whole run would cost every test a
  // slot), so they have a budget of their own.
  const auto live = std::count_if(fixtures_.begin(), fixtures_.end(),
                                  [](const auto& kv) { return kv.second->state != "gone"; });
  if (live >= opts_.max_fixtures) {
    throw api_error(errc::too_many_requests,
                    fmt::format("{} fixtures are alive, the most this daemon keeps (--max-fixtures={}); end runs "
                                "you no longer need (DELETE /v1/runs/{{id}}) or start orchestratord with a larger "
                                "--max-fixtures",
                                live, opts_.max_fixtures));
  }
  f = std::make_shared<fixture>();
  do {
    f->id = "fx-" + random_id();
  } while (fixtures_.count(f->id) != 0);
  f->name = req.name;
  f->run = l->req.run;
  f->spec = std::move(req);
  f->holders.push_back(lease_id);
  f->acquisitions = 1;
  if (f->spec.port) {
    f->port = pick_port();
    if (!f->port) {
      throw api_error(errc::conflict, fmt::format("no free loopback port in {}-{} for fixture '{}'; release fixtures "
                                                  "or widen the fixture port range",
                                                  opts_.fixture_port_min, opts_.fixture_port_max, f->name));
    }
  }
  fixtures_[f->id] = f;
  l->fixtures.push_back(f->id);
  runs_[f->run].fixtures.push_back(f);
  spdlog::info("fixture {} ({}) of run {}: created for lease {}", f->id, f->name, f->run, lease_id);
  co_await build_fixture(f);
  if (f->state == "gone" && f->error) {
    throw api_error(protocol::code_from_string(f->error->code), f->error->message);
  }
  co_return fixture_view_for(*f, lease_id);
}

asio::awaitable<protocol::sandbox_info> lease_service::make_fixture_sandbox(std::string fixture_id, std::string name,
                                                                            protocol::lease_request spec) {
  co_await gate_.ensure(spec.image);
  const sandbox_spec made{fixture_id, "fixture-" + name, spec, {}};
  co_return co_await provider_.create(made);
}

asio::awaitable<void> lease_service::build_fixture(fixture_ptr f) {
  if (f->making || f->state != "creating") co_return;
  f->making = true;
  ++fixture_builds_;
  struct build_guard {
    lease_service& s;
    ~build_guard() {
      if (--s.fixture_builds_ == 0) s.idle_.notify_all();
    }
  } guard{*this};
  f->changed.notify_all();
  if (f->sandbox) {
    // Its creator left before publishing it: nobody gets a half-made fixture.
    spdlog::warn("fixture {} ({}): its creator left while setting it up; making it anew", f->id, f->name);
    const std::string what = fmt::format("fixture {}: removing the half-made sandbox", f->id);
    co_await remove_or_log(f->sandbox->id, what);
    f->sandbox.reset();
  }
  if (f->holders.empty() || shutting_down_) {
    f->making = false;
    co_await teardown_fixture(f, "its creator left before it was ready and nobody else holds it");
    co_return;
  }
  f->creator = f->holders.front();
  protocol::lease_request spec_req;
  spec_req.image = f->spec.image;
  spec_req.run = f->run;
  spec_req.test = "fixture:" + f->name;
  spec_req.network = f->spec.network;
  spec_req.env = f->spec.env;
  if (f->port) spec_req.env["SANDLOT_PORT"] = std::to_string(*f->port);
  spec_req.memory_mb = f->spec.memory_mb;
  spec_req.cpus = f->spec.cpus;
  spec_req.pids_limit = f->spec.pids_limit;
  std::string failure;
  {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(ex_, opts_.fixture_make_timeout);
    auto raced = co_await (capture(make_fixture_sandbox(f->id, f->name, spec_req)) ||
                           timer.async_wait(asio::use_awaitable));
    if (raced.index() == 1) {
      failure = fmt::format("not made within {} s (pull and create)", opts_.fixture_make_timeout.count());
      try {
        co_await provider_.remove_lease(f->id);  // a create cut short may still land
      } catch (const std::exception& e) {
        spdlog::warn("fixture {}: {}", f->id, e.what());
      }
    } else if (auto& [made, error] = std::get<0>(raced); error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    } else {
      ++f->creations;
      f->sandbox = std::move(made);
    }
  }
  f->making = false;
  if (!failure.empty()) {
    f->error = err(errc::sandbox_failed, fmt::format("could not make the sandbox of fixture '{}' from image '{}': {}",
                                                     f->name, f->spec.image, failure));
    co_await teardown_fixture(f, f->error->message);
    co_return;
  }
  if (f->state == "gone") {  // the run ended meanwhile
    const std::string what = fmt::format("fixture {}: removing its sandbox", f->id);
    co_await remove_or_log(f->sandbox->id, what);
    co_return;
  }
  if (f->holders.empty()) {
    co_await teardown_fixture(f, "every holder left while its sandbox was made");
    co_return;
  }
  // A creator that left while the sandbox was made never touched it: the next holder takes over.
  if (std::find(f->holders.begin(), f->holders.end(), f->creator) == f->holders.end()) f->creator = f->holders.front();
  spdlog::info("fixture {} ({}): sandbox {} made; lease {} sets it up", f->id, f->name, f->sandbox->name, f->creator);
  f->changed.notify_all();
}

void lease_service::drop_fixture_hold(const fixture_ptr& f, const std::string& lease_id) {
  f->holders.erase(std::remove(f->holders.begin(), f->holders.end(), lease_id), f->holders.end());
  if (f->holders.empty()) f->idle_since = clock::now();
  if (f->state == "creating" && f->creator == lease_id && !f->making) {
    f->creator.clear();
    asio::co_spawn(ex_, build_fixture(f), asio::detached);
  }
  f->changed.notify_all();
}

asio::awaitable<void> lease_service::teardown_fixture(fixture_ptr f, std::string reason) {
  if (f->state == "gone") co_return;
  f->state = "gone";
  f->ended_at = clock::now();
  if (f->port) ports_in_use_.erase(std::remove(ports_in_use_.begin(), ports_in_use_.end(), *f->port), ports_in_use_.end());
  // Holders still listed (a run ended under them) no longer hold it.
  for (const auto& lease_id : f->holders) {
    if (auto l = leases_.find(lease_id); l != leases_.end()) {
      auto& held = l->second->fixtures;
      held.erase(std::remove(held.begin(), held.end(), f->id), held.end());
    }
  }
  f->holders.clear();
  if (!f->error) f->error = err(errc::lease_gone, fmt::format("fixture '{}' was torn down: {}", f->name, reason));
  f->changed.notify_all();
  spdlog::info("fixture {} ({}) of run {} torn down: {}", f->id, f->name, f->run, reason);
  if (f->sandbox && !f->making) {
    const std::string what = fmt::format("fixture {}: removing its sandbox (the orphan sweep retries)", f->id);
    co_await remove_or_log(f->sandbox->id, what);
  }
  if (auto r = runs_.find(f->run); r != runs_.end()) r->second.last_activity = clock::now();
}

asio::awaitable<protocol::fixture_view> lease_service::get_fixture(const std::string& id, const std::string& lease_id,
                                                                   int wait_s) {
  auto f = find_fixture(id);
  lease_ptr l;
  if (!lease_id.empty()) {
    l = find(lease_id);
    touch(*l);
  }
  const auto deadline = clock::now() + std::chrono::seconds(std::clamp(wait_s, 0, 300));
  const poll_hold<lease> hold(l.get());
  auto settled = [&] {
    return f->state != "creating" || (!f->making && !lease_id.empty() && f->creator == lease_id);
  };
  while (!settled() && clock::now() < deadline) co_await f->changed.wait_until(deadline);
  if (l) touch(*l);
  co_return fixture_view_for(*f, lease_id);
}

protocol::fixture_view lease_service::fixture_ready(const std::string& id, protocol::fixture_ready_request req) {
  auto f = find_fixture(id);
  if (f->state != "creating" || f->making || f->creator != req.lease) {
    throw api_error(errc::conflict,
                    fmt::format("fixture '{}' is {}{}; only its creator (lease {}) may mark it ready, once, after "
                                "GET /v1/fixtures/{}?lease=... gave it role \"creator\"",
                                f->name, f->state, f->making ? " (its sandbox is being made)" : "",
                                f->creator.empty() ? std::string("none") : f->creator, id));
  }
  auto data = req.data.dump();
  if (data.size() > 64 * 1024) {
    throw api_error(errc::invalid_field, "field 'data' must be at most 64 KiB of JSON; put bulk data in the sandbox");
  }
  f->data = std::move(req.data);
  f->state = "ready";
  f->ready_at = clock::now();
  f->creator.clear();
  f->changed.notify_all();
  spdlog::info("fixture {} ({}) of run {} is ready", f->id, f->name, f->run);
  return fixture_view_for(*f, req.lease);
}

asio::awaitable<protocol::fixture_view> lease_service::fixture_failed(const std::string& id,
                                                                      protocol::fixture_fail_request req) {
  auto f = find_fixture(id);
  if (f->state != "creating" || f->making || f->creator != req.lease) {
    throw api_error(errc::conflict, fmt::format("fixture '{}' is {}; only its creator (lease {}) may fail it, while "
                                                "setting it up",
                                                f->name, f->state, f->creator.empty() ? std::string("none") : f->creator));
  }
  const std::string why = req.message.empty() ? std::string("its setup failed") : req.message;
  f->error = err(errc::sandbox_failed, fmt::format("fixture '{}' could not be set up by lease {}: {}", f->name,
                                                   req.lease, why));
  // Everyone waiting for it learns now, instead of when their wait runs out.
  co_await teardown_fixture(f, f->error->message);
  co_return fixture_view_for(*f, req.lease);
}

asio::awaitable<protocol::exec_result> lease_service::fixture_exec(const std::string& id, const std::string& lease_id,
                                                                  protocol::exec_request req) {
  auto f = find_fixture(id);
  if (f->state == "gone") {
    throw api_error(errc::lease_gone, fmt::format("fixture '{}' is gone: {}", f->name,
                                                  f->error ? f->error->message : std::string("torn down")));
  }
  if (f->making || !f->sandbox) {
    throw api_error(errc::lease_not_ready, fmt::format("fixture '{}' has no sandbox yet; wait with GET /v1/fixtures/{}",
                                                       f->name, id));
  }
  if (f->state == "creating" && lease_id != f->creator) {
    throw api_error(errc::conflict, fmt::format("fixture '{}' is being set up by lease {}; wait until it is ready "
                                                "with GET /v1/fixtures/{}?lease=<your lease>&wait_s=30",
                                                f->name, f->creator, id));
  }
  co_return co_await exec_in(f->sandbox->id, "fixture " + f->name, std::move(req));
}

asio::awaitable<bool> lease_service::remove_or_log(std::string container_id, std::string what) {
  try {
    co_await provider_.remove(container_id);
    co_return true;
  } catch (const std::exception& e) {
    spdlog::error("{} failed: {}", what, e.what());
  }
  co_return false;
}

}  // namespace sandlot::orchestrator
