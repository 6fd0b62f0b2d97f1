// A Kubernetes engine as a member of an engine pool (provider/pool): two fake clusters, one budget.
// The pool places a lease on each, probes both with the provider's connect(), and when one cluster
// stops answering it reports that engine lost with the sandbox that went with it, while the other
// goes on.
#include <future>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "engine_pool.hpp"
#include "kube/fake_apiserver.hpp"
#include "kube_provider.hpp"

namespace asio = boost::asio;
using namespace sandlot::orchestrator;
using sandlot::test::fake_apiserver;
using namespace std::chrono_literals;

namespace {

/// Runs `ioc` until `done()` or `limit` (the pool's probe loop never runs out of work by itself).
template <class Done>
bool run_until(asio::io_context& ioc, Done done, std::chrono::milliseconds limit = 10s) {
  const auto until = std::chrono::steady_clock::now() + limit;
  ioc.restart();
  while (!done() && std::chrono::steady_clock::now() < until) ioc.run_one_for(20ms);
  return done();
}

template <class T>
T call(asio::io_context& ioc, asio::awaitable<T> op) {
  auto f = asio::co_spawn(ioc, std::move(op), asio::use_future);
  REQUIRE(run_until(ioc, [&] { return f.wait_for(0s) == std::future_status::ready; }));
  return f.get();
}

kube_target target_of(const fake_apiserver& api) {
  kube_target t;
  t.server = api.url();
  t.ns = "sandlot";
  t.origin = "test";
  return t;
}

sandbox_spec spec_for(const std::string& lease_id) {
  sandbox_spec s;
  s.lease_id = lease_id;
  s.lease_name = "pool-" + lease_id;
  s.request.image = "127.0.0.1:5000/sandlot/busybox:1";
  return s;
}

}  // namespace

TEST_CASE("two clusters in one pool: a lease on each, and a cluster that goes away loses only its own",
          "[kube][pool]") {
  asio::io_context ioc;
  // Both clusters have the image, so placement goes by load alone (image locality would put both
  // leases where the first one pulled it).
  fake_apiserver::options warm;
  warm.nodes = {sandlot::test::fake_node{"node-a", "4", "8Gi", true, {"127.0.0.1:5000/sandlot/busybox:1"}}};
  fake_apiserver a(warm);
  auto b = std::make_unique<fake_apiserver>(warm);
  kube_client client_a(ioc.get_executor(), target_of(a));
  kube_client client_b(ioc.get_executor(), target_of(*b));
  client_b.set_call_timeout(2s);
  kube_provider pa(client_a, "pool-instance", {});
  kube_provider pb(client_b, "pool-instance", {});
  engine_pool::options quick;
  quick.probe_interval = 50ms;
  quick.probe_timeout = 1s;
  engine_pool pool(ioc.get_executor(),
                   {pool_member{"east", a.url(), "kubernetes", 2, &pa}, pool_member{"west", b->url(), "kubernetes", 2, &pb}},
                   quick);
  std::optional<capacity_change> change;
  pool.on_capacity_change([&](capacity_change c) { change = std::move(c); });

  CHECK_THAT(call(ioc, pool.connect()), Catch::Contains("2 engine(s), 4 slot(s) up"));
  const auto one = call(ioc, pool.create(spec_for("a1a1a1a1a1a1")));
  const auto two = call(ioc, pool.create(spec_for("b2b2b2b2b2b2")));
  CHECK(one.engine != two.engine);  // least loaded: one each
  const auto& on_west = one.engine == "west" ? one : two;
  const auto& on_east = one.engine == "west" ? two : one;
  const auto status = pool.engines();
  REQUIRE(status.size() == 2);
  CHECK(status[0].kind == "kubernetes");

  b.reset();  // the west cluster's API server goes away
  REQUIRE(run_until(ioc, [&] { return change.has_value(); }));
  CHECK(change->engine == "west");
  CHECK_FALSE(change->up);
  CHECK(change->slots_total == 2);
  CHECK(change->lost_sandboxes == std::vector<std::string>{on_west.id});

  exec_spec s;
  s.argv = {"sh", "-c", "echo still here"};
  CHECK(call(ioc, pool.exec(on_east.id, s)).stdout_data == "still here\n");
  call(ioc, pool.remove(on_east.id));
  CHECK(a.pods().empty());
  pool.stop();
  run_until(ioc, [] { return false; }, 200ms);
}
