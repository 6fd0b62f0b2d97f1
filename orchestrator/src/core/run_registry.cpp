#include "run_registry.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "time_text.hpp"

namespace sandlot::orchestrator {

using protocol::api_error;
using protocol::errc;

namespace {

double seconds_between(run_registry::clock::time_point a, run_registry::clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

lease_record record_of(const lease& l, const std::function<double(lease::clock::time_point)>& since) {
  lease_record rec;
  rec.id = l.id;
  rec.name = l.name;
  rec.test = l.req.test;
  rec.image = l.req.image;
  rec.state = std::string(protocol::to_string(l.state));
  rec.test_outcome = l.test_outcome;
  rec.slots = l.req.slots;
  rec.lanes = l.lanes;
  for (const auto& lock : l.req.locks) rec.locks.push_back({lock.name, std::string(protocol::to_string(lock.mode))});
  rec.queued_s = since(l.created_at);
  if (l.admitted_at) rec.admitted_s = since(*l.admitted_at);
  if (l.pulled_at) rec.pulled_s = since(*l.pulled_at);
  if (l.ready_at) rec.ready_s = since(*l.ready_at);
  if (protocol::is_final(l.state)) rec.ended_s = since(l.ended_at);
  rec.pull_s = l.pull_s;
  if (l.admitted_at) rec.expected_s = l.expected_s;
  rec.backfilled = l.backfilled;
  rec.sandbox = l.sandbox_name;
  rec.engine = l.sandbox_engine;
  rec.warm = l.warm;
  if (l.error) rec.error = l.error->message;
  return rec;
}

fixture_record record_of(const fixture& f, const std::function<double(lease::clock::time_point)>& since) {
  fixture_record rec;
  rec.id = f.id;
  rec.name = f.name;
  rec.state = std::string(to_string(f.state));
  rec.creations = f.creations;
  rec.holders = static_cast<int>(f.holders.size());
  rec.acquisitions = f.acquisitions;
  rec.port = f.port;
  rec.created_s = since(f.created_at);
  if (f.ready_at) rec.ready_s = since(*f.ready_at);
  if (f.ended_at) rec.ended_s = since(*f.ended_at);
  return rec;
}

}  // namespace

bool run_registry::record::live() const {
  return sums.live > 0 || std::any_of(fixtures.begin(), fixtures.end(), [](const fixture_ptr& f) { return !f->gone(); });
}

std::optional<double> run_registry::record::efficiency(int slots_total, clock::time_point now) const {
  // The first lease's queueing starts the wall; the last end (or now, while any lease is live)
  // ends it. Slot time and the longest hold count running leases up to now.
  if (!sums.first) return std::nullopt;
  const double now_s = seconds_between(*sums.first, now);
  const double running_slot_s = sums.running_slots * now_s - sums.running_slot_start;
  const double slot_s = sums.ended_slot_s + std::max(0.0, running_slot_s);
  double longest = sums.ended_longest_s;
  if (!sums.running_since.empty()) longest = std::max(longest, seconds_between(*sums.running_since.begin(), now));
  const double wall = sums.live > 0 ? now_s : seconds_between(*sums.first, sums.last_end);
  if (wall <= 0 || slot_s <= 0) return std::nullopt;
  return std::max(slot_s / std::max(1, slots_total), longest) / wall;
}

run_registry::record& run_registry::open(const std::string& run, clock::time_point when) {
  auto& r = runs_[run];
  if (r.leases.empty() && r.fixtures.empty()) {
    r.id = run;
    r.first_queued = when;
    r.started_wall = std::chrono::system_clock::now();
  }
  r.last_activity = when;
  r.ended = false;
  return r;
}

void run_registry::add_lease(const lease_ptr& l) {
  auto& r = open(l->req.run, l->created_at);
  if (r.leases.size() >= opts_.max_run_records) {
    // A run that never goes idle must not grow without bound: its oldest ended leases go.
    auto oldest = std::find_if(r.leases.begin(), r.leases.end(), [](const lease_ptr& p) { return p->ended(); });
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
  if (!r.sums.first) r.sums.first = l->created_at;
  ++r.sums.live;
}

void run_registry::lease_admitted(const lease& l) {
  auto it = runs_.find(l.req.run);
  if (it == runs_.end() || !l.admitted_at || !it->second.sums.first) return;
  auto& r = it->second;
  r.sums.running_slots += l.req.slots;
  r.sums.running_slot_start += l.req.slots * seconds_between(*r.sums.first, *l.admitted_at);
  r.sums.running_since.insert(*l.admitted_at);
}

void run_registry::lease_ended(const lease& l) {
  auto it = runs_.find(l.req.run);
  if (it == runs_.end()) return;
  auto& r = it->second.sums;
  if (r.live > 0) --r.live;
  r.last_end = std::max(r.last_end, l.ended_at);
  if (!l.admitted_at) return;
  if (auto at = r.running_since.find(*l.admitted_at); at != r.running_since.end()) {
    r.running_since.erase(at);
    r.running_slots -= l.req.slots;
    r.running_slot_start -= l.req.slots * seconds_between(*r.first, *l.admitted_at);
  }
  const double held = std::max(0.0, seconds_between(*l.admitted_at, l.ended_at));
  r.ended_slot_s += held * l.req.slots;
  r.ended_longest_s = std::max(r.ended_longest_s, held);
}

void run_registry::add_fixture(const fixture_ptr& f) { runs_[f->run].fixtures.push_back(f); }

void run_registry::touch(const std::string& run, clock::time_point when) {
  if (auto r = runs_.find(run); r != runs_.end()) r->second.last_activity = when;
}

std::optional<std::string> run_registry::pinned(const std::string& run, const std::string& image) const {
  if (auto r = runs_.find(run); r != runs_.end()) {
    if (auto it = r->second.images.find(image); it != r->second.images.end()) return it->second;
  }
  return std::nullopt;
}

std::string run_registry::pin(const std::string& run, const std::string& image, std::string id) {
  auto r = runs_.find(run);
  if (r == runs_.end()) return id;
  auto [it, inserted] = r->second.images.emplace(image, std::move(id));
  if (inserted) spdlog::info("run '{}': {} is pinned to {}", run, image, it->second.substr(0, 19));
  return it->second;
}

void run_registry::unpin(const std::string& run, const std::string& image) {
  if (auto r = runs_.find(run); r != runs_.end()) r->second.images.erase(image);
}

void run_registry::prune(clock::time_point now,
                         const std::function<void(const std::string& fixture_id)>& forget_fixture) {
  auto forget = [&](std::map<std::string, record>::iterator it) {
    for (const auto& f : it->second.fixtures) forget_fixture(f->id);
    return runs_.erase(it);
  };
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = (!it->second.live() && now - it->second.last_activity > opts_.keep_runs) ? forget(it) : std::next(it);
  }
  // Beyond --keep-runs, the idle run that was active longest ago goes first.
  while (runs_.size() > opts_.keep_runs_count) {
    auto oldest = runs_.end();
    for (auto it = runs_.begin(); it != runs_.end(); ++it) {
      if (it->second.live()) continue;
      if (oldest == runs_.end() || it->second.last_activity < oldest->second.last_activity) oldest = it;
    }
    if (oldest == runs_.end()) break;  // every run is live: nothing to forget yet
    spdlog::info("forgetting run '{}' ({} leases): more than --keep-runs={} runs are remembered", oldest->first,
                 oldest->second.leases.size(), opts_.keep_runs_count);
    forget(oldest);
  }
}

const run_registry::record& run_registry::find(const std::string& run) const {
  auto it = runs_.find(run);
  if (it == runs_.end()) {
    throw api_error(errc::not_found, fmt::format("no run '{}' here: runs are named by the leases' \"run\" field "
                                                 "(SANDLOT_RUN), and forgotten {} minutes after they go idle",
                                                 run, opts_.keep_runs.count()));
  }
  return it->second;
}

run_timeline run_registry::timeline(const std::string& run, int slots_total) const {
  const record& r = find(run);
  const std::function<double(clock::time_point)> since = [&](clock::time_point t) {
    return seconds_between(r.first_queued, t);
  };
  run_timeline t;
  t.run = r.id;
  t.slots_total = slots_total;
  t.started_at = utc_text(r.started_wall);
  t.now_s = since(clock::now());
  t.started_unix_s = std::chrono::duration<double>(r.started_wall.time_since_epoch()).count();
  t.ended = r.ended;
  t.images = r.images;
  for (const auto& l : r.leases) t.leases.push_back(record_of(*l, since));
  for (const auto& f : r.fixtures) t.fixtures.push_back(record_of(*f, since));
  return t;
}

std::vector<run_listing> run_registry::list(int slots_total) const {
  std::vector<const record*> all;
  for (const auto& [id, r] : runs_) all.push_back(&r);
  std::sort(all.begin(), all.end(), [](auto* a, auto* b) { return a->first_queued < b->first_queued; });
  std::vector<run_listing> out;
  const auto now = lease::clock::now();
  for (const auto* r : all) {
    out.push_back(run_listing{r->id, utc_text(r->started_wall), r->leases.size(), r->sums.live, r->fixtures.size(),
                              r->ended, r->efficiency(slots_total, now)});
  }
  return out;
}

std::vector<fixture_ptr> run_registry::fixtures_of(const std::string& run) const { return find(run).fixtures; }

void run_registry::mark_ended(const std::string& run) {
  if (auto it = runs_.find(run); it != runs_.end()) it->second.ended = true;
}

}  // namespace sandlot::orchestrator
