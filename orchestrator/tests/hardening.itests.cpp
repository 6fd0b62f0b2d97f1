// Integration tests of the daemon's defences (issue "safe by default, bounded under abuse"): what a
// web page, a greedy or dead client, or a second daemon could do to a running orchestratord. Each
// test starts its own daemon against the real engine and checks what a user would see.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using sandlot::itest::daemon_options;
using sandlot::itest::daemon_process;
using sandlot::itest::engine_probe;
using sandlot::itest::error_of;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::wait_settled;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;
using Catch::Matchers::Contains;

/// A loopback TCP connection that sends whatever bytes a test gives it (any Host, Origin...).
class raw_socket {
 public:
  explicit raw_socket(unsigned short port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  raw_socket(const raw_socket&) = delete;
  raw_socket& operator=(const raw_socket&) = delete;
  ~raw_socket() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) const { (void)!::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  /// Ends our side of the connection and keeps reading, as an HTTP/1.0 client like `nc` may.
  void half_close() const { ::shutdown(fd_, SHUT_WR); }
  /// Everything until the daemon closes (or 10 s pass).
  std::string read_all() const {
    std::string out;
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd_, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

 private:
  int fd_;
  bool connected_ = false;
};

struct answer {
  int status = 0;
  std::string head;
  std::string body;
  std::string code() const {
    auto j = json::parse(body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"].value("code", "") : "";
  }
  std::string message() const {
    auto j = json::parse(body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"].value("message", "") : "";
  }
};

/// One request with exactly these headers (Connection: close is added).
answer send_request(unsigned short port, const std::string& method, const std::string& target,
                    const std::vector<std::string>& headers, const std::string& body = {}) {
  raw_socket s(port);
  std::string req = fmt::format("{} {} HTTP/1.1\r\n", method, target);
  for (const auto& h : headers) req += h + "\r\n";
  req += fmt::format("Content-Length: {}\r\nConnection: close\r\n\r\n", body.size()) + body;
  s.send(req);
  const std::string raw = s.read_all();
  answer a;
  if (raw.rfind("HTTP/1.1 ", 0) == 0) a.status = std::atoi(raw.substr(9, 3).c_str());
  const auto end = raw.find("\r\n\r\n");
  a.head = raw.substr(0, end);
  if (end != std::string::npos) a.body = raw.substr(end + 4);
  return a;
}

std::string lease_body(const std::string& extra = {}) {
  return fmt::format(R"({{"image":"{}","run":"hardening-{}"{}}})", test_image(), getpid(), extra);
}

/// The lease no longer appears among the daemon's live leases (status does not touch a lease).
bool gone_from_status(const client::client& c, const std::string& id) {
  for (const auto& l : c.status().leases) {
    if (l.id == id) return false;
  }
  return true;
}

int open_fds(pid_t pid) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) ++n;
  return n;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("without a token only loopback hosts are answered, and pages cannot post to the daemon", "[hardening][web]") {
  const engine_probe engine;
  const std::string instance = unique_instance("web");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const auto port = d.port();
  const std::string host = fmt::format("Host: 127.0.0.1:{}", port);
  const std::string json_type = "Content-Type: application/json";

  // What any web page can send after a DNS rebinding: a foreign Host, its Origin, text/plain.
  const std::string greedy = lease_body(R"(,"network":"host","memory_mb":1048576,"ttl_s":86400)");
  const auto rebinding = send_request(port, "POST", "/v1/leases",
                                      {fmt::format("Host: evil.example:{}", port),
                                       fmt::format("Origin: http://evil.example:{}", port), "Content-Type: text/plain"},
                                      greedy);
  CHECK(rebinding.status == 403);
  CHECK(rebinding.code() == "forbidden");
  CHECK_THAT(rebinding.message(), Contains("evil.example") && Contains("--allow-host"));
  // Reading is refused the same way.
  CHECK(send_request(port, "GET", "/v1/status", {fmt::format("Host: evil.example:{}", port)}).status == 403);

  // A page on a loopback origin (another local dev server) is still a page.
  const auto cross = send_request(port, "POST", "/v1/leases", {host, "Origin: http://localhost:3000", json_type},
                                  lease_body());
  CHECK(cross.status == 403);
  CHECK_THAT(cross.message(), Contains("Origin") && Contains("--allow-origin"));
  // No CORS preflight is ever granted.
  const auto preflight = send_request(port, "OPTIONS", "/v1/leases",
                                      {host, "Origin: http://localhost:3000", "Access-Control-Request-Method: POST"});
  CHECK(preflight.status == 403);
  CHECK_THAT(preflight.head, !Contains("Access-Control-Allow"));

  // A simple cross-site form body is not JSON to us.
  const auto form = send_request(port, "POST", "/v1/leases", {host, "Content-Type: text/plain"}, lease_body());
  CHECK(form.status == 415);
  CHECK(form.code() == "unsupported_media_type");
  CHECK_THAT(form.message(), Contains("application/json"));

  // Nothing of the above created a lease.
  const client::client c(d.url());
  CHECK(c.status().leases.empty());
  CHECK(engine.containers_of(instance).empty());

  // Loopback names, the daemon's own origin and JSON are answered.
  CHECK(send_request(port, "GET", "/v1/status", {fmt::format("Host: localhost:{}", port)}).status == 200);
  CHECK(send_request(port, "GET", "/v1/status", {fmt::format("Host: [::1]:{}", port)}).status == 200);
  CHECK(send_request(port, "GET", "/v1/status", {host, fmt::format("Origin: http://127.0.0.1:{}", port)}).status ==
        200);
  const auto created = send_request(port, "POST", "/v1/leases", {host, json_type}, lease_body(R"(,"ttl_s":5)"));
  CHECK(created.status == 201);
}

TEST_CASE("extra host names come from --allow-host and SANDLOT_ALLOW_HOSTS; with a token any Host may call", "[hardening][web]") {
  const engine_probe engine;
  {
    const std::string instance = unique_instance("allow-host");
    leftover_guard cleanup(engine, instance);
    ::setenv("SANDLOT_ALLOW_HOSTS", "ci-runner, other.test", 1);
    daemon_options opts;
    opts.instance = instance;
    opts.extra_args = {"--allow-host", "sandlot", "--allow-origin", "http://dash.test:8080"};
    daemon_process d(opts);
    ::unsetenv("SANDLOT_ALLOW_HOSTS");
    for (const char* name : {"sandlot", "ci-runner", "other.test"}) {
      INFO(name);
      CHECK(send_request(d.port(), "GET", "/v1/status", {fmt::format("Host: {}:{}", name, d.port())}).status == 200);
    }
    CHECK(send_request(d.port(), "GET", "/v1/status", {fmt::format("Host: stranger:{}", d.port())}).status == 403);
    CHECK(send_request(d.port(), "GET", "/v1/status",
                       {fmt::format("Host: 127.0.0.1:{}", d.port()), "Origin: http://dash.test:8080"})
              .status == 200);
  }
  {
    const std::string instance = unique_instance("token-host");
    leftover_guard cleanup(engine, instance);
    const auto token_file = sandlot::itest::scratch_dir() / "hardening-token";
    std::ofstream(token_file) << "tok-3f9a1c\n";
    daemon_options opts;
    opts.instance = instance;
    opts.extra_args = {"--token-file", token_file.string()};
    daemon_process d(opts);
    // A page cannot send the token, so the Host no longer matters: a CI job reaches a service
    // container by its service name.
    const std::string service_host = fmt::format("Host: sandlot:{}", d.port());
    CHECK(send_request(d.port(), "GET", "/v1/status", {service_host}).status == 401);
    CHECK(send_request(d.port(), "GET", "/v1/status", {service_host, "Authorization: Bearer tok-3f9a1c"}).status ==
          200);
    // An Origin is refused even with the token.
    CHECK(send_request(d.port(), "GET", "/v1/status",
                       {service_host, "Authorization: Bearer tok-3f9a1c", "Origin: http://evil.example"})
              .status == 403);
  }
}

TEST_CASE("host network and asks beyond a slot's share are refused unless the daemon allows them", "[hardening][limits]") {
  const engine_probe engine;
  const std::string instance = unique_instance("asks");
  leftover_guard cleanup(engine, instance);
  daemon_options opts;
  opts.instance = instance;
  opts.slots = 2;
  opts.extra_args = {"--max-memory", "300", "--max-ttl", "600", "--max-cpus", "1", "--max-pids", "512"};
  daemon_process d(opts);
  const client::client c(d.url());
  auto refused = [&](const std::string& extra) {
    return error_of(c.request("POST", "/v1/leases", lease_body(extra)));
  };
  const auto host = refused(R"(,"network":"host")");
  CHECK(host.status == 403);
  CHECK_THAT(host.message, Contains("--allow-host-network"));
  const auto memory = refused(R"(,"memory_mb":400)");
  CHECK(memory.status == 400);
  CHECK_THAT(memory.message, Contains("'memory_mb'") && Contains("300") && Contains("--max-memory"));
  const auto ttl = refused(R"(,"ttl_s":86400)");
  CHECK(ttl.status == 400);
  CHECK_THAT(ttl.message, Contains("'ttl_s'") && Contains("600") && Contains("--max-ttl"));
  const auto cpus = refused(R"(,"cpus":1.5)");
  CHECK(cpus.status == 400);
  CHECK_THAT(cpus.message, Contains("'cpus'") && Contains("--max-cpus"));
  const auto pids = refused(R"(,"pids_limit":600)");
  CHECK(pids.status == 400);
  CHECK_THAT(pids.message, Contains("'pids_limit'") && Contains("512"));
  CHECK(c.status().leases.empty());

  // Two slots' weight may ask for two slots' share.
  auto wide = lease_of(test_image(), "wide");
  wide.slots = 2;
  wide.memory_mb = 400;
  wide.cpus = 1.5;
  auto lease = client::lease::acquire(c, wide, 120s);
  CHECK(lease.exec({"true"}).exit_code == 0);
  lease.release();

  // With --allow-host-network, host network is granted.
  const std::string open_instance = unique_instance("host-net");
  leftover_guard open_cleanup(engine, open_instance);
  daemon_options open;
  open.instance = open_instance;
  open.extra_args = {"--allow-host-network"};
  daemon_process permissive(open);
  auto req = lease_of(test_image(), "host-net");
  req.network = protocol::network_mode::host;
  auto shared = client::lease::acquire(client::client(permissive.url()), req, 120s);
  CHECK(shared.sandbox().network == "host");
}

TEST_CASE("a client that leaves mid-exec or mid-long-poll gives its lease back to the ttl", "[hardening][clients]") {
  const engine_probe engine;
  const std::string instance = unique_instance("left");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());
  client::options quick;
  quick.url = d.url();
  quick.request_timeout = 2s;
  const client::client impatient(quick);

  const auto busy = c.create(lease_of(test_image(), "busy", /*ttl_s=*/3));
  REQUIRE(wait_settled(c, busy.id).state == lease_state::ready);
  // A command meant to run for 5 minutes; the client gives up after 2 s and closes its connection.
  CHECK_THROWS(impatient.request("POST", fmt::format("/v1/leases/{}/exec", busy.id),
                                 R"({"argv":["sleep","300"],"timeout_s":300})"));
  // The command is killed in the sandbox...
  const bool killed = wait_until(
      [&] {
        protocol::exec_request ps;
        ps.argv = {"ps"};
        return c.exec(busy.id, ps).stdout_data.find("sleep 300") == std::string::npos;
      },
      10s, 200ms);
  CHECK(killed);
  // ...and with nobody renewing, the lease expires on its ttl rather than after the command's 300 s.
  const auto last_touch = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return gone_from_status(c, busy.id); }, 15s, 200ms));
  CHECK(std::chrono::steady_clock::now() - last_touch < 10s);

  // The same for a long-poll on a queued lease.
  const auto holder = c.create(lease_of(test_image(), "holder", /*ttl_s=*/120));
  REQUIRE(wait_settled(c, holder.id).state == lease_state::ready);
  const auto queued = c.create(lease_of(test_image(), "queued", /*ttl_s=*/3));
  CHECK_THROWS(impatient.request("GET", fmt::format("/v1/leases/{}?wait_s=120", queued.id)));
  const auto poll_left = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return gone_from_status(c, queued.id); }, 15s, 200ms));
  CHECK(std::chrono::steady_clock::now() - poll_left < 10s);
  const auto why = c.get(queued.id);
  CHECK(why.state == lease_state::expired);
  c.release(holder.id);
}

TEST_CASE("a client that half-closes after its request still gets the answer", "[hardening][clients]") {
  // busybox nc ends its side once the request is sent; a health check from a sandbox does that.
  // The daemon's watch for departed clients must not take that for a client that left.
  const engine_probe engine;
  const std::string instance = unique_instance("halfclose");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  int answered = 0;
  for (int i = 0; i < 40; ++i) {
    raw_socket s(d.port());
    REQUIRE(s.connected());
    s.send("GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    s.half_close();
    const std::string raw = s.read_all();
    if (raw.rfind("HTTP/1.0 200", 0) == 0 || raw.rfind("HTTP/1.1 200", 0) == 0) ++answered;
  }
  CHECK(answered == 40);
  // A long-poll whose client closes its side is still given up, a grace period later.
  const client::client c(d.url());
  const auto holder = c.create(lease_of(test_image(), "holder", /*ttl_s=*/60));
  REQUIRE(wait_settled(c, holder.id).state == lease_state::ready);
  const auto queued = c.create(lease_of(test_image(), "queued", /*ttl_s=*/60));
  raw_socket s(d.port());
  s.send(fmt::format("GET /v1/leases/{}?wait_s=30 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", queued.id));
  s.half_close();
  const auto started = std::chrono::steady_clock::now();
  CHECK(s.read_all().empty());  // closed without an answer, not after 30 s
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  c.release(queued.id);
  c.release(holder.id);
}

TEST_CASE("exec output is capped by the daemon, and a 100 MB command still reaches the client", "[hardening][limits]") {
  const engine_probe engine;
  const std::string instance = unique_instance("output");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());
  auto lease = client::lease::acquire(c, lease_of(test_image(), "loud"), 120s);
  // NUL bytes are the worst case: each is 6 bytes of JSON ("\u0000").
  const auto r = lease.exec({"sh", "-c", "head -c 100000000 /dev/zero; head -c 100000000 /dev/zero >&2"}, {}, {}, 120);
  CHECK(r.exit_code == 0);
  CHECK(r.truncated);
  CHECK(r.stdout_data.size() == 4u * 1024 * 1024);
  CHECK(r.stderr_data.size() == 4u * 1024 * 1024);
  CHECK(r.stdout_data.find_first_not_of('\0') == std::string::npos);
}

TEST_CASE("a daemon refuses another's live instance and sweeps only sandboxes whose maker is gone", "[hardening][instance]") {
  const engine_probe engine;
  const std::string instance = unique_instance("owner");
  leftover_guard cleanup(engine, instance);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  std::string boot = read_text("/proc/sys/kernel/random/boot_id").substr(0, 8);
  // Left by a daemon on another host sharing this engine, by one of this host that died, and by
  // a daemon from before owners were labelled.
  const auto foreign = engine.create_labelled(
      test_image(), {{"sandlot.daemon", instance}, {"sandlot.lease", "x1"}, {"sandlot.owner", "other-host/0000/1/1"}});
  const auto dead = engine.create_labelled(
      test_image(),
      {{"sandlot.daemon", instance}, {"sandlot.lease", "x2"}, {"sandlot.owner", fmt::format("{}/{}/4194000/1", host, boot)}});
  const auto legacy = engine.create_labelled(test_image(), {{"sandlot.daemon", instance}, {"sandlot.lease", "x3"}});

  daemon_options opts;
  opts.instance = instance;
  opts.extra_args = {"--sweep-interval", "1"};
  daemon_process first(opts);
  // The start-up sweep removed what dead makers left, and nothing of the foreign daemon's.
  CHECK_FALSE(engine.container_exists(dead));
  CHECK_FALSE(engine.container_exists(legacy));
  CHECK(engine.container_exists(foreign));
  // Periodic sweeps leave it alone too, and say why once.
  CHECK(wait_until([&] { return first.log().find("left alone") != std::string::npos; }, 10s));
  CHECK(engine.container_exists(foreign));

  // A second daemon with the same instance on this host does not start.
  daemon_options again = opts;
  again.start_timeout = 10s;
  CHECK_THROWS_WITH(daemon_process(again), Contains("is in use by a running orchestratord"));
  CHECK(first.running());
}

TEST_CASE("a lock wait cycle between two tests fails both waiting leases with the reason", "[hardening][locks]") {
  const engine_probe engine;
  const std::string instance = unique_instance("cycle");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 4);
  const client::client c(d.url());
  auto with_lock = [](std::string test, std::string lock) {
    auto req = lease_of(test_image(), std::move(test), 60);
    req.locks = {protocol::lock_spec{std::move(lock), protocol::lock_mode::exclusive}};
    return req;
  };
  const auto a1 = c.create(with_lock("test-a", "lock-x"));
  const auto b1 = c.create(with_lock("test-b", "lock-y"));
  REQUIRE(wait_settled(c, a1.id).state == lease_state::ready);
  REQUIRE(wait_settled(c, b1.id).state == lease_state::ready);
  const auto a2 = c.create(with_lock("test-a", "lock-y"));
  const auto b2 = c.create(with_lock("test-b", "lock-x"));
  for (const auto* id : {&a2.id, &b2.id}) {
    const auto v = wait_settled(c, *id, 20s);
    CHECK(v.state == lease_state::failed);
    REQUIRE(v.error.has_value());
    CHECK(v.error->code == "conflict");
    CHECK_THAT(v.error->message, Contains("lock wait cycle") && Contains("lock-x") && Contains("lock-y"));
  }
  // The leases that hold the locks are untouched.
  CHECK(c.get(a1.id).state == lease_state::ready);
  CHECK(c.get(b1.id).state == lease_state::ready);
}

TEST_CASE("a fixture whose setup throws fails at once for every holder, and fixtures have their own budget", "[hardening][fixtures]") {
  const engine_probe engine;
  const std::string instance = unique_instance("fixture-fail");
  leftover_guard cleanup(engine, instance);
  daemon_options opts;
  opts.instance = instance;
  opts.slots = 3;
  opts.extra_args = {"--max-fixtures", "1"};
  daemon_process d(opts);
  const client::client c(d.url());
  auto creator = client::lease::acquire(c, lease_of(test_image(), "creator"), 120s);
  auto waiter = client::lease::acquire(c, lease_of(test_image(), "waiter"), 120s);
  protocol::fixture_request spec;
  spec.name = "broken";
  spec.image = test_image();

  std::atomic<bool> joined{false};
  std::string waiter_error;
  std::chrono::steady_clock::duration waited{};
  std::thread second([&] {
    // Wait until the creator holds it (the run has a fixture), then join: joining first would make
    // this lease the creator.
    wait_until([&] {
      for (const auto& r : c.status().runs) {
        if (r.fixtures > 0) return true;
      }
      return false;
    }, 10s);
    const auto start = std::chrono::steady_clock::now();
    try {
      waiter.hold_fixture(spec, [](const client::fixture&) { return json::object(); }, 120s);
    } catch (const std::exception& e) {
      waiter_error = e.what();
    }
    waited = std::chrono::steady_clock::now() - start;
  });
  CHECK_THROWS_WITH(creator.hold_fixture(spec,
                                         [&](const client::fixture& f) -> json {
                                           // Throw only once the other test waits for it.
                                           wait_until([&] { return c.get_fixture(f.id(), {}).holders == 2; }, 30s);
                                           joined = true;
                                           throw std::runtime_error("could not seed the database");
                                         }),
                    Contains("could not seed the database"));
  second.join();
  CHECK(joined);
  CHECK_THAT(waiter_error, Contains("could not seed the database"));
  CHECK(waited < 20s);  // not its 120 s wait

  // A second live fixture is beyond --max-fixtures=1.
  spec.name = "first";
  auto held = creator.hold_fixture(spec, [](const client::fixture&) { return json::object(); });
  protocol::fixture_request other = spec;
  other.name = "second";
  const auto over = error_of(c.request("POST", fmt::format("/v1/leases/{}/fixtures", waiter.id()), json(other).dump()));
  CHECK(over.status == 429);
  CHECK_THAT(over.message, Contains("--max-fixtures=1"));
}

TEST_CASE("over --max-connections a connection gets 503 or its health check, and the daemon stays within its descriptors", "[hardening][connections]") {
  const engine_probe engine;
  const std::string instance = unique_instance("conns");
  leftover_guard cleanup(engine, instance);
  daemon_options opts;
  opts.instance = instance;
  opts.extra_args = {"--max-connections", "8"};
  daemon_process d(opts);
  const client::client c(d.url());
  const int baseline = open_fds(d.pid());
  {
    std::vector<std::unique_ptr<raw_socket>> idle;
    for (int i = 0; i < 60; ++i) idle.push_back(std::make_unique<raw_socket>(d.port()));
    // Health checks get through while the idle connections are held...
    CHECK(wait_until([&] { return c.request("GET", "/healthz").status == 200; }, 10s, 100ms));
    // ...API calls are told to come back, with a reason.
    const auto busy = error_of(c.request("GET", "/v1/status"));
    CHECK(busy.status == 503);
    CHECK(busy.code == "overloaded");
    CHECK_THAT(busy.message, Contains("--max-connections"));
    // 8 sessions, at most 16 in triage, and what the daemon had anyway.
    CHECK(open_fds(d.pid()) <= baseline + 8 + 16 + 4);
  }
  CHECK(wait_until([&] { return c.request("GET", "/v1/status").status == 200; }, 10s, 100ms));
}

TEST_CASE("out of descriptors the daemon backs off and logs a line a second, then serves again", "[hardening][connections]") {
  const engine_probe engine;
  const std::string instance = unique_instance("emfile");
  leftover_guard cleanup(engine, instance);
  daemon_options opts;
  opts.instance = instance;
  opts.nofile_soft = 64;
  opts.nofile_hard = 64;
  opts.extra_args = {"--max-connections", "1000"};  // deliberately above what the descriptors allow
  daemon_process d(opts);
  const client::client c(d.url());
  {
    std::vector<std::unique_ptr<raw_socket>> flood;
    for (int i = 0; i < 120; ++i) flood.push_back(std::make_unique<raw_socket>(d.port()));
    CHECK(wait_until([&] { return d.log().find("accept failed") != std::string::npos; }, 10s));
    const auto first = std::chrono::steady_clock::now();
    wait_until([&] { return std::chrono::steady_clock::now() - first > 3s; }, 5s, 100ms);  // hold the flood
    std::size_t lines = 0;
    const std::string log = d.log();
    for (std::size_t at = 0; (at = log.find("accept failed", at)) != std::string::npos; ++at) ++lines;
    INFO("accept failures logged: " << lines);
    CHECK(lines <= 8);  // a line a second, not millions
    CHECK(d.running());
  }
  CHECK(wait_until([&] { return c.request("GET", "/v1/status").status == 200; }, 15s, 200ms));

  // The soft limit is raised to the hard one at start.
  const std::string raised_instance = unique_instance("nofile");
  daemon_options raised;
  raised.instance = raised_instance;
  raised.nofile_soft = 256;
  raised.nofile_hard = 4096;
  daemon_process r(raised);
  CHECK_THAT(r.log(), Contains("raised the open-file limit from 256 to 4096"));
  CHECK_THAT(read_text(fmt::format("/proc/{}/limits", r.pid())), Contains("Max open files            4096"));
}

TEST_CASE("a run keeps the image its first lease got when the tag moves mid-run, and disk_mb bounds /scratch", "[hardening][images]") {
  const engine_probe engine;
  const std::string instance = unique_instance("pin");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());
  const std::string tag = fmt::format("127.0.0.1:5000/sandlot/pin-{}:1", getpid());
  const std::string original = engine.image_id(test_image());
  engine.tag_image(original, tag);
  struct untag {
    const engine_probe& e;
    std::string ref;
    ~untag() {
      try {
        e.remove_image(ref);
      } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): cleanup
      }
    }
  } drop{engine, tag};

  auto req = lease_of(tag, "first");
  req.run = fmt::format("pin-run-{}", getpid());
  req.disk_mb = 8;
  auto first = client::lease::acquire(c, req, 120s);
  CHECK(engine.container_image(first.sandbox().id) == original);
  // The tag now names other bits (as after a push and another pull of it).
  const std::string moved = engine.commit(first.sandbox().id, tag);
  REQUIRE(moved != original);

  req.test = "second";
  auto second = client::lease::acquire(c, req, 120s);
  CHECK(engine.container_image(second.sandbox().id) == original);
  CHECK(c.run(req.run)["images"][tag] == original);
  second.release();
  auto other_run = req;
  other_run.run += "-next";
  auto third = client::lease::acquire(c, other_run, 120s);
  CHECK(engine.container_image(third.sandbox().id) == moved);
  third.release();

  // The writable space is bounded: 8 MiB of /scratch, whatever the storage driver.
  const auto fill =
      first.exec({"sh", "-c", "cd /scratch 2>/dev/null || cd /; dd if=/dev/zero of=fill bs=1048576 count=32"});
  CHECK(fill.exit_code != 0);
  CHECK_THAT(fill.stderr_data, Contains("No space left"));
}

TEST_CASE("a lease's destructor is bounded even when the daemon is wedged", "[hardening][clients]") {
  const engine_probe engine;
  const std::string instance = unique_instance("wedged");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());
  std::chrono::steady_clock::duration took{};
  {
    auto lease = client::lease::acquire(c, lease_of(test_image(), "wedged", /*ttl_s=*/12), 60s);
    // A daemon that takes connections and never answers: stopped, its socket still listening.
    d.send_signal(SIGSTOP);
    std::this_thread::sleep_for(4500ms);  // a heartbeat (every ttl/3 = 4 s) is now stuck in flight
    const auto start = std::chrono::steady_clock::now();
    { auto gone = std::move(lease); }
    took = std::chrono::steady_clock::now() - start;
  }
  d.send_signal(SIGCONT);
  INFO("the destructor took " << std::chrono::duration<double>(took).count() << " s");
  CHECK(took <= 11s);
  // The daemon, back, reaps the lease on its ttl.
  CHECK(wait_until([&] { return c.status().leases.empty(); }, 30s, 250ms));
}
