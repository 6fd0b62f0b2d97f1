#include "broker.hpp"

#include <algorithm>
#include <stdexcept>

namespace sandlot::orchestrator {

broker::broker(int slots_total) : slots_total_(slots_total) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
}

void broker::enqueue(const std::string& lease_id, int slots) {
  if (slots < 1 || slots > slots_total_) {
    throw std::invalid_argument("a lease must ask for between 1 and slots_total slots");
  }
  queue_.push_back(entry{lease_id, slots});
}

bool broker::cancel(const std::string& lease_id) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const entry& e) { return e.lease_id == lease_id; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

std::vector<std::string> broker::admit() {
  std::vector<std::string> admitted;
  while (!queue_.empty() && queue_.front().slots <= slots_free()) {
    slots_in_use_ += queue_.front().slots;
    admitted.push_back(std::move(queue_.front().lease_id));
    queue_.pop_front();
  }
  return admitted;
}

void broker::release(int slots) {
  if (slots < 0 || slots > slots_in_use_) {
    throw std::logic_error("released more slots than are in use");
  }
  slots_in_use_ -= slots;
}

int broker::position(const std::string& lease_id) const {
  for (std::size_t i = 0; i < queue_.size(); ++i) {
    if (queue_[i].lease_id == lease_id) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace sandlot::orchestrator
