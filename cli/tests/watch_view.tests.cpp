// One frame of `sandlot watch`: what an operator glancing at it must see.
#include <catch2/catch.hpp>

#include "watch_view.hpp"

namespace {

using namespace sandlot::cli;
using namespace sandlot::protocol;
using Catch::Matchers::Contains;

status_view busy_status() {
  status_view st;
  st.instance = "orchestratord@127.0.0.1:7345";
  st.slots_total = 2;
  st.slots_in_use = 2;
  st.queue_length = 1;
  st.ready = true;
  lane_view a;
  a.lane = 0;
  a.lease = "l-a";
  a.name = "t-a";
  a.test = "a holds";
  a.run = "ci-1";
  a.state = lease_state::ready;
  a.since_s = 2.5;
  lane_view b = a;
  b.lane = 1;
  b.lease = "l-b";
  b.test = "b holds";
  b.run = "ci-2";
  st.lanes = {a, b};
  lease_view q;
  q.id = "l-q";
  q.name = "t-q";
  q.test = "q waits";
  q.run = "ci-1";
  q.state = lease_state::queued;
  q.position = 0;
  q.waiting_for = "slots";
  q.since_s = 4;
  st.leases = {q};
  image_status img;
  img.image = "127.0.0.1:5000/sandlot/cold:1";
  img.state = "pulling";
  img.bytes_done = 3;
  img.bytes_total = 4;
  st.images = {img};
  run_summary r1;
  r1.run = "ci-1";
  r1.leases = 10;
  r1.live_leases = 2;
  run_summary r2 = r1;
  r2.run = "ci-2";
  st.runs = {r1, r2};
  return st;
}

}  // namespace

TEST_CASE("a frame has a row per lane, the queue with reasons, pulls and runs", "[watch]") {
  auto text = render_frame(busy_status(), {});
  CHECK_THAT(text, Contains("slots 2/2   queue 1"));
  CHECK_THAT(text, Contains("  0  ready     t-a                           a holds                           2.5s"));
  CHECK_THAT(text, Contains("  1  ready"));
  CHECK_THAT(text, Contains("#0  t-q                           q waits                           queued    waiting for slots         4.0s"));
  CHECK_THAT(text, Contains("[###############-----]  75%"));
  CHECK_THAT(text, Contains("ci-1  done 8  left 2"));
  CHECK(text.find('\x1b') == std::string::npos);  // plain unless asked for colour
}

TEST_CASE("a frame for one run hides the other runs' leases", "[watch]") {
  auto text = render_frame(busy_status(), {.run = "ci-1", .colour = false, .footer = false});
  CHECK_THAT(text, Contains("held by run ci-2"));
  CHECK(text.find("b holds") == std::string::npos);
  CHECK(text.find("ci-2  done") == std::string::npos);
}

TEST_CASE("a draining daemon and free lanes are shown as such", "[watch]") {
  auto st = busy_status();
  st.draining = true;
  st.lanes[1].lease.reset();
  auto text = render_frame(st, {});
  CHECK_THAT(text, Contains("DRAINING"));
  CHECK_THAT(text, Contains("  1  free"));
}

TEST_CASE("a colour frame wraps states in ANSI colours and says how to quit", "[watch]") {
  auto text = render_frame(busy_status(), {.run = "", .colour = true, .footer = true});
  CHECK_THAT(text, Contains("\x1b[32mready   \x1b[0m"));
  CHECK_THAT(text, Contains("q or Ctrl-C quits"));
}
