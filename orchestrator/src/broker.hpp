// The slot budget and its queue. Pure bookkeeping, no I/O, so it is unit-tested without an engine.
//
// Admission is FIFO with weights: a lease that needs more slots than are free blocks the ones
// behind it, so a wide lease is never starved by a stream of narrow ones. One exception breaks the
// hold-and-wait deadlock: a lease whose holder (a test) already has an admitted lease goes ahead
// when it fits. Without it, a test taking a second sandbox behind a wide lease waits for the wide
// lease, which waits for the test's first sandbox. Only holders mid-test jump, so the wide lease
// still gets its turn once they finish.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <vector>

namespace sandlot::orchestrator {

class broker {
 public:
  explicit broker(int slots_total);

  /// Appends a lease to the queue. Precondition: 1 <= slots <= slots_total(). `holder` names who
  /// asks (run and test); empty means anonymous, never ahead of the queue.
  void enqueue(const std::string& lease_id, int slots, const std::string& holder = {});
  /// Removes a queued lease; false if it is not queued.
  bool cancel(const std::string& lease_id);
  /// Admits, in order, queued leases of holders that already hold one (if they fit), then leases
  /// from the head of the queue while they fit; returns their ids.
  std::vector<std::string> admit();
  /// Returns slots of an admitted lease (enqueued with `holder`) to the budget.
  void release(int slots, const std::string& holder = {});

  /// 0-based place in the queue, or -1 if not queued.
  int position(const std::string& lease_id) const;
  int slots_total() const noexcept { return slots_total_; }
  int slots_in_use() const noexcept { return slots_in_use_; }
  int slots_free() const noexcept { return slots_total_ - slots_in_use_; }
  int queue_length() const noexcept { return static_cast<int>(queue_.size()); }

 private:
  struct entry {
    std::string lease_id;
    int slots;
    std::string holder;
  };
  void take(entry& e, std::vector<std::string>& admitted);
  std::map<std::string, int> held_;  // holder → admitted leases
  int slots_total_;
  int slots_in_use_ = 0;
  std::deque<entry> queue_;
};

}  // namespace sandlot::orchestrator
