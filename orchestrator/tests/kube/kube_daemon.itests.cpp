// orchestratord on a Kubernetes engine, end to end through its HTTP API: the daemon is started with
// `--engine k8s=kubernetes://sandlot;kubeconfig=…` against the fake API server of this folder (a
// kubeconfig in YAML, a bearer token), and a client leases, execs and moves files as a test would.
// No cluster and no Docker engine are needed (docs/scale-out.md#kubernetes).
//
//   ctest --test-dir build/dev -R kube --output-on-failure
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>
#include <unistd.h>

#include "kube/fake_apiserver.hpp"
#include "support/daemon_process.hpp"
#include "support/itest_common.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using sandlot::itest::daemon_options;
using sandlot::itest::daemon_process;
using sandlot::itest::lease_of;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_settled;
using sandlot::test::fake_apiserver;
using sandlot::test::fake_node;
namespace protocol = sandlot::protocol;

struct scratch_dir {
  fs::path path = fs::temp_directory_path() / fmt::format("sandlot-kube-itest-{}", ::getpid());
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() { fs::remove_all(path); }
};

fs::path kubeconfig_for(const fs::path& dir, const fake_apiserver& api) {
  const auto p = dir / "kubeconfig";
  std::ofstream(p) << fmt::format(R"(apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {}
users:
- name: sandlot
  user:
    token: itest-token
contexts:
- name: fake
  context:
    cluster: fake
    user: sandlot
current-context: fake
)",
                                  api.url());
  return p;
}

/// Waits (bounded) until the fake holds no pod.
bool pods_gone(const fake_apiserver& api, std::chrono::seconds within = 10s) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (!api.pods().empty() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
  return api.pods().empty();
}

const std::string image = "127.0.0.1:5000/sandlot/busybox:1";
const std::string missing = "127.0.0.1:5000/sandlot/no-such-image:1";

}  // namespace

TEST_CASE("orchestratord on a Kubernetes engine: budget from the nodes, a lease, exec, files, release",
          "[kube][daemon]") {
  scratch_dir dir;
  fake_apiserver::options o;
  o.token = "itest-token";
  o.nodes = {fake_node{"node-a", "2", "4Gi", true, {}}, fake_node{"node-b", "2", "4Gi", true, {}}};
  o.unpullable = {missing};
  fake_apiserver api(o);
  daemon_options d;
  d.instance = unique_instance("kube");
  d.slots = 1;  // the default for engines without slots=; one Kubernetes engine alone asks its nodes
  d.extra_args = {"--engine", fmt::format("k8s=kubernetes://sandlot;kubeconfig={}", kubeconfig_for(dir.path, api).string())};
  {
    daemon_process daemon(d);
    sandlot::client::client c(daemon.url());
    // 2 + 2 allocatable cpus.
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (c.status().slots_total != 4 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(100ms);
    CHECK(c.status().slots_total == 4);

    const auto lease = c.create(lease_of(image, "kube lease"));
    const auto ready = wait_settled(c, lease.id);
    REQUIRE(ready.state == protocol::lease_state::ready);
    REQUIRE(ready.sandbox.has_value());
    CHECK(ready.sandbox->id == "sandlot-" + lease.id);

    protocol::exec_request x;
    x.argv = {"sh", "-c", "read line; echo \"got $line\"; echo \"$WHO\" >&2; exit 4"};
    x.stdin_data = "hello\n";
    x.env = {{"WHO", "stderr here"}};
    const auto out = c.exec(lease.id, x);
    CHECK(out.stdout_data == "got hello\n");
    CHECK(out.stderr_data == "stderr here\n");
    CHECK(out.exit_code == 4);

    const auto file = (dir.path / "through-exec.txt").string();
    c.put_file(lease.id, file, "file bytes\n", 0600);
    CHECK(c.get_file(lease.id, file) == "file bytes\n");

    c.release(lease.id);
    CHECK(pods_gone(api));

    // A pull failure fails the lease as one, apart from a readiness timeout.
    const auto bad = c.create(lease_of(missing, "kube pull failure"));
    const auto failed = wait_settled(c, bad.id);
    CHECK(failed.state == protocol::lease_state::failed);
    REQUIRE(failed.error.has_value());
    CHECK(failed.error->code != "ready_timeout");
    CHECK_THAT(failed.error->message, Catch::Contains("ErrImagePull"));
    CHECK(pods_gone(api));
    const auto st = daemon.terminate(30s);
    REQUIRE(st.has_value());
    CHECK(st->exited);
  }
  CHECK(api.pods().empty());
}

TEST_CASE("orchestratord refuses a Kubernetes engine it cannot use, saying why", "[kube][daemon]") {
  scratch_dir dir;
  const auto remote = dir.path / "remote";
  std::ofstream(remote) << R"({"clusters":[{"name":"c","cluster":{"server":"https://192.0.2.1:6443"}}],
    "contexts":[{"name":"x","context":{"cluster":"c"}}],"current-context":"x"})";
  daemon_options d;
  d.instance = unique_instance("kube-refused");
  d.start_timeout = 5s;
  d.extra_args = {"--engine", fmt::format("k8s=kubernetes://sandlot;kubeconfig={}", remote.string())};
  try {
    daemon_process daemon(d);
    FAIL("orchestratord started with a kubeconfig whose server is not on loopback");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("not on loopback"));
  }
}
