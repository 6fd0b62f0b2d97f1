#include "lease_service.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ids.hpp"
#include "image_ref.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using protocol::api_error;
using protocol::errc;
using protocol::lease_state;

namespace {

/// A waiting call (a long-poll) counts as a heartbeat on its lease for as long as it lives: the
/// reaper skips a lease with polls, and its expiry restarts when the call returns. Null: no lease.
class poll_hold {
 public:
  explicit poll_hold(lease* l) : l_(l) {
    if (l_ != nullptr) ++l_->active_polls;
  }
  ~poll_hold() {
    if (l_ != nullptr) --l_->active_polls;
  }
  poll_hold(const poll_hold&) = delete;
  poll_hold& operator=(const poll_hold&) = delete;

 private:
  lease* l_;
};

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

double seconds_until(lease::clock::time_point t) {
  return std::chrono::duration<double>(t - lease::clock::now()).count();
}

/// Who holds a lease, for the broker's hold-and-wait rule: the test of a run. Anonymous leases
/// (no test name) never go ahead of the queue.
std::string test_of(const protocol::lease_request& req) {
  return req.test.empty() ? std::string() : req.run + "\n" + req.test;
}

std::vector<lock_request> broker_locks(const std::vector<protocol::lock_spec>& locks) {
  std::vector<lock_request> out;
  for (const auto& l : locks) out.push_back(lock_request{l.name, l.mode == protocol::lock_mode::exclusive});
  return out;
}

}  // namespace

lease_service::lease_service(asio::any_io_executor ex, sandbox_provider& provider, service_options opts)
    : ex_(ex),
      provider_(provider),
      opts_(std::move(opts)),
      broker_(opts_.slots, broker::options{opts_.order, 1.0, 256, {}}),
      gate_(
          ex,
          [this](const std::string& image) -> asio::awaitable<bool> {
            co_return co_await provider_.image_present(image);
          },
          [this](const std::string& image, clock::time_point deadline,
                 image_gate::progress_fn progress) -> asio::awaitable<void> {
            // Checked at pull time, not at create: an image already in the engine may be used
            // whatever its registry; only reaching out to a registry is restricted.
            if (auto refusal = pull_refusal(parse_image_ref(image), opts_.allowed_registries);
                !refusal.empty()) {
              throw provider_error(provider_failure::not_allowed, refusal);
            }
            try {
              co_await provider_.pull(image, deadline, std::move(progress));
            } catch (const provider_error& e) {
              ++telemetry_.engine_errors[std::string(to_string(e.reason()))];
              throw;
            }
          },
          opts_.gate),
      commands_(provider, opts_.exec_output_limit),
      runs_(opts_),
      fixtures_(fixture_registry::parts{ex, provider, gate_, runs_, commands_, events_, opts_}),
      warm_(opts_.warm) {
  gate_.set_observer([this](const std::string& image) { events_.publish(event_kind::image, image, "changed"); });
}

lease_service::~lease_service() = default;

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

void lease_service::check_request(const protocol::lease_request& req) const {
  if (shutting_down_) {
    throw api_error(errc::shutting_down, "orchestratord is shutting down; retry against a running daemon");
  }
  if (req.slots < 1 || req.slots > broker_.slots_total()) {
    throw api_error(errc::invalid_field,
                    fmt::format("field 'slots' is {} but this daemon has only {} slot(s); ask for at "
                                "most {} or start orchestratord with more --slots",
                                req.slots, broker_.slots_total(), broker_.slots_total()));
  }
  if (const int widest = provider_.widest_sandbox(); widest > 0 && req.slots > widest) {
    throw api_error(errc::invalid_field,
                    fmt::format("field 'slots' is {} but a sandbox runs on one engine and the widest engine of "
                                "this daemon's pool has {} slot(s); ask for at most {} or give an engine more "
                                "(--engine NAME=URL;slots=N)",
                                req.slots, widest, widest));
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
  // The broker's queue, not the run's whole history: this runs on every create.
  if (const int queued = broker_.queued_in(req.run); queued >= opts_.max_queued_per_run) {
    throw api_error(errc::too_many_requests,
                    fmt::format("run '{}' already has {} leases queued (the limit is --max-queued-per-run={}); "
                                "wait for some to be admitted, or release those you no longer need",
                                req.run, queued, opts_.max_queued_per_run));
  }
}

api_error lease_service::gone(const lease& l) {
  // A lease whose engine went away says so in the code as well (still 410): its holder can tell
  // "my sandbox's engine is gone" from "my lease ended" without reading the message.
  const bool lost = l.error && l.error->code == protocol::code_string(errc::engine_lost);
  const errc code = lost ? errc::engine_lost : errc::lease_gone;
  // An expiry's reason already reads "lease X expired: ..."; say it once.
  if (l.error && l.error->message.rfind(fmt::format("lease {} ", l.id), 0) == 0) return api_error(code, l.error->message);
  return api_error(code, fmt::format("lease {} is {}: {}", l.id, protocol::to_string(l.state),
                                     l.error ? l.error->message : std::string("released by its holder")));
}

api_error lease_service::ending(const lease& l) {
  const end_request end = l.end.value_or(end_request{});
  return api_error(errc::lease_gone, fmt::format("lease {} is ending ({}{}); its sandbox is being removed",
                                                 l.id, protocol::to_string(end.final_state),
                                                 end.error ? ": " + end.error->message : std::string()));
}

lease_ptr lease_service::find(const std::string& id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    throw api_error(errc::not_found, fmt::format("no lease '{}'; it may have been released more than "
                                                 "{} minutes ago, or was never created here",
                                                 id, opts_.keep_final.count()));
  }
  return it->second;
}

double lease_service::expected_hold(const protocol::lease_request& req) const {
  if (auto known = durations_.expected(req.run, req.test)) return *known;
  return durations_.typical(req.run).value_or(0);
}

std::string lease_service::next_lease_name(const protocol::lease_request& req) {
  return fmt::format("{}-{}-{}", slug(req.run.empty() ? "run" : req.run, 24),
                     slug(req.test.empty() ? "lease" : req.test, 40), ++name_counter_);
}

void lease_service::heartbeat(lease& l) {
  if (!l.ended()) l.expires_at = clock::now() + std::chrono::seconds(l.req.ttl_s);
}

std::pair<protocol::lease_view, bool> lease_service::create(protocol::lease_request req) {
  if (req.run.empty()) req.run = "anonymous";
  check_request(req);
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
  broker::request queued{l->id, l->req.slots, l->req.run, test_of(l->req), broker_locks(l->req.locks),
                         expected_hold(l->req)};
  // Not refused: a test may queue a lease and then release the one in its way (the wide-lease
  // test does). If it never does, the log says why its lease waits forever.
  const std::string self_block = broker_.self_deadlock(queued);
  // First: if it throws, nothing is left behind.
  broker_.enqueue(std::move(queued));
  leases_[l->id] = l;
  live_[l->id] = l;
  ++live_by_state_[l->state];
  runs_.add_lease(l);
  if (!l->req.request_id.empty()) by_request_id_[key] = l->id;
  events_.publish_lease(l->id, l->state, l->req.run);
  spdlog::info("lease {} ({}) queued: image {}, {} slot(s), test '{}'", l->id, l->name, l->req.image,
               l->req.slots, l->req.test);
  if (!self_block.empty()) spdlog::warn("lease {} waits for its own test: {}", l->id, self_block);
  admit_waiting();
  // The view from before admission says "queued"; an admitted lease reports its new state on GET.
  return {view(*l), true};
}

asio::awaitable<protocol::lease_view> lease_service::get(const std::string& id, int wait_s) {
  auto l = find(id);
  heartbeat(*l);
  const auto deadline = clock::now() + std::chrono::seconds(std::clamp(wait_s, 0, 300));
  // The call counts as a heartbeat for as long as it waits (wait_s may exceed ttl_s), as an exec
  // does; the reaper skips the lease meanwhile, and the expiry restarts when the call returns.
  const poll_hold hold(l.get());
  while (l->state != lease_state::ready && !protocol::is_final(l->state) && clock::now() < deadline) {
    co_await l->changed.wait_until(deadline);
  }
  heartbeat(*l);
  co_return view(*l);
}

protocol::renew_response lease_service::renew(const std::string& id) {
  auto l = find(id);
  if (l->ended()) throw gone(*l);
  if (l->ending()) throw ending(*l);
  heartbeat(*l);
  return {l->id, l->state, seconds_until(l->expires_at)};
}

lease_ptr lease_service::commandable(const std::string& id) {
  auto l = find(id);
  if (l->ended()) throw gone(*l);
  if (l->ending()) throw ending(*l);
  if (l->stage != lease_stage::ready || !l->sandbox) {
    throw api_error(errc::lease_not_ready,
                    fmt::format("lease {} is {}, not ready; wait with GET /v1/leases/{}?wait_s=30 first",
                                id, protocol::to_string(l->state), id));
  }
  heartbeat(*l);
  return l;
}

/// Marks a lease busy (an exec or file transfer in flight) for as long as it lives: the reaper
/// leaves it alone, and its expiry restarts when the work is done.
struct lease_service::busy_guard {
  lease_service& s;
  lease_ptr l;
  busy_guard(lease_service& service, lease_ptr busy) : s(service), l(std::move(busy)) { ++l->active_execs; }
  busy_guard(const busy_guard&) = delete;
  busy_guard& operator=(const busy_guard&) = delete;
  ~busy_guard() {
    --l->active_execs;
    s.heartbeat(*l);
  }
};

asio::awaitable<protocol::exec_result> lease_service::exec(const std::string& id, protocol::exec_request req) {
  auto l = commandable(id);
  busy_guard guard(*this, l);
  // A warm sandbox was made before its lease existed: the lease's env reaches its commands here
  // (the command's own env wins on a clash, as it would over a container's env).
  if (l->warm) {
    for (const auto& [k, v] : l->req.env) req.env.emplace(k, v);
  }
  try {
    co_return co_await commands_.exec(l->sandbox->id, "lease " + id, std::move(req));
  } catch (const api_error& e) {
    if (e.code() == errc::exec_failed && (l->ended() || l->stage == lease_stage::ending)) {
      throw api_error(errc::lease_gone, fmt::format("lease {} ended while the command ran", id));
    }
    throw;
  }
}

asio::awaitable<void> lease_service::write_file(const std::string& id, std::string path, std::string data,
                                                unsigned mode) {
  protocol::check_file_path("path", path);
  auto l = commandable(id);
  busy_guard guard(*this, l);
  co_await commands_.write_file(l->sandbox->id, "lease " + id, std::move(path), std::move(data), mode);
}

asio::awaitable<std::string> lease_service::read_file(const std::string& id, std::string path) {
  protocol::check_file_path("path", path);
  auto l = commandable(id);
  busy_guard guard(*this, l);
  co_return co_await commands_.read_file(l->sandbox->id, "lease " + id, std::move(path));
}

asio::awaitable<protocol::lease_view> lease_service::release(const std::string& id) {
  auto l = find(id);
  end_request released{lease_state::released, std::nullopt};
  co_await request_end(l, std::move(released));
  co_return view(*l);
}

void lease_service::set_outcome(const std::string& id, const std::string& outcome) {
  find(id)->test_outcome = outcome;
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
    if (draining_) v.waiting_for = "draining";
  }
  v.since_s = std::chrono::duration<double>(clock::now() - l.state_since).count();
  if (!l.ended()) v.expires_in_s = seconds_until(l.expires_at);
  if (!l.ended()) v.sandbox = l.sandbox;
  v.error = l.error;
  v.warm = l.warm;
  return v;
}

// --- fixtures and runs --------------------------------------------------------------------------

asio::awaitable<protocol::fixture_view> lease_service::acquire_fixture(const std::string& lease_id,
                                                                       protocol::fixture_request req) {
  auto l = find(lease_id);
  if (l->ended()) throw gone(*l);
  if (l->ending()) {
    throw api_error(errc::lease_gone, fmt::format("lease {} is ending; it can no longer hold a fixture", lease_id));
  }
  if (l->stage != lease_stage::ready) {
    throw api_error(errc::lease_not_ready, fmt::format("lease {} is {}; fixtures are held by ready leases: wait "
                                                       "with GET /v1/leases/{}?wait_s=30 first",
                                                       lease_id, protocol::to_string(l->state), lease_id));
  }
  parse_image_ref(req.image);
  check_asks(req.network, 1, req.memory_mb, req.cpus, req.pids_limit, req.disk_mb, "a fixture");
  heartbeat(*l);
  co_return co_await fixtures_.acquire(lease_id, l->req.run, std::move(req));
}

asio::awaitable<protocol::fixture_view> lease_service::get_fixture(const std::string& id, const std::string& lease_id,
                                                                   int wait_s) {
  fixtures_.find(id);  // 404 for an unknown fixture first
  lease_ptr l;
  if (!lease_id.empty()) {
    l = find(lease_id);
    heartbeat(*l);
  }
  const auto deadline = clock::now() + std::chrono::seconds(std::clamp(wait_s, 0, 300));
  const poll_hold hold(l.get());
  auto v = co_await fixtures_.wait(id, lease_id, deadline);
  if (l) heartbeat(*l);
  co_return v;
}

protocol::fixture_view lease_service::fixture_ready(const std::string& id, protocol::fixture_ready_request req) {
  return fixtures_.mark_ready(id, std::move(req));
}

asio::awaitable<protocol::fixture_view> lease_service::fixture_failed(const std::string& id,
                                                                      protocol::fixture_fail_request req) {
  co_return co_await fixtures_.mark_failed(id, std::move(req));
}

asio::awaitable<protocol::exec_result> lease_service::fixture_exec(const std::string& id, const std::string& lease_id,
                                                                  protocol::exec_request req) {
  co_return co_await fixtures_.exec(id, lease_id, std::move(req));
}

run_timeline lease_service::run(const std::string& id) const {
  run_timeline t = runs_.timeline(id, broker_.slots_total());
  for (const auto& e : provider_.engines()) t.engine_slots[e.name] = e.slots;
  return t;
}

asio::awaitable<run_timeline> lease_service::end_run(const std::string& id) {
  run(id);  // 404 for an unknown run
  co_await fixtures_.end_run(id);
  runs_.mark_ended(id);
  co_return run(id);
}

// --- status -----------------------------------------------------------------------------------

bool lease_service::idle() const {
  return live_.empty() && fixtures_.idle();
}

protocol::status_view lease_service::status() const {
  protocol::status_view s;
  s.instance = opts_.instance;
  s.slots_total = broker_.slots_total();
  s.slots_in_use = broker_.slots_in_use();
  s.queue_length = broker_.queue_length();
  s.ready = prepull_done_;
  s.leases.reserve(live_.size());
  for (const auto& [id, l] : live_) s.leases.push_back(view(*l));
  s.images = gate_.snapshot();
  s.draining = draining_;
  s.seq = events_.last_seq();
  s.lanes = lane_views(clock::now());
  s.runs = run_summaries();
  s.warm = warm_status();
  s.engines = provider_.engines();
  return s;
}

std::optional<protocol::warm_status> lease_service::warm_status() const {
  if (!warm_.enabled()) return std::nullopt;
  protocol::warm_status w;
  w.mode = warm_.options().auto_size ? "auto" : "fixed";
  w.hits = warm_.hits();
  w.misses = warm_.misses();
  w.evictions = warm_evictions_;
  const auto& adoption = telemetry_.warm_adoption_seconds;
  if (adoption.count() > 0) w.adoption_mean_s = adoption.sum() / static_cast<double>(adoption.count());
  for (const auto& f : warm_.figures(clock::now())) {
    w.images.push_back({f.image, f.ready, f.creating, f.target, f.hits, f.misses});
  }
  return w;
}

core_metrics lease_service::metrics() const {
  core_metrics m;
  m.slots_total = broker_.slots_total();
  m.slots_in_use = broker_.slots_in_use();
  m.queue_length = broker_.queue_length();
  m.ready = prepull_done_;
  for (const auto& [state, n] : live_by_state_) {
    if (n > 0) m.live[state] = n;
  }
  m.pulls_started = gate_.pulls_started();
  m.pulls_failed = gate_.pulls_failed();
  m.draining = draining_;
  m.pull_bytes = gate_.pulled_bytes();
  m.pull_seconds = gate_.pull_seconds();
  m.pulls_finished = gate_.pulls_succeeded();
  m.evictions = evictions_;
  m.event_streams = event_streams_;
  m.warm_enabled = warm_.enabled();
  m.warm_hits = warm_.hits();
  m.warm_misses = warm_.misses();
  m.warm_evictions = warm_evictions_;
  for (const auto& f : warm_.figures(clock::now())) m.warm_ready[f.image] = f.ready;
  m.engines = provider_.engines();
  m.counts = &telemetry_;
  return m;
}

}  // namespace sandlot::orchestrator
