#include "log_format.hpp"

#include "time_text.hpp"

#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace {

void append(spdlog::memory_buf_t& dest, std::string_view text) { dest.append(text.data(), text.data() + text.size()); }

/// %q: the message with line breaks and other control characters escaped, so one event is one line.
class one_line_message final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    for (char ch : text) {
      if (ch == '\n') {
        append(dest, "\\n");
      } else if (ch == '\r') {
        append(dest, "\\r");
      } else if (static_cast<unsigned char>(ch) < 0x20 && ch != '\t') {
        append(dest, fmt::format("\\x{:02x}", static_cast<unsigned char>(ch)));
      } else {
        dest.push_back(ch);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<one_line_message>(); }
};

class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto level = spdlog::level::to_string_view(msg.level);
    append(dest, json_log_line(utc_text(msg.time, /*millis=*/true), std::string_view(level.data(), level.size()),
                               std::string_view(msg.payload.data(), msg.payload.size())));
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<json_formatter>(); }
};

}  // namespace

std::string json_log_line(std::string_view time, std::string_view level, std::string_view message) {
  const nlohmann::ordered_json j{{"time", time}, {"level", level}, {"msg", message}};
  // Engine messages may carry bytes that are not UTF-8; the line must still be valid JSON.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void use_log_format(std::string_view format) {
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<json_formatter>());
    return;
  }
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<one_line_message>('q').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %q");
  spdlog::set_formatter(std::move(f));
}

}  // namespace sandlot::orchestrator
