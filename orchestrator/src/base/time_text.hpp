// Wall-clock times as the daemon writes them: UTC, ISO 8601, with a Z.
#pragma once

#include <chrono>
#include <string>

namespace sandlot::orchestrator {

/// `t` as 2026-12-03T16:37:10Z, or with `millis` 2026-12-03T16:37:10.132Z.
std::string utc_text(std::chrono::system_clock::time_point t, bool millis = false);

}  // namespace sandlot::orchestrator
