// The broker's duration-aware order and backfill, on a clock the tests move by hand.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "broker.hpp"

using sandlot::orchestrator::broker;
using sandlot::orchestrator::schedule;
using ids = std::vector<std::string>;

namespace {

struct scheduled {
  double t = 0;
  broker b;
  explicit scheduled(int slots, schedule order = schedule::duration)
      : b(slots, broker::options{order, 1.0, 256, [this] { return t; }}) {}
  void enqueue(const std::string& id, int slots, double expected_s, const std::string& run = "r") {
    b.enqueue(broker::request{id, slots, run, run + "\n" + id, {}, expected_s});
  }
  ids admit() {
    ids out;
    for (auto& a : b.admit()) out.push_back(a.lease_id);
    return out;
  }
};

}  // namespace

TEST_CASE("the longest expected lease of a run goes first", "[broker][schedule]") {
  scheduled s(1);
  s.enqueue("holder", 1, 1);
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("short", 1, 1);
  s.enqueue("long", 1, 10);
  s.enqueue("middle", 1, 5);
  CHECK(s.b.position("long") == 0);
  CHECK(s.b.position("middle") == 1);
  CHECK(s.b.position("short") == 2);

  ids served;
  for (std::string running = "holder"; s.b.queue_length() > 0;) {
    REQUIRE(s.b.release(running));
    auto next = s.admit();
    REQUIRE(next.size() == 1);
    running = next.front();
    served.push_back(running);
  }
  CHECK(served == ids{"long", "middle", "short"});
}

TEST_CASE("the fifo schedule ignores expected durations", "[broker][schedule]") {
  scheduled s(1, schedule::fifo);
  s.enqueue("holder", 1, 1);
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("short", 1, 1);
  s.enqueue("long", 1, 10);
  CHECK(s.b.position("short") == 0);
  CHECK(s.b.position("long") == 1);
}

TEST_CASE("a lease of unknown duration counts as the average", "[broker][schedule]") {
  scheduled s(1);
  s.b.set_default_expected(5);
  s.enqueue("holder", 1, 1);
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("short", 1, 1);
  s.enqueue("unknown", 1, 0);
  s.enqueue("long", 1, 10);
  CHECK(s.b.expected("unknown") == 5);
  CHECK(s.b.position("long") == 0);
  CHECK(s.b.position("unknown") == 1);
  CHECK(s.b.position("short") == 2);
}

TEST_CASE("waiting raises a short lease above longer ones that come later", "[broker][schedule]") {
  scheduled s(1);
  s.enqueue("holder", 1, 1);
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("short", 1, 1);   // ranked at 0 - 1
  s.t = 5;
  s.enqueue("long-soon", 1, 60);  // ranked at 5 - 60: still ahead
  s.t = 100;
  s.enqueue("long-late", 1, 60);  // ranked at 100 - 60: the short one has waited longer than that
  CHECK(s.b.position("long-soon") == 0);
  CHECK(s.b.position("short") == 1);
  CHECK(s.b.position("long-late") == 2);
}

TEST_CASE("a lease expected to end before the reservation runs past a wide one", "[broker][schedule][backfill]") {
  scheduled s(4);
  s.enqueue("running", 2, 10);
  REQUIRE(s.admit() == ids{"running"});
  s.enqueue("wide", 4, 30);
  s.enqueue("too-long", 1, 20);
  s.enqueue("fits", 1, 3);
  auto reservation = s.b.reserved();
  REQUIRE(reservation);
  CHECK(reservation->lease_id == "wide");
  CHECK(reservation->starts_in_s == Approx(10));

  auto admitted = s.b.admit();
  REQUIRE(admitted.size() == 1);
  CHECK(admitted[0].lease_id == "fits");
  CHECK(admitted[0].backfilled);
  CHECK(admitted[0].expected_s == 3);
  CHECK(s.b.waiting_for("too-long") == "slots");

  // Both end in time: the wide lease starts, the long one still waits behind it.
  s.t = 4;
  REQUIRE(s.b.release("fits"));
  CHECK(s.admit().empty());
  s.t = 10;
  REQUIRE(s.b.release("running"));
  CHECK(s.admit() == ids{"wide"});
  CHECK(s.b.position("too-long") == 0);
}

TEST_CASE("no backfill past a reservation that overdue leases hold", "[broker][schedule][backfill]") {
  scheduled s(4);
  s.enqueue("running", 2, 10);
  REQUIRE(s.admit() == ids{"running"});
  s.t = 15;  // running was expected to end at 10: it may end any moment
  s.enqueue("wide", 4, 30);
  s.enqueue("short", 1, 1);
  CHECK(s.admit().empty());
  auto reservation = s.b.reserved();
  REQUIRE(reservation);
  CHECK(reservation->starts_in_s == 0);
}

TEST_CASE("a backfilled lease that outlasts the reservation uses only spare slots", "[broker][schedule][backfill]") {
  scheduled s(4);
  s.enqueue("running", 2, 10);
  REQUIRE(s.admit() == ids{"running"});
  s.enqueue("wide", 3, 30);  // at 10, 4 free: one spare
  s.enqueue("long-1", 1, 20);  // shorter than the wide one: behind it, but past the reservation
  s.enqueue("long-2", 1, 20);
  CHECK(s.admit() == ids{"long-1"});  // the spare slot; long-2 would delay the wide lease
  s.t = 10;
  REQUIRE(s.b.release("running"));
  CHECK(s.admit() == ids{"wide"});
  CHECK(s.b.slots_free() == 0);
}

TEST_CASE("a wide lease is not starved by backfill", "[broker][schedule][backfill]") {
  // Short leases keep coming and each is expected to end before the reservation: they run, and
  // the wide lease still starts when the holder it waits for ends.
  scheduled s(2);
  s.enqueue("holder", 1, 10);
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("wide", 2, 10);
  for (int i = 0; i < 5; ++i) {
    s.enqueue("short-" + std::to_string(i), 1, 1);
    CHECK(s.admit() == ids{"short-" + std::to_string(i)});
    s.t += 1.5;
    REQUIRE(s.b.release("short-" + std::to_string(i)));
  }
  s.enqueue("late-short", 1, 3);  // now 7.5 + 3 > 10: it would delay the wide lease
  CHECK(s.admit().empty());
  s.t = 10;
  REQUIRE(s.b.release("holder"));
  CHECK(s.admit() == ids{"wide"});
}

TEST_CASE("runs still take turns with the duration schedule", "[broker][schedule][runs]") {
  scheduled s(1);
  s.enqueue("holder", 1, 1, "a");
  REQUIRE(s.admit() == ids{"holder"});
  s.enqueue("a-long", 1, 100, "a");
  s.enqueue("a-longer", 1, 200, "a");
  s.enqueue("b-short", 1, 1, "b");
  CHECK(s.b.position("b-short") == 0);  // run a was served last
  CHECK(s.b.position("a-longer") == 1);
  CHECK(s.b.position("a-long") == 2);
}

TEST_CASE("positions stay right in a long queue of many runs", "[broker][schedule]") {
  scheduled s(1);
  s.enqueue("holder", 1, 1, "r0");
  REQUIRE(s.admit() == ids{"holder"});
  for (int i = 0; i < 3000; ++i) {
    s.t += 0.001;
    s.enqueue("l" + std::to_string(i), 1, 1, "r" + std::to_string(i % 3));
  }
  // r0 was served: r1 and r2 take their turns first; each run is first in first out here.
  CHECK(s.b.position("l1") == 0);
  CHECK(s.b.position("l2") == 1);
  CHECK(s.b.position("l0") == 2);
  CHECK(s.b.position("l2997") == 2999);  // r0's last comes last
  CHECK(s.b.position("l2999") == 2998);
  CHECK(s.b.queued_in("r1") == 1000);
  REQUIRE(s.b.release("holder"));
  CHECK(s.admit() == ids{"l1"});
  CHECK(s.b.position("l2") == 0);
  CHECK(s.b.position("l0") == 1);
}
