// A broadcast wake-up for coroutines on one executor: waiters park on their own timer and
// notify_all() cancels those timers. It is how long-polls and gate waiters sleep without polling.
// Not thread-safe by design: orchestratord runs all of its state on one io_context thread.
#pragma once

#include <chrono>
#include <list>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace sandlot::orchestrator {

class async_event {
 public:
  using clock = std::chrono::steady_clock;

  async_event() = default;
  async_event(const async_event&) = delete;
  async_event& operator=(const async_event&) = delete;

  /// Waits until notify_all() or `deadline`; true when notified.
  boost::asio::awaitable<bool> wait_until(clock::time_point deadline);
  /// Waits until notify_all().
  boost::asio::awaitable<void> wait();
  /// Wakes every current waiter.
  void notify_all();
  std::size_t waiters() const noexcept { return waiters_.size(); }

 private:
  struct waiter {
    boost::asio::steady_timer* timer;
    bool notified = false;
  };
  std::list<waiter> waiters_;
};

}  // namespace sandlot::orchestrator
