#include "broker.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <stdexcept>

namespace sandlot::orchestrator {

namespace {

bool conflicts(const lock_request& want, int shared, bool exclusive) {
  return want.exclusive ? (shared > 0 || exclusive) : exclusive;
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

broker::broker(int slots_total) : slots_total_(slots_total), lane_busy_(static_cast<std::size_t>(slots_total)) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
}

std::vector<std::string> broker::resize(int slots_total) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
  slots_total_ = slots_total;
  if (lane_busy_.size() < static_cast<std::size_t>(slots_total)) lane_busy_.resize(static_cast<std::size_t>(slots_total));
  trim_retired_lanes();
  std::vector<std::string> dropped;
  for (const auto& r : queue_) {
    if (r.slots > slots_total_) dropped.push_back(r.lease_id);
  }
  for (const auto& id : dropped) cancel(id);
  plan_.reset();
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
  // A run that has nothing queued or admitted (new, or back after a pause) goes just before the
  // run served last: ahead of it, so a newcomer gets its turn at once, but behind every run that
  // has waited longer, so runs that come and go cannot starve a waiting (wide) lease.
  last_served_.try_emplace(r.run, tick_ > 0 ? tick_ - 1 : 0);
  queue_.push_back(std::move(r));
  plan_.reset();
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
  // admitted lease keeping a lock from it. A test with an admitted lease that waits is blocked for
  // good if the edges lead back to it.
  struct edge {
    std::string to;
    std::string queued;  // the waiting lease
    std::string lock;
    std::string blocker;  // the admitted lease holding the lock
  };
  std::map<std::string, std::vector<edge>> edges;
  for (const auto& q : queue_) {
    if (q.test.empty() || leases_of_test_.count(q.test) == 0) continue;  // it holds nothing while it waits
    for (const auto& want : q.locks) {
      for (const auto& [id, h] : admitted_) {
        if (h.req.test.empty() || h.req.test == q.test) continue;
        for (const auto& have : h.req.locks) {
          if (have.name == want.name && (have.exclusive || want.exclusive)) {
            edges[q.test].push_back(edge{h.req.test, q.lease_id, want.name, id});
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

bool broker::cancel(const std::string& lease_id) {
  auto it = std::find_if(queue_.begin(), queue_.end(), [&](const request& r) { return r.lease_id == lease_id; });
  if (it == queue_.end()) return false;
  const std::string run = it->run;
  queue_.erase(it);
  forget_idle_run(run);
  plan_.reset();
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

std::vector<const broker::request*> broker::fair_order() const {
  // Each run's queue in arrival order; the runs least recently served first (never served: 0),
  // ties by who queued first; read one from each in turn.
  std::vector<std::string> runs;
  for (const auto& r : queue_) {
    if (std::find(runs.begin(), runs.end(), r.run) == runs.end()) runs.push_back(r.run);
  }
  auto served = [this](const std::string& run) { return last_served_.at(run); };
  std::stable_sort(runs.begin(), runs.end(),
                   [&](const std::string& a, const std::string& b) { return served(a) < served(b); });
  std::vector<std::vector<const request*>> per_run;
  per_run.reserve(runs.size());
  std::size_t longest = 0;
  for (const auto& run : runs) {
    auto& mine = per_run.emplace_back();
    for (const auto& r : queue_) {
      if (r.run == run) mine.push_back(&r);
    }
    longest = std::max(longest, mine.size());
  }
  std::vector<const request*> order;
  order.reserve(queue_.size());
  for (std::size_t i = 0; i < longest; ++i) {
    for (const auto& mine : per_run) {
      if (i < mine.size()) order.push_back(mine[i]);
    }
  }
  return order;
}

void broker::take(const request& r, std::vector<admission>& out) {
  held h{r, {}};
  // Only lanes under the budget: after a shrink, the lanes beyond it are retiring. There are
  // enough, since slots_in_use_ + r.slots <= slots_total_ and each busy lane is a slot in use.
  const auto usable = std::min(lane_busy_.size(), static_cast<std::size_t>(slots_total_));
  for (std::size_t lane = 0; lane < usable && static_cast<int>(h.lanes.size()) < r.slots; ++lane) {
    if (!lane_busy_[lane]) {
      lane_busy_[lane] = true;
      h.lanes.push_back(static_cast<int>(lane));
    }
  }
  slots_in_use_ += r.slots;
  add_uses(locks_, r.locks);
  if (!r.test.empty()) ++leases_of_test_[r.test];
  tick_ += 2;  // even: served runs; odd: runs that came in between
  last_served_[r.run] = tick_;
  out.push_back(admission{r.lease_id, h.lanes});
  const std::string id = r.lease_id;
  admitted_.emplace(id, std::move(h));
  auto it = std::find_if(queue_.begin(), queue_.end(), [&](const request& q) { return q.lease_id == id; });
  queue_.erase(it);  // `r` dangles from here on
}

std::vector<broker::admission> broker::admit() {
  std::vector<admission> out;
  // One admission at a time, each by the rules in order, until nothing more fits: admitting a
  // test's first lease can make its next one go ahead, and every admission turns the rotation.
  while (const request* pick = next_admissible()) take(*pick, out);
  if (!out.empty()) plan_.reset();
  return out;
}

const broker::request* broker::next_admissible() const {
  const auto order = fair_order();
  // Holders mid-test first, if their slots and locks are free now.
  for (const request* r : order) {
    auto h = r->test.empty() ? leases_of_test_.end() : leases_of_test_.find(r->test);
    if (h != leases_of_test_.end() && h->second > 0 && r->slots <= slots_free() && !blocked_lock(r->locks, nullptr)) {
      return r;
    }
  }
  // Then the fair order: a lease blocked by slots blocks those behind it; one blocked by a lock
  // does not, but claims its locks.
  std::map<std::string, lock_use> claims;
  bool slots_blocked = false;
  for (const request* r : order) {
    if (blocked_lock(r->locks, &claims)) {
      add_uses(claims, r->locks);
      continue;
    }
    if (slots_blocked || r->slots > slots_free()) {
      slots_blocked = true;
      add_uses(claims, r->locks);
      continue;
    }
    return r;
  }
  return nullptr;
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
  const std::string run = h.req.run;
  admitted_.erase(it);
  forget_idle_run(run);
  plan_.reset();
  return true;
}

void broker::forget_idle_run(const std::string& run) {
  auto same = [&](const request& r) { return r.run == run; };
  if (std::any_of(queue_.begin(), queue_.end(), same)) return;
  for (const auto& [id, h] : admitted_) {
    if (h.req.run == run) return;
  }
  last_served_.erase(run);
}

broker::plan broker::make_plan() const {
  // Why each queued lease waits, by the same rules as next_admissible() (admit() always runs to
  // a fixed point, so nothing queued could be admitted now).
  plan p;
  std::map<std::string, lock_use> claims;
  for (const request* r : fair_order()) {
    auto lock = blocked_lock(r->locks, &claims);
    p.why[r->lease_id] = lock ? "lock:" + *lock : std::string("slots");
    add_uses(claims, r->locks);
    p.order.push_back(r);
  }
  return p;
}

int broker::queued_in(const std::string& run) const {
  return static_cast<int>(std::count_if(queue_.begin(), queue_.end(), [&](const request& r) { return r.run == run; }));
}

int broker::position(const std::string& lease_id) const {
  if (!plan_) plan_ = make_plan();
  for (std::size_t i = 0; i < plan_->order.size(); ++i) {
    if (plan_->order[i]->lease_id == lease_id) return static_cast<int>(i);
  }
  return -1;
}

std::string broker::waiting_for(const std::string& lease_id) const {
  if (!plan_) plan_ = make_plan();
  auto it = plan_->why.find(lease_id);
  return it == plan_->why.end() ? std::string() : it->second;
}

}  // namespace sandlot::orchestrator
