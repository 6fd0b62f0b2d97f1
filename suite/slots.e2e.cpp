// The slot budget: a lease that does not fit waits in the queue, says why, and becomes ready once
// the slots it needs are released; status shows who holds what.
#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
using sandlot::protocol::lease_state;
using sandlot::testing::lease_sandbox;

TEST_CASE("a lease that needs every slot waits while one is held and is ready once it is released", "[slots]") {
  const auto& c = sandlot::testing::default_client();
  const auto status = c.status();
  const int total = status.slots_total;
  REQUIRE(total >= 1);
  // A daemon with a pool of engines (--engine) runs a sandbox on one engine: the widest lease it
  // takes is its widest engine's. Holding total - widest + 1 slots leaves fewer than that free.
  int widest = total;
  if (!status.engines.empty()) {
    widest = 0;
    for (const auto& e : status.engines) widest = std::max(widest, e.slots);
  }
  std::vector<sandlot::client::lease> held;
  for (int i = 0; i < total - widest + 1; ++i) held.push_back(lease_sandbox());

  auto req = sandlot::e2e::request_for_this_test();
  req.slots = widest;
  auto created = c.create(req);
  sandlot::e2e::release_on_exit cleanup(c, created.id);
  CHECK(created.slots == widest);

  auto waiting = c.get(created.id);
  CHECK(waiting.state == lease_state::queued);
  CHECK(waiting.waiting_for == std::optional<std::string>("slots"));
  CHECK(waiting.position.has_value());

  for (auto& h : held) h.release();
  // Other tests running in parallel hold slots too; it is ready once they are done with them.
  auto ready = sandlot::e2e::wait_for_lease(
      c, created.id, [](const auto& v) { return v.state == lease_state::ready; }, 180s);
  INFO("last state: " << sandlot::protocol::to_string(ready.state));
  REQUIRE(ready.state == lease_state::ready);
  CHECK(ready.sandbox.has_value());
}

TEST_CASE("status lists a ready lease with its test name and the slots it holds", "[slots]") {
  const auto& c = sandlot::testing::default_client();
  auto sb = lease_sandbox();
  auto status = c.status();
  CHECK(status.slots_total >= 1);
  CHECK(status.slots_in_use >= 1);
  CHECK(status.slots_in_use <= status.slots_total);

  auto it = std::find_if(status.leases.begin(), status.leases.end(),
                         [&](const auto& l) { return l.id == sb.id(); });
  REQUIRE(it != status.leases.end());
  CHECK(it->state == lease_state::ready);
  CHECK(it->test == Catch::getResultCapture().getCurrentTestName());
  CHECK(it->run == sandlot::client::run_from_env());
  CHECK(it->slots == 1);
}
