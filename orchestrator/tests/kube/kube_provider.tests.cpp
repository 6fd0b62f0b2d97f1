// The Kubernetes provider against the fake API server (fake_apiserver.hpp): real JSON objects,
// chunked watch streams and WebSocket exec frames over loopback; exec runs real processes.
#include <filesystem>
#include <fstream>
#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include "kube/fake_apiserver.hpp"
#include "kube/tls_forwarder.hpp"
#include "kube_provider.hpp"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace sandlot::orchestrator;
using sandlot::test::fake_apiserver;
using nlohmann::json;

namespace {

/// Runs one provider call to its end on `ioc` (the client's).
template <class T>
T run(asio::io_context& ioc, asio::awaitable<T> op) {
  auto f = asio::co_spawn(ioc, std::move(op), asio::use_future);
  ioc.restart();
  ioc.run();
  return f.get();
}

struct scratch_dir {
  inline static int made = 0;
  fs::path path = fs::temp_directory_path() / fmt::format("sandlot-kube-tests-{}-{}", ::getpid(), made++);
  scratch_dir() { fs::create_directories(path); }
  ~scratch_dir() { fs::remove_all(path); }
};

/// A kubeconfig (YAML, as kubectl writes it) for the fake server.
fs::path write_kubeconfig(const fs::path& dir, const std::string& server, const std::string& token,
                          const std::string& ns = "sandlot") {
  const auto p = dir / "kubeconfig";
  std::ofstream(p) << fmt::format(R"(apiVersion: v1
kind: Config
clusters:
- cluster:
    server: {}
  name: fake
contexts:
- context:
    cluster: fake
    namespace: {}
    user: tester
  name: fake-ctx
current-context: fake-ctx
users:
- name: tester
  user:
    token: {}
)",
                                  server, ns, token);
  return p;
}

sandbox_spec lease_spec(const std::string& lease_id, const std::string& image = "127.0.0.1:5000/sandlot/busybox:1") {
  sandbox_spec s;
  s.lease_id = lease_id;
  s.lease_name = "run-" + lease_id;
  s.request.image = image;
  s.request.run = "run one";
  s.request.test = "a test with spaces";
  s.request.cpus = 0.5;
  s.request.memory_mb = 128;
  return s;
}

/// A fake server, a client that reached it through a kubeconfig, and a provider on it.
struct cluster {
  explicit cluster(fake_apiserver::options o = {}) : api(with_token(std::move(o))) {
    const auto cfg = write_kubeconfig(dir.path, api.url(), "s3cret");
    client = std::make_unique<kube_client>(ioc.get_executor(), load_kubeconfig(cfg.string(), ""));
    client->set_call_timeout(std::chrono::seconds(10));
    provider = std::make_unique<kube_provider>(*client, "test-instance", kube_provider::options{});
  }
  static fake_apiserver::options with_token(fake_apiserver::options o) {
    o.token = "s3cret";
    return o;
  }
  template <class T>
  T call(asio::awaitable<T> op) {
    return run(ioc, std::move(op));
  }
  scratch_dir dir;
  fake_apiserver api;
  asio::io_context ioc;
  std::unique_ptr<kube_client> client;
  std::unique_ptr<kube_provider> provider;
};

provider_failure failure_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const provider_error& e) {
    return e.reason();
  }
  FAIL("no provider_error was thrown");
  return provider_failure::failed;
}

}  // namespace

TEST_CASE("a kubeconfig in YAML gives the server, the namespace and the credentials", "[kube][config]") {
  scratch_dir dir;
  const auto p = dir.path / "config";
  std::ofstream(p) << R"(apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
    server: https://127.0.0.1:6443
  name: kind-sandlot
contexts:
- context:
    cluster: kind-sandlot
    user: kind-sandlot
  name: kind-sandlot
- context: {cluster: kind-sandlot, user: other, namespace: e2e}
  name: other
current-context: kind-sandlot
kind: Config
users:
- name: kind-sandlot
  user:
    token: "abc.def"
- name: other
  user:
    token: xyz
)";
  const auto t = load_kubeconfig(p.string(), "");
  CHECK(t.server == "https://127.0.0.1:6443");
  CHECK(t.ca_pem == "-----BEGIN CERTIFICATE-----\n");
  CHECK(t.token == "abc.def");
  CHECK(t.ns == "default");
  const auto other = load_kubeconfig(p.string(), "other");
  CHECK(other.ns == "e2e");
  CHECK(other.token == "xyz");
  CHECK_THROWS_WITH(load_kubeconfig(p.string(), "nope"), Catch::Contains("no entry 'nope' in contexts"));
}

TEST_CASE("a kubeconfig whose server is not on loopback is refused with what to do", "[kube][config]") {
  scratch_dir dir;
  const auto p = dir.path / "config";
  std::ofstream(p) << R"({"clusters":[{"name":"c","cluster":{"server":"https://10.0.0.1:6443"}}],
    "contexts":[{"name":"x","context":{"cluster":"c"}}],"current-context":"x"})";
  CHECK_THROWS_WITH(load_kubeconfig(p.string(), ""), Catch::Contains("kubectl proxy"));
  CHECK_THROWS_WITH(load_kubeconfig((dir.path / "absent").string(), ""), Catch::Contains("no kubeconfig at"));
}

TEST_CASE("a pod's status is judged as the kubelet reports it", "[kube][verdict]") {
  const auto pulling = json::parse(R"({"metadata":{"name":"p"},"spec":{"nodeName":"n1"},"status":{"phase":"Pending",
    "containerStatuses":[{"name":"sandbox","ready":false,"restartCount":0,"image":"127.0.0.1:5000/nope:1","imageID":"",
    "state":{"waiting":{"reason":"ErrImagePull","message":"rpc error: code = NotFound desc = failed to pull and unpack image \"127.0.0.1:5000/nope:1\": not found"}}}]}})");
  const auto v = judge_pod(pulling);
  CHECK(v.what == pod_verdict::kind::failed);
  CHECK(v.failure == provider_failure::image_not_found);
  CHECK_THAT(v.message, Catch::Contains("n1") && Catch::Contains("ErrImagePull"));
  auto denied = pulling;
  denied["status"]["containerStatuses"][0]["state"]["waiting"] = {{"reason", "ImagePullBackOff"},
                                                                  {"message", "pull access denied, unauthorized"}};
  CHECK(judge_pod(denied).failure == provider_failure::auth);
  const auto creating = json::parse(R"({"status":{"phase":"Pending","containerStatuses":[{"state":{"waiting":{"reason":"ContainerCreating"}}}]}})");
  CHECK(judge_pod(creating).what == pod_verdict::kind::waiting);
  const auto ready = json::parse(R"({"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}],
    "containerStatuses":[{"ready":true,"state":{"running":{"startedAt":"2026-12-06T02:00:00Z"}}}]}})");
  CHECK(judge_pod(ready).what == pod_verdict::kind::ready);
}

TEST_CASE("the budget comes from the Ready nodes' allocatable cpu, or from slots=N", "[kube]") {
  fake_apiserver::options o;
  o.nodes = {{"node-a", "4", "8Gi", true, {}}, {"node-b", "3500m", "8Gi", true, {}}, {"node-c", "16", "8Gi", false, {}}};
  cluster c(o);
  const auto line = c.call(c.provider->connect());
  CHECK(c.provider->slots_total() == 7);
  CHECK_THAT(line, Catch::Contains("namespace sandlot") && Catch::Contains("2 Ready node(s)"));
  kube_provider fixed(*c.client, "test-instance", kube_provider::options{"", 3, "sandbox"});
  c.call(fixed.connect());
  CHECK(fixed.slots_total() == 3);
}

TEST_CASE("a wrong token is told apart as an auth failure", "[kube]") {
  fake_apiserver::options o;
  o.token = "right";
  fake_apiserver api(o);
  scratch_dir dir;
  asio::io_context ioc;
  kube_client client(ioc.get_executor(), load_kubeconfig(write_kubeconfig(dir.path, api.url(), "wrong").string(), ""));
  kube_provider p(client, "i", {});
  CHECK(failure_of([&] { run(ioc, p.connect()); }) == provider_failure::auth);
}

TEST_CASE("a sandbox is a pod that is ready once a watch says so, with the lease's requests and limits",
          "[kube]") {
  cluster c;
  c.call(c.provider->connect());
  const auto info = c.call(c.provider->create(lease_spec("0123456789ab")));
  CHECK(info.id == "sandlot-0123456789ab");
  CHECK(info.network == "none");
  CHECK(info.hostname == "sb-0123456789ab");
  // Readiness came from the watch: the pod was never fetched by name to see how it stood.
  CHECK(c.api.watches() >= 1);
  CHECK(c.api.pod_gets() == 0);
  const auto pods = c.api.pods();
  REQUIRE(pods.size() == 1);
  const auto& pod = pods[0];
  CHECK(pod["metadata"]["labels"]["sandlot.lease"] == "0123456789ab");
  CHECK(pod["metadata"]["labels"]["sandlot.daemon"] == kube_provider::instance_label("test-instance"));
  CHECK(pod["metadata"]["annotations"]["sandlot.dev/test"] == "a test with spaces");
  const auto& container = pod["spec"]["containers"][0];
  CHECK(container["resources"]["requests"]["cpu"] == "500m");
  CHECK(container["resources"]["limits"]["memory"] == "128Mi");
  CHECK(container["securityContext"]["capabilities"]["drop"][0] == "ALL");
  CHECK(pod["status"]["phase"] == "Running");
  const auto own = c.call(c.provider->list_own());
  REQUIRE(own.size() == 1);
  CHECK(own[0].lease_id == "0123456789ab");
  CHECK(own[0].running);
  CHECK(c.provider->may_reap(own[0]));
  c.call(c.provider->remove(info.id));
  CHECK(c.api.pods().empty());
}

TEST_CASE("a pull failure fails the create at once as a pull failure, and leaves no pod", "[kube]") {
  fake_apiserver::options o;
  o.unpullable = {"127.0.0.1:5000/sandlot/missing:1"};
  cluster c(o);
  c.call(c.provider->connect());
  std::string message;
  try {
    c.call(c.provider->create(lease_spec("aaaaaaaaaaaa", "127.0.0.1:5000/sandlot/missing:1")));
    FAIL("the create succeeded");
  } catch (const provider_error& e) {
    CHECK(e.reason() == provider_failure::image_not_found);
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains("ErrImagePull") && Catch::Contains("could not pull"));
  CHECK(c.api.pods().empty());
}

TEST_CASE("exec over WebSocket v5: stdin, stdout, stderr and the exit code", "[kube][exec]") {
  cluster c;
  c.call(c.provider->connect());
  const auto info = c.call(c.provider->create(lease_spec("bbbbbbbbbbbb")));
  exec_spec s;
  s.argv = {"sh", "-c", "cat; echo oops >&2; exit 3"};
  s.stdin_data = "hello from stdin\n";
  const auto out = c.call(c.provider->exec(info.id, s));
  CHECK(out.stdout_data == "hello from stdin\n");
  CHECK(out.stderr_data == "oops\n");
  CHECK(out.exit_code == 3);
  CHECK_FALSE(out.timed_out);
  CHECK(c.client->last_exec_protocol() == "v5.channel.k8s.io");

  exec_spec env;
  env.argv = {"sh", "-c", "echo \"$GREETING\" in \"$(pwd)\""};
  env.env = {"GREETING=hi"};
  env.workdir = "/tmp";
  const auto e = c.call(c.provider->exec(info.id, env));
  CHECK(e.stdout_data == "hi in /tmp\n");
  CHECK(e.exit_code == 0);

  exec_spec missing;
  missing.argv = {"/no/such/program"};
  const auto m = c.call(c.provider->exec(info.id, missing));
  CHECK(m.exit_code == 127);

  exec_spec slow;
  slow.argv = {"sleep", "5"};
  slow.timeout = std::chrono::milliseconds(300);
  CHECK(c.call(c.provider->exec(info.id, slow)).timed_out);
  c.call(c.provider->remove(info.id));
}

TEST_CASE("exec falls back to v4 on a server without v5, and stdin still ends", "[kube][exec]") {
  fake_apiserver::options o;
  o.offer_v5 = false;
  cluster c(o);
  c.call(c.provider->connect());
  const auto info = c.call(c.provider->create(lease_spec("cccccccccccc")));
  exec_spec s;
  s.argv = {"sh", "-c", "wc -c; echo done >&2"};
  s.stdin_data = std::string(100000, 'x');
  const auto out = c.call(c.provider->exec(info.id, s));
  CHECK(out.stdout_data.find("100000") != std::string::npos);
  CHECK(out.stderr_data == "done\n");
  CHECK(out.exit_code == 0);
  CHECK(c.client->last_exec_protocol() == "v4.channel.k8s.io");
  exec_spec plain;
  plain.argv = {"sh", "-c", "exit 7"};
  CHECK(c.call(c.provider->exec(info.id, plain)).exit_code == 7);
  c.call(c.provider->remove(info.id));
}

TEST_CASE("files go in and out through exec", "[kube][files]") {
  cluster c;
  c.call(c.provider->connect());
  const auto info = c.call(c.provider->create(lease_spec("dddddddddddd")));
  const auto file = (c.dir.path / "data.bin").string();
  std::string bytes = "line one\n";
  bytes.push_back('\0');
  bytes += "\xff binary tail";
  c.call(c.provider->write_file(info.id, file, bytes, 0640));
  CHECK((fs::status(file).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write |
                                                              fs::perms::group_read));
  const auto back = c.call(c.provider->read_file(info.id, file, 1024));
  REQUIRE(back.has_value());
  CHECK(*back == bytes);
  CHECK_FALSE(c.call(c.provider->read_file(info.id, (c.dir.path / "absent").string(), 1024)).has_value());
  CHECK(failure_of([&] { c.call(c.provider->read_file(info.id, file, 4)); }) == provider_failure::too_large);
  CHECK(failure_of([&] { c.call(c.provider->read_file(info.id, c.dir.path.string(), 1024)); }) ==
        provider_failure::not_a_file);
  CHECK(failure_of([&] { c.call(c.provider->write_file(info.id, (c.dir.path / "no/such/f").string(), "x", 0644)); }) ==
        provider_failure::not_found);
  c.call(c.provider->remove(info.id));
}

TEST_CASE("cleanup is by label selector: one lease's pods, then everything this instance made", "[kube]") {
  cluster c;
  c.call(c.provider->connect());
  c.call(c.provider->create(lease_spec("eeeeeeeeeeee")));
  c.call(c.provider->create(lease_spec("ffffffffffff")));
  // Another instance's pod in the same namespace is not touched.
  kube_provider other(*c.client, "other-instance", {});
  c.call(other.create(lease_spec("999999999999")));
  CHECK(c.api.pods().size() == 3);
  CHECK(c.call(c.provider->remove_lease("eeeeeeeeeeee")) == 1);
  const auto requests = c.api.requests();
  const bool by_selector = std::any_of(requests.begin(), requests.end(), [](const std::string& r) {
    return r.starts_with("DELETE /api/v1/namespaces/sandlot/pods?labelSelector=") &&
           r.find("sandlot.lease%3Deeeeeeeeeeee") != std::string::npos;
  });
  CHECK(by_selector);
  CHECK(c.api.pods().size() == 2);
  CHECK(c.call(c.provider->remove_all_own()) == 1);
  const auto left = c.api.pods();
  REQUIRE(left.size() == 1);
  CHECK(left[0]["metadata"]["name"] == "sandlot-999999999999");
  CHECK(c.call(other.remove_all_own()) == 1);
  CHECK(c.api.pods().empty());
}

TEST_CASE("the gate's pull is a prepull pod on each node that lacks the image", "[kube][prepull]") {
  const std::string image = "127.0.0.1:5000/sandlot/busybox:1";
  fake_apiserver::options o;
  o.nodes = {{"node-a", "4", "8Gi", true, {image}}, {"node-b", "4", "8Gi", true, {}}};
  cluster c(o);
  c.call(c.provider->connect());
  CHECK_FALSE(c.call(c.provider->image_present(image)));
  c.call(c.provider->pull(image, std::chrono::steady_clock::now() + std::chrono::seconds(10), {}));
  CHECK(c.call(c.provider->image_present(image)));
  const auto requests = c.api.requests();
  const auto posts = std::count_if(requests.begin(), requests.end(),
                                   [](const std::string& r) { return r.starts_with("POST /api/v1/namespaces/sandlot/pods"); });
  CHECK(posts == 1);  // node-b only
  CHECK(c.api.pods().empty());  // and the prepull pod is gone
  const auto pinned = c.call(c.provider->image_id(image));
  CHECK_THAT(pinned, Catch::Contains("@sha256:"));

  fake_apiserver::options bad = o;
  bad.unpullable = {"127.0.0.1:5000/sandlot/missing:1"};
  cluster b(bad);
  CHECK(failure_of([&] {
          b.call(b.provider->pull("127.0.0.1:5000/sandlot/missing:1",
                                  std::chrono::steady_clock::now() + std::chrono::seconds(10), {}));
        }) == provider_failure::image_not_found);
  CHECK(b.api.pods().empty());
}

namespace {

std::string base64(const std::string& in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char ch : in) {
    buf = (buf << 8) | static_cast<unsigned char>(ch);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(abc[(buf >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(abc[(buf << (6 - bits)) & 63]);
  while (out.size() % 4 != 0) out.push_back('=');
  return out;
}

/// A kubeconfig for https://127.0.0.1:PORT with the CA as a file beside it (a relative path, as
/// kubectl resolves it) and, when given, a client certificate and key inline.
fs::path tls_kubeconfig(const fs::path& dir, unsigned short port, const std::string& ca_pem,
                        const sandlot::test::test_cert* client) {
  std::ofstream(dir / "ca.crt") << ca_pem;
  std::string user = "    token: unused\n";
  if (client != nullptr) {
    user = fmt::format("    client-certificate-data: {}\n    client-key-data: {}\n", base64(client->cert_pem),
                       base64(client->key_pem));
  }
  const auto p = dir / "tls-kubeconfig";
  std::ofstream(p) << fmt::format(R"(apiVersion: v1
kind: Config
clusters:
- name: tls
  cluster:
    server: https://127.0.0.1:{}
    certificate-authority: ca.crt
contexts:
- name: tls
  context: {{cluster: tls, user: me, namespace: sandlot}}
current-context: tls
users:
- name: me
  user:
{})",
                                  port, user);
  return p;
}

}  // namespace

TEST_CASE("over TLS: the server is checked against the kubeconfig's CA, the client shows its certificate, exec works",
          "[kube][tls]") {
  using sandlot::test::test_cert;
  using sandlot::test::tls_forwarder;
  fake_apiserver api;
  const auto server_cert = test_cert::make("fake-apiserver", "IP:127.0.0.1");
  const auto client_cert = test_cert::make("sandlot-orchestratord", "DNS:sandlot");
  tls_forwarder tls(api.port(), server_cert, client_cert.cert_pem);
  scratch_dir dir;
  asio::io_context ioc;
  {
    kube_client client(ioc.get_executor(), load_kubeconfig(tls_kubeconfig(dir.path, tls.port(), server_cert.cert_pem,
                                                                          &client_cert).string(), ""));
    kube_provider p(client, "tls-instance", {});
    CHECK_THAT(run(ioc, p.connect()), Catch::Contains("https://127.0.0.1:"));
    const auto info = run(ioc, p.create(lease_spec("121212121212")));
    exec_spec s;
    s.argv = {"sh", "-c", "tr a-z A-Z; exit 2"};
    s.stdin_data = "over tls\n";
    const auto out = run(ioc, p.exec(info.id, s));
    CHECK(out.stdout_data == "OVER TLS\n");
    CHECK(out.exit_code == 2);
    run(ioc, p.remove(info.id));
    CHECK(api.pods().empty());
    CHECK(tls.handshakes_ok() >= 4);
  }
  SECTION("a server whose certificate the CA did not sign is refused") {
    const auto other = test_cert::make("someone-else", "IP:127.0.0.1");
    kube_client client(ioc.get_executor(),
                       load_kubeconfig(tls_kubeconfig(dir.path, tls.port(), other.cert_pem, &client_cert).string(), ""));
    kube_provider p(client, "tls-instance", {});
    std::string message;
    try {
      run(ioc, p.connect());
    } catch (const provider_error& e) {
      CHECK(e.reason() == provider_failure::unreachable);
      message = e.what();
    }
    CHECK_THAT(message, Catch::Contains("TLS") && Catch::Contains("certificate-authority"));
  }
  SECTION("without a client certificate the server refuses the handshake") {
    kube_client client(ioc.get_executor(),
                       load_kubeconfig(tls_kubeconfig(dir.path, tls.port(), server_cert.cert_pem, nullptr).string(), ""));
    kube_provider p(client, "tls-instance", {});
    CHECK(failure_of([&] { run(ioc, p.connect()); }) == provider_failure::unreachable);
    CHECK(tls.handshakes_failed() >= 1);
  }
}

TEST_CASE("a pod that does not become ready gives way to the caller's deadline, and goes by its label", "[kube]") {
  using namespace boost::asio::experimental::awaitable_operators;
  fake_apiserver::options o;
  o.start_delay = std::chrono::hours(1);  // scheduled, never running
  cluster c(o);
  c.call(c.provider->connect());
  // As the core's ready timeout does: the create raced against a timer, and cancelled.
  auto raced = [&]() -> asio::awaitable<std::size_t> {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(300));
    auto r = co_await (c.provider->create(lease_spec("131313131313")) || timer.async_wait(asio::use_awaitable));
    co_return r.index();
  };
  auto f = asio::co_spawn(c.ioc, raced(), asio::use_future);
  c.ioc.restart();
  c.ioc.run_for(std::chrono::seconds(20));  // bounded: a create that ignored cancellation would hang here
  REQUIRE(f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  CHECK(f.get() == 1);
  CHECK(c.api.pods().size() == 1);
  CHECK(c.call(c.provider->remove_lease("131313131313")) == 1);
  CHECK(c.api.pods().empty());
}
