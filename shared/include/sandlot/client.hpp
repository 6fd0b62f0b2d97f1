// The synchronous Sandlot client: lease a sandbox from orchestratord, run commands in it, release it.
//
//   sandlot::client::client c;                       // SANDLOT_URL, or http://127.0.0.1:7345
//   auto lease = sandlot::client::lease::acquire(c, {.image = "127.0.0.1:5000/sandlot/busybox:1"});
//   auto r = lease.exec({"echo", "hi"});              // r.exit_code, r.stdout_data, r.stderr_data
//   // ~lease releases the sandbox; a background thread heartbeats until then.
//
// A client left at the default URL starts orchestratord itself when none answers there, for tests
// run by hand; SANDLOT_AUTOSTART=0 (what CI sets) turns that off (docs/consuming.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sandlot/protocol.hpp>

namespace sandlot::client {

/// A failed call: names the URL tried, and carries the daemon's HTTP status, error code and message.
/// status() is 0 when no HTTP answer arrived (nothing listening, timeout).
/// what() reads like `POST http://127.0.0.1:7345/v1/leases: 400 invalid_field: field 'slots' ...`.
class error : public std::runtime_error {
 public:
  error(std::string url, int status, std::string code, std::string message);
  error(std::string method, std::string url, int status, std::string code, std::string message);
  /// The HTTP method of the failed call, or empty.
  const std::string& method() const noexcept { return method_; }
  const std::string& url() const noexcept { return url_; }
  int status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string method_;
  std::string url_;
  int status_;
  std::string code_;
  std::string message_;
};

/// SANDLOT_URL, or http://127.0.0.1:7345.
std::string url_from_env();
/// SANDLOT_TOKEN, or empty.
std::string token_from_env();
/// SANDLOT_RUN, or an id shared by all children of the parent process (one ctest invocation).
std::string run_from_env();

struct options {
  /// Empty: SANDLOT_URL, or http://127.0.0.1:7345. Only with neither (no URL here, SANDLOT_URL
  /// unset) does a client start orchestratord itself when nothing answers, unless
  /// SANDLOT_AUTOSTART=0 (docs/consuming.md, "Tests run by hand").
  std::string url;
  std::string token = token_from_env();
  std::chrono::seconds request_timeout{120};  // per call, on top of any long-poll wait
};

class client {
 public:
  client();
  explicit client(std::string url);
  explicit client(options opts);

  /// POST /v1/leases. The lease starts queued; use get(id, wait_s) or lease::acquire to wait.
  protocol::lease_view create(const protocol::lease_request& req) const;
  /// GET /v1/leases/{id}?wait_s=N: returns once ready or final, or after wait_s seconds.
  protocol::lease_view get(const std::string& id, int wait_s = 0) const;
  /// POST /v1/leases/{id}/renew.
  protocol::renew_response renew(const std::string& id) const;
  /// POST /v1/leases/{id}/exec.
  protocol::exec_result exec(const std::string& id, const protocol::exec_request& req) const;
  /// DELETE /v1/leases/{id}: returns once the sandbox is gone.
  void release(const std::string& id) const;
  /// GET /v1/status.
  protocol::status_view status() const;
  /// PUT /v1/leases/{id}/files?path=P: writes one file into the sandbox (its directory must exist).
  void put_file(const std::string& id, const std::string& path, std::string_view data, unsigned mode = 0644) const;
  /// GET /v1/leases/{id}/files?path=P: one regular file's bytes.
  std::string get_file(const std::string& id, const std::string& path) const;
  /// POST /v1/leases/{id}/outcome: "passed" or "failed", shown in the run report.
  void report_outcome(const std::string& id, const std::string& outcome) const;

  /// POST /v1/leases/{id}/fixtures.
  protocol::fixture_view acquire_fixture(const std::string& lease_id, const protocol::fixture_request& req) const;
  /// GET /v1/fixtures/{id}?lease=L&wait_s=N.
  protocol::fixture_view get_fixture(const std::string& fixture_id, const std::string& lease_id, int wait_s = 0) const;
  /// POST /v1/fixtures/{id}/ready.
  protocol::fixture_view fixture_ready(const std::string& fixture_id, const std::string& lease_id,
                                       const nlohmann::json& data) const;
  /// POST /v1/fixtures/{id}/fail: the creator could not set it up; every holder's wait ends with `message`.
  protocol::fixture_view fixture_failed(const std::string& fixture_id, const std::string& lease_id,
                                        const std::string& message) const;
  /// POST /v1/fixtures/{id}/exec?lease=L. While the fixture is being set up only its creator's
  /// lease may run commands in it.
  protocol::exec_result fixture_exec(const std::string& fixture_id, const protocol::exec_request& req,
                                     const std::string& lease_id = {}) const;

  /// GET /v1/runs/{id}: the run's timeline and summary (docs/reports.md). Run ids go into the
  /// URL as they are: keep them to letters, digits and - _ . :
  nlohmann::json run(const std::string& run_id) const;
  /// DELETE /v1/runs/{id}: ends the run, tearing down its fixtures; returns the final timeline.
  nlohmann::json end_run(const std::string& run_id) const;

  // --- The operator's endpoints (docs/api.md, "GET /v1/status" to "GET / and GET /ui/") ---

  /// GET /v1/leases?run=R: the live leases, oldest first; every run's when `run` is empty.
  std::vector<protocol::lease_view> leases(const std::string& run = {}) const;
  /// GET /v1/leases/{id}/why: what the lease waits for and who holds it.
  protocol::why_view why(const std::string& id) const;
  /// POST /v1/drain?wait_s=N: stop admitting; with wait_s > 0 (at most 300) answers once drained
  /// or after wait_s seconds.
  protocol::drain_view drain(int wait_s = 0) const;
  /// POST /v1/resume: admit again.
  protocol::drain_view resume() const;
  /// PUT /v1/slots: the new budget, until the daemon stops.
  protocol::slots_view set_slots(int slots) const;
  /// POST /v1/leases/{id}/evict: ends the lease as the operator; its holder's next call gets 410.
  protocol::lease_view evict(const std::string& id, const std::string& reason = {}) const;
  /// GET /v1/runs: every run the daemon remembers.
  std::vector<protocol::run_summary> runs() const;
  /// GET /v1/runs/{id}/report.html: the run's self-contained HTML report.
  std::string report_html(const std::string& run_id) const;
  /// The daemon's readiness (GET /readyz): `status` is its word ("ready", "prepulling", "draining").
  struct readiness {
    bool ready = false;
    int http_status = 0;
    std::string status;
  };
  /// GET /readyz; throws error only when no answer arrived.
  readiness ready() const;

  struct response {
    int status = 0;
    std::string body;
  };
  /// A raw call for anything else; throws error only when no HTTP answer arrived. A body is sent
  /// with `content_type`.
  response request(std::string_view method, std::string_view target, std::string_view body = {},
                   std::chrono::seconds extra_timeout = std::chrono::seconds{0},
                   std::string_view content_type = "application/json") const;

  const std::string& url() const noexcept { return opts_.url; }
  /// A copy of this client whose calls give up after `timeout` (plus any long-poll wait). It never
  /// starts a daemon: that may take longer than the timeout.
  client with_timeout(std::chrono::seconds timeout) const;

 private:
  friend class event_stream;  // opens its stream with this client's URL and token
  nlohmann::json call(std::string_view method, const std::string& target, std::string_view body,
                      int expect_status, std::chrono::seconds extra_timeout = std::chrono::seconds{0}) const;
  options opts_;
  bool autostart_ = false;  // a refused connection starts a daemon (see the constructor)
};

/// GET /v1/events: the daemon's status as it changes. run() blocks until the daemon ends the
/// stream, a callback returns false, or stop() is called from another thread.
///
///   sandlot::client::event_stream events(c);
///   events.run([](const protocol::status_view& st) { draw(st); return true; });
class event_stream {
 public:
  explicit event_stream(const client& c);
  ~event_stream();
  event_stream(const event_stream&) = delete;
  event_stream& operator=(const event_stream&) = delete;

  enum class end {
    stopped,         // stop() or the callback asked for it
    closed,          // the daemon ended the stream (it stops), or it fell silent past 45 s
  };
  /// Calls on_status for each `status` event (comments and other events are skipped). Throws
  /// error for a non-2xx answer, no answer, or an event whose data is not a status.
  end run(const std::function<bool(const protocol::status_view&)>& on_status);
  /// Safe from any thread; run() returns soon after.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// A once-per-run fixture held by a lease (the hold ends with the lease).
class fixture {
 public:
  fixture(const client& c, protocol::fixture_view v, std::string lease_id)
      : client_(c), view_(std::move(v)), lease_id_(std::move(lease_id)) {}
  const std::string& id() const noexcept { return view_.id; }
  const std::string& name() const noexcept { return view_.name; }
  /// The loopback TCP port the daemon reserved for it (SANDLOT_PORT inside), if it asked for one.
  std::optional<int> port() const noexcept { return view_.port; }
  /// What its creator published when it marked it ready.
  const nlohmann::json& data() const noexcept { return view_.data; }
  const protocol::fixture_view& view() const noexcept { return view_; }
  /// Runs argv in the fixture's sandbox (never through a shell).
  protocol::exec_result exec(std::vector<std::string> argv, std::optional<std::string> stdin_data = {},
                             int timeout_s = 60) const;

 private:
  client client_;
  protocol::fixture_view view_;
  std::string lease_id_;  // the holder
};

/// An RAII lease: acquired ready, heartbeated from a background thread, released on destruction.
class lease {
 public:
  /// Creates the lease and waits (long-polling) until it is ready; throws error if it fails or
  /// is not ready within `wait` (the lease is released before the throw).
  static lease acquire(const client& c, protocol::lease_request req,
                       std::chrono::seconds wait = std::chrono::seconds{900});

  lease(lease&&) noexcept;
  lease& operator=(lease&&) noexcept;
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  ~lease();

  const std::string& id() const noexcept;
  /// The readable unique name for anything the test creates outside its sandbox.
  const std::string& name() const noexcept;
  const protocol::lease_view& view() const noexcept;
  const protocol::sandbox_info& sandbox() const;

  /// Runs argv in the sandbox (never through a shell). If the daemon answers 410 (the lease is
  /// gone) after this lease's heartbeat had failed, the error's message adds that failure.
  protocol::exec_result exec(std::vector<std::string> argv, std::optional<std::string> stdin_data = {},
                             std::map<std::string, std::string> env = {}, int timeout_s = 60) const;
  protocol::exec_result exec(const protocol::exec_request& req) const;
  /// Writes / reads one file in the sandbox (see client::put_file, client::get_file).
  void write_file(const std::string& path, std::string_view data, unsigned mode = 0644) const;
  std::string read_file(const std::string& path) const;

  /// Holds the run's fixture `req.name`. The first holder of the run (or the next one, if that
  /// holder died while setting it up) runs `setup` on the fresh fixture sandbox and publishes what
  /// it returns as the fixture's data; everyone else waits until it is ready. Throws error if it
  /// cannot be made or is not ready within `wait`. If `setup` throws, the fixture is failed at
  /// once (every holder's wait ends with the message) and the exception propagates.
  fixture hold_fixture(const protocol::fixture_request& req, const std::function<nlohmann::json(const fixture&)>& setup,
                       std::chrono::seconds wait = std::chrono::seconds{300}) const;

  /// Releases now (idempotent); the destructor calls it with a 10 s bound and swallows errors
  /// (a lease it could not release is reaped by the daemon when its ttl runs out).
  void release();
  /// A heartbeat failure (e.g. the daemon expired the lease), or empty.
  std::optional<std::string> heartbeat_error() const;

 private:
  struct state;
  explicit lease(std::unique_ptr<state> s);
  std::unique_ptr<state> s_;
};

}  // namespace sandlot::client
