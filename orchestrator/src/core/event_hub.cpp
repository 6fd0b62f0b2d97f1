#include "event_hub.hpp"

#include <utility>
#include <vector>

namespace sandlot::orchestrator {

std::string_view to_string(event_kind k) noexcept {
  switch (k) {
    case event_kind::lease: return "lease";
    case event_kind::fixture: return "fixture";
    case event_kind::budget: return "budget";
    case event_kind::image: return "image";
  }
  return "lease";
}

const core_event& event_hub::publish(event_kind kind, std::string subject, std::string state, std::string run) {
  return deliver(core_event{last_.seq + 1, kind, std::move(subject), std::move(state), std::move(run), std::nullopt});
}

const core_event& event_hub::deliver(core_event e) {
  last_ = std::move(e);
  // A subscriber may unsubscribe (itself or another) while called: walk a copy of the handles.
  std::vector<int> handles;
  handles.reserve(subscribers_.size());
  for (const auto& [handle, s] : subscribers_) handles.push_back(handle);
  for (int handle : handles) {
    if (auto it = subscribers_.find(handle); it != subscribers_.end()) it->second(last_);
  }
  return last_;
}

const core_event& event_hub::publish_lease(std::string id, protocol::lease_state state, std::string run) {
  core_event e{last_.seq + 1, event_kind::lease, std::move(id), std::string(protocol::to_string(state)), std::move(run),
               state};
  return deliver(std::move(e));
}

int event_hub::subscribe(subscriber s) {
  const int handle = ++next_handle_;
  subscribers_.emplace(handle, std::move(s));
  return handle;
}

void event_hub::unsubscribe(int handle) { subscribers_.erase(handle); }

}  // namespace sandlot::orchestrator
