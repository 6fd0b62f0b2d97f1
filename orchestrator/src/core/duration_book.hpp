// What the daemon has learned of how long each test holds its slots: an exponentially weighted
// moving average per run name pattern and test name. The broker orders and backfills by it.
// Pure bookkeeping; app/duration_store.* keeps it in a file across restarts and daemons.
//
// A run's pattern is its name with each number that stands alone replaced by '*'
// ("run-e2e-4711-1764849000" → "run-e2e-*-*"), so the next run of the same suite finds what the
// last one learned.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sandlot::orchestrator {

class duration_book {
 public:
  struct entry {
    double seconds = 0;       // the moving average
    int samples = 0;          // leases it has seen
    double updated_unix = 0;  // wall clock of the last sample: the newer wins when books merge
  };
  static constexpr double weight = 0.3;  // of a new sample in the average
  static constexpr std::size_t max_entries = 20000;

  static std::string pattern_of(std::string_view run);
  static std::string key(std::string_view run, std::string_view test);

  /// A lease of `test` in `run` held its slots for `seconds`.
  void learn(std::string_view run, std::string_view test, double seconds, double now_unix);
  /// The expected hold time of `test`, if it was seen.
  std::optional<double> expected(std::string_view run, std::string_view test) const;
  /// What an unseen test of `run` counts as: the average of its pattern's tests, else of all,
  /// else nullopt.
  std::optional<double> typical(std::string_view run) const;

  /// Takes `other`'s entries where they are newer than this book's (or missing here).
  void merge(const std::vector<std::pair<std::string, entry>>& other);
  std::vector<std::pair<std::string, entry>> entries() const;
  std::size_t size() const noexcept { return entries_.size(); }
  /// Learned something since the last mark_clean().
  bool dirty() const noexcept { return dirty_; }
  void mark_clean() noexcept { dirty_ = false; }

 private:
  void put(const std::string& key, const entry& e);
  void trim();

  struct sum {
    double seconds = 0;
    std::size_t tests = 0;
  };
  std::unordered_map<std::string, entry> entries_;
  std::unordered_map<std::string, sum> by_pattern_;  // running sums: typical() without a scan
  sum all_;
  bool dirty_ = false;
};

}  // namespace sandlot::orchestrator
