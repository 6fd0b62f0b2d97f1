#include "pull_progress.hpp"

#include <algorithm>
#include <cstddef>

namespace sandlot::orchestrator {

using json = nlohmann::json;

void pull_progress_reader::read(const std::string& body) {
  if (!report_) return;
  bool changed = false;
  for (auto nl = body.find('\n', scanned_); nl != std::string::npos; nl = body.find('\n', scanned_)) {
    auto j = json::parse(body.begin() + static_cast<std::ptrdiff_t>(scanned_),
                         body.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    scanned_ = nl + 1;
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("status") ||
        !j["status"].is_string()) {
      continue;
    }
    changed = note(j["id"].get<std::string>(), j["status"].get<std::string>(), j.value("progressDetail", json::object())) ||
              changed;
  }
  if (!changed) return;
  std::int64_t done = 0;
  std::int64_t total = 0;
  for (const auto& [id, l] : layers_) {
    if (l.total <= 0) continue;
    done += std::min(l.done, l.total);
    total += l.total;
  }
  if (total > 0) report_(done, total);
}

bool pull_progress_reader::note(const std::string& id, const std::string& status, const json& detail) {
  auto& l = layers_[id];
  if (status == "Downloading" && detail.is_object()) {
    const auto current = detail.value("current", std::int64_t{0});
    const auto total = detail.value("total", std::int64_t{0});
    if (current == l.done && total == l.total) return false;
    l.done = current;
    if (total > 0) l.total = total;
    return true;
  }
  // A finished layer counts whole; one the engine already had counts as nothing to fetch.
  if ((status == "Download complete" || status == "Pull complete") && l.total > 0 && l.done != l.total) {
    l.done = l.total;
    return true;
  }
  return false;
}

}  // namespace sandlot::orchestrator
