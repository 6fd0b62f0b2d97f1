#include "broker.hpp"

#include <algorithm>
#include <stdexcept>

namespace sandlot::orchestrator {

broker::broker(int slots_total) : slots_total_(slots_total) {
  if (slots_total < 1) throw std::invalid_argument("the slot budget must be at least 1");
}

void broker::enqueue(const std::string& lease_id, int slots, const std::string& holder) {
  if (slots < 1 || slots > slots_total_) {
    throw std::invalid_argument("a lease must ask for between 1 and slots_total slots");
  }
  queue_.push_back(entry{lease_id, slots, holder});
}

bool broker::cancel(const std::string& lease_id) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const entry& e) { return e.lease_id == lease_id; });
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

void broker::take(entry& e, std::vector<std::string>& admitted) {
  slots_in_use_ += e.slots;
  if (!e.holder.empty()) ++held_[e.holder];
  admitted.push_back(std::move(e.lease_id));
}

std::vector<std::string> broker::admit() {
  std::vector<std::string> admitted;
  for (auto it = queue_.begin(); it != queue_.end();) {
    auto h = it->holder.empty() ? held_.end() : held_.find(it->holder);
    if (h != held_.end() && h->second > 0 && it->slots <= slots_free()) {
      take(*it, admitted);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue_.empty() && queue_.front().slots <= slots_free()) {
    take(queue_.front(), admitted);
    queue_.pop_front();
  }
  return admitted;
}

void broker::release(int slots, const std::string& holder) {
  if (slots < 0 || slots > slots_in_use_) {
    throw std::logic_error("released more slots than are in use");
  }
  slots_in_use_ -= slots;
  if (auto h = held_.find(holder); !holder.empty() && h != held_.end() && --h->second <= 0) held_.erase(h);
}

int broker::position(const std::string& lease_id) const {
  for (std::size_t i = 0; i < queue_.size(); ++i) {
    if (queue_[i].lease_id == lease_id) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace sandlot::orchestrator
