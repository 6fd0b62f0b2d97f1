// The run report on hand-made timelines: the summary figures are worked out by hand below, and
// the HTML is checked for what a reader relies on (a lane per slot, a bar per held lane, escaped
// names, nothing fetched from elsewhere).
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "run_report.hpp"

namespace {

using namespace sandlot::orchestrator;

lease_record lease(std::string id, std::string test, int slots, std::vector<int> lanes) {
  lease_record l;
  l.id = id;
  l.name = "lease-" + id;
  l.test = std::move(test);
  l.image = "127.0.0.1:5000/sandlot/busybox:1";
  l.slots = slots;
  l.lanes = std::move(lanes);
  return l;
}

// 2 slots, 3 leases, all ended by t = 14:
//   a  slot 0   queued 0, admitted 0, at the gate until 2, ready 3, released 10   held 10
//   b  slot 1   queued 0, admitted 0, pulled 0, ready 1, released 6               held 6
//   c  slots 0+1 queued 1, admitted 10 (both slots free), ready 11, failed 14     held 4, wide
run_timeline finished_run() {
  run_timeline run;
  run.run = "ci-1234";
  run.slots_total = 2;
  run.started_at = "2026-11-01T10:00:00Z";
  run.now_s = 20;
  run.ended = true;

  lease_record a = lease("a", "checkout pays with a card", 1, {0});
  a.state = "released";
  a.test_outcome = "passed";
  a.queued_s = 0;
  a.admitted_s = 0;
  a.pulled_s = 2;
  a.pull_s = 2;
  a.ready_s = 3;
  a.ended_s = 10;
  a.sandbox = "sandlot-a";

  lease_record b = lease("b", "login rejects a bad password", 1, {1});
  b.state = "released";
  b.test_outcome = "passed";
  b.queued_s = 0;
  b.admitted_s = 0;
  b.pulled_s = 0;
  b.ready_s = 1;
  b.ended_s = 6;

  lease_record c = lease("c", "replication survives a restart", 2, {0, 1});
  c.state = "failed";
  c.queued_s = 1;
  c.admitted_s = 10;
  c.pulled_s = 10;
  c.ready_s = 11;
  c.ended_s = 14;
  c.locks = {{"db", "exclusive"}};
  c.error = "sandbox exited";

  run.leases = {a, b, c};
  return run;
}

std::size_t count(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1))
    ++n;
  return n;
}

}  // namespace

TEST_CASE("the summary of a finished run is worked out from its leases", "[report]") {
  const run_summary s = summarize(finished_run());

  CHECK(s.leases == 3);
  CHECK(s.failed == 1);
  CHECK(s.wall_s == Approx(14));      // first queued 0 → last ended 14, not now (20)
  CHECK(s.sum_test_s == Approx(20));  // 10 + 6 + 4
  CHECK(s.slot_s == Approx(24));      // 10 + 6 + 4 × 2 slots
  CHECK(s.longest_s == Approx(10));
  CHECK(s.ideal_s == Approx(12));  // max(24 / 2, 10)
  CHECK(s.speedup == Approx(20.0 / 14));
  CHECK(s.efficiency == Approx(12.0 / 14));
  CHECK(s.queue_s == Approx(9));  // only c waited: 1 → 10
  CHECK(s.pull_s == Approx(2));
}

TEST_CASE("the longest test sets the ideal when it is longer than the work spread over the slots",
          "[report]") {
  run_timeline run;
  run.slots_total = 4;
  run.ended = true;
  lease_record l = lease("a", "slow", 1, {0});
  l.queued_s = 0;
  l.admitted_s = 1;
  l.ended_s = 9;
  run.leases = {l};

  const run_summary s = summarize(run);
  CHECK(s.ideal_s == Approx(8));  // max(8 / 4, 8)
  CHECK(s.wall_s == Approx(9));
  CHECK(s.efficiency == Approx(8.0 / 9));
  CHECK(s.queue_s == Approx(1));
}

TEST_CASE("live leases count until the moment the timeline was taken", "[report]") {
  run_timeline run;
  run.slots_total = 2;
  run.now_s = 5;

  lease_record held = lease("a", "still running", 1, {0});
  held.state = "ready";
  held.queued_s = 0;
  held.admitted_s = 2;
  held.pulled_s = 2;
  held.ready_s = 3;

  lease_record waiting = lease("b", "still queued", 2, {});
  waiting.state = "queued";
  waiting.queued_s = 1;

  run.leases = {held, waiting};
  const run_summary s = summarize(run);

  CHECK(s.wall_s == Approx(5));
  CHECK(s.sum_test_s == Approx(3));  // 2 → now; the queued one has no test time yet
  CHECK(s.slot_s == Approx(3));
  CHECK(s.queue_s == Approx(2 + 4));  // 0 → 2, and 1 → now
  CHECK(s.failed == 0);
}

TEST_CASE("an expired lease counts as failed and a cancelled one waited until it ended",
          "[report]") {
  run_timeline run;
  run.slots_total = 1;
  run.now_s = 30;
  run.ended = true;

  lease_record expired = lease("a", "forgot to heartbeat", 1, {0});
  expired.state = "expired";
  expired.queued_s = 0;
  expired.admitted_s = 0;
  expired.ended_s = 12;

  lease_record cancelled = lease("b", "gave up", 1, {});
  cancelled.state = "released";
  cancelled.queued_s = 2;
  cancelled.ended_s = 7;

  run.leases = {expired, cancelled};
  const run_summary s = summarize(run);

  CHECK(s.failed == 1);
  CHECK(s.queue_s == Approx(5));
  CHECK(s.sum_test_s == Approx(12));
  CHECK(s.wall_s == Approx(12));
}

TEST_CASE("an empty run has zero figures", "[report]") {
  run_timeline run;
  run.run = "empty";
  run.slots_total = 3;
  run.now_s = 4;

  const run_summary s = summarize(run);
  CHECK(s.leases == 0);
  CHECK(s.wall_s == 0);
  CHECK(s.ideal_s == 0);
  CHECK(s.speedup == 0);
  CHECK(s.efficiency == 0);
}

TEST_CASE("the run json names every field and writes null for phases not reached", "[report]") {
  run_timeline run = finished_run();
  run.now_s = 14.5;  // the queued lease below keeps the run's wall time running to now
  lease_record queued = lease("d", "waiting", 1, {});
  queued.state = "queued";
  queued.queued_s = 13.25;
  run.leases.push_back(queued);
  fixture_record db;
  db.id = "fx1";
  db.name = "postgres";
  db.state = "ready";
  db.creations = 1;
  db.holders = 2;
  db.acquisitions = 3;
  db.port = 5432;
  db.created_s = 0.5;
  db.ready_s = 1.75;
  run.fixtures = {db};

  const nlohmann::json j = to_json(run);

  CHECK(j.at("run") == "ci-1234");
  CHECK(j.at("slots_total") == 2);
  CHECK(j.at("started_at") == "2026-11-01T10:00:00Z");
  CHECK(j.at("now_s") == 14.5);
  CHECK(j.at("ended") == true);

  const auto& s = j.at("summary");
  for (const char* key : {"leases", "failed", "wall_s", "sum_test_s", "slot_s", "longest_s",
                          "ideal_s", "speedup", "efficiency", "queue_s", "pull_s"}) {
    INFO(key);
    CHECK(s.contains(key));
  }
  CHECK(s.at("leases") == 4);
  CHECK(s.at("ideal_s").get<double>() == Approx(12));
  CHECK(s.at("wall_s") == 14.5);
  CHECK(s.at("efficiency") == 0.828);  // 12 / 14.5, rounded to 3 decimals

  REQUIRE(j.at("leases").size() == 4);
  const auto& c = j.at("leases").at(2);
  for (const char* key :
       {"id", "name", "test", "image", "state", "test_outcome", "slots", "lanes", "locks",
        "queued_s", "admitted_s", "pulled_s", "ready_s", "ended_s", "pull_s", "sandbox", "error"}) {
    INFO(key);
    CHECK(c.contains(key));
  }
  CHECK(c.at("lanes") == nlohmann::json::array({0, 1}));
  CHECK(c.at("locks") == nlohmann::json::parse(R"([{"name":"db","mode":"exclusive"}])"));
  CHECK(c.at("error") == "sandbox exited");

  const auto& d = j.at("leases").at(3);
  CHECK(d.at("queued_s") == 13.25);
  CHECK(d.at("admitted_s").is_null());
  CHECK(d.at("pulled_s").is_null());
  CHECK(d.at("ready_s").is_null());
  CHECK(d.at("ended_s").is_null());
  CHECK(d.at("lanes").empty());

  REQUIRE(j.at("fixtures").size() == 1);
  const auto& f = j.at("fixtures").at(0);
  CHECK(f.at("name") == "postgres");
  CHECK(f.at("port") == 5432);
  CHECK(f.at("acquisitions") == 3);
  CHECK(f.at("ready_s") == 1.75);
  CHECK(f.at("ended_s").is_null());
}

TEST_CASE("the html report has a lane per slot and a bar per lane a lease held", "[report]") {
  const std::string html = render_html(finished_run());

  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<title>Sandlot run ci-1234</title>") != std::string::npos);
  CHECK(count(html, "class=\"lane\"") == 2);
  CHECK(html.find(">slot 0<") != std::string::npos);
  CHECK(html.find(">slot 1<") != std::string::npos);
  CHECK(count(html, "class=\"bar\"") == 4);                     // a and b one lane each, c two
  CHECK(count(html, "class=\"outline failed") == 2);            // c's two bars
  CHECK(html.find("class=\"seg gate\"") != std::string::npos);  // a waited at the gate
  CHECK(html.find("<td class=\"test\">replication survives a restart</td>") != std::string::npos);
}

TEST_CASE("the html report is self-contained", "[report]") {
  const std::string html = render_html(finished_run());

  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("url(") == std::string::npos);
  CHECK(html.find("<svg") != std::string::npos);
}

TEST_CASE("the html report escapes test names and errors", "[report]") {
  run_timeline run = finished_run();
  run.run = "run <b>";
  run.leases[0].test = "<script>&\"'";
  run.leases[0].error = "</td><img src=x>";

  const std::string html = render_html(run);

  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<img") == std::string::npos);
  CHECK(html.find("<b>") == std::string::npos);
  CHECK(html.find("&lt;script&gt;&amp;&quot;&#39;") != std::string::npos);
  CHECK(html.find("<title>Sandlot run run &lt;b&gt;</title>") != std::string::npos);
}

TEST_CASE("a long multi-byte test name is cut on a character boundary inside its bar", "[report]") {
  run_timeline run = finished_run();
  std::string name;
  for (int i = 0; i < 200; ++i) name += "é";
  run.leases[1].test = name;

  const std::string html = render_html(run);
  const auto at = html.find("é…</text>");
  CHECK(at != std::string::npos);
}

TEST_CASE("an empty run renders without dividing by zero", "[report]") {
  run_timeline run;
  run.run = "empty";
  run.slots_total = 3;

  const std::string html = render_html(run);

  CHECK(count(html, "class=\"lane\"") == 3);
  CHECK(count(html, "class=\"bar\"") == 0);
  const auto svg_at = html.find("<svg");
  REQUIRE(svg_at != std::string::npos);
  const std::string svg = html.substr(svg_at, html.find("</svg>") - svg_at);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
  CHECK(html.find("No leases") != std::string::npos);
}

TEST_CASE("a live run marks now on the timeline", "[report]") {
  run_timeline run;
  run.run = "live";
  run.slots_total = 1;
  run.now_s = 8;
  lease_record l = lease("a", "running", 1, {0});
  l.state = "ready";
  l.queued_s = 0;
  l.admitted_s = 0;
  l.pulled_s = 1;
  l.ready_s = 2;
  run.leases = {l};

  const std::string html = render_html(run);

  CHECK(count(html, "class=\"bar\"") == 1);
  CHECK(html.find("class=\"now\"") != std::string::npos);
  CHECK(html.find("outline live") != std::string::npos);
}

TEST_CASE("a lease served by a warm sandbox is marked in the json and drawn apart", "[report][warm_pool]") {
  run_timeline run = finished_run();
  run.leases[1].warm = true;  // b
  run.leases[1].sandbox = "sandlot-warm-1";
  const nlohmann::json j = to_json(run);
  CHECK(j.at("leases").at(0).at("warm") == false);
  CHECK(j.at("leases").at(1).at("warm") == true);

  const std::string html = render_html(run);
  CHECK(count(html, "class=\"seg ready warm\"") == 1);  // b's one bar
  CHECK(count(html, "class=\"seg ready\"") == 3);       // a's, and c's two
  CHECK(html.find("swatch warm") != std::string::npos);  // in the legend
  CHECK(html.find("(warm: from the pool, no create)") != std::string::npos);
}

TEST_CASE("with a pool, the json names each lease's engine and the lanes are grouped by engine", "[report][pool]") {
  // finished_run on a pool: a on "one"; b on "two"; c (both slots, after a and b ended) on "one".
  run_timeline run = finished_run();
  run.leases[0].engine = "one";
  run.leases[1].engine = "two";
  run.leases[2].engine = "one";
  // And one that was admitted but never placed: its pull failed at the gate.
  lease_record d = lease("d", "a pull that fails", 1, {1});
  d.state = "failed";
  d.queued_s = 6;
  d.admitted_s = 6;
  d.ended_s = 7;
  d.error = "image pull failed";
  run.leases.push_back(d);

  const nlohmann::json j = to_json(run);
  CHECK(j.at("leases").at(0).at("engine") == "one");
  CHECK(j.at("leases").at(1).at("engine") == "two");
  CHECK(j.at("leases").at(3).at("engine") == "");

  const std::string html = render_html(run);
  // one: a in lane 0 until 10, then c needs two lanes at 10 and reuses lane 0 with a new lane 1.
  // two: b alone, one lane. unplaced: d, one lane.
  CHECK(count(html, "class=\"lane\"") == 4);
  CHECK(html.find(">one 0<") != std::string::npos);
  CHECK(html.find(">one 1<") != std::string::npos);
  CHECK(html.find(">two 0<") != std::string::npos);
  CHECK(html.find(">unplaced 0<") != std::string::npos);
  CHECK(html.find(">slot 0<") == std::string::npos);
  CHECK(count(html, "class=\"bar\"") == 5);  // a, b and d one each, c two
  CHECK(html.find("lanes grouped by the engine each ran on") != std::string::npos);
  CHECK(html.find("0, 1 on one") != std::string::npos);  // c's row in the table
}

TEST_CASE("a long engine name is cut in the lane labels", "[report][pool]") {
  run_timeline run = finished_run();
  for (auto& l : run.leases) l.engine = "build-runner-seven";
  const std::string html = render_html(run);
  CHECK(html.find(">build-r… 0<") != std::string::npos);
  CHECK(html.find(">build-runner-seven") == std::string::npos);
  CHECK(html.find("on build-runner-seven") != std::string::npos);  // the table keeps it whole
}

TEST_CASE("with the engines' slots known, a lease that waited for room on its engine stays in its slots",
          "[report][pool]") {
  // Engine "one" has 1 slot. a holds it 0..10; b was admitted at 9 (the budget had room on
  // another engine's account) but placed on "one" only once a was gone.
  run_timeline run = finished_run();
  run.leases.resize(2);
  run.leases[0].engine = "one";
  run.leases[1].engine = "one";
  run.leases[1].queued_s = 9;
  run.leases[1].admitted_s = 9;
  run.leases[1].pulled_s = 10;
  run.leases[1].ready_s = 11;
  run.leases[1].ended_s = 12;
  std::string html = render_html(run);
  CHECK(count(html, "class=\"lane\"") == 2);  // without the slots: drawn side by side

  run.engine_slots = {{"one", 1}};
  html = render_html(run);
  CHECK(count(html, "class=\"lane\"") == 1);
  CHECK(html.find(">one 1<") == std::string::npos);
  CHECK(to_json(run).at("engines") == nlohmann::json::parse(R"({"one":1})"));
}
