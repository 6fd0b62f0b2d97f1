#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "broker.hpp"

using sandlot::orchestrator::lock_request;
using ids = std::vector<std::string>;

namespace {

// The broker with the shorthands these tests need: enqueue by id and slots, admit returning ids.
class broker : public sandlot::orchestrator::broker {
 public:
  using sandlot::orchestrator::broker::broker;
  void enqueue(const std::string& id, int slots, const std::string& holder = {}, const std::string& run = {},
               std::vector<lock_request> locks = {}) {
    sandlot::orchestrator::broker::enqueue(request{id, slots, run, holder, std::move(locks)});
  }
  ids admit() {
    ids out;
    for (auto& a : sandlot::orchestrator::broker::admit()) out.push_back(a.lease_id);
    return out;
  }
};

lock_request shared(std::string name) { return lock_request{std::move(name), false}; }
lock_request exclusive(std::string name) { return lock_request{std::move(name), true}; }

}  // namespace

TEST_CASE("leases are admitted in the order they were queued", "[broker]") {
  broker b(3);
  b.enqueue("a", 1);
  b.enqueue("b", 1);
  b.enqueue("c", 1);

  CHECK(b.admit() == ids{"a", "b", "c"});
  CHECK(b.slots_in_use() == 3);
  CHECK(b.slots_free() == 0);
  CHECK(b.queue_length() == 0);
}

TEST_CASE("a lease waits while all slots are taken", "[broker]") {
  broker b(2);
  b.enqueue("a", 1);
  b.enqueue("b", 1);
  REQUIRE(b.admit() == ids{"a", "b"});

  b.enqueue("c", 1);
  CHECK(b.admit().empty());
  CHECK(b.position("c") == 0);
  CHECK(b.queue_length() == 1);
  CHECK(b.slots_in_use() == 2);
}

TEST_CASE("a waiting lease is admitted once slots are released", "[broker]") {
  broker b(2);
  b.enqueue("a1", 1);
  b.enqueue("a2", 1);
  REQUIRE(b.admit() == ids{"a1", "a2"});
  b.enqueue("b", 1);
  b.enqueue("c", 1);
  REQUIRE(b.admit().empty());

  CHECK(b.release("a1"));
  CHECK(b.admit() == ids{"b"});
  CHECK(b.position("c") == 0);

  CHECK(b.release("a2"));
  CHECK(b.admit() == ids{"c"});
  CHECK(b.queue_length() == 0);
  CHECK(b.slots_in_use() == 2);
}

TEST_CASE("a wide lease at the head blocks narrow leases that would delay it", "[broker]") {
  broker b(4);
  b.enqueue("running", 2);
  REQUIRE(b.admit() == ids{"running"});

  // Two slots are free: enough for the narrow ones, not for the wide one in front of them. Nothing
  // is known about durations, so a narrow lease could outlast `running` and delay the wide one.
  b.enqueue("wide", 4);
  b.enqueue("narrow-1", 1);
  b.enqueue("narrow-2", 1);
  CHECK(b.admit().empty());
  CHECK(b.slots_free() == 2);
  CHECK(b.position("wide") == 0);
  CHECK(b.position("narrow-1") == 1);
  CHECK(b.position("narrow-2") == 2);

  // The wide lease goes first as soon as it fits; the narrow ones follow in order.
  b.release("running");
  CHECK(b.admit() == ids{"wide"});
  b.release("wide");
  CHECK(b.admit() == ids{"narrow-1", "narrow-2"});
}

TEST_CASE("narrow leases behind a wide one may take only the slots it will not need", "[broker]") {
  broker b(4);
  b.enqueue("running", 2);
  REQUIRE(b.admit() == ids{"running"});
  b.enqueue("wide", 3);
  b.enqueue("narrow-1", 1);
  b.enqueue("narrow-2", 1);
  // Once `running` ends, 4 slots are free and the wide lease needs 3: one is spare.
  CHECK(b.admit() == ids{"narrow-1"});
  CHECK(b.position("narrow-2") == 1);

  b.release("running");
  CHECK(b.admit() == ids{"wide"});
  CHECK(b.slots_in_use() == 4);
  b.release("wide");
  CHECK(b.admit() == ids{"narrow-2"});
}

TEST_CASE("the fifo schedule never lets a lease past a wide one", "[broker][schedule]") {
  sandlot::orchestrator::broker::options o;
  o.order = sandlot::orchestrator::schedule::fifo;
  sandlot::orchestrator::broker b(4, o);
  b.enqueue({"running", 2, "r", "", {}});
  REQUIRE(b.admit().size() == 1);
  b.enqueue({"wide", 3, "r", "", {}});
  b.enqueue({"narrow", 1, "r", "", {}, 0.5});
  CHECK(b.admit().empty());
  CHECK(b.position("narrow") == 1);
}

TEST_CASE("a wide lease is not starved by a stream of narrow ones", "[broker]") {
  broker b(3);
  b.enqueue("n0", 1);
  REQUIRE(b.admit() == ids{"n0"});
  b.enqueue("wide", 3);

  // Narrow leases keep arriving and finishing; none may overtake the wide one.
  for (int i = 1; i <= 5; ++i) {
    const std::string id = "n" + std::to_string(i);
    b.enqueue(id, 1);
    CHECK(b.admit().empty());
    CHECK(b.position("wide") == 0);
  }
  b.release("n0");
  CHECK(b.admit() == ids{"wide"});
  CHECK(b.position("n1") == 0);
  CHECK(b.queue_length() == 5);
}

TEST_CASE("a queued lease can be cancelled", "[broker]") {
  broker b(1);
  b.enqueue("a", 1);
  REQUIRE(b.admit() == ids{"a"});
  b.enqueue("b", 1);
  b.enqueue("c", 1);

  CHECK(b.cancel("b"));
  CHECK(b.position("b") == -1);
  CHECK(b.queue_length() == 1);

  b.release("a");
  CHECK(b.admit() == ids{"c"});
}

TEST_CASE("cancelling a lease that is not queued returns false", "[broker]") {
  broker b(1);
  b.enqueue("a", 1);
  REQUIRE(b.admit() == ids{"a"});

  CHECK_FALSE(b.cancel("a"));        // admitted, no longer queued
  CHECK_FALSE(b.cancel("missing"));  // never queued
  CHECK(b.slots_in_use() == 1);
}

TEST_CASE("cancelling a blocking wide lease lets the narrow ones behind it in", "[broker]") {
  broker b(4);
  b.enqueue("running", 2);
  REQUIRE(b.admit() == ids{"running"});
  b.enqueue("wide", 4);
  b.enqueue("narrow", 1);
  REQUIRE(b.admit().empty());

  REQUIRE(b.cancel("wide"));
  CHECK(b.admit() == ids{"narrow"});
}

TEST_CASE("queue positions move up as leases ahead leave the queue", "[broker]") {
  broker b(1);
  b.enqueue("running", 1);
  REQUIRE(b.admit() == ids{"running"});
  b.enqueue("a", 1);
  b.enqueue("b", 1);
  b.enqueue("c", 1);
  b.enqueue("d", 1);
  CHECK(b.position("a") == 0);
  CHECK(b.position("d") == 3);

  REQUIRE(b.cancel("b"));
  CHECK(b.position("a") == 0);
  CHECK(b.position("c") == 1);
  CHECK(b.position("d") == 2);

  b.release("running");
  REQUIRE(b.admit() == ids{"a"});
  CHECK(b.position("a") == -1);
  CHECK(b.position("c") == 0);
  CHECK(b.position("d") == 1);
}

TEST_CASE("enqueue rejects a lease wider than the budget or narrower than one slot", "[broker]") {
  broker b(2);
  CHECK_THROWS_AS(b.enqueue("too-wide", 3), std::invalid_argument);
  CHECK_THROWS_AS(b.enqueue("zero", 0), std::invalid_argument);
  CHECK_THROWS_AS(b.enqueue("negative", -1), std::invalid_argument);
  CHECK(b.queue_length() == 0);

  CHECK_NOTHROW(b.enqueue("whole-budget", 2));
  CHECK(b.queue_length() == 1);
}

TEST_CASE("a broker needs a budget of at least one slot", "[broker]") {
  CHECK_THROWS_AS(broker(0), std::invalid_argument);
  CHECK_THROWS_AS(broker(-3), std::invalid_argument);
  CHECK(broker(1).slots_total() == 1);
}

TEST_CASE("only an admitted lease can be released and only once", "[broker]") {
  broker b(3);
  b.enqueue("a", 2);
  b.enqueue("queued", 2);
  REQUIRE(b.admit() == ids{"a"});

  CHECK_FALSE(b.release("queued"));
  CHECK_FALSE(b.release("missing"));
  CHECK(b.slots_in_use() == 2);  // a rejected release changes nothing

  CHECK(b.release("a"));
  CHECK_FALSE(b.release("a"));
  CHECK(b.admit() == ids{"queued"});
  CHECK(b.slots_in_use() == 2);
}

TEST_CASE("a holder's second lease goes ahead of a wide lease that waits for its first", "[broker]") {
  // Test T holds one of two slots; a wide lease wants both; T asks for a second sandbox.
  // Strict FIFO would deadlock: wide waits for T's first lease, T's second waits behind wide.
  broker b(3);
  b.enqueue("t-first", 1, "run\nT");
  b.enqueue("other", 1, "run\nU");
  CHECK(b.admit() == ids{"t-first", "other"});
  b.enqueue("wide", 3, "run\nW");
  b.enqueue("t-second", 1, "run\nT");
  b.enqueue("u-newcomer", 1, "run\nV");  // holds nothing: stays behind the wide lease
  CHECK(b.admit() == ids{"t-second"});
  CHECK(b.position("wide") == 0);
  CHECK(b.position("u-newcomer") == 1);

  // T finishes both, U finishes: the wide lease gets the whole budget before the newcomer.
  b.release("t-first");
  b.release("t-second");
  CHECK(b.admit().empty());
  b.release("other");
  CHECK(b.admit() == ids{"wide"});
}

TEST_CASE("anonymous leases never go ahead of the queue", "[broker]") {
  broker b(2);
  b.enqueue("a", 1);
  CHECK(b.admit() == ids{"a"});
  b.enqueue("wide", 2);
  b.enqueue("b", 1);
  CHECK(b.admit().empty());
  b.release("a");
  CHECK(b.admit() == ids{"wide"});
}

TEST_CASE("two runs take turns however long the first run's queue is", "[broker][runs]") {
  broker b(1);
  for (int i = 0; i < 6; ++i) b.enqueue("a" + std::to_string(i), 1, {}, "run-a");
  REQUIRE(b.admit() == ids{"a0"});
  b.enqueue("b0", 1, {}, "run-b");
  b.enqueue("b1", 1, {}, "run-b");
  CHECK(b.position("b0") == 0);  // run-a was just served: run-b is next
  CHECK(b.position("a1") == 1);
  CHECK(b.position("b1") == 2);

  ids served;
  for (const char* running : {"a0", "b0", "a1", "b1", "a2"}) {
    REQUIRE(b.release(running));
    auto next = b.admit();
    REQUIRE(next.size() == 1);
    served.push_back(next.front());
  }
  CHECK(served == ids{"b0", "a1", "b1", "a2", "a3"});
}

TEST_CASE("within one run leases are admitted first in first out", "[broker][runs]") {
  broker b(2);
  b.enqueue("x", 1, {}, "other");
  b.enqueue("r1", 1, {}, "r");
  b.enqueue("r2", 1, {}, "r");
  b.enqueue("r3", 1, {}, "r");
  CHECK(b.admit() == ids{"x", "r1"});
  b.release("x");
  CHECK(b.admit() == ids{"r2"});
  b.release("r1");
  CHECK(b.admit() == ids{"r3"});
}

TEST_CASE("slots are given as lanes and a released lane is reused", "[broker][lanes]") {
  sandlot::orchestrator::broker b(4);
  b.enqueue({"a", 1, "r", "", {}});
  b.enqueue({"wide", 2, "r", "", {}});
  auto first = b.admit();
  REQUIRE(first.size() == 2);
  CHECK(first[0].lanes == std::vector<int>{0});
  CHECK(first[1].lanes == std::vector<int>{1, 2});
  b.release("a");
  b.enqueue({"c", 2, "r", "", {}});
  auto second = b.admit();
  REQUIRE(second.size() == 1);
  CHECK(second[0].lanes == std::vector<int>{0, 3});
}

TEST_CASE("shared holders of a lock run together and an exclusive one waits for them", "[broker][locks]") {
  broker b(5);
  b.enqueue("r1", 1, {}, "run", {shared("config")});
  b.enqueue("r2", 1, {}, "run", {shared("config")});
  CHECK(b.admit() == ids{"r1", "r2"});
  b.enqueue("w", 1, {}, "run", {exclusive("config")});
  CHECK(b.admit().empty());
  CHECK(b.waiting_for("w") == "lock:config");
  b.release("r1");
  CHECK(b.admit().empty());
  b.release("r2");
  CHECK(b.admit() == ids{"w"});
}

TEST_CASE("an exclusive waiter is not starved by a stream of shared holders", "[broker][locks]") {
  broker b(5);
  b.enqueue("r0", 1, {}, "run", {shared("config")});
  REQUIRE(b.admit() == ids{"r0"});
  b.enqueue("w", 1, {}, "run", {exclusive("config")});
  for (int i = 1; i <= 3; ++i) {
    const std::string id = "r" + std::to_string(i);
    b.enqueue(id, 1, {}, "run", {shared("config")});
    CHECK(b.admit().empty());  // a later reader waits behind the writer
    CHECK(b.waiting_for(id) == "lock:config");
  }
  b.release("r0");
  CHECK(b.admit() == ids{"w"});
  b.release("w");
  CHECK(b.admit() == ids{"r1", "r2", "r3"});
}

TEST_CASE("a lease waiting for a lock does not hold up leases that need other things", "[broker][locks]") {
  broker b(3);
  b.enqueue("writer", 1, {}, "run", {exclusive("config")});
  REQUIRE(b.admit() == ids{"writer"});
  b.enqueue("reader", 1, {}, "run", {shared("config")});
  b.enqueue("plain", 1, {}, "run");
  b.enqueue("other-lock", 1, {}, "run", {exclusive("db")});
  CHECK(b.admit() == ids{"plain", "other-lock"});
  CHECK(b.waiting_for("reader") == "lock:config");
  CHECK(b.position("reader") == 0);
  CHECK(b.slots_free() == 0);
}

TEST_CASE("a lease's locks and slots are granted together or not at all", "[broker][locks]") {
  broker b(2);
  b.enqueue("holds-a", 1, {}, "run", {exclusive("a")});
  REQUIRE(b.admit() == ids{"holds-a"});
  b.enqueue("wants-a-and-b", 1, {}, "run", {exclusive("b"), shared("a")});
  CHECK(b.admit().empty());
  CHECK(b.waiting_for("wants-a-and-b") == "lock:a");
  // It holds no part of what it asked for: b is free for someone else.
  b.enqueue("wants-b", 1, {}, "run", {exclusive("b")});
  CHECK(b.admit().empty());  // ... except that it claims b, so a later one waits behind it
  CHECK(b.waiting_for("wants-b") == "lock:b");
  b.release("holds-a");
  CHECK(b.admit() == ids{"wants-a-and-b"});
  CHECK(b.slots_in_use() == 1);
}

TEST_CASE("a waiting lease is told it waits for slots", "[broker]") {
  broker b(1);
  b.enqueue("a", 1);
  b.enqueue("b", 1);
  REQUIRE(b.admit() == ids{"a"});
  CHECK(b.waiting_for("b") == "slots");
  CHECK(b.waiting_for("a").empty());
}

TEST_CASE("a test holding a shared lock gets its second lease past a waiting writer", "[broker][locks]") {
  broker b(3);
  b.enqueue("t1", 1, "run\nT", "run", {shared("config")});
  REQUIRE(b.admit() == ids{"t1"});
  b.enqueue("w", 1, "run\nW", "run", {exclusive("config")});
  b.enqueue("t2", 1, "run\nT", "run", {shared("config")});
  CHECK(b.admit() == ids{"t2"});
  b.release("t1");
  b.release("t2");
  CHECK(b.admit() == ids{"w"});
}

TEST_CASE("a lock named twice in one lease is refused", "[broker][locks]") {
  broker b(2);
  CHECK_THROWS_AS(b.enqueue("twice", 1, {}, "run", {shared("x"), exclusive("x")}), std::invalid_argument);
  CHECK(b.queue_length() == 0);
}

TEST_CASE("a test's second lease is admitted in the same pass that admits its first", "[broker]") {
  broker b(3);
  b.enqueue("t-first", 1, "run\nT", "run");
  b.enqueue("wide", 3, "run\nW", "run");
  b.enqueue("t-second", 1, "run\nT", "run");
  // t-first fits; then t-second is a holder's lease that fits, though the wide one waits ahead.
  CHECK(b.admit() == ids{"t-first", "t-second"});
  CHECK(b.waiting_for("wide") == "slots");
}

TEST_CASE("runs that come and go do not starve a wide lease of another run", "[broker][runs]") {
  broker b(2);
  b.enqueue("r1-0", 1, {}, "r1");
  b.enqueue("r2-0", 1, {}, "r2");
  REQUIRE(b.admit() == ids{"r1-0", "r2-0"});
  b.enqueue("wide", 2, {}, "r1");  // r1 was served before: it is not a newcomer
  REQUIRE(b.release("r1-0"));
  // Like ctest: other runs release a lease, then their next test asks for a new one. Each time a
  // run has nothing left it goes idle for a moment, and must not come back ahead of the wide lease.
  std::vector<std::string> held{"r2-0"};
  bool wide_admitted = false;
  for (int i = 1; i <= 8 && !wide_admitted; ++i) {
    const std::string run = i % 2 == 0 ? "r2" : "r3";
    const std::string id = run + "-" + std::to_string(i);
    b.enqueue(id, 1, {}, run);
    for (const auto& a : b.admit()) {
      if (a == "wide") wide_admitted = true; else held.push_back(a);
    }
    if (!held.empty() && !wide_admitted) {
      REQUIRE(b.release(held.front()));
      held.erase(held.begin());
      for (const auto& a : b.admit()) {
        if (a == "wide") wide_admitted = true; else held.push_back(a);
      }
    }
  }
  CHECK(wide_admitted);
}

TEST_CASE("a lease that would wait for its own test's lease is named as a self-deadlock", "[broker][locks]") {
  sandlot::orchestrator::broker b(3);
  b.enqueue({"t-first", 2, "run", "run\nT", {exclusive("db")}});
  REQUIRE(b.admit().size() == 1);
  using req = sandlot::orchestrator::broker::request;
  CHECK_THAT(b.self_deadlock(req{"t-shared", 1, "run", "run\nT", {shared("db")}}), Catch::Contains("lock 'db'"));
  CHECK_THAT(b.self_deadlock(req{"t-wide", 2, "run", "run\nT", {}}), Catch::Contains("beyond the budget"));
  CHECK(b.self_deadlock(req{"t-ok", 1, "run", "run\nT", {shared("other")}}).empty());
  CHECK(b.self_deadlock(req{"u-db", 1, "run", "run\nU", {shared("db")}}).empty());  // another test just waits
}
