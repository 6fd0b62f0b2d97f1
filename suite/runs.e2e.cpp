// Where the time went: every lease belongs to a run, and GET /v1/runs/{id} keeps its timeline.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

TEST_CASE("a released lease appears in its run's timeline with every phase in order", "[runs]") {
  const auto& c = sandlot::testing::default_client();
  std::string id;
  std::string name;
  {
    auto sb = sandlot::testing::lease_sandbox();
    id = sb.id();
    name = sb.name();
    CHECK(sb.view().run == sandlot::client::run_from_env());
  }
  auto run = c.run(sandlot::client::run_from_env());
  CHECK(run.at("run") == sandlot::client::run_from_env());
  CHECK(run.at("slots_total").get<int>() >= 1);
  const nlohmann::json* mine = nullptr;
  for (const auto& l : run.at("leases")) {
    if (l.at("id") == id) mine = &l;
  }
  REQUIRE(mine != nullptr);
  INFO("timeline: " << mine->dump());
  CHECK(mine->at("state") == "released");
  CHECK(mine->at("name") == name);
  CHECK(mine->at("test") == Catch::getResultCapture().getCurrentTestName());
  CHECK(mine->at("lanes").size() == 1);
  CHECK(mine->at("lanes")[0].get<int>() < run.at("slots_total").get<int>());
  const double queued = mine->at("queued_s"), admitted = mine->at("admitted_s"), ready = mine->at("ready_s"),
               ended = mine->at("ended_s");
  CHECK(queued <= admitted);
  CHECK(admitted <= ready);
  CHECK(ready <= ended);
  CHECK_FALSE(mine->at("sandbox").get<std::string>().empty());
  CHECK(run.at("summary").at("leases").get<int>() >= 1);
}

TEST_CASE("the run report is an HTML page with a lane per slot, grouped by engine with a pool", "[runs]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = sandlot::testing::lease_sandbox();
  const auto status = c.status();
  auto res = c.request("GET", "/v1/runs/" + sb.view().run + "/report.html");
  REQUIRE(res.status == 200);
  CHECK_THAT(res.body, Catch::StartsWith("<!DOCTYPE html>") || Catch::StartsWith("<!doctype html>"));
  std::vector<std::string> labels;  // the lanes' labels, top to bottom
  const std::string mark = "class=\"lane-label\"";
  for (auto at = res.body.find(mark); at != std::string::npos; at = res.body.find(mark, at + 1)) {
    const auto open = res.body.find('>', at);
    const auto close = res.body.find('<', open);
    REQUIRE(close != std::string::npos);
    labels.push_back(res.body.substr(open + 1, close - open - 1));
  }
  if (status.engines.empty()) {
    // One engine: a lane per slot of the budget.
    CHECK(labels.size() == static_cast<std::size_t>(status.slots_total));
    CHECK(labels.front() == "slot 0");
    return;
  }
  // A pool: every lane is labelled with an engine of the pool (or "unplaced", for leases that
  // never got one), and this test's own engine has lanes. (Engine names here are short: not cut.)
  std::map<std::string, int> per_engine;
  for (const auto& label : labels) per_engine[label.substr(0, label.rfind(' '))]++;
  for (const auto& [name, n] : per_engine) {
    INFO("lanes labelled " << name << ": " << n);
    const bool known = std::any_of(status.engines.begin(), status.engines.end(),
                                   [&](const auto& e) { return e.name == name; });
    CHECK((known || name == "unplaced"));
  }
  for (const auto& e : status.engines) {
    INFO("engine " << e.name);
    CHECK(per_engine[e.name] <= e.slots);  // an engine's lanes are its slots at most
  }
  REQUIRE(!sb.sandbox().engine.empty());
  CHECK(per_engine[sb.sandbox().engine] >= 1);
}

TEST_CASE("an unknown run gets 404 with what runs are", "[runs]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = sandlot::testing::lease_sandbox();  // every test leases: this one proves the daemon is up
  auto res = c.request("GET", "/v1/runs/no-such-run-" + sandlot::e2e::unique_request_id());
  CHECK(res.status == 404);
  auto e = sandlot::e2e::error_of(res);
  CHECK(e.code == "not_found");
  CHECK_THAT(e.message, Catch::Contains("SANDLOT_RUN"));
}
