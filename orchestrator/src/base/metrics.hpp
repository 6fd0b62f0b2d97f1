// Prometheus text-format building blocks: a fixed-bucket histogram and a writer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sandlot::orchestrator {

class histogram {
 public:
  /// Upper bounds in seconds, ascending; +Inf is implicit.
  explicit histogram(std::vector<double> bounds);
  void observe(double seconds);
  /// Appends HELP, TYPE, buckets, sum and count for `name`.
  void render(std::string& out, std::string_view name, std::string_view help) const;
  std::uint64_t count() const noexcept { return count_; }
  double sum() const noexcept { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket, not cumulative
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

/// Appends a single-sample metric with HELP and TYPE lines.
void render_metric(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, double value);

/// Latency buckets that fit lease waits: 10 ms to 10 min.
std::vector<double> default_latency_buckets();

}  // namespace sandlot::orchestrator
