#include "broker.hpp"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <set>
#include <stdexcept>

namespace sandlot::orchestrator {

namespace {

bool conflicts(const lock_request& want, int shared, bool exclusive) {
  return want.exclusive ? (shared > 0 || exclusive) : exclusive;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

void broker::add_uses(std::map<std::string, lock_use>& uses, const std::vector<lock_request>& locks) {
  for (const auto& l : locks) {
    auto& use = uses[l.name];
    if (l.exclusive) {
      use.exclusive = true;
    } else {
      ++use.shared;
    }
  }
}

broker::broker(int slots_total) : broker(slots_total, options{}) {}

broker::broker(int slots_total, options opts)
    : slots_total_(slots_total), opts_(std::move(opts)), lane_busy_(static_cast<std::size_t>(std::max(slots_total, 0))) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
  if (opts_.aging < 0) throw std::invalid_argument("aging must not be negative");
  if (opts_.backfill_depth < 0) throw std::invalid_argument("the backfill depth must not be negative");
}

double broker::now() const { return opts_.clock ? opts_.clock() : steady_seconds(); }

void broker::set_default_expected(double seconds) {
  if (seconds > 0) default_expected_ = seconds;
}

std::vector<std::string> broker::resize(int slots_total) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
  slots_total_ = slots_total;
  if (lane_busy_.size() < static_cast<std::size_t>(slots_total)) lane_busy_.resize(static_cast<std::size_t>(slots_total));
  trim_retired_lanes();
  std::vector<std::string> dropped;
  for (const auto& [id, e] : queued_) {
    if (e.req.slots > slots_total_) dropped.push_back(id);
  }
  std::sort(dropped.begin(), dropped.end());
  for (const auto& id : dropped) cancel(id);
  changed();
  return dropped;
}

void broker::trim_retired_lanes() {
  while (lane_busy_.size() > static_cast<std::size_t>(slots_total_) && !lane_busy_.back()) lane_busy_.pop_back();
}

std::vector<broker::holding> broker::holdings() const {
  std::vector<holding> out;
  out.reserve(admitted_.size());
  for (const auto& [id, h] : admitted_) out.push_back(holding{id, h.req.slots, h.lanes, h.req.locks});
  return out;
}

void broker::enqueue(request r) {
  if (r.slots < 1 || r.slots > slots_total_) {
    throw std::invalid_argument("a lease must ask for between 1 and slots_total slots");
  }
  std::set<std::string> names;
  for (const auto& l : r.locks) {
    if (!names.insert(l.name).second) throw std::invalid_argument("lock '" + l.name + "' is named twice");
  }
  if (queued_.count(r.lease_id) != 0 || admitted_.count(r.lease_id) != 0) {
    throw std::invalid_argument("lease " + r.lease_id + " is already queued or admitted");
  }
  const std::uint64_t seq = ++arrivals_;
  // A run that has nothing queued or admitted (new, or back after a pause) goes just before the
  // run served last: ahead of it, so a newcomer gets its turn at once, but behind every run that
  // has waited longer, so runs that come and go cannot starve a waiting (wide) lease.
  auto [run_it, fresh] = runs_.try_emplace(r.run);
  run_queue& run = run_it->second;
  if (fresh) {
    run.name = r.run;
    run.last_served = tick_ > 0 ? tick_ - 1 : 0;
    run.joined = seq;
  }
  const double expected = r.expected_s > 0 ? r.expected_s : default_expected_;
  const double key = opts_.order == schedule::duration ? now() - opts_.aging * expected : static_cast<double>(seq);
  const std::string id = r.lease_id;
  auto [it, inserted] = queued_.try_emplace(id, entry{std::move(r), expected, {key, seq}, &run});
  entry& e = it->second;
  run.queue.insert({e.rank, &e});
  if (!e.req.test.empty()) queued_of_test_[e.req.test].push_back(&e);
  changed();
}

std::string broker::self_deadlock(const request& r) const {
  if (r.test.empty()) return {};
  int held_slots = 0;
  for (const auto& [id, h] : admitted_) {
    if (h.req.test != r.test) continue;
    held_slots += h.req.slots;
    for (const auto& want : r.locks) {
      for (const auto& have : h.req.locks) {
        if (have.name == want.name && (have.exclusive || want.exclusive)) {
          return "this test already holds lock '" + want.name + "' (lease " + id + ") in a mode that conflicts " +
                 "with this request, so it waits until the test releases that lease";
        }
      }
    }
  }
  if (held_slots + r.slots > slots_total_) {
    return "this test already holds " + std::to_string(held_slots) + " slot(s) and asks for " +
           std::to_string(r.slots) + " more, beyond the budget of " + std::to_string(slots_total_) +
           "; it waits until the test releases some";
  }
  return {};
}

std::vector<std::string> broker::lock_cycle(std::string& why) const {
  if (locks_.empty()) return {};  // runs on every pump: nothing holds a lock, nobody waits for one
  // A graph of tests: an edge from the test of a queued lease to the test of an
  // admitted lease keeping a lock from it. Only a test with an admitted lease can be on a cycle
  // (a test that holds nothing blocks nobody), so only their queued leases are looked at.
  struct edge {
    std::string to;
    std::string queued;  // the waiting lease
    std::string lock;
    std::string blocker;  // the admitted lease holding the lock
  };
  std::map<std::string, std::vector<edge>> edges;
  for (const auto& [test, count] : leases_of_test_) {
    auto waiting = queued_of_test_.find(test);
    if (waiting == queued_of_test_.end()) continue;
    for (const entry* q : waiting->second) {
      for (const auto& want : q->req.locks) {
        for (const auto& [id, h] : admitted_) {
          if (h.req.test.empty() || h.req.test == test) continue;
          for (const auto& have : h.req.locks) {
            if (have.name == want.name && (have.exclusive || want.exclusive)) {
              edges[test].push_back(edge{h.req.test, q->req.lease_id, want.name, id});
            }
          }
        }
      }
    }
  }
  // Depth-first search from each test for a path back to a test on the current path.
  std::vector<const edge*> path;
  std::set<std::string> done;
  std::function<bool(const std::string&, std::vector<std::string>&)> visit = [&](const std::string& test,
                                                                                  std::vector<std::string>& on_path) {
    on_path.push_back(test);
    for (const auto& e : edges[test]) {
      path.push_back(&e);
      if (auto at = std::find(on_path.begin(), on_path.end(), e.to); at != on_path.end()) {
        // The cycle is the tail of the path from where it re-enters.
        path.erase(path.begin(), path.begin() + (at - on_path.begin()));
        return true;
      }
      if (done.count(e.to) == 0 && visit(e.to, on_path)) return true;
      path.pop_back();
    }
    on_path.pop_back();
    done.insert(test);
    return false;
  };
  for (const auto& [test, out] : edges) {
    if (done.count(test) != 0) continue;
    std::vector<std::string> on_path;
    path.clear();
    if (!visit(test, on_path)) continue;
    std::vector<std::string> leases;
    why.clear();
    for (const edge* e : path) {
      leases.push_back(e->queued);
      if (!why.empty()) why += "; ";
      why += "lease " + e->queued + " waits for lock '" + e->lock + "' held by lease " + e->blocker;
    }
    return leases;
  }
  return {};
}

void broker::unqueue(const std::string& lease_id) {
  auto it = queued_.find(lease_id);
  if (it == queued_.end()) return;
  entry& e = it->second;
  e.run->queue.erase(e.rank);
  if (!e.req.test.empty()) {
    if (auto mine = queued_of_test_.find(e.req.test); mine != queued_of_test_.end()) {
      auto& v = mine->second;
      v.erase(std::remove(v.begin(), v.end(), &e), v.end());
      if (v.empty()) queued_of_test_.erase(mine);
    }
  }
  queued_.erase(it);
  changed();
}

bool broker::cancel(const std::string& lease_id) {
  auto it = queued_.find(lease_id);
  if (it == queued_.end()) return false;
  run_queue* run = it->second.run;
  unqueue(lease_id);
  forget_idle_run(run);
  return true;
}

std::optional<std::string> broker::blocked_lock(const std::vector<lock_request>& locks,
                                                const std::map<std::string, lock_use>* claims) const {
  for (const auto& want : locks) {
    if (auto h = locks_.find(want.name); h != locks_.end() && conflicts(want, h->second.shared, h->second.exclusive)) {
      return want.name;
    }
    if (claims == nullptr) continue;
    if (auto c = claims->find(want.name); c != claims->end() && conflicts(want, c->second.shared, c->second.exclusive)) {
      return want.name;
    }
  }
  return std::nullopt;
}

const std::vector<const broker::run_queue*>& broker::turn_order() const {
  if (!turns_) {
    // The runs least recently served first (never served: just before the last served), ties by
    // who came first.
    std::vector<const run_queue*> runs;
    runs.reserve(runs_.size());
    for (const auto& [name, r] : runs_) {
      if (!r.queue.empty()) runs.push_back(&r);
    }
    std::sort(runs.begin(), runs.end(), [](const run_queue* a, const run_queue* b) {
      return std::tie(a->last_served, a->joined) < std::tie(b->last_served, b->joined);
    });
    turns_ = std::move(runs);
  }
  return *turns_;
}

void broker::walk(const std::function<bool(const entry&)>& visit) const {
  // One from each run's queue in turn, in their own order.
  struct cursor {
    ordered::const_iterator at, end;
  };
  std::vector<cursor> cursors;
  for (const run_queue* r : turn_order()) cursors.push_back({r->queue.begin(), r->queue.end()});
  while (!cursors.empty()) {
    for (auto& c : cursors) {
      if (c.at == c.end) continue;
      if (!visit(*c.at->second)) return;
      ++c.at;
    }
    cursors.erase(std::remove_if(cursors.begin(), cursors.end(), [](const cursor& c) { return c.at == c.end; }),
                  cursors.end());
  }
}

std::pair<double, int> broker::shadow(int slots, double at) const {
  int free = slots_free();
  if (free >= slots) return {at, free - slots};
  // By the expected ends of the admitted leases, soonest first. A lease past its expected end may
  // end any moment: it counts as ending now.
  std::vector<std::pair<double, int>> ends;
  ends.reserve(admitted_.size());
  for (const auto& [id, h] : admitted_) ends.emplace_back(std::max(at, h.admitted_at + h.expected), h.req.slots);
  std::sort(ends.begin(), ends.end());
  for (const auto& [end, n] : ends) {
    free += n;
    if (free >= slots) return {end, free - slots};
  }
  return {std::numeric_limits<double>::infinity(), 0};
}

broker::pick broker::next_admissible() const {
  // Holders mid-test first, if their slots and locks are free now; the first in the fair order.
  const entry* ahead = nullptr;
  int ahead_at = 0;
  for (const auto& [test, count] : leases_of_test_) {
    auto waiting = queued_of_test_.find(test);
    if (waiting == queued_of_test_.end()) continue;
    for (const entry* e : waiting->second) {
      if (e->req.slots > slots_free() || blocked_lock(e->req.locks, nullptr)) continue;
      const int at = position(e->req.lease_id);
      if (ahead == nullptr || at < ahead_at) {
        ahead = e;
        ahead_at = at;
      }
    }
  }
  if (ahead != nullptr) return {ahead, false};

  // Then the fair order: a lease blocked by locks waits without blocking slots, but claims its
  // locks; the first one blocked by slots holds the reservation, and those behind it are only
  // admitted as backfill.
  pick out;
  std::map<std::string, lock_use> claims;
  const entry* head = nullptr;
  double reserved_at = 0;
  int extra = 0;
  int looked = 0;
  const double t = now();
  walk([&](const entry& e) {
    if (head != nullptr && ++looked > opts_.backfill_depth) return false;
    if (blocked_lock(e.req.locks, &claims)) {
      add_uses(claims, e.req.locks);
      return true;
    }
    if (head == nullptr) {
      if (e.req.slots <= slots_free()) {
        out = {&e, false};
        return false;
      }
      head = &e;
      add_uses(claims, e.req.locks);
      if (opts_.order == schedule::fifo || slots_free() <= 0) return false;
      std::tie(reserved_at, extra) = shadow(e.req.slots, t);
      return true;
    }
    if (slots_free() <= 0) return false;
    if (e.req.slots <= slots_free() && (t + e.expected < reserved_at || e.req.slots <= extra)) {
      out = {&e, true};
      return false;
    }
    add_uses(claims, e.req.locks);
    return true;
  });
  return out;
}

std::optional<broker::reservation> broker::reserved() const {
  std::optional<reservation> out;
  std::map<std::string, lock_use> claims;
  const double t = now();
  walk([&](const entry& e) {
    if (blocked_lock(e.req.locks, &claims)) {
      add_uses(claims, e.req.locks);
      return true;
    }
    if (e.req.slots <= slots_free()) return true;  // about to be admitted
    out = reservation{e.req.lease_id, std::max(0.0, shadow(e.req.slots, t).first - t)};
    return false;
  });
  return out;
}

void broker::take(const pick& p, std::vector<admission>& out) {
  const entry& e = *p.e;
  held h{e.req, {}, now(), e.expected};
  run_queue* run = e.run;
  unqueue(h.req.lease_id);  // `e` and `p` dangle from here on
  // Only lanes under the budget: after a shrink, the lanes beyond it are retiring. There are
  // enough, since slots_in_use_ + slots <= slots_total_ and each busy lane is a slot in use.
  const auto usable = std::min(lane_busy_.size(), static_cast<std::size_t>(slots_total_));
  for (std::size_t lane = 0; lane < usable && static_cast<int>(h.lanes.size()) < h.req.slots; ++lane) {
    if (!lane_busy_[lane]) {
      lane_busy_[lane] = true;
      h.lanes.push_back(static_cast<int>(lane));
    }
  }
  slots_in_use_ += h.req.slots;
  add_uses(locks_, h.req.locks);
  if (!h.req.test.empty()) ++leases_of_test_[h.req.test];
  tick_ += 2;  // even: served runs; odd: runs that came in between
  run->last_served = tick_;
  ++run->admitted;
  out.push_back(admission{h.req.lease_id, h.lanes, h.expected, p.backfilled});
  const std::string id = h.req.lease_id;
  admitted_.emplace(id, std::move(h));
}

std::vector<broker::admission> broker::admit() {
  std::vector<admission> out;
  // One admission at a time, each by the rules in order, until nothing more fits: admitting a
  // test's first lease can make its next one go ahead, and every admission turns the rotation.
  for (pick p = next_admissible(); p.e != nullptr; p = next_admissible()) take(p, out);
  return out;
}

bool broker::release(const std::string& lease_id) {
  auto it = admitted_.find(lease_id);
  if (it == admitted_.end()) return false;
  const held& h = it->second;
  slots_in_use_ -= h.req.slots;
  for (int lane : h.lanes) lane_busy_[static_cast<std::size_t>(lane)] = false;
  trim_retired_lanes();
  for (const auto& l : h.req.locks) {
    auto use = locks_.find(l.name);
    if (use == locks_.end()) continue;
    if (l.exclusive) {
      use->second.exclusive = false;
    } else {
      --use->second.shared;
    }
    if (!use->second.exclusive && use->second.shared <= 0) locks_.erase(use);
  }
  if (!h.req.test.empty()) {
    if (auto c = leases_of_test_.find(h.req.test); c != leases_of_test_.end() && --c->second <= 0) leases_of_test_.erase(c);
  }
  run_queue* run = nullptr;
  if (auto r = runs_.find(h.req.run); r != runs_.end()) {
    run = &r->second;
    --run->admitted;
  }
  admitted_.erase(it);
  if (run != nullptr) forget_idle_run(run);
  changed();
  return true;
}

void broker::forget_idle_run(run_queue* run) {
  if (!run->queue.empty() || run->admitted > 0) return;
  const std::string name = run->name;
  runs_.erase(name);
  changed();
}

int broker::queued_in(const std::string& run) const {
  auto it = runs_.find(run);
  return it == runs_.end() ? 0 : static_cast<int>(it->second.queue.size());
}

int broker::position(const std::string& lease_id) const {
  auto it = queued_.find(lease_id);
  if (it == queued_.end()) return -1;
  const entry& e = it->second;
  // Round-robin: the i-th lease of a run comes after the first i of every run, and after the
  // (i+1)-th of the runs whose turn comes before its own.
  const std::size_t i = e.run->queue.order_of_key(e.rank);
  std::size_t pos = 0;
  bool before = true;
  for (const run_queue* r : turn_order()) {
    if (r == e.run) {
      before = false;
      pos += i;
      continue;
    }
    pos += std::min(r->queue.size(), before ? i + 1 : i);
  }
  return static_cast<int>(pos);
}

std::string broker::waiting_for(const std::string& lease_id) const {
  auto it = queued_.find(lease_id);
  if (it == queued_.end()) return {};
  if (it->second.req.locks.empty()) return "slots";
  if (!why_) {
    // Why each lease that wants locks waits, by the same rules as next_admissible() (admit()
    // always runs to a fixed point, so nothing queued could be admitted now). A pass over the
    // queue, kept until it changes.
    std::map<std::string, std::string> why;
    std::map<std::string, lock_use> claims;
    walk([&](const entry& e) {
      if (!e.req.locks.empty()) {
        auto lock = blocked_lock(e.req.locks, &claims);
        why[e.req.lease_id] = lock ? "lock:" + *lock : std::string("slots");
        add_uses(claims, e.req.locks);
      }
      return true;
    });
    why_ = std::move(why);
  }
  auto w = why_->find(lease_id);
  return w == why_->end() ? std::string("slots") : w->second;
}

double broker::expected(const std::string& lease_id) const {
  if (auto q = queued_.find(lease_id); q != queued_.end()) return q->second.expected;
  if (auto a = admitted_.find(lease_id); a != admitted_.end()) return a->second.expected;
  return 0;
}

}  // namespace sandlot::orchestrator
