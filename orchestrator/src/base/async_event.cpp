#include "async_event.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sandlot::orchestrator {

namespace asio = boost::asio;

asio::awaitable<bool> async_event::wait_until(clock::time_point deadline) {
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto it = waiters_.insert(waiters_.end(), waiter{&timer});
  // Unregister on every path out, including cancellation by an awaitable operator.
  struct unregister {
    std::list<waiter>& list;
    std::list<waiter>::iterator it;
    ~unregister() { list.erase(it); }
  } guard{waiters_, it};
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return it->notified;
}

asio::awaitable<void> async_event::wait() {
  for (;;) {
    if (co_await wait_until(clock::time_point::max())) co_return;
    // Woken without a notify: only cancellation does that; don't spin.
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) {
      throw boost::system::system_error(asio::error::operation_aborted);
    }
  }
}

void async_event::notify_all() {
  for (auto& w : waiters_) {
    w.notified = true;
    w.timer->cancel();
  }
}

}  // namespace sandlot::orchestrator
