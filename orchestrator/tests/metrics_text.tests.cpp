// GET /metrics follows Prometheus' naming rules, so that `promtool check metrics` (run on a live
// daemon by scripts/check-metrics) has nothing to say: caught here without an engine.
#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>

#include "lease_service.hpp"
#include "metrics_text.hpp"
#include "support/fake_provider.hpp"

namespace {

using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TEST_CASE("every metric has help and a type, and only counters end in _total", "[metrics]") {
  boost::asio::io_context ioc;
  fake_provider provider;
  lease_service service(ioc.get_executor(), provider, service_options{});
  std::istringstream text(render_metrics(service.metrics()));

  std::map<std::string, std::string> types;
  std::map<std::string, int> helps;
  for (std::string line; std::getline(text, line);) {
    std::istringstream words(line);
    std::string hash, kind, name, type;
    words >> hash >> kind >> name >> type;
    if (hash != "#") continue;
    if (kind == "HELP") ++helps[name];
    if (kind == "TYPE") types[name] = type;
  }
  REQUIRE(types.size() >= 12);
  for (const auto& [name, type] : types) {
    INFO(name << " is a " << type);
    CHECK(helps[name] == 1);
    CHECK(ends_with(name, "_total") == (type == "counter"));
    if (type == "histogram") CHECK(ends_with(name, "_seconds"));
  }
  CHECK(types.at("sandlot_slots_budget") == "gauge");
}
