// The one place the core says what changed: every lease state change, fixture state change and
// budget change is published here, numbered. The metrics' counters read it now; a live event
// stream (a server-sent-events route on the API's streaming seam) subscribes to it next.
//
// Runs on the core's one thread, like the rest of the core: subscribers are called in order,
// synchronously, and must not block (a slow reader buffers on its own side, bounded).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <optional>
#include <string_view>

#include <sandlot/protocol.hpp>

namespace sandlot::orchestrator {

enum class event_kind {
  lease,    // a lease changed state: subject is its id, state the API's word for it
  fixture,  // a fixture changed state: creating, ready, gone
  budget,   // slots were admitted or given back: subject is empty, state "in_use=N/total=M"
  image,    // an image's gate state or pull progress changed: subject is the image
};

std::string_view to_string(event_kind k) noexcept;

struct core_event {
  std::uint64_t seq = 0;  // 1, 2, ... in publication order
  event_kind kind = event_kind::lease;
  std::string subject;    // a lease or fixture id
  std::string state;
  std::string run;        // the run it belongs to, when it belongs to one
  std::optional<protocol::lease_state> lease_state;  // a lease event's state, typed
};

class event_hub {
 public:
  using subscriber = std::function<void(const core_event&)>;

  /// Numbers the event and hands it to every subscriber, oldest subscription first.
  const core_event& publish(event_kind kind, std::string subject, std::string state, std::string run = {});
  /// A lease's new state (event_kind::lease; `state` is the API's word for it).
  const core_event& publish_lease(std::string id, protocol::lease_state state, std::string run);
  /// Returns a handle for unsubscribe().
  int subscribe(subscriber s);
  void unsubscribe(int handle);

  std::uint64_t last_seq() const noexcept { return last_.seq; }
  std::size_t subscribers() const noexcept { return subscribers_.size(); }

 private:
  const core_event& deliver(core_event e);
  core_event last_;
  int next_handle_ = 0;
  std::map<int, subscriber> subscribers_;
};

}  // namespace sandlot::orchestrator
