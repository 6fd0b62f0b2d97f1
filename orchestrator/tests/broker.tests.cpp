#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "broker.hpp"

using sandlot::orchestrator::broker;
using ids = std::vector<std::string>;

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
  b.enqueue("a", 2);
  REQUIRE(b.admit() == ids{"a"});
  b.enqueue("b", 1);
  b.enqueue("c", 1);
  REQUIRE(b.admit().empty());

  b.release(1);
  CHECK(b.admit() == ids{"b"});
  CHECK(b.position("c") == 0);

  b.release(1);
  CHECK(b.admit() == ids{"c"});
  CHECK(b.queue_length() == 0);
  CHECK(b.slots_in_use() == 2);
}

TEST_CASE("a wide lease at the head blocks narrow leases behind it", "[broker]") {
  broker b(4);
  b.enqueue("running", 2);
  REQUIRE(b.admit() == ids{"running"});

  // Two slots are free: enough for the narrow ones, not for the wide one in front of them.
  b.enqueue("wide", 3);
  b.enqueue("narrow-1", 1);
  b.enqueue("narrow-2", 1);
  CHECK(b.admit().empty());
  CHECK(b.slots_free() == 2);
  CHECK(b.position("wide") == 0);
  CHECK(b.position("narrow-1") == 1);
  CHECK(b.position("narrow-2") == 2);

  // The wide lease goes first as soon as it fits; the narrow ones follow in order.
  b.release(2);
  CHECK(b.admit() == ids{"wide", "narrow-1"});
  CHECK(b.slots_in_use() == 4);
  CHECK(b.position("narrow-2") == 0);

  b.release(3);
  CHECK(b.admit() == ids{"narrow-2"});
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
  b.release(1);
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

  b.release(1);
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
  b.enqueue("wide", 3);
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

  b.release(1);
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

TEST_CASE("releasing more slots than are in use throws", "[broker]") {
  broker b(3);
  b.enqueue("a", 2);
  REQUIRE(b.admit() == ids{"a"});

  CHECK_THROWS_AS(b.release(3), std::logic_error);
  CHECK(b.slots_in_use() == 2);  // a rejected release changes nothing
  CHECK_THROWS_AS(b.release(-1), std::logic_error);

  b.release(2);
  CHECK(b.slots_in_use() == 0);
  CHECK_THROWS_AS(b.release(1), std::logic_error);
}

TEST_CASE("a holder's second lease goes ahead of a wide lease that waits for its first", "[broker]") {
  // Test T holds one of two slots; a wide lease wants both; T asks for a second sandbox.
  // Strict FIFO would deadlock: wide waits for T's first lease, T's second waits behind wide.
  sandlot::orchestrator::broker b(3);
  b.enqueue("t-first", 1, "run\nT");
  b.enqueue("other", 1, "run\nU");
  CHECK(b.admit() == std::vector<std::string>{"t-first", "other"});
  b.enqueue("wide", 3, "run\nW");
  b.enqueue("t-second", 1, "run\nT");
  b.enqueue("u-newcomer", 1, "run\nV");  // holds nothing: stays behind the wide lease
  CHECK(b.admit() == std::vector<std::string>{"t-second"});
  CHECK(b.position("wide") == 0);
  CHECK(b.position("u-newcomer") == 1);

  // T finishes both, U finishes: the wide lease gets the whole budget before the newcomer.
  b.release(1, "run\nT");
  b.release(1, "run\nT");
  CHECK(b.admit().empty());
  b.release(1, "run\nU");
  CHECK(b.admit() == std::vector<std::string>{"wide"});
}

TEST_CASE("anonymous leases never go ahead of the queue", "[broker]") {
  sandlot::orchestrator::broker b(2);
  b.enqueue("a", 1);
  CHECK(b.admit() == std::vector<std::string>{"a"});
  b.enqueue("wide", 2);
  b.enqueue("b", 1);
  CHECK(b.admit().empty());
  b.release(1);
  CHECK(b.admit() == std::vector<std::string>{"wide"});
}
