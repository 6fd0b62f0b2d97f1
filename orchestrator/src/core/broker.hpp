// The slot budget, named locks and the queue. Pure bookkeeping, no I/O, so it is unit-tested
// without an engine.
//
// Order. The queue is fair between runs and FIFO within one: the queued leases are read as a
// round-robin of the runs' own queues, starting with the run served least recently. A run that
// comes in (or back after a pause) goes just ahead of the run served last. Admitting a lease of a
// run makes it the most recently served, so two ctest invocations sharing a daemon take turns
// instead of one waiting for the other to finish.
//
// Slots. In that order, a lease that needs more slots than are free blocks the ones behind it, so
// a wide lease is never starved by a stream of narrow ones.
//
// Locks. A lease's named locks are granted together with its slots, all or nothing, so nobody
// holds one lock while waiting for another. A lease whose locks are taken waits without blocking
// the slots of leases behind it, but it claims its locks: a later lease asking for a conflicting
// mode of the same lock waits behind it. An exclusive waiter is therefore never starved by a stream
// of shared holders.
//
// A test's next lease. A lease whose test (run and test name) already has an admitted lease goes
// ahead when its slots and locks are free now, ignoring waiters' claims. Without it, a test taking a second sandbox
// behind a wide lease (or behind a writer waiting for a lock the test reads) waits for that lease,
// which waits for the test's first sandbox: a hold-and-wait deadlock.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sandlot::orchestrator {

struct lock_request {
  std::string name;
  bool exclusive = false;
};

class broker {
 public:
  struct request {
    std::string lease_id;
    int slots = 1;
    std::string run;     // fairness unit; empty is a run of its own
    std::string test;    // who asks: run and test name; empty: anonymous, never ahead of the queue
    std::vector<lock_request> locks;
  };
  struct admission {
    std::string lease_id;
    std::vector<int> lanes;  // the 0-based slot lanes it holds, for the run report
  };

  explicit broker(int slots_total);

  /// Appends a lease to its run's queue. Throws std::invalid_argument unless
  /// 1 <= slots <= slots_total(), or if a lock is named twice.
  void enqueue(request r);
  /// Why `r` cannot be admitted until its own test releases a lease, or empty: the test's
  /// admitted leases hold a lock `r` wants in a conflicting mode, or leave too few slots for it.
  std::string self_deadlock(const request& r) const;
  /// A lock wait cycle between tests: test A holds lock X and waits for Y while test B holds Y and
  /// waits for X (each through its own admitted and queued leases), which no release will ever
  /// break. Returns the queued leases on one such cycle and says who holds and waits for what in
  /// `why`; empty when there is none.
  std::vector<std::string> lock_cycle(std::string& why) const;
  /// Removes a queued lease; false if it is not queued.
  bool cancel(const std::string& lease_id);
  /// Admits what may start now (see the rules above), in order.
  std::vector<admission> admit();
  /// Returns the slots and locks of an admitted lease. False if it is not admitted.
  bool release(const std::string& lease_id);

  /// 0-based place in the fair order of the queue, or -1 if not queued.
  int position(const std::string& lease_id) const;
  /// Why a queued lease waits: "slots", or "lock:<name>" for the first lock it cannot have.
  /// Empty if it is not queued.
  std::string waiting_for(const std::string& lease_id) const;

  /// Sets the budget to `slots_total` (>= 1). Growing lets admit() start more at once; shrinking
  /// takes nothing away from admitted leases: admit() starts nothing until use falls under the new
  /// size, and lanes at or beyond it retire as they empty. Queued leases asking for more than the
  /// new size can never be admitted: they are taken out of the queue and returned.
  std::vector<std::string> resize(int slots_total);

  /// An admitted lease as the operator sees it.
  struct holding {
    std::string lease_id;
    int slots = 0;
    std::vector<int> lanes;
    std::vector<lock_request> locks;
  };
  /// Every admitted lease, in lease id order.
  std::vector<holding> holdings() const;
  /// Lanes in all: the budget, or more while a lease still holds a lane beyond a shrunk budget.
  int lanes() const noexcept { return static_cast<int>(lane_busy_.size()); }

  int slots_total() const noexcept { return slots_total_; }
  int slots_in_use() const noexcept { return slots_in_use_; }
  int slots_free() const noexcept { return slots_total_ - slots_in_use_; }
  int queue_length() const noexcept { return static_cast<int>(queue_.size()); }
  /// Leases of `run` waiting in the queue.
  int queued_in(const std::string& run) const;

 private:
  struct lock_use {
    int shared = 0;
    bool exclusive = false;
  };
  struct held {
    request req;
    std::vector<int> lanes;
  };
  struct plan {
    std::vector<const request*> order;        // the fair order of the queue
    std::map<std::string, std::string> why;   // lease id → reason it waits
  };

  /// The first of `locks` that holders (and, unless ignored, earlier waiters' claims) keep from
  /// being granted; nullopt if all are free.
  std::optional<std::string> blocked_lock(const std::vector<lock_request>& locks,
                                          const std::map<std::string, lock_use>* claims) const;
  std::vector<const request*> fair_order() const;
  /// The queued lease the rules admit next, or nullptr.
  const request* next_admissible() const;
  plan make_plan() const;
  /// Counts `locks` as held (or claimed) in `uses`.
  static void add_uses(std::map<std::string, lock_use>& uses, const std::vector<lock_request>& locks);
  void take(const request& r, std::vector<admission>& out);
  /// Drops free lanes at the end beyond the budget (after a shrink).
  void trim_retired_lanes();
  /// Forgets when a run was served once it has nothing queued or admitted.
  void forget_idle_run(const std::string& run);

  int slots_total_;
  int slots_in_use_ = 0;
  std::vector<request> queue_;               // arrival order
  std::map<std::string, unsigned long long> last_served_;  // run → tick of its last admission
  unsigned long long tick_ = 0;
  std::map<std::string, held> admitted_;     // lease id → what it holds
  std::map<std::string, int> leases_of_test_;  // test → its admitted leases
  std::map<std::string, lock_use> locks_;    // granted locks
  std::vector<bool> lane_busy_;
  mutable std::optional<plan> plan_;         // cache for position() and waiting_for()
};

}  // namespace sandlot::orchestrator
