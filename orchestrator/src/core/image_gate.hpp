// The image gate: at most one pull per image reference at a time (single flight), a cap on
// concurrent distinct pulls, retries with backoff, and a pull deadline that is apart from any
// lease's ready timeout. Waiters of a failed flight all get the failure, naming the image and the
// engine's reason; the next ensure() of that image starts a new flight.
//
// The engine is reached through two injected functions, so the gate is unit-tested with fakes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "async_event.hpp"

namespace sandlot::orchestrator {

class image_gate {
 public:
  /// True when the engine already has the image.
  using exists_fn = std::function<boost::asio::awaitable<bool>(const std::string& image)>;
  /// Bytes fetched and in all, as a pull goes.
  using progress_fn = std::function<void(std::int64_t done, std::int64_t total)>;
  /// Pulls the image; throws (any std::exception) with the engine's reason on failure. The
  /// deadline is the moment the attempt must give up; `progress` is called as the engine reports.
  using pull_fn = std::function<boost::asio::awaitable<void>(
      const std::string& image, std::chrono::steady_clock::time_point deadline, progress_fn progress)>;
  /// Told when an image's state or pull progress changed (at most every 200 ms for progress).
  using observer_fn = std::function<void(const std::string& image)>;

  struct options {
    int max_concurrent_pulls = 2;
    int attempts = 3;                                 // tries per flight
    std::chrono::milliseconds backoff{500};           // doubled after each failed attempt
    std::chrono::seconds pull_deadline{600};          // whole flight, all attempts
  };

  image_gate(boost::asio::any_io_executor ex, exists_fn exists, pull_fn pull, options opts);

  /// Returns once the image is present; throws protocol::api_error(image_pull_failed).
  boost::asio::awaitable<void> ensure(const std::string& image);
  /// True if the gate knows the image is present (no engine call).
  bool known_present(const std::string& image) const;
  /// Forgets that an image is present (e.g. the engine said "No such image" on create).
  void invalidate(const std::string& image);
  /// True while no flight is running or waiting for the cap.
  bool idle() const;
  /// Forgets images nobody waits for once more than `max_images` are remembered, failed and
  /// unknown ones before present ones (a forgotten present image costs one engine check later).
  void prune(std::size_t max_images);
  std::size_t remembered() const noexcept { return images_.size(); }

  std::vector<protocol::image_status> snapshot() const;
  void set_observer(observer_fn f) { observer_ = std::move(f); }
  /// Bytes the engine reported for pulls that succeeded, and their seconds, summed.
  std::uint64_t pulled_bytes() const noexcept { return pulled_bytes_; }
  double pull_seconds() const noexcept { return pull_seconds_; }
  std::uint64_t pulls_succeeded() const noexcept { return pulls_succeeded_; }
  std::uint64_t pulls_started() const noexcept { return pulls_started_; }
  std::uint64_t pulls_failed() const noexcept { return pulls_failed_; }
  std::uint64_t flights_started() const noexcept { return flights_started_; }

 private:
  enum class image_state { unknown, waiting_for_cap, pulling, present, failed };
  // One pull attempt sequence. Each waiter keeps the flight it joined, so it reads that flight's
  // outcome even if the image's state has moved on (a new flight, an invalidate) before it resumes.
  struct flight_result {
    bool done = false;
    bool ok = false;
    std::string error;
    protocol::errc code = protocol::errc::image_pull_failed;  // engine_unavailable when the engine hung
    async_event finished;
  };
  struct entry {
    image_state state = image_state::unknown;
    std::string error;  // the last flight's failure, for status
    int waiters = 0;
    std::shared_ptr<flight_result> current;  // the flight in progress, if any
    async_event abandoned;  // the last waiter left: a flight nobody waits for gives its pull slot back
    // The pull in progress (reset when a pull starts): what the engine reported, and since when.
    std::optional<std::int64_t> bytes_done;
    std::optional<std::int64_t> bytes_total;
    std::chrono::steady_clock::time_point pull_started{};
    std::chrono::steady_clock::time_point last_notice{};
  };

  boost::asio::awaitable<void> flight(std::string image, std::shared_ptr<entry> e,
                                      std::shared_ptr<flight_result> result);
  boost::asio::awaitable<void> pull_with_retries(const std::string& image, std::shared_ptr<entry> e);
  void notify(const std::string& image) const {
    if (observer_) observer_(image);
  }

  boost::asio::any_io_executor ex_;
  exists_fn exists_;
  pull_fn pull_;
  options opts_;
  std::map<std::string, std::shared_ptr<entry>> images_;
  int active_pulls_ = 0;
  async_event cap_freed_;
  std::uint64_t pulls_started_ = 0;
  std::uint64_t pulls_failed_ = 0;
  std::uint64_t flights_started_ = 0;
  std::uint64_t pulled_bytes_ = 0;
  double pull_seconds_ = 0;
  std::uint64_t pulls_succeeded_ = 0;
  observer_fn observer_;
};

}  // namespace sandlot::orchestrator
