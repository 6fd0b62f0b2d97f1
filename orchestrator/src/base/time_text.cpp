#include "time_text.hpp"

#include <ctime>

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace sandlot::orchestrator {

std::string utc_text(std::chrono::system_clock::time_point t, bool millis) {
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::floor<std::chrono::seconds>(since);
  const std::tm tm = fmt::gmtime(static_cast<std::time_t>(secs.count()));
  if (!millis) return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", tm);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(since - secs).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", tm, ms);
}

}  // namespace sandlot::orchestrator
