// The engine_fault_proxy's own checks: the daemon's docker_client talks to the real engine through
// the proxy, and what it sees is what the fault tests will rely on (forwarding that is transparent,
// failures and stalls exactly where a rule says, a hung engine on demand, an exec stream intact).
//
// Needs the engine of docs/test-environment.md (scripts/e2e-env up).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "docker_client.hpp"
#include "support/daemon_process.hpp"
#include "support/engine_fault_proxy.hpp"
#include "support/itest_common.hpp"

SANDLOT_ITEST_LOG_PRINTER()

namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using json = nlohmann::json;
using sandlot::itest::engine_fault_proxy;
using sandlot::itest::wait_until;
using sandlot::orchestrator::docker_client;
using sandlot::orchestrator::engine_address;
using sandlot::orchestrator::engine_error;
using action = engine_fault_proxy::action;
using clock_type = std::chrono::steady_clock;

const std::string direct_engine = "unix:///var/run/docker.sock";

// Coroutines take strings by value and pass named objects on: GCC 12 mishandles temporaries bound
// to const& parameters across a co_await.
asio::awaitable<docker_client::response> get(docker_client& e, std::string target, std::chrono::milliseconds timeout) {
  const std::optional<json> no_body;
  co_return co_await e.call(http::verb::get, target, no_body, timeout);
}

asio::awaitable<std::string> ping(docker_client& e) { co_return co_await e.negotiate(); }

// Runs one docker_client coroutine against `host` on a private io_context, as engine_probe does, so
// a call may run on any thread (one test destroys the proxy while a call is in flight).
template <class T, class Fn>
T on_engine(const std::string& host, Fn fn) {
  asio::io_context ioc{1};
  docker_client engine(ioc.get_executor(), engine_address::parse(host));
  std::future<T> result = asio::co_spawn(ioc, fn(engine), asio::use_future);
  ioc.run();
  return result.get();
}

docker_client::response get_via(const std::string& host, const std::string& target,
                                 std::chrono::milliseconds timeout = 30s) {
  return on_engine<docker_client::response>(host, [&](docker_client& e) { return get(e, target, timeout); });
}

// The engine must be up for any of this to mean something; say how to get it rather than fail
// with a connect error somewhere inside a check.
void require_engine() {
  INFO("no Docker engine answers at " << direct_engine << "; start one with scripts/e2e-env up");
  REQUIRE(std::filesystem::is_socket("/var/run/docker.sock"));
  REQUIRE_NOTHROW(on_engine<std::string>(direct_engine, ping));
}

}  // namespace

TEST_CASE("a request no rule catches reaches the real engine through the proxy", "[engine_fault_proxy]") {
  require_engine();
  engine_fault_proxy proxy;
  CHECK(proxy.docker_host() == "unix://" + proxy.socket_path());
  CHECK(std::filesystem::is_socket(proxy.socket_path()));

  const auto version = on_engine<std::string>(proxy.docker_host(), ping);
  CHECK(version == on_engine<std::string>(direct_engine, ping));

  // Same engine on both paths: its ID in /info is the same.
  const auto via_proxy = get_via(proxy.docker_host(), "/info");
  const auto direct = get_via(direct_engine, "/info");
  REQUIRE(via_proxy.status == 200);
  REQUIRE(direct.status == 200);
  CHECK(via_proxy.json().at("ID") == direct.json().at("ID"));
  CHECK(proxy.stalled() == 0);
}

TEST_CASE("a fail rule answers 500 to the requests it catches and to nothing else", "[engine_fault_proxy]") {
  require_engine();
  engine_fault_proxy proxy;
  const int info = proxy.add_rule("GET", "/info", action::fail);
  const int post_only = proxy.add_rule("POST", "/version", action::fail);

  const auto failed = get_via(proxy.docker_host(), "/info");
  CHECK(failed.status == 500);
  CHECK(failed.json().value("message", "") == "injected failure by engine_fault_proxy");
  CHECK(proxy.matched(info) == 1);

  // Other targets, and the right target with another method, are forwarded.
  CHECK_NOTHROW(on_engine<std::string>(proxy.docker_host(), ping));
  CHECK(get_via(proxy.docker_host(), "/version").status == 200);
  CHECK(proxy.matched(post_only) == 0);
  CHECK(proxy.matched(info) == 1);

  // Retired rules catch nothing more but still report what they caught.
  proxy.clear_rules();
  CHECK(get_via(proxy.docker_host(), "/info").status == 200);
  CHECK(proxy.matched(info) == 1);
  CHECK_THROWS_AS(proxy.matched(42), std::out_of_range);
}

TEST_CASE("a rule with a count catches that many requests, then the engine answers again",
          "[engine_fault_proxy]") {
  require_engine();
  engine_fault_proxy proxy;
  const int twice = proxy.add_rule("", "/version", action::fail, 2);
  // Checked in the order added: the first live rule wins, the later one only once it is spent.
  const int after = proxy.add_rule("GET", "/version", action::forward);

  std::vector<unsigned> seen;
  for (int i = 0; i < 3; ++i) seen.push_back(get_via(proxy.docker_host(), "/version").status);
  const std::vector<unsigned> expected{500, 500, 200};
  CHECK(seen == expected);
  CHECK(proxy.matched(twice) == 2);
  CHECK(proxy.matched(after) == 1);
  CHECK_THROWS_AS(proxy.add_rule("", "/x", action::fail, 0), std::invalid_argument);
}

TEST_CASE("a stall rule leaves a request unanswered until the client gives up", "[engine_fault_proxy]") {
  require_engine();
  engine_fault_proxy proxy;
  const int once = proxy.add_rule("GET", "/info", action::stall, 1);

  const auto started = clock_type::now();
  CHECK_THROWS_AS(get_via(proxy.docker_host(), "/info", 1s), engine_error);
  const auto took = clock_type::now() - started;
  CHECK(took >= 900ms);  // held until the client's own timeout, not refused
  CHECK(took < 5s);
  CHECK(proxy.matched(once) == 1);
  // The client closed its connection on timeout; the proxy lets go of it.
  CHECK(wait_until([&] { return proxy.stalled() == 0; }, 5s));

  // The rule was for one request only.
  CHECK(get_via(proxy.docker_host(), "/info", 10s).status == 200);
  CHECK(proxy.matched(once) == 1);
}

TEST_CASE("hang_all makes the engine look hung and turning it off brings it back", "[engine_fault_proxy]") {
  require_engine();
  engine_fault_proxy proxy;
  const int info = proxy.add_rule("GET", "/info", action::fail);

  proxy.hang_all(true);
  CHECK_THROWS_AS(get_via(proxy.docker_host(), "/_ping", 1s), engine_error);
  CHECK_THROWS_AS(get_via(proxy.docker_host(), "/info", 1s), engine_error);
  CHECK(proxy.matched(info) == 0);  // a hung engine answers nothing, the rules included
  CHECK(wait_until([&] { return proxy.stalled() == 0; }, 5s));

  proxy.hang_all(false);
  CHECK_NOTHROW(on_engine<std::string>(proxy.docker_host(), ping));
  CHECK(get_via(proxy.docker_host(), "/info").status == 500);
  CHECK(proxy.matched(info) == 1);
}

TEST_CASE("destroying the proxy closes the connections it holds stalled", "[engine_fault_proxy]") {
  require_engine();
  auto proxy = std::make_unique<engine_fault_proxy>();
  const std::string host = proxy->docker_host();
  const std::string path = proxy->socket_path();
  proxy->hang_all(true);

  // A client that would wait 60 s for its answer.
  auto call = std::async(std::launch::async, [host] { return get_via(host, "/info", 60s); });
  REQUIRE(wait_until([&] { return proxy->stalled() == 1; }, 10s));

  proxy.reset();
  REQUIRE(call.wait_for(10s) == std::future_status::ready);
  CHECK_THROWS_AS(call.get(), engine_error);
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("an exec with stdin streams through the proxy both ways", "[engine_fault_proxy]") {
  require_engine();
  const std::string image = sandlot::itest::test_image();

  // The container is made directly on the engine; only the exec goes through the proxy.
  static std::atomic<int> serial{0};
  const std::string name = fmt::format("sandlot-proxy-selftest-{}-{}", getpid(), ++serial);
  auto make = [&](docker_client& e) -> asio::awaitable<std::string> {
    if (!co_await e.image_exists(image)) co_await e.pull(image, clock_type::now() + 60s);
    json spec;
    spec["Image"] = image;
    spec["Cmd"] = json::array({"sleep", "300"});
    spec["Labels"] = json::object({{"sandlot.selftest", "engine_fault_proxy"}});
    spec["HostConfig"] = json::object({{"NetworkMode", "none"}, {"Init", true}});
    const std::string id = co_await e.create_container(name, spec);
    co_await e.start_container(id);
    co_return id;
  };
  const std::string id = on_engine<std::string>(direct_engine, make);
  struct remove_at_end {
    std::string id;
    ~remove_at_end() {
      try {
        on_engine<int>(direct_engine, [this](docker_client& e) -> asio::awaitable<int> {
          co_await e.remove_container(id);
          co_return 0;
        });
      } catch (const std::exception& ex) {
        std::cout << "cleanup: removing container " << id << " failed: " << ex.what() << "\n";
      }
    }
  } cleanup{id};

  engine_fault_proxy proxy;
  const int start = proxy.add_rule("POST", "/exec/", action::forward);

  // Large enough to take many reads each way, and ending without a newline: cat must see the
  // half-close to finish.
  std::string input;
  for (int i = 0; input.size() < 300 * 1024; ++i) input += fmt::format("line {} through the proxy\n", i);
  input += "end";

  sandlot::orchestrator::exec_spec spec;
  spec.argv = {"sh", "-c", "cat; echo done >&2"};
  spec.stdin_data = input;
  spec.timeout = 30s;
  const auto out = on_engine<sandlot::orchestrator::exec_output>(
      proxy.docker_host(), [&](docker_client& e) { return e.exec(id, spec); });

  CHECK_FALSE(out.timed_out);
  CHECK(out.exit_code == 0);
  CHECK(out.stdout_data.size() == input.size());
  CHECK(out.stdout_data == input);
  CHECK(out.stderr_data == "done\n");
  CHECK(proxy.matched(start) == 1);  // POST /exec/<id>/start, the upgraded connection

  // A stalled exec stays stalled after the client half-closes its stdin: the client runs into
  // its own timeout, as with a hung engine, instead of seeing the stream end.
  proxy.clear_rules();  // else the forward rule above, added first, would catch it
  const int held = proxy.add_rule("POST", "/exec/", action::stall, 1);
  spec.stdin_data = "short input";
  spec.timeout = 2s;
  const auto started = clock_type::now();
  const auto stalled_out = on_engine<sandlot::orchestrator::exec_output>(
      proxy.docker_host(), [&](docker_client& e) { return e.exec(id, spec); });
  CHECK(clock_type::now() - started >= 1900ms);
  CHECK(stalled_out.timed_out);
  CHECK(stalled_out.stdout_data.empty());
  CHECK(proxy.matched(held) == 1);
  CHECK(wait_until([&] { return proxy.stalled() == 0; }, 5s));
}
