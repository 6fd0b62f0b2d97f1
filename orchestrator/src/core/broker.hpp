// The slot budget, named locks and the queue. Pure bookkeeping, no I/O, so it is unit-tested
// without an engine.
//
// Order. The queue is fair between runs: the queued leases are read as a round-robin of the runs'
// own queues, starting with the run served least recently. A run that comes in (or back after a
// pause) goes just ahead of the run served last. Admitting a lease of a run makes it the most
// recently served, so two ctest invocations sharing a daemon take turns instead of one waiting for
// the other to finish.
//
// Within a run, with the `duration` schedule (the default), the longest expected lease goes first:
// each lease is ranked by arrival time minus its expected hold time (times `aging`), so a lease
// that has waited T seconds is ahead of any lease arriving later that is expected to take less
// than T seconds more. Waiting raises priority and nothing starves. A lease whose duration is
// unknown counts as the average (set_default_expected). With equal expectations this is first in
// first out, which is the whole of the `fifo` schedule.
//
// Slots and backfill. In that order, the first lease that needs more slots than are free holds
// the reservation: the time at which, by the expected ends of the admitted leases, enough slots
// will be free for it. Leases behind it run meanwhile only when they fit now and are expected to end
// before that time, or fit in slots the reservation will not need (EASY backfill, as in Slurm).
// Only the first `backfill_depth` leases behind it are looked at. The `fifo` schedule does not
// backfill: the reservation holder blocks everyone behind it.
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
//
// Cost. Each run's queue is an order-statistics tree: enqueue, cancel and position() are
// O(log n + runs), admit() looks at the reservation holder and at most backfill_depth leases
// behind it. Nothing scans the whole queue per event, except resize() and a lock's wait reason.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ext/pb_ds/assoc_container.hpp>
#include <ext/pb_ds/tree_policy.hpp>

namespace sandlot::orchestrator {

struct lock_request {
  std::string name;
  bool exclusive = false;
};

/// How the queue of one run is ordered (see above).
enum class schedule { fifo, duration };

class broker {
 public:
  struct request {
    std::string lease_id;
    int slots = 1;
    std::string run;     // fairness unit; empty is a run of its own
    std::string test;    // who asks: run and test name; empty: anonymous, never ahead of the queue
    std::vector<lock_request> locks;
    double expected_s = 0;  // expected hold time in seconds; <= 0: unknown, the average
  };
  struct admission {
    std::string lease_id;
    std::vector<int> lanes;  // the 0-based slot lanes it holds, for the run report
    double expected_s = 0;   // what the broker expected it to take (the average if unknown)
    bool backfilled = false; // admitted past the reservation holder
  };
  struct options {
    schedule order = schedule::duration;
    double aging = 1.0;        // seconds of waiting worth one second of expected hold time
    int backfill_depth = 256;  // leases behind the reservation holder that admit() looks at
    /// Seconds on a monotonic clock; steady_clock when empty (tests pass their own).
    std::function<double()> clock;
  };

  explicit broker(int slots_total);
  broker(int slots_total, options opts);

  /// Appends a lease to its run's queue. Throws std::invalid_argument unless
  /// 1 <= slots <= slots_total(), if a lock is named twice, or if the lease is already known.
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
  /// The expected hold time the broker uses for a queued or admitted lease (0 if unknown to it).
  double expected(const std::string& lease_id) const;

  /// The lease holding the reservation and when, by the expected ends of the admitted leases,
  /// enough slots will be free for it (seconds from now; 0 when overdue leases hold them).
  struct reservation {
    std::string lease_id;
    double starts_in_s = 0;
  };
  std::optional<reservation> reserved() const;

  /// What a lease of unknown duration counts as (> 0), from now on.
  void set_default_expected(double seconds);
  double default_expected() const noexcept { return default_expected_; }
  schedule order() const noexcept { return opts_.order; }

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
  int queue_length() const noexcept { return static_cast<int>(queued_.size()); }
  /// Leases of `run` waiting in the queue.
  int queued_in(const std::string& run) const;

 private:
  struct lock_use {
    int shared = 0;
    bool exclusive = false;
  };
  struct run_queue;
  struct entry {
    request req;
    double expected = 0;     // resolved: the request's, or the default at enqueue
    std::pair<double, std::uint64_t> rank;  // place in the run's queue: (key, arrival number)
    run_queue* run = nullptr;
  };
  using ordered = __gnu_pbds::tree<std::pair<double, std::uint64_t>, entry*, std::less<>, __gnu_pbds::rb_tree_tag,
                                   __gnu_pbds::tree_order_statistics_node_update>;
  struct run_queue {
    std::string name;
    unsigned long long last_served = 0;  // tick of its last admission (see enqueue)
    std::uint64_t joined = 0;            // arrival number when it last came in: ties
    ordered queue;
    int admitted = 0;
  };
  struct held {
    request req;
    std::vector<int> lanes;
    double admitted_at = 0;
    double expected = 0;
  };
  struct pick {
    const entry* e = nullptr;
    bool backfilled = false;
  };

  double now() const;
  /// The first of `locks` that holders (and, unless ignored, earlier waiters' claims) keep from
  /// being granted; nullopt if all are free.
  std::optional<std::string> blocked_lock(const std::vector<lock_request>& locks,
                                          const std::map<std::string, lock_use>* claims) const;
  /// The runs with queued leases, in the order they take turns (cached until the queue changes).
  const std::vector<const run_queue*>& turn_order() const;
  /// Calls `visit` with each queued lease in the fair order until it returns false.
  void walk(const std::function<bool(const entry&)>& visit) const;
  /// When enough slots for `slots` will be free by the admitted leases' expected ends, and how many
  /// slots beyond `slots` are free then.
  std::pair<double, int> shadow(int slots, double at) const;
  /// The queued lease the rules admit next, if any.
  pick next_admissible() const;
  /// Counts `locks` as held (or claimed) in `uses`.
  static void add_uses(std::map<std::string, lock_use>& uses, const std::vector<lock_request>& locks);
  void take(const pick& p, std::vector<admission>& out);
  /// Takes a queued lease out of every index; the entry is erased.
  void unqueue(const std::string& lease_id);
  /// Drops free lanes at the end beyond the budget (after a shrink).
  void trim_retired_lanes();
  /// Forgets a run once it has nothing queued or admitted.
  void forget_idle_run(run_queue* run);
  void changed() noexcept {
    turns_.reset();
    why_.reset();
  }

  int slots_total_;
  options opts_;
  int slots_in_use_ = 0;
  double default_expected_ = 60;
  std::uint64_t arrivals_ = 0;
  unsigned long long tick_ = 0;
  std::unordered_map<std::string, entry> queued_;          // lease id → queued lease
  std::unordered_map<std::string, run_queue> runs_;        // run → its queue, while it has leases
  std::unordered_map<std::string, std::vector<const entry*>> queued_of_test_;  // test → its queued leases
  std::map<std::string, held> admitted_;     // lease id → what it holds
  std::map<std::string, int> leases_of_test_;  // test → its admitted leases
  std::map<std::string, lock_use> locks_;    // granted locks
  std::vector<bool> lane_busy_;
  mutable std::optional<std::vector<const run_queue*>> turns_;  // cache for turn_order()
  mutable std::optional<std::map<std::string, std::string>> why_;  // lock wait reasons, by lease id
};

}  // namespace sandlot::orchestrator
