// Where the time went: every lease belongs to a run, and GET /v1/runs/{id} keeps its timeline.
#include <catch2/catch.hpp>

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

TEST_CASE("the run report is an HTML page with one lane per slot", "[runs]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = sandlot::testing::lease_sandbox();
  const int slots = c.status().slots_total;
  auto res = c.request("GET", "/v1/runs/" + sb.view().run + "/report.html");
  REQUIRE(res.status == 200);
  CHECK_THAT(res.body, Catch::StartsWith("<!DOCTYPE html>") || Catch::StartsWith("<!doctype html>"));
  std::size_t lanes = 0;
  for (auto at = res.body.find("class=\"lane\""); at != std::string::npos; at = res.body.find("class=\"lane\"", at + 1)) {
    ++lanes;
  }
  CHECK(lanes == static_cast<std::size_t>(slots));
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
