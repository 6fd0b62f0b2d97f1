// Racing an awaitable against a deadline, and turning an awaitable's exception into a value.
//
// Asio's awaitable operators end a race early only on success, so a failure must be a value for
// `||` to see it: capture() does that, and within() is the one place a provider call races a
// timer (a lease's ready timeout, a fixture's make timeout).
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sandlot::orchestrator {

inline boost::asio::awaitable<std::exception_ptr> capture(boost::asio::awaitable<void> a) {
  try {
    co_await std::move(a);
    co_return nullptr;
  } catch (...) {
    co_return std::current_exception();
  }
}

template <class T>
boost::asio::awaitable<std::pair<std::optional<T>, std::exception_ptr>> capture(boost::asio::awaitable<T> a) {
  try {
    co_return std::pair<std::optional<T>, std::exception_ptr>{co_await std::move(a), nullptr};
  } catch (...) {
    co_return std::pair<std::optional<T>, std::exception_ptr>{std::nullopt, std::current_exception()};
  }
}

/// `a`'s result, or nullopt when `limit` passed first (`a` is then cancelled, though what it asked
/// an engine for may still happen). A failure of `a` is rethrown.
template <class T>
boost::asio::awaitable<std::optional<T>> within(std::chrono::steady_clock::duration limit,
                                                boost::asio::awaitable<T> a) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, limit);
  auto raced = co_await (capture(std::move(a)) || timer.async_wait(boost::asio::use_awaitable));
  if (raced.index() == 1) co_return std::nullopt;
  auto& [value, failure] = std::get<0>(raced);
  if (failure) std::rethrow_exception(failure);
  co_return std::move(value);
}

}  // namespace sandlot::orchestrator
