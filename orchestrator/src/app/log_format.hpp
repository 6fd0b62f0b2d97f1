// How orchestratord's log lines look: one line per event in either format, so CI log viewers and
// collectors never see a message split over lines.
#pragma once

#include <string>
#include <string_view>

namespace sandlot::orchestrator {

/// Sets the default logger's formatter: "text" (UTC time, level, message; newlines in a message
/// written as \n) or "json" (one object per line: time, level, msg).
void use_log_format(std::string_view format);

/// One record as the json format writes it, without the newline; for tests.
std::string json_log_line(std::string_view time, std::string_view level, std::string_view message);

}  // namespace sandlot::orchestrator
