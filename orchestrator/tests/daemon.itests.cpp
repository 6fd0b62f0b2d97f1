// Integration tests: each test starts its own orchestratord process (own port, own --instance)
// against the real container engine, talks to it over HTTP like a user, and checks the engine
// directly for what the daemon claims (the way a user would run `docker ps`).
//
// Needs the environment of docs/test-environment.md (dockerd, the loopback registry and its images):
//   scripts/e2e-env up && set -a && . /tmp/sandlot-e2e/env && set +a
//   ctest --test-dir build/dev -L integration --output-on-failure
// A failing test prints the logs of the daemons it started (run at --log-level debug).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <latch>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"
#include "support/itest_common.hpp"
#include "support/tcp_forwarder.hpp"

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using sandlot::itest::daemon_process;
using sandlot::itest::engine_probe;
using sandlot::itest::unique_instance;
using sandlot::itest::wait_until;
using sandlot::protocol::lease_state;
namespace client = sandlot::client;
namespace protocol = sandlot::protocol;
using Catch::Matchers::Contains;

using sandlot::itest::api_error_seen;
using sandlot::itest::cold_image;
using sandlot::itest::env_or;
using sandlot::itest::error_of;
using sandlot::itest::lease_of;
using sandlot::itest::leftover_guard;
using sandlot::itest::test_image;
using sandlot::itest::wait_settled;

/// A client in a child process, for tests that kill one with SIGKILL. `body` runs in the child and
/// calls `report_and_wait(line)` once it holds what it should: the line goes to the parent, and the
/// child sleeps until it is killed (at the latest when this object goes out of scope, or when the
/// test process dies). An exception in `body` is reported as "ERR <what>".
class client_process {
 public:
  using report_fn = std::function<void(const std::string&)>;

  explicit client_process(const std::function<void(const report_fn&)>& body) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const pid_t parent = getpid();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Never returns into Catch.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      ::close(fds[0]);
      auto send = [fd = fds[1]](const std::string& line) {
        const std::string msg = line + "\n";
        (void)!::write(fd, msg.data(), msg.size());
      };
      try {
        body([&](const std::string& line) {
          send(line);
          for (;;) ::pause();
        });
        send("ERR the client body returned without reporting");
      } catch (const std::exception& e) {
        send(fmt::format("ERR {}", e.what()));
      } catch (...) {
        send("ERR unknown exception");
      }
      _exit(1);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  client_process(const client_process&) = delete;
  client_process& operator=(const client_process&) = delete;
  ~client_process() {
    kill();
    if (fd_ >= 0) ::close(fd_);
  }

  /// The child's report line (without the newline); waits at most 120 s for it.
  const std::string& report() {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (report_.find('\n') == std::string::npos && fd_ >= 0 && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) continue;
      char buf[512];
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      report_.append(buf, static_cast<std::size_t>(n));
    }
    if (auto nl = report_.find('\n'); nl != std::string::npos) report_.resize(nl);
    return report_;
  }

  /// SIGKILL, and reap it.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string report_;
};

std::size_t count_lines_containing(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

/// The registry access-log request line a pull of `image` by tag produces, quoted as the log
/// quotes it: "HEAD /v2/<name>/manifests/<tag> HTTP/1.1" (see docs/test-environment.md).
std::string manifest_head_line(const std::string& image) {
  std::string rest = image;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string first = rest.substr(0, slash);
    if (first.find_first_of(".:") != std::string::npos || first == "localhost") rest = rest.substr(slash + 1);
  }
  std::string tag = "latest";
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  return fmt::format("\"HEAD /v2/{}/manifests/{} HTTP/1.1\"", rest, tag);
}

/// A metric's value from the daemon's /metrics text, or -1 when absent.
double metric_value(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

/// One HTTP request over a plain socket, so a test can tell "the daemon answered" from "the
/// connection closed without an answer", and know when the request has been sent.
struct raw_answer {
  bool answered = false;  // a status line arrived
  int status = 0;
  std::string body;
  std::string note;  // what happened when nothing was answered
};

raw_answer raw_http(unsigned short port, const std::string& method, const std::string& target,
                    std::chrono::milliseconds timeout, std::atomic<bool>* sent = nullptr) {
  raw_answer out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.note = fmt::format("socket: {}", std::strerror(errno));
    return out;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    out.note = fmt::format("connect: {}", std::strerror(errno));
    ::close(fd);
    return out;
  }
  const std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n"
                                      "Content-Length: 0\r\n\r\n",
                                      method, target, port);
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    out.note = fmt::format("send: {}", std::strerror(errno));
    ::close(fd);
    return out;
  }
  if (sent != nullptr) *sent = true;
  std::string data;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      out.note = "timed out waiting for the answer";
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // the deadline check above ends it
    char buf[16 * 1024];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      data.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    out.note = n == 0 ? "the daemon closed the connection" : fmt::format("recv: {}", std::strerror(errno));
    break;
  }
  ::close(fd);
  if (data.rfind("HTTP/1.", 0) == 0 && data.size() > 12) {
    out.answered = true;
    out.status = std::atoi(data.substr(9, 3).c_str());
    if (auto end = data.find("\r\n\r\n"); end != std::string::npos) out.body = data.substr(end + 4);
  } else if (!data.empty()) {
    out.note += fmt::format(" (after {} bytes that are not an HTTP answer)", data.size());
  }
  return out;
}

}  // namespace

SANDLOT_ITEST_LOG_PRINTER()

// ---------------------------------------------------------------------------------------------

TEST_CASE("six concurrent leases on a two-slot daemon never have more than two sandboxes", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("slots");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client observer(d.url());

  // The sampler looks every 100 ms at the engine (containers with our label) and at the daemon's
  // own account (slots_in_use), while six clients run.
  std::mutex m;
  std::condition_variable wake;
  bool stop = false;
  int samples = 0;
  std::size_t max_containers = 0;
  int max_in_use = 0;
  int max_total = 0;
  std::vector<std::string> sampler_errors;
  std::thread sampler([&] {
    std::unique_lock lock(m);
    while (!stop) {
      lock.unlock();
      std::string failure;
      std::size_t containers = 0;
      protocol::status_view st;
      try {
        containers = engine.containers_of(instance).size();
        st = observer.status();
      } catch (const std::exception& e) {
        failure = e.what();
      }
      lock.lock();
      if (failure.empty()) {
        ++samples;
        max_containers = std::max(max_containers, containers);
        max_in_use = std::max(max_in_use, st.slots_in_use);
        max_total = std::max(max_total, st.slots_total);
      } else {
        sampler_errors.push_back(std::move(failure));
      }
      wake.wait_for(lock, 100ms, [&] { return stop; });  // the sampling period
    }
  });

  struct outcome {
    std::string error;
    int hostname_exit = -1;
    std::string hostname_out;
    std::string sandbox_hostname;
    int hold_exit = -1;
  };
  constexpr int clients = 6;
  std::vector<outcome> outcomes(clients);
  std::vector<std::thread> workers;
  for (int i = 0; i < clients; ++i) {
    workers.emplace_back([&, i] {
      auto& out = outcomes[static_cast<std::size_t>(i)];
      try {
        const client::client own(d.url());  // each test process has its own client
        auto lease = client::lease::acquire(own, lease_of(test_image(), fmt::format("client-{}", i)), 120s);
        out.sandbox_hostname = lease.sandbox().hostname;
        auto r = lease.exec({"hostname"});
        out.hostname_exit = r.exit_code;
        out.hostname_out = r.stdout_data;
        out.hold_exit = lease.exec({"sleep", "1"}).exit_code;  // the test uses its sandbox for ~1 s
        lease.release();
      } catch (const std::exception& e) {
        out.error = e.what();
      }
    });
  }
  for (auto& w : workers) w.join();
  {
    std::lock_guard lock(m);
    stop = true;
  }
  wake.notify_all();
  sampler.join();

  INFO("samples: " << samples << ", most containers at once: " << max_containers
                   << ", most slots in use: " << max_in_use);
  for (const auto& e : sampler_errors) UNSCOPED_INFO("sampler: " << e);
  CHECK(sampler_errors.empty());
  CHECK(samples >= 10);  // the clients take well over a second: the sampler really watched
  CHECK(max_total == 2);
  CHECK(max_containers <= 2);
  CHECK(max_in_use <= 2);
  CHECK(max_in_use == 2);  // and the budget was used, not serialised down to one
  for (int i = 0; i < clients; ++i) {
    const auto& out = outcomes[static_cast<std::size_t>(i)];
    INFO("client " << i);
    CHECK(out.error == "");
    CHECK(out.hostname_exit == 0);
    CHECK(out.hostname_out == out.sandbox_hostname + "\n");
    CHECK(out.hold_exit == 0);
  }
  // DELETE returns only once the engine confirmed removal: nothing may remain, at once.
  CHECK(engine.containers_of(instance).empty());
  const auto st = observer.status();
  CHECK(st.slots_in_use == 0);
  CHECK(st.queue_length == 0);
  CHECK(st.leases.empty());
}

TEST_CASE("five concurrent leases on a cold image cause one manifest pull", "[daemon]") {
  const std::string registry_log = env_or("SANDLOT_REGISTRY_LOG", "");
  if (registry_log.empty() || !std::filesystem::exists(registry_log)) {
    WARN("SANDLOT_ITEST_SKIPPED: SANDLOT_REGISTRY_LOG is unset or missing ('"
         << registry_log << "'), so pulls cannot be counted; run scripts/e2e-env up and source its env");
    return;
  }
  const engine_probe engine;
  const std::string image = cold_image();
  const std::string head = manifest_head_line(image);
  // Cold means cold: the engine must really pull. (The force also untags it from containers.)
  engine.remove_image(image);
  REQUIRE_FALSE(engine.image_exists(image));
  struct image_cleanup {
    const engine_probe& engine;
    std::string image;
    ~image_cleanup() {
      try {
        engine.remove_image(image);  // so the next run is cold again
      } catch (const std::exception& e) {
        std::cout << "cleanup: " << e.what() << "\n";
      }
    }
  } remove_after{engine, image};

  const std::string instance = unique_instance("cold");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 5);
  const client::client observer(d.url());
  const std::size_t before = count_lines_containing(registry_log, head);

  constexpr int clients = 5;
  std::latch start_together(clients);
  std::vector<std::string> errors(clients);
  std::vector<std::optional<client::lease>> leases(clients);
  std::vector<std::thread> workers;
  for (int i = 0; i < clients; ++i) {
    workers.emplace_back([&, i] {
      const auto slot = static_cast<std::size_t>(i);
      try {
        const client::client own(d.url());
        start_together.arrive_and_wait();  // all five ask at once: a thundering herd
        leases[slot].emplace(client::lease::acquire(own, lease_of(image, fmt::format("cold-{}", i)), 120s));
      } catch (const std::exception& e) {
        errors[slot] = e.what();
      }
    });
  }
  for (auto& w : workers) w.join();

  for (int i = 0; i < clients; ++i) {
    const auto slot = static_cast<std::size_t>(i);
    INFO("client " << i << ": " << errors[slot]);
    CHECK(errors[slot] == "");
    CHECK((leases[slot] && leases[slot]->view().state == lease_state::ready));
  }
  // The access log line is written when the HEAD completes, before the pull goes on; allow the
  // registry a moment to flush it, then count exactly.
  wait_until([&] { return count_lines_containing(registry_log, head) >= before + 1; }, 10s);
  const std::size_t after = count_lines_containing(registry_log, head);
  INFO("registry log " << registry_log << ": " << head << " lines before " << before << ", after " << after);
  CHECK(after - before == 1);
  // The daemon's own account agrees (this one is immune to anyone else pulling from the registry).
  const auto metrics = observer.request("GET", "/metrics");
  CHECK(metric_value(metrics.body, "sandlot_pulls_started_total") == 1.0);

  for (auto& l : leases) {
    if (l) l->release();
  }
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a client killed while holding a lease loses its sandbox within ttl", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("ttl");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());

  const std::string url = d.url();
  const protocol::lease_request req = lease_of(test_image(), "killed-client", /*ttl_s=*/5);
  client_process child([&](const client_process::report_fn& report_and_wait) {
    // Leases (heartbeating in the background), reports, then hangs until killed.
    const client::client own(url);
    auto lease = client::lease::acquire(own, req, 120s);
    report_and_wait(fmt::format("OK {} {}", lease.id(), lease.sandbox().id));
  });
  const std::string report = child.report();
  INFO("client process reported: " << report);
  REQUIRE(report.rfind("OK ", 0) == 0);
  std::istringstream fields(report.substr(3));
  std::string lease_id, container_id;
  fields >> lease_id >> container_id;
  REQUIRE(!lease_id.empty());
  REQUIRE(!container_id.empty());
  REQUIRE(engine.container_exists(container_id));

  child.kill();
  const auto killed_at = std::chrono::steady_clock::now();

  // ttl_s=5, so the sandbox must be gone well within 15 s of the last heartbeat.
  const bool gone = wait_until([&] { return !engine.container_exists(container_id); }, 15s, 100ms);
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  INFO("sandbox gone after " << took << " s");
  CHECK(gone);

  // The lease reads as expired once its sandbox is removed.
  wait_until([&] { return protocol::is_final(c.get(lease_id).state); }, 5s);
  const auto v = c.get(lease_id);
  CHECK(v.state == lease_state::expired);
  CHECK(!v.sandbox);
  CHECK((v.error && v.error->code == "lease_gone"));

  const auto renew = error_of(c.request("POST", fmt::format("/v1/leases/{}/renew", lease_id)));
  CHECK(renew.status == 410);
  CHECK(renew.code == "lease_gone");
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a client long-polling past its ttl keeps its queued lease", "[daemon]") {
  // docs/api.md: "the lease expires if no call touches it for this long", and a long-poll is a
  // call. A client blocked in GET ?wait_s=N (N > ttl_s) is alive and waiting, not crashed.
  const engine_probe engine;
  const std::string instance = unique_instance("longpoll");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());

  const auto holder = c.create(lease_of(test_image(), "holder", 120));
  REQUIRE(wait_settled(c, holder.id).state == lease_state::ready);
  const auto waiter = c.create(lease_of(test_image(), "waiter", /*ttl_s=*/2));
  REQUIRE(c.get(waiter.id).state == lease_state::queued);

  const auto started = std::chrono::steady_clock::now();
  const auto answer = raw_http(d.port(), "GET", fmt::format("/v1/leases/{}?wait_s=5", waiter.id), 30s);
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  INFO("long-poll answered after " << took << " s: " << answer.status << " " << answer.body << answer.note);
  REQUIRE(answer.answered);
  CHECK(answer.status == 200);
  const json body = json::parse(answer.body, nullptr, /*allow_exceptions=*/false);
  REQUIRE(body.is_object());
  CHECK(body.value("state", "") == "queued");
  CHECK(took >= 4.5);  // it waited the whole wait_s, with nothing to report

  // And it is still a live lease: once the slot frees, it gets its sandbox.
  c.release(holder.id);
  CHECK(wait_settled(c, waiter.id).state == lease_state::ready);
  c.release(waiter.id);
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("SIGTERM removes every sandbox and exits 0", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("sigterm");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());

  const auto first = c.create(lease_of(test_image(), "held-1", 120));
  const auto second = c.create(lease_of(test_image(), "held-2", 120));
  const auto queued = c.create(lease_of(test_image(), "queued", 120));
  const auto a = wait_settled(c, first.id);
  const auto b = wait_settled(c, second.id);
  REQUIRE(a.state == lease_state::ready);
  REQUIRE(b.state == lease_state::ready);
  const auto q = c.get(queued.id);
  REQUIRE(q.state == lease_state::queued);
  CHECK(q.position == 0);
  REQUIRE(engine.containers_of(instance).size() == 2);

  // A client long-polls the queued lease while the daemon is told to stop.
  std::atomic<bool> sent{false};
  raw_answer poll_answer;
  // (A jthread: should a REQUIRE below throw, it still joins; the poll itself is bounded.)
  std::jthread long_poll([&] {
    poll_answer = raw_http(d.port(), "GET", fmt::format("/v1/leases/{}?wait_s=30", queued.id), 60s, &sent);
  });
  REQUIRE(wait_until([&] { return sent.load(); }, 10s));
  // The request bytes are in the daemon's socket; two more round trips on its single thread
  // let it read the long-poll before the signal lands.
  c.status();
  c.status();
  CHECK(c.get(queued.id).state == lease_state::queued);

  const auto signalled_at = std::chrono::steady_clock::now();
  d.send_signal(SIGTERM);
  const auto status = d.wait_exit(30s);
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - signalled_at).count();
  long_poll.join();

  INFO("daemon stopped after " << took << " s");
  REQUIRE(status.has_value());
  INFO("daemon " << status->describe());
  CHECK(status->exited);
  CHECK(status->code == 0);
  CHECK(engine.containers_of(instance).empty());
  CHECK_FALSE(engine.container_exists(a.sandbox->id));
  CHECK_FALSE(engine.container_exists(b.sandbox->id));

  // What the daemon does: it answers the waiting long-poll with the lease failed (shutting_down)
  // before it exits, rather than dropping the connection.
  INFO("long-poll: answered=" << poll_answer.answered << " status=" << poll_answer.status << " body="
                              << poll_answer.body << " note=" << poll_answer.note);
  REQUIRE(poll_answer.answered);
  CHECK(poll_answer.status == 200);
  const json body = json::parse(poll_answer.body, nullptr, /*allow_exceptions=*/false);
  REQUIRE(body.is_object());
  CHECK(body.value("state", "") == "failed");
  CHECK(body.contains("error"));
  if (body.contains("error")) CHECK(body["error"].value("code", "") == "shutting_down");
}

TEST_CASE("a restarted daemon removes what its earlier instance left", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("restart");
  leftover_guard cleanup(engine, instance);

  std::string container_id;
  {
    daemon_process first(instance, 2);
    const client::client c(first.url());
    const auto created = c.create(lease_of(test_image(), "left-behind", 300));
    const auto v = wait_settled(c, created.id);
    REQUIRE(v.state == lease_state::ready);
    container_id = v.sandbox->id;
    const auto st = first.kill_hard();  // no chance to clean up
    CHECK(st.signal == SIGKILL);
  }
  REQUIRE(engine.container_exists(container_id));  // the leftover

  daemon_process second(instance, 2);  // returns once /healthz answers
  const auto healthy_at = std::chrono::steady_clock::now();
  const bool gone = wait_until([&] { return !engine.container_exists(container_id); }, 5s, 100ms);
  INFO("leftover gone " << std::chrono::duration<double>(std::chrono::steady_clock::now() - healthy_at).count()
                        << " s after the new daemon was healthy");
  CHECK(gone);
  CHECK(engine.containers_of(instance).empty());
  const auto st = second.terminate(30s);
  REQUIRE(st.has_value());
  CHECK(st->exited);
  CHECK(st->code == 0);
}

TEST_CASE("errors are clear", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("errors");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 2);
  const client::client c(d.url());

  auto check_error = [](const client::client::response& r, int status, const std::string& code) {
    const auto e = error_of(r);
    INFO("answer: " << r.status << " " << r.body);
    CHECK(e.status == status);
    CHECK(e.code == code);
    CHECK(e.message.size() > 10);  // says what to do, not just a code
    return e;
  };

  {
    INFO("a body that is not JSON");
    check_error(c.request("POST", "/v1/leases", "{\"image\": "), 400, "bad_json");
  }
  {
    INFO("a lease request without its image");
    const auto e = check_error(c.request("POST", "/v1/leases", R"({"run": "r"})"), 400, "invalid_field");
    CHECK_THAT(e.message, Contains("'image'"));
  }
  {
    INFO("a lease that does not exist");
    check_error(c.request("GET", "/v1/leases/0123456789ab"), 404, "not_found");
  }
  {
    INFO("more slots than the daemon's budget");
    auto req = lease_of(test_image(), "too-big");
    req.slots = 3;
    const auto e = check_error(c.request("POST", "/v1/leases", json(req).dump()), 400, "invalid_field");
    CHECK_THAT(e.message, Contains("slots"));
  }
  {
    INFO("an image the registry does not have");
    const std::string image = "127.0.0.1:5000/sandlot/does-not-exist:1";
    const auto created = c.create(lease_of(image, "unpullable"));
    const auto v = wait_settled(c, created.id, 120s);
    CHECK(v.state == lease_state::failed);
    REQUIRE(v.error.has_value());
    CHECK(v.error->code == "image_pull_failed");
    CHECK_THAT(v.error->message, Contains(image));
    // The client library's one-liner reports the same, with the daemon's code.
    try {
      auto l = client::lease::acquire(c, lease_of(image, "unpullable-again"), 120s);
      FAIL("lease of an unpullable image became ready");
    } catch (const client::error& e) {
      CHECK(e.code() == "image_pull_failed");
      CHECK_THAT(std::string(e.what()), Contains(image));
    }
  }
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("exec is faithful", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("exec");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());
  auto lease = client::lease::acquire(c, lease_of(test_image(), "exec"), 120s);

  {
    INFO("stdout");
    const auto r = lease.exec({"echo", "hello"});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "hello\n");
    CHECK(r.stderr_data == "");
  }
  {
    INFO("stderr and exit code, kept apart");
    const auto r = lease.exec({"sh", "-c", "echo out; echo oops >&2; exit 3"});
    CHECK(r.exit_code == 3);
    CHECK(r.stdout_data == "out\n");
    CHECK(r.stderr_data == "oops\n");
  }
  {
    INFO("exit code");
    CHECK(lease.exec({"sh", "-c", "exit 42"}).exit_code == 42);
    CHECK(lease.exec({"false"}).exit_code == 1);
  }
  {
    INFO("argv is not interpreted by a shell");
    const auto r = lease.exec({"echo", "$HOME", "a;b", "`id`", "*", "x  y", "'q'"});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "$HOME a;b `id` * x  y 'q'\n");
  }
  {
    INFO("env reaches the command");
    const auto r = lease.exec({"sh", "-c", "echo \"$SANDLOT_ITEST\""}, std::nullopt, {{"SANDLOT_ITEST", "a b=c"}});
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "a b=c\n");
  }
  {
    // 900 KiB: more than the pipes and socket buffers between daemon, engine and process hold
    // (~64 KiB per pipe, ~208 KiB per unix socket here), so a daemon that wrote all of stdin
    // before reading any output would stall; and under the 1 MiB request body limit.
    INFO("stdin: 900 KiB through cat comes back byte-identical (output flows while stdin is written)");
    constexpr std::size_t size = 900 * 1024;
    std::string input;
    input.reserve(size);
    std::uint32_t x = 2463534242u;  // xorshift: varied printable bytes, reproducible
    while (input.size() < size) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      input.push_back(input.size() % 97 == 96 ? '\n' : static_cast<char>('0' + x % 75));
    }
    const auto r = lease.exec({"cat"}, input, {}, 60);
    CHECK(r.exit_code == 0);
    CHECK_FALSE(r.timed_out);
    CHECK_FALSE(r.truncated);
    CHECK(r.stdout_data.size() == input.size());
    CHECK(r.stdout_data == input);
    CHECK(r.stderr_data == "");
  }

  const std::string id = lease.id();
  lease.release();
  {
    INFO("exec on a released lease");
    const auto e = error_of(c.request("POST", fmt::format("/v1/leases/{}/exec", id), R"({"argv": ["true"]})"));
    CHECK(e.status == 410);
    CHECK(e.code == "lease_gone");
  }
  CHECK(engine.containers_of(instance).empty());
}

// --- a remote engine over tcp:// --------------------------------------------------------------

TEST_CASE("a daemon drives a remote engine over tcp", "[daemon]") {
  const engine_probe engine;
  const std::string instance = unique_instance("tcp");
  leftover_guard cleanup(engine, instance);
  // The local engine's unix socket on a loopback TCP port: the daemon's tcp:// code path talks to
  // the real engine (including exec's upgraded connection) without reconfiguring dockerd.
  sandlot::itest::tcp_forwarder forwarder(sandlot::itest::forward_target::unix_socket("/var/run/docker.sock"));
  sandlot::itest::daemon_options opts;
  opts.instance = instance;
  opts.slots = 1;
  opts.extra_args = {"--docker-host", fmt::format("tcp://127.0.0.1:{}", forwarder.port())};
  daemon_process d(opts);
  const client::client c(d.url());
  {
    auto lease = client::lease::acquire(c, lease_of(test_image(), "tcp"), 120s);
    const auto r = lease.exec({"cat"}, std::string("through tcp"));
    CHECK(r.exit_code == 0);
    CHECK(r.stdout_data == "through tcp");
    CHECK(engine.containers_of(instance).size() == 1);
  }
  CHECK(engine.containers_of(instance).empty());
  CHECK(forwarder.connections() > 0);  // the daemon really went through the tcp:// address
}

TEST_CASE("two runs on one slot take turns whatever their queue lengths", "[daemon][runs]") {
  const engine_probe engine;
  const std::string instance = unique_instance("runs");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 1);
  const client::client c(d.url());

  // Run A queues four leases, then run B two; the one slot is A's first.
  auto queue = [&](const std::string& run, const std::string& test) {
    auto req = lease_of(test_image(), test);
    req.run = run;
    return c.create(req).id;
  };
  const std::string a = fmt::format("itest-{}-a", getpid()), b = fmt::format("itest-{}-b", getpid());
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(queue(a, fmt::format("a{}", i)));
  for (int i = 0; i < 2; ++i) ids.push_back(queue(b, fmt::format("b{}", i)));
  auto name_of = [&](const std::string& id) { return c.get(id).test; };

  std::vector<std::string> served;
  std::string current = ids[0];
  for (int turn = 0; turn < 5; ++turn) {
    REQUIRE(c.get(current, 60).state == lease_state::ready);
    served.push_back(name_of(current));
    c.release(current);
    // Exactly one queued lease is admitted next: find it.
    std::string next;
    wait_until([&] {
      for (const auto& id : ids) {
        auto v = c.get(id);
        if (v.state != lease_state::queued && !protocol::is_final(v.state)) next = id;
      }
      return !next.empty();
    }, 30s, 50ms);
    REQUIRE(!next.empty());
    current = next;
  }
  served.push_back(name_of(current));
  c.release(current);
  CHECK(served == std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "a3"});
  // The runs' timelines agree, and each run's leases got the one lane.
  auto run_a = json::parse(c.request("GET", "/v1/runs/" + a).body);
  REQUIRE(run_a.at("leases").size() == 4);
  for (const auto& l : run_a.at("leases")) CHECK(l.at("lanes") == json::array({0}));
  CHECK(engine.containers_of(instance).empty());
}

TEST_CASE("a fixture whose creator is killed mid-setup is made anew for a waiter", "[daemon][fixtures]") {
  const engine_probe engine;
  const std::string instance = unique_instance("fixture");
  leftover_guard cleanup(engine, instance);
  daemon_process d(instance, 3);
  const client::client c(d.url());
  const std::string url = d.url();

  protocol::fixture_request spec;
  spec.name = "half-made";
  spec.image = test_image();
  spec.grace_s = 0;
  // The creator: a process holding a lease (ttl 3 s) that starts the setup and dies in it. Its
  // request is made here, so that it is of this process's run.
  const auto creator_req = lease_of(test_image(), "creator", /*ttl_s=*/3);
  client_process creator([&](const client_process::report_fn& report_and_wait) {
    const client::client own(url);
    auto lease = client::lease::acquire(own, creator_req, 120s);
    auto f = own.acquire_fixture(lease.id(), spec);
    if (f.role != "creator" || !f.sandbox) throw std::runtime_error("expected to create the fixture, got " + f.role);
    protocol::exec_request half;
    half.argv = {"touch", "/half-done"};
    own.fixture_exec(f.id, half, lease.id());
    report_and_wait(fmt::format("OK {} {}", f.id, f.sandbox->id));
  });
  const std::string report = creator.report();
  INFO("creator reported: " << report);
  REQUIRE(report.rfind("OK ", 0) == 0);
  std::istringstream fields(report.substr(3));
  std::string fixture_id, first_sandbox;
  fields >> fixture_id >> first_sandbox;

  auto waiter = client::lease::acquire(c, lease_of(test_image(), "waiter"), 120s);
  auto seen = c.acquire_fixture(waiter.id(), spec);
  CHECK(seen.id == fixture_id);
  CHECK(seen.role == "waiting");
  CHECK(!seen.sandbox);  // never the half-made one

  creator.kill();
  // Its lease expires within ttl_s; the waiter's long-poll then returns with the creator role.
  auto now = c.get_fixture(fixture_id, waiter.id(), 30);
  REQUIRE(now.role == "creator");
  CHECK(now.creations == 2);
  REQUIRE(now.sandbox);
  CHECK(now.sandbox->id != first_sandbox);
  CHECK(!engine.container_exists(first_sandbox));
  protocol::exec_request probe;
  probe.argv = {"test", "-e", "/half-done"};
  CHECK(c.request("POST", "/v1/fixtures/" + fixture_id + "/exec", R"({"argv":["true"]})").status == 409);
  CHECK(c.fixture_exec(fixture_id, probe, waiter.id()).exit_code == 1);
  auto ready = c.fixture_ready(fixture_id, waiter.id(), json{{"by", "waiter"}});
  CHECK(ready.state == "ready");

  // Its last holder gone (grace 0), the fixture is torn down with its sandbox.
  waiter.release();
  CHECK(wait_until([&] { return c.get_fixture(fixture_id, "").state == "gone"; }, 10s));
  CHECK(wait_until([&] { return engine.containers_of(instance).empty(); }, 10s));
}

TEST_CASE("a daemon with a token file serves only clients that send its token", "[daemon][auth]") {
  const engine_probe engine;
  const std::string instance = unique_instance("auth");
  leftover_guard cleanup(engine, instance);
  const auto token_path = std::filesystem::temp_directory_path() / fmt::format("sandlot-token-{}", getpid());
  const std::string token = fmt::format("tok-{}-{}", getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
  std::ofstream(token_path) << token << "\n";
  struct remove_file {
    std::filesystem::path p;
    ~remove_file() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } remove_token{token_path};
  sandlot::itest::daemon_options opts;
  opts.instance = instance;
  opts.slots = 2;
  opts.extra_args = {"--token-file", token_path.string()};
  daemon_process d(opts);

  const client::client anonymous(d.url());
  CHECK(anonymous.request("GET", "/healthz").status == 200);
  for (const auto& [method, target] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/status"}, {"GET", "/metrics"}, {"GET", "/readyz"}, {"POST", "/v1/leases"},
           {"GET", "/v1/runs"}, {"DELETE", "/v1/leases/abc"}}) {
    INFO(method << " " << target);
    const auto e = error_of(anonymous.request(method, target, R"({"image":"x:1"})"));
    CHECK(e.status == 401);
    CHECK(e.code == "unauthorized");
  }
  client::options wrong_opts;
  wrong_opts.url = d.url();
  wrong_opts.token = token + "x";
  CHECK(client::client(wrong_opts).request("GET", "/v1/status").status == 401);

  client::options opts_ok;
  opts_ok.url = d.url();
  opts_ok.token = token;
  const client::client trusted(opts_ok);
  {
    auto lease = client::lease::acquire(trusted, lease_of(test_image(), "with-token"), 120s);
    CHECK(lease.exec({"echo", "in"}).stdout_data == "in\n");
  }
  CHECK(engine.containers_of(instance).empty());
  CHECK(d.log().find(token) == std::string::npos);  // never logged
}

TEST_CASE("a run with too many leases queued gets 429 and the others are untouched", "[daemon][limits]") {
  const engine_probe engine;
  const std::string instance = unique_instance("queue-cap");
  leftover_guard cleanup(engine, instance);
  sandlot::itest::daemon_options opts;
  opts.instance = instance;
  opts.slots = 1;
  opts.extra_args = {"--max-queued-per-run", "2"};
  daemon_process d(opts);
  const client::client c(d.url());

  std::vector<std::string> ids;
  ids.push_back(c.create(lease_of(test_image(), "holder")).id);  // admitted: takes the one slot
  REQUIRE(c.get(ids[0], 60).state == lease_state::ready);
  ids.push_back(c.create(lease_of(test_image(), "q1")).id);
  ids.push_back(c.create(lease_of(test_image(), "q2")).id);
  const auto e = error_of(c.request("POST", "/v1/leases", json(lease_of(test_image(), "q3")).dump()));
  CHECK(e.status == 429);
  CHECK(e.code == "too_many_requests");
  CHECK_THAT(e.message, Catch::Contains("--max-queued-per-run=2"));
  // Another run is not held to this run's queue.
  auto other = lease_of(test_image(), "other-run");
  other.run += "-other";
  ids.push_back(c.create(other).id);
  CHECK(c.get(ids[1]).state == lease_state::queued);
  for (const auto& id : ids) c.release(id);
  CHECK(engine.containers_of(instance).empty());
}

namespace {

/// A raw loopback TCP connection to a daemon, for requests no well-behaved client sends.
class raw_connection {
 public:
  explicit raw_connection(unsigned short port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  }
  raw_connection(const raw_connection&) = delete;
  raw_connection& operator=(const raw_connection&) = delete;
  ~raw_connection() { ::close(fd_); }

  /// Sends what it can; false once the daemon closed its end.
  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  /// Everything the daemon sends until it closes the connection or `within` passes; `closed`
  /// tells which.
  std::string read_all(std::chrono::milliseconds within, bool& closed) {
    std::string out;
    closed = false;
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

}  // namespace

TEST_CASE("slow and oversized requests are cut off and the daemon serves on", "[daemon][limits]") {
  const engine_probe engine;
  const std::string instance = unique_instance("hostile");
  leftover_guard cleanup(engine, instance);
  sandlot::itest::daemon_options opts;
  opts.instance = instance;
  opts.slots = 1;
  opts.extra_args = {"--read-timeout", "2"};
  daemon_process d(opts);
  const client::client c(d.url());

  SECTION("a client that never finishes its headers is disconnected after the read timeout") {
    raw_connection slow(d.port());
    REQUIRE(slow.send("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
    // Meanwhile everyone else is served.
    CHECK(c.request("GET", "/v1/status").status == 200);
    bool closed = false;
    slow.read_all(6s, closed);
    CHECK(closed);
  }
  SECTION("headers over 16 KiB get 413 and the connection is closed") {
    raw_connection big(d.port());
    big.send("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(20 * 1024, 'a') + "\r\n\r\n");
    bool closed = false;
    const auto answer = big.read_all(5s, closed);
    CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
    CHECK(answer.find("payload_too_large") != std::string::npos);
  }
  SECTION("a body over 1 MiB gets 413") {
    raw_connection big(d.port());
    big.send("POST /v1/leases HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
             std::to_string(2 * 1024 * 1024) + "\r\n\r\n");
    bool closed = false;
    const auto answer = big.read_all(5s, closed);
    CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
  }
  SECTION("garbage gets 400 bad_request") {
    raw_connection junk(d.port());
    static constexpr char tls_hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
    junk.send(std::string_view(tls_hello, sizeof tls_hello - 1));
    bool closed = false;
    const auto answer = junk.read_all(5s, closed);
    CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);
  }
  // Whatever came before, the daemon still serves.
  CHECK(c.request("GET", "/healthz").status == 200);
  auto lease = client::lease::acquire(c, lease_of(test_image(), "after-hostile"), 120s);
  CHECK(lease.exec({"true"}).exit_code == 0);
}
