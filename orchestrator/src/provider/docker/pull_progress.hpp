// The engine's pull stream read as it arrives, for the image gate's progress (bytes fetched of
// bytes in all). Apart from docker_client so that it can be tested on recorded streams.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace sandlot::orchestrator {

/// Reads the engine's pull stream as it grows (one JSON object a line) and sums the layers'
/// "Downloading" progress into bytes fetched and bytes in all.
class pull_progress_reader {
 public:
  explicit pull_progress_reader(std::function<void(std::int64_t, std::int64_t)> report) : report_(std::move(report)) {}
  /// `body` is the whole stream so far; only complete lines not read before are looked at.
  void read(const std::string& body);

 private:
  struct layer {
    std::int64_t done = 0;
    std::int64_t total = 0;
  };
  bool note(const std::string& id, const std::string& status, const nlohmann::json& detail);
  std::function<void(std::int64_t, std::int64_t)> report_;
  std::map<std::string, layer> layers_;
  std::size_t scanned_ = 0;
};

}  // namespace sandlot::orchestrator
