// The slot budget and its queue. Pure bookkeeping, no I/O, so it is unit-tested without an engine.
//
// Admission is strict FIFO with weights: a lease that needs more slots than are free blocks the
// ones behind it, so a wide lease is never starved by a stream of narrow ones.
#pragma once

#include <deque>
#include <string>
#include <vector>

namespace sandlot::orchestrator {

class broker {
 public:
  explicit broker(int slots_total);

  /// Appends a lease to the queue. Precondition: 1 <= slots <= slots_total().
  void enqueue(const std::string& lease_id, int slots);
  /// Removes a queued lease; false if it is not queued.
  bool cancel(const std::string& lease_id);
  /// Admits leases from the head of the queue while they fit, in order; returns their ids.
  std::vector<std::string> admit();
  /// Returns slots of an admitted lease to the budget.
  void release(int slots);

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
  };
  int slots_total_;
  int slots_in_use_ = 0;
  std::deque<entry> queue_;
};

}  // namespace sandlot::orchestrator
