// The pull stream read as it arrives: bytes fetched of bytes in all, summed over layers.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pull_progress.hpp"

using sandlot::orchestrator::pull_progress_reader;

namespace {

struct recorder {
  std::vector<std::pair<std::int64_t, std::int64_t>> seen;
  pull_progress_reader reader{[this](std::int64_t done, std::int64_t total) { seen.emplace_back(done, total); }};
};

std::string downloading(const std::string& id, int current, int total) {
  return R"({"status":"Downloading","id":")" + id + R"(","progressDetail":{"current":)" + std::to_string(current) +
         R"(,"total":)" + std::to_string(total) + "}}\n";
}

}  // namespace

TEST_CASE("pull progress sums the layers as the stream grows", "[pull]") {
  recorder r;
  std::string body = R"({"status":"Pulling from sandlot/cold","id":"1"})" "\n";
  body += downloading("aaa", 10, 100);
  r.reader.read(body);
  REQUIRE(r.seen.size() == 1);
  CHECK(r.seen.back() == std::make_pair<std::int64_t, std::int64_t>(10, 100));

  body += downloading("bbb", 5, 50);
  const std::string next = downloading("aaa", 60, 100);
  body += next.substr(0, 20);  // a line not yet complete is left for the next read
  r.reader.read(body);
  REQUIRE(r.seen.size() == 2);
  CHECK(r.seen.back() == std::make_pair<std::int64_t, std::int64_t>(15, 150));

  body += next.substr(20);
  r.reader.read(body);
  CHECK(r.seen.back() == std::make_pair<std::int64_t, std::int64_t>(65, 150));
}

TEST_CASE("a finished layer counts whole and repeats or noise report nothing", "[pull]") {
  recorder r;
  std::string body = downloading("aaa", 10, 100);
  r.reader.read(body);
  body += downloading("aaa", 10, 100);                      // no change
  body += "not json\n";                                    // noise
  body += R"({"status":"Already exists","id":"ccc"})" "\n";  // a layer the engine had: nothing to fetch
  r.reader.read(body);
  CHECK(r.seen.size() == 1);
  body += R"({"status":"Pull complete","id":"aaa"})" "\n";
  r.reader.read(body);
  REQUIRE(r.seen.size() == 2);
  CHECK(r.seen.back() == std::make_pair<std::int64_t, std::int64_t>(100, 100));
}
