#include "image_gate.hpp"

#include <algorithm>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using protocol::api_error;
using protocol::errc;
using clock = std::chrono::steady_clock;

image_gate::image_gate(asio::any_io_executor ex, exists_fn exists, pull_fn pull, options opts)
    : ex_(std::move(ex)), exists_(std::move(exists)), pull_(std::move(pull)), opts_(opts) {
  opts_.max_concurrent_pulls = std::max(1, opts_.max_concurrent_pulls);
  opts_.attempts = std::max(1, opts_.attempts);
}

asio::awaitable<void> image_gate::ensure(const std::string& image) {
  auto& slot = images_[image];
  if (!slot) slot = std::make_shared<entry>();
  std::shared_ptr<entry> e = slot;  // keeps the entry alive across suspension
  if (e->state == image_state::present) co_return;

  const bool start = !e->current || e->current->done;
  if (start) {
    // No flight in progress: start one. Everyone arriving while it runs joins it.
    e->current = std::make_shared<flight_result>();
    ++flights_started_;
    e->state = image_state::waiting_for_cap;
    e->error.clear();
  }
  std::shared_ptr<flight_result> joined = e->current;
  // Counted before the flight can run: a flight with no waiters gives up (see flight()).
  ++e->waiters;
  struct leave {
    image_gate& gate;
    entry& e;
    ~leave() {
      if (--e.waiters == 0) {
        e.abandoned.notify_all();
        gate.cap_freed_.notify_all();  // a flight waiting for the cap re-checks whether anyone still waits
      }
    }
  } guard{*this, *e};
  if (start) asio::co_spawn(ex_, flight(image, e, e->current), asio::detached);
  while (!joined->done) co_await joined->finished.wait();
  if (joined->ok) co_return;
  if (joined->code == errc::engine_unavailable) {
    throw api_error(errc::engine_unavailable, fmt::format("could not make image '{}' ready: {}", image, joined->error));
  }
  throw api_error(errc::image_pull_failed,
                  fmt::format("could not pull image '{}': {}; check the reference and that the "
                              "registry serves it",
                              image, joined->error.empty() ? "unknown reason" : joined->error));
}

asio::awaitable<void> image_gate::flight(std::string image, std::shared_ptr<entry> e,
                                         std::shared_ptr<flight_result> result) {
  // Wait for a free pull slot: distinct images beyond the cap queue here, not at the registry.
  while (active_pulls_ >= opts_.max_concurrent_pulls && e->waiters > 0) co_await cap_freed_.wait();
  // Settles the flight once, in the same turn of the event loop as the pull's end, so that an
  // ensure() arriving in that turn starts a new flight rather than joining this finished one.
  auto settle = [this, &image, &e, &result]() {
    if (result->done) return;
    // A pull cut short because its last waiter left failed for that reason, not the engine's.
    const bool abandoned = !result->ok && e->waiters == 0;
    if (abandoned) {
      result->error = "nobody waits for it any more";
      spdlog::info("image gate: pull of {} abandoned: every lease that wanted it left", image);
    } else if (!result->ok) {
      spdlog::warn("image gate: pull of {} failed: {}", image, result->error);
    }
    result->done = true;
    if (e->current == result) {
      e->state = result->ok ? image_state::present : (abandoned ? image_state::unknown : image_state::failed);
      e->error = abandoned ? std::string() : result->error;
    }
    cap_freed_.notify_all();
    result->finished.notify_all();
    notify(image);
  };
  if (e->waiters == 0) {
    settle();
    co_return;
  }
  ++active_pulls_;
  e->state = image_state::pulling;
  e->bytes_done.reset();
  e->bytes_total.reset();
  e->pull_started = clock::now();
  notify(image);
  bool slot_held = true;
  auto give_slot_back = [&] {
    if (slot_held) --active_pulls_;
    slot_held = false;
  };
  auto pull = [&]() -> asio::awaitable<void> {
    try {
      if (!co_await exists_(image)) co_await pull_with_retries(image, e);
      result->ok = true;
    } catch (const api_error& ex) {
      result->error = ex.message();
      result->code = ex.code() == errc::engine_unavailable ? errc::engine_unavailable : errc::image_pull_failed;
    } catch (const provider_error& ex) {
      // A hung engine is its own error: the lease says engine_unavailable, not a bad image.
      result->error = ex.what();
      if (ex.reason() == provider_failure::timed_out) result->code = errc::engine_unavailable;
    } catch (const std::exception& ex) {
      result->error = ex.what();
    }
    give_slot_back();
    settle();
  };
  auto nobody_waits = [&]() -> asio::awaitable<void> {
    while (e->waiters > 0) co_await e->abandoned.wait();
  };
  // The pull stops, and its slot comes back, when its last waiter leaves: every lease that
  // wanted the image was released while it was still coming.
  using namespace asio::experimental::awaitable_operators;
  co_await (pull() || nobody_waits());
  give_slot_back();
  settle();  // nothing to do when the pull settled it
}

asio::awaitable<void> image_gate::pull_with_retries(const std::string& image, std::shared_ptr<entry> e) {
  const auto deadline = clock::now() + opts_.pull_deadline;
  progress_fn progress = [this, image, e](std::int64_t done, std::int64_t total) {
    e->bytes_done = done;
    e->bytes_total = total;
    const auto now = clock::now();
    if (now - e->last_notice < std::chrono::milliseconds(200) && done < total) return;
    e->last_notice = now;
    notify(image);
  };
  auto backoff = opts_.backoff;
  for (int attempt = 1;; ++attempt) {
    ++pulls_started_;
    std::exception_ptr failure;
    try {
      spdlog::info("image gate: pulling {} (attempt {}/{})", image, attempt, opts_.attempts);
      co_await pull_(image, deadline, progress);
      ++pulls_succeeded_;
      pulled_bytes_ += static_cast<std::uint64_t>(std::max<std::int64_t>(0, e->bytes_total.value_or(0)));
      pull_seconds_ += std::chrono::duration<double>(clock::now() - e->pull_started).count();
      co_return;
    } catch (...) {
      failure = std::current_exception();
    }
    ++pulls_failed_;
    // A reference the registry does not know will not appear on retry; give up at once. The
    // provider says so with a typed reason, whatever the engine's wording.
    bool permanent = false;
    try {
      std::rethrow_exception(failure);
    } catch (const provider_error& ex) {
      permanent = ex.permanent();
    } catch (const std::exception&) {
    }
    if (permanent || attempt >= opts_.attempts || clock::now() + backoff >= deadline) {
      std::rethrow_exception(failure);
    }
    asio::steady_timer t(co_await asio::this_coro::executor, backoff);
    co_await t.async_wait(asio::use_awaitable);
    backoff *= 2;
  }
}

void image_gate::prune(std::size_t max_images) {
  if (images_.size() <= max_images) return;
  auto idle = [](const entry& e) { return e.waiters == 0 && (!e.current || e.current->done); };
  for (bool present_too : {false, true}) {
    for (auto it = images_.begin(); it != images_.end() && images_.size() > max_images;) {
      const bool drop = idle(*it->second) && (present_too || it->second->state != image_state::present);
      it = drop ? images_.erase(it) : std::next(it);
    }
  }
}

bool image_gate::known_present(const std::string& image) const {
  auto it = images_.find(image);
  return it != images_.end() && it->second->state == image_state::present;
}

void image_gate::invalidate(const std::string& image) {
  auto it = images_.find(image);
  if (it != images_.end() && it->second->state == image_state::present) {
    it->second->state = image_state::unknown;
  }
}

bool image_gate::idle() const {
  return std::none_of(images_.begin(), images_.end(), [](const auto& kv) {
    return kv.second->state == image_state::pulling || kv.second->state == image_state::waiting_for_cap;
  });
}

std::vector<protocol::image_status> image_gate::snapshot() const {
  std::vector<protocol::image_status> out;
  for (const auto& [image, e] : images_) {
    protocol::image_status s;
    s.image = image;
    switch (e->state) {
      case image_state::unknown: s.state = "unknown"; break;
      case image_state::waiting_for_cap: s.state = "waiting"; break;
      case image_state::pulling: s.state = "pulling"; break;
      case image_state::present: s.state = "present"; break;
      case image_state::failed: s.state = "failed"; break;
    }
    s.waiters = e->waiters;
    s.error = e->error;
    if (e->state == image_state::pulling) {
      s.bytes_done = e->bytes_done;
      s.bytes_total = e->bytes_total;
      s.since_s = std::chrono::duration<double>(clock::now() - e->pull_started).count();
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace sandlot::orchestrator
