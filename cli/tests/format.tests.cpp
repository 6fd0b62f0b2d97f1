// The text the operator reads: tables line up, sizes and durations read naturally, bars fill in
// proportion, and a LEASE|TEST argument finds the lease or says which ones it could mean.
#include <catch2/catch.hpp>

#include <string>

#include "format.hpp"

namespace {

using namespace sandlot::cli;
using namespace sandlot::protocol;
using Catch::Matchers::Contains;

lease_view lease(std::string id, std::string name, std::string test, lease_state s = lease_state::ready) {
  lease_view l;
  l.id = std::move(id);
  l.name = std::move(name);
  l.test = std::move(test);
  l.state = s;
  l.run = "ci-1";
  return l;
}

}  // namespace

TEST_CASE("a table pads each column to its widest cell", "[format]") {
  auto t = render_table({"A", "LONGER"}, {{"wide cell", "x"}, {"b", "y"}});
  CHECK(t == "A          LONGER\nwide cell  x\nb          y\n");
}

TEST_CASE("a table cuts cells over the limit with an ellipsis", "[format]") {
  auto t = render_table({"NAME"}, {{"abcdefghij"}}, 5);
  CHECK(t == "NAME\nabcd…\n");
}

TEST_CASE("widths count characters, not UTF-8 bytes", "[format]") {
  CHECK(display_width("héllo") == 5);
  CHECK(fit_width("héllo wörld", 6) == "héllo…");
  CHECK(fit_width("short", 10) == "short");
}

TEST_CASE("byte counts read in binary units", "[format]") {
  CHECK(human_bytes(512) == "512 B");
  CHECK(human_bytes(1536) == "1.5 KiB");
  CHECK(human_bytes(2 * 1024 * 1024) == "2.0 MiB");
  CHECK(human_bytes(3LL * 1024 * 1024 * 1024) == "3.0 GiB");
}

TEST_CASE("durations read as seconds, minutes or hours", "[format]") {
  CHECK(human_duration(0.42) == "0.4s");
  CHECK(human_duration(12.7) == "12s");
  CHECK(human_duration(185) == "3m05s");
  CHECK(human_duration(7440) == "2h04m");
  CHECK(human_duration(-1) == "-");
}

TEST_CASE("a progress bar fills in proportion to the bytes done", "[format]") {
  CHECK(progress_bar(1, 2, 10) == "[#####-----]  50%");
  CHECK(progress_bar(0, 100, 4) == "[----]   0%");
  CHECK(progress_bar(100, 100, 4) == "[####] 100%");
  CHECK(progress_bar(200, 100, 4) == "[####] 100%");  // never beyond full
}

TEST_CASE("a pull without sizes yet shows an unknown bar", "[format]") {
  CHECK(progress_bar(std::nullopt, std::nullopt, 3) == "[???]    ?");
  image_status img;
  CHECK(pull_bytes(img) == "-");
  img.bytes_done = 1024;
  CHECK(pull_bytes(img) == "1.0 KiB / ?");
}

TEST_CASE("the status shows budget, draining, lanes, the queue, pulls and runs", "[format]") {
  status_view st;
  st.instance = "orchestratord@127.0.0.1:7345";
  st.slots_total = 2;
  st.slots_in_use = 1;
  st.queue_length = 1;
  st.ready = true;
  st.draining = true;
  lane_view held;
  held.lane = 0;
  held.lease = "l-abc";
  held.name = "t-one";
  held.test = "one test";
  held.state = lease_state::ready;
  lane_view free;
  free.lane = 1;
  st.lanes = {held, free};
  auto queued = lease("l-q", "t-two", "two test", lease_state::queued);
  queued.position = 0;
  queued.waiting_for = "draining";
  st.leases = {queued};
  image_status img;
  img.image = "127.0.0.1:5000/sandlot/cold:1";
  img.state = "pulling";
  img.bytes_done = 1024 * 1024;
  img.bytes_total = 2 * 1024 * 1024;
  st.images = {img};
  run_summary run;
  run.run = "ci-1";
  run.leases = 5;
  run.live_leases = 2;
  st.runs = {run};

  auto text = format_status(st);
  CHECK_THAT(text, Contains("slots     1 of 2 in use"));
  CHECK_THAT(text, Contains("draining  yes"));
  CHECK_THAT(text, Contains("one test"));
  CHECK_THAT(text, Contains("free"));
  CHECK_THAT(text, Contains("draining"));
  CHECK_THAT(text, Contains("[##########----------]  50%"));
  CHECK_THAT(text, Contains("1.0 MiB / 2.0 MiB"));
  CHECK_THAT(text, Contains("ci-1"));
}

TEST_CASE("why names what the lease waits for and who holds it", "[format]") {
  why_view why;
  why.lease = lease("l-q", "t-two", "two test", lease_state::queued);
  why.lease.position = 0;
  why.since_s = 12.5;
  why.waiting_for = "slots";
  why.summary = "queued at position 0 for 2 slots; 2 of 2 are held by 2 leases";
  why.holders = {holder_view{"l-h", "t-holder", "holder test", "ci-1", 2, 30.1}};
  auto text = format_why(why);
  CHECK_THAT(text, Contains("queued for 12s, position 0 in the queue"));
  CHECK_THAT(text, Contains("waiting   slots"));
  CHECK_THAT(text, Contains("2 of 2 are held by 2 leases"));
  CHECK_THAT(text, Contains("holder test"));
  CHECK_THAT(text, Contains("30s"));
}

TEST_CASE("runs show what is done and what is left", "[format]") {
  run_summary r;
  r.run = "ci-9";
  r.leases = 30;
  r.live_leases = 4;
  auto text = format_runs({r});
  CHECK(text == "RUN   STARTED  DONE  LEFT  FIXTURES  ENDED\nci-9           26    4     0         no\n");
  CHECK(format_runs({}) == "no runs\n");
}

TEST_CASE("a key matches an id first, then a name, then a test", "[format]") {
  std::vector<lease_view> live = {lease("a1", "t-x", "x"), lease("b2", "a1", "y"), lease("c3", "t-z", "x")};
  REQUIRE(match_leases(live, "a1").size() == 1);
  CHECK(match_leases(live, "a1")[0].id == "a1");
  CHECK(match_leases(live, "t-z")[0].id == "c3");
  auto both = match_leases(live, "x");
  REQUIRE(both.size() == 2);
  CHECK_THAT(format_candidates(both), Contains("a1") && Contains("c3"));
  CHECK(match_leases(live, "nobody").empty());
}

TEST_CASE("the JUnit file has one case per lease and fails the failed ones", "[format]") {
  auto run = nlohmann::json::parse(R"({"run":"ci-1","summary":{"wall_s":3.5},"leases":[
    {"name":"t-a","test":"a <passes>","state":"released","test_outcome":"passed","ready_s":1.0,"ended_s":2.0},
    {"name":"t-b","test":"b fails","state":"released","test_outcome":"failed","ready_s":1.0,"ended_s":3.0},
    {"name":"t-c","test":"c expired","state":"expired","error":"missed its heartbeat"}]})");
  auto xml = junit_xml(run);
  CHECK_THAT(xml, Contains(R"(<testsuite name="ci-1" tests="3" failures="2" time="3.500">)"));
  CHECK_THAT(xml, Contains(R"(name="a &lt;passes&gt;" time="1.000")"));
  CHECK_THAT(xml, Contains(R"(<failure message="missed its heartbeat">)"));
  CHECK_THAT(xml, Contains("the test failed (lease t-b)"));
}

TEST_CASE("the report summary reads the run's figures", "[format]") {
  auto run = nlohmann::json::parse(R"({"run":"ci-1","started_at":"2026-11-01T10:00:00Z","ended":true,
    "summary":{"leases":3,"failed":1,"wall_s":14.0,"ideal_s":12.0,"longest_s":10.0,"speedup":1.429,
               "efficiency":0.857,"queue_s":9.0,"pull_s":2.0},
    "leases":[{"test":"checkout","state":"released","test_outcome":"passed","ready_s":3.0,"ended_s":10.0}]})");
  auto text = format_report(run);
  CHECK_THAT(text, Contains("leases    3 (1 failed)"));
  CHECK_THAT(text, Contains("speedup   1.43  efficiency 86%"));
  CHECK_THAT(text, Contains("checkout"));
  CHECK_THAT(text, Contains("7.0s"));
}
