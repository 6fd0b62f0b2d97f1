#include <sandlot/client.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include <fmt/format.h>
#include <unistd.h>

#include "autostart.hpp"
#include "http_client.hpp"
#include <sandlot/sse.hpp>

namespace sandlot::client {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;
using std::chrono::steady_clock;

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : std::move(fallback);
}

std::string describe(std::string_view method, std::string_view url, int status, std::string_view code,
                     std::string_view message) {
  std::string where = method.empty() ? std::string(url) : fmt::format("{} {}", method, url);
  if (status == 0) return fmt::format("{}: {}: {}", where, code, message);
  return fmt::format("{}: {} {}: {}", where, status, code, message);
}

// The daemon promises `{"error":{"code","message"}}` for every non-2xx; anything else (a proxy's
// HTML page, an empty body) still becomes a readable error rather than a JSON exception.
error from_response(std::string_view method, const std::string& url, int status, const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const json& e = j["error"];
    std::string code = e.value("code", std::string("unknown"));
    std::string message = e.value("message", std::string("(no message)"));
    return error(std::string(method), url, status, std::move(code), std::move(message));
  }
  constexpr std::size_t shown = 200;
  std::string excerpt = body.empty() ? std::string("(empty body)") : body.substr(0, shown);
  return error(std::string(method), url, status, "unexpected_response",
               fmt::format("the answer is not a Sandlot error body: {}", excerpt));
}

template <class T>
T decode(const json& j, std::string_view method, const std::string& url, int status) {
  try {
    return j.get<T>();
  } catch (const std::exception& e) {
    // A daemon of a different protocol version; say so instead of surfacing a nlohmann message.
    throw error(std::string(method), url, status, "bad_response",
                fmt::format("the daemon's answer does not match this client's protocol: {}", e.what()));
  }
}

// The URL an error names: the daemon's base URL (as configured, minus a trailing slash) + target.
std::string join_url(std::string_view base, std::string_view target) {
  while (!base.empty() && base.back() == '/') base.remove_suffix(1);
  return fmt::format("{}{}", base, target);
}

std::string lease_target(const std::string& id, std::string_view suffix = {}) {
  return fmt::format("{}/leases/{}{}", protocol::api_prefix, protocol::percent_encode(id), suffix);
}

// What a call that got no HTTP answer throws: the hint fits the way it failed.
error transport_failure(std::string_view method, const std::string& full_url, const std::string& base_url,
                        const detail::transport_error& e, seconds timeout) {
  switch (e.which()) {
    case detail::transport_error::kind::refused:
      return error(std::string(method), full_url, 0, "unreachable",
                   fmt::format("no orchestratord answered at {} ({}); start one with "
                               "`orchestratord --slots N` or point SANDLOT_URL at a running one",
                               base_url, e.what()));
    case detail::transport_error::kind::timeout:
      return error(std::string(method), full_url, 0, "timeout",
                   fmt::format("orchestratord at {} did not answer within {} s ({})", base_url, timeout.count(),
                               e.what()));
    case detail::transport_error::kind::failed:
      break;
  }
  return error(std::string(method), full_url, 0, "transport_error", e.what());
}

}  // namespace

// --- error ------------------------------------------------------------------------------------

error::error(std::string url, int status, std::string code, std::string message)
    : error(std::string(), std::move(url), status, std::move(code), std::move(message)) {}

error::error(std::string method, std::string url, int status, std::string code, std::string message)
    : std::runtime_error(describe(method, url, status, code, message)),
      method_(std::move(method)),
      url_(std::move(url)),
      status_(status),
      code_(std::move(code)),
      message_(std::move(message)) {}

// --- environment ------------------------------------------------------------------------------

std::string url_from_env() { return env_or("SANDLOT_URL", std::string(protocol::default_url)); }

std::string token_from_env() { return env_or("SANDLOT_TOKEN", {}); }

std::string run_from_env() {
  if (const char* v = std::getenv("SANDLOT_RUN"); v != nullptr && *v != '\0') return v;
  // ctest starts every test as its own child, so the parent (ctest) is what the tests of one
  // invocation share. A pid alone is recycled; its start time (field 22 of /proc/<pid>/stat, in
  // clock ticks since boot) makes the pair unique across the machine's uptime.
  pid_t ppid = getppid();
  std::ifstream in(fmt::format("/proc/{}/stat", ppid));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Field 2 is the command name in parentheses and may itself hold spaces or ')': skip to the last
  // ')', after which fields are plain. Field 3 (state) is the first token after it.
  std::size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(stat.substr(close + 1));
    std::string field;
    constexpr int starttime_field = 22;
    for (int n = 3; n <= starttime_field && (fields >> field); ++n) {
      if (n == starttime_field) return fmt::format("ppid-{}-{}", ppid, field);
    }
  }
  return fmt::format("ppid-{}", ppid);
}

// --- client -----------------------------------------------------------------------------------

client::client() : client(options{}) {}

client::client(std::string url) : client(options{.url = std::move(url)}) {}

client::client(options opts) : opts_(std::move(opts)) {
  // A URL the caller chose is where they want to go: a daemon started at the default one would
  // not help, and `orchestratord health` must report a missing daemon, not start one.
  const bool url_given = !opts_.url.empty();
  if (!url_given) opts_.url = url_from_env();
  autostart_ = detail::autostart_allowed(url_given, std::getenv("SANDLOT_URL"), std::getenv("SANDLOT_AUTOSTART"));
  // Reject a bad SANDLOT_URL here, once, rather than on every call.
  try {
    detail::parse_url(opts_.url);
  } catch (const std::invalid_argument& e) {
    throw error(opts_.url, 0, "bad_url", fmt::format("{} (check SANDLOT_URL)", e.what()));
  }
}

client::response client::request(std::string_view method, std::string_view target, std::string_view body,
                                 seconds extra_timeout, std::string_view content_type) const {
  std::string full_url = join_url(opts_.url, target);
  for (bool first_try = true;; first_try = false) {
    try {
      detail::http_client http(opts_.url, opts_.token);
      auto res = http.send(method, target, body, opts_.request_timeout + extra_timeout, content_type);
      return response{res.status, std::move(res.body)};
    } catch (const std::invalid_argument& e) {
      throw error(std::string(method), full_url, 0, "bad_url", e.what());
    } catch (const detail::transport_error& e) {
      const bool start_one = autostart_ && first_try && e.which() == detail::transport_error::kind::refused;
      if (!start_one) throw transport_failure(method, full_url, opts_.url, e, opts_.request_timeout + extra_timeout);
    }
    // Nothing listens at the default URL: start a daemon (docs/consuming.md), then send once more.
    // The connection was refused, so the request reached nobody and sending it again repeats nothing.
    try {
      detail::ensure_daemon(opts_.url, opts_.token);
    } catch (const std::exception& e) {
      throw error(std::string(method), full_url, 0, "unreachable",
                  fmt::format("no orchestratord answered at {}, and starting one failed: {}", opts_.url, e.what()));
    }
  }
}

json client::call(std::string_view method, const std::string& target, std::string_view body,
                  int expect_status, seconds extra_timeout) const {
  response res = request(method, target, body, extra_timeout);
  std::string full_url = join_url(opts_.url, target);
  // expect_status names the success class: create answers 201 for a new lease and 200 when the
  // same request_id repeats, and both are success.
  if (res.status / 100 != expect_status / 100) throw from_response(method, full_url, res.status, res.body);
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    throw error(std::string(method), full_url, res.status, "bad_response",
                "the daemon answered with a body that is not JSON");
  }
  return j;
}

protocol::lease_view client::create(const protocol::lease_request& req) const {
  std::string target = fmt::format("{}/leases", protocol::api_prefix);
  json j = call("POST", target, json(req).dump(), 201);
  return decode<protocol::lease_view>(j, "POST", join_url(opts_.url, target), 201);
}

protocol::lease_view client::get(const std::string& id, int wait_s) const {
  std::string target = lease_target(id, wait_s > 0 ? fmt::format("?wait_s={}", wait_s) : std::string());
  // The long-poll may legitimately hold the answer for wait_s; the timeout runs on top of that.
  json j = call("GET", target, {}, 200, seconds{std::max(wait_s, 0)});
  return decode<protocol::lease_view>(j, "GET", join_url(opts_.url, target), 200);
}

protocol::renew_response client::renew(const std::string& id) const {
  std::string target = lease_target(id, "/renew");
  json j = call("POST", target, {}, 200);
  return decode<protocol::renew_response>(j, "POST", join_url(opts_.url, target), 200);
}

protocol::exec_result client::exec(const std::string& id, const protocol::exec_request& req) const {
  std::string target = lease_target(id, "/exec");
  // The command may run for up to timeout_s before the daemon answers.
  json j = call("POST", target, json(req).dump(), 200, seconds{std::max(req.timeout_s, 0)});
  return decode<protocol::exec_result>(j, "POST", join_url(opts_.url, target), 200);
}

void client::release(const std::string& id) const { call("DELETE", lease_target(id), {}, 200); }

protocol::status_view client::status() const {
  std::string target = fmt::format("{}/status", protocol::api_prefix);
  json j = call("GET", target, {}, 200);
  return decode<protocol::status_view>(j, "GET", join_url(opts_.url, target), 200);
}


void client::put_file(const std::string& id, const std::string& path, std::string_view data, unsigned mode) const {
  const std::string target = lease_target(id, fmt::format("/files?path={}&mode={:o}", protocol::percent_encode(path, "/"), mode));
  response res = request("PUT", target, data, seconds{0}, "application/octet-stream");
  if (res.status != 200) throw from_response("PUT", join_url(opts_.url, target), res.status, res.body);
}

std::string client::get_file(const std::string& id, const std::string& path) const {
  const std::string target = lease_target(id, "/files?path=" + protocol::percent_encode(path, "/"));
  response res = request("GET", target);
  if (res.status != 200) throw from_response("GET", join_url(opts_.url, target), res.status, res.body);
  return std::move(res.body);
}

void client::report_outcome(const std::string& id, const std::string& outcome) const {
  call("POST", lease_target(id, "/outcome"), json(protocol::outcome_request{outcome}).dump(), 200);
}

protocol::fixture_view client::acquire_fixture(const std::string& lease_id, const protocol::fixture_request& req) const {
  std::string target = lease_target(lease_id, "/fixtures");
  // The first holder's call returns once the fixture's sandbox is made (an image pull included).
  json j = call("POST", target, json(req).dump(), 200, seconds{600});
  return decode<protocol::fixture_view>(j, "POST", join_url(opts_.url, target), 200);
}

protocol::fixture_view client::get_fixture(const std::string& fixture_id, const std::string& lease_id,
                                           int wait_s) const {
  std::string target = fmt::format("{}/fixtures/{}?lease={}&wait_s={}", protocol::api_prefix, fixture_id, lease_id,
                                   std::max(wait_s, 0));
  json j = call("GET", target, {}, 200, seconds{std::max(wait_s, 0)});
  return decode<protocol::fixture_view>(j, "GET", join_url(opts_.url, target), 200);
}

protocol::fixture_view client::fixture_ready(const std::string& fixture_id, const std::string& lease_id,
                                             const json& data) const {
  std::string target = fmt::format("{}/fixtures/{}/ready", protocol::api_prefix, fixture_id);
  protocol::fixture_ready_request req{lease_id, data};
  json j = call("POST", target, json(req).dump(), 200);
  return decode<protocol::fixture_view>(j, "POST", join_url(opts_.url, target), 200);
}

protocol::fixture_view client::fixture_failed(const std::string& fixture_id, const std::string& lease_id,
                                             const std::string& message) const {
  std::string target = fmt::format("{}/fixtures/{}/fail", protocol::api_prefix, fixture_id);
  protocol::fixture_fail_request req{lease_id, message.substr(0, 4096)};
  json j = call("POST", target, json(req).dump(), 200);
  return decode<protocol::fixture_view>(j, "POST", join_url(opts_.url, target), 200);
}

client client::with_timeout(seconds timeout) const {
  options o = opts_;
  o.request_timeout = timeout;
  return client(std::move(o));
}

protocol::exec_result client::fixture_exec(const std::string& fixture_id, const protocol::exec_request& req,
                                           const std::string& lease_id) const {
  std::string target = fmt::format("{}/fixtures/{}/exec{}", protocol::api_prefix, fixture_id,
                                   lease_id.empty() ? std::string() : "?lease=" + lease_id);
  json j = call("POST", target, json(req).dump(), 200, seconds{std::max(req.timeout_s, 0)});
  return decode<protocol::exec_result>(j, "POST", join_url(opts_.url, target), 200);
}

json client::run(const std::string& run_id) const {
  return call("GET", fmt::format("{}/runs/{}", protocol::api_prefix, run_id), {}, 200);
}

json client::end_run(const std::string& run_id) const {
  return call("DELETE", fmt::format("{}/runs/{}", protocol::api_prefix, run_id), {}, 200, seconds{120});
}

// --- the operator's endpoints ---------------------------------------------------------------

std::vector<protocol::lease_view> client::leases(const std::string& run) const {
  std::string target = fmt::format("{}/leases", protocol::api_prefix);
  if (!run.empty()) target += "?run=" + protocol::percent_encode(run);
  json j = call("GET", target, {}, 200);
  const json& list = j.is_object() && j.contains("leases") ? j["leases"] : j;
  return decode<std::vector<protocol::lease_view>>(list, "GET", join_url(opts_.url, target), 200);
}

protocol::why_view client::why(const std::string& id) const {
  std::string target = lease_target(id, "/why");
  json j = call("GET", target, {}, 200);
  return decode<protocol::why_view>(j, "GET", join_url(opts_.url, target), 200);
}

protocol::drain_view client::drain(int wait_s) const {
  wait_s = std::clamp(wait_s, 0, 300);
  std::string target = fmt::format("{}/drain{}", protocol::api_prefix,
                                   wait_s > 0 ? fmt::format("?wait_s={}", wait_s) : std::string());
  json j = call("POST", target, {}, 200, seconds{wait_s});
  return decode<protocol::drain_view>(j, "POST", join_url(opts_.url, target), 200);
}

protocol::drain_view client::resume() const {
  std::string target = fmt::format("{}/resume", protocol::api_prefix);
  json j = call("POST", target, {}, 200);
  return decode<protocol::drain_view>(j, "POST", join_url(opts_.url, target), 200);
}

protocol::slots_view client::set_slots(int slots) const {
  std::string target = fmt::format("{}/slots", protocol::api_prefix);
  json j = call("PUT", target, json(protocol::slots_request{slots}).dump(), 200);
  return decode<protocol::slots_view>(j, "PUT", join_url(opts_.url, target), 200);
}

protocol::lease_view client::evict(const std::string& id, const std::string& reason) const {
  std::string target = lease_target(id, "/evict");
  json j = call("POST", target, json(protocol::evict_request{reason}).dump(), 200);
  return decode<protocol::lease_view>(j, "POST", join_url(opts_.url, target), 200);
}

std::vector<protocol::run_summary> client::runs() const {
  std::string target = fmt::format("{}/runs", protocol::api_prefix);
  json j = call("GET", target, {}, 200);
  const json& list = j.is_object() && j.contains("runs") ? j["runs"] : j;
  return decode<std::vector<protocol::run_summary>>(list, "GET", join_url(opts_.url, target), 200);
}

std::string client::report_html(const std::string& run_id) const {
  const std::string target = fmt::format("{}/runs/{}/report.html", protocol::api_prefix, run_id);
  response res = request("GET", target);
  if (res.status != 200) throw from_response("GET", join_url(opts_.url, target), res.status, res.body);
  return std::move(res.body);
}

client::readiness client::ready() const {
  response res = request("GET", "/readyz");
  readiness out;
  out.http_status = res.status;
  out.ready = res.status == 200;
  json j = json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("status") && j["status"].is_string()) {
    out.status = j["status"].get<std::string>();
  } else {
    out.status = out.ready ? "ready" : fmt::format("HTTP {}", res.status);
  }
  return out;
}

// --- event_stream -----------------------------------------------------------------------------

struct event_stream::impl {
  impl(std::string u, std::string t) : url(std::move(u)), http(url, std::move(t)) {}
  std::string url;
  detail::streaming_get http;
};

event_stream::event_stream(const client& c) : impl_(std::make_unique<impl>(c.opts_.url, c.opts_.token)) {}

event_stream::~event_stream() = default;

event_stream::end event_stream::run(const std::function<bool(const protocol::status_view&)>& on_status) {
  const std::string target = fmt::format("{}/events", protocol::api_prefix);
  const std::string full_url = join_url(impl_->url, target);
  sse_parser parser;
  bool asked_to_stop = false;
  auto on_body = [&](std::string_view bytes) {
    for (const sse_event& ev : parser.feed(bytes)) {
      if (ev.event != "status" || asked_to_stop) continue;
      json j = json::parse(ev.data, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) {
        throw error("GET", full_url, 200, "bad_response", "a status event's data is not JSON");
      }
      if (!on_status(decode<protocol::status_view>(j, "GET", full_url, 200))) {
        asked_to_stop = true;
        impl_->http.cancel();
      }
    }
  };
  // Three missed keep-alives (every 15 s) mean the daemon is gone without closing.
  constexpr std::chrono::milliseconds idle{45'000};
  constexpr std::chrono::milliseconds connect{10'000};
  detail::http_response res;
  try {
    res = impl_->http.run(target, connect, idle, on_body);
  } catch (const detail::transport_error& e) {
    // stop() before the answer's head arrived closes the socket under the read: not a failure.
    if (impl_->http.cancelled()) return end::stopped;
    throw transport_failure("GET", full_url, impl_->url, e, std::chrono::duration_cast<seconds>(connect));
  }
  if (res.status / 100 != 2 && !impl_->http.cancelled()) throw from_response("GET", full_url, res.status, res.body);
  return impl_->http.cancelled() ? end::stopped : end::closed;
}

void event_stream::stop() { impl_->http.cancel(); }

protocol::exec_result fixture::exec(std::vector<std::string> argv, std::optional<std::string> stdin_data,
                                    int timeout_s) const {
  protocol::exec_request req;
  req.argv = std::move(argv);
  req.stdin_data = std::move(stdin_data);
  req.timeout_s = timeout_s;
  return client_.fixture_exec(view_.id, req, lease_id_);
}

// --- lease ------------------------------------------------------------------------------------

namespace {

/// How long a heartbeat's renew may take: a fraction of the ttl, so a wedged daemon cannot hold
/// the heartbeat (or a release waiting to join it) for longer than the lease could live anyway.
seconds renew_timeout(int ttl_s) { return std::clamp(seconds{ttl_s / 3}, seconds{1}, seconds{5}); }

/// The most the destructor takes, a heartbeat in flight included.
constexpr seconds release_bound{10};

}  // namespace

struct lease::state {
  state(const client& c, protocol::lease_view v)
      : client_(c), view_(std::move(v)), id_(view_.id), heartbeat_client_(c.with_timeout(renew_timeout(view_.ttl_s))) {}

  // A copy: the lease must stay usable whatever happens to the client it was acquired from.
  const client client_;
  protocol::lease_view view_;  // written by the owning thread only
  const std::string id_;       // what the heartbeat thread reads; never changes
  const client heartbeat_client_;  // renews with a timeout that fits the ttl

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mutex_
  bool released_ = false;  // owning thread only
  std::optional<std::string> heartbeat_error_;  // guarded by mutex_
  std::thread heartbeat_;

  void start_heartbeat(seconds interval) {
    heartbeat_ = std::thread([this, interval] { heartbeat_loop(interval); });
  }

  void heartbeat_loop(seconds interval) {
    std::unique_lock lock(mutex_);
    while (true) {
      // wait_for on the condition (not a sleep) so release() stops the thread at once.
      if (wake_.wait_for(lock, interval, [this] { return stopping_; })) return;
      lock.unlock();  // never hold the lock across a network call
      std::optional<std::string> failure;
      bool stop = false;
      try {
        protocol::renew_response r = heartbeat_client_.renew(id_);
        if (protocol::is_final(r.state)) {
          failure = fmt::format("lease {} is {}; the daemon no longer holds it", id_, protocol::to_string(r.state));
          stop = true;
        }
      } catch (const error& e) {
        failure = e.what();
        // 404/410: the lease is gone for good, renewing again cannot help. Anything else (a slow or
        // restarting daemon) may pass, so keep trying until the TTL decides.
        stop = e.status() == 404 || e.status() == 410;
      } catch (const std::exception& e) {
        failure = e.what();
      }
      lock.lock();
      if (failure && !heartbeat_error_) heartbeat_error_ = std::move(failure);
      if (stop) return;
    }
  }

  void stop_heartbeat() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (heartbeat_.joinable()) heartbeat_.join();
  }

  ~state() {
    // lease::release normally joined already; this covers a throw before it could.
    stop_heartbeat();
  }
};

lease::lease(std::unique_ptr<state> s) : s_(std::move(s)) {}

lease::lease(lease&&) noexcept = default;

lease& lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    try {
      release();
    } catch (...) {  // NOLINT(bugprone-empty-catch): a move must not throw; the TTL reaps it
    }
    s_ = std::move(other.s_);
  }
  return *this;
}

lease::~lease() {
  if (!s_ || s_->released_) return;
  try {
    const auto start = steady_clock::now();
    s_->stop_heartbeat();  // bounded: a renew in flight gives up within renew_timeout (at most 5 s)
    const auto left = std::chrono::floor<seconds>(release_bound - (steady_clock::now() - start));
    s_->client_.with_timeout(std::max(left, seconds{1})).release(s_->id_);
  } catch (...) {  // NOLINT(bugprone-empty-catch): destructors must not throw; the TTL reaps it
  }
  s_->released_ = true;
}

lease lease::acquire(const client& c, protocol::lease_request req, seconds wait) {
  const auto deadline = steady_clock::now() + wait;
  protocol::lease_view view = c.create(req);
  // From here on the lease exists on the daemon: every exit path below releases it (~lease).
  lease l(std::make_unique<state>(c, std::move(view)));
  state& s = *l.s_;

  // Heartbeat from the start: a lease may queue for longer than its TTL.
  int ttl_s = s.view_.ttl_s > 0 ? s.view_.ttl_s : req.ttl_s;
  s.start_heartbeat(std::max(seconds{1}, seconds{ttl_s / 3}));

  const std::string get_url = join_url(c.url(), lease_target(s.id_));
  constexpr int max_poll_s = 30;  // bounded so a silently dropped long-poll is retried
  while (s.view_.state != protocol::lease_state::ready) {
    if (protocol::is_final(s.view_.state)) {
      std::string code = s.view_.error ? s.view_.error->code : std::string("lease_gone");
      std::string why = s.view_.error ? s.view_.error->message
                                      : fmt::format("it turned {}", protocol::to_string(s.view_.state));
      int status = protocol::http_status(protocol::code_from_string(code));
      throw error("GET", get_url, status, code,
                  fmt::format("lease {} did not become ready: {}", s.id_, why));
    }
    auto remaining = std::chrono::ceil<seconds>(deadline - steady_clock::now());
    if (remaining <= seconds{0}) {
      std::string last = std::string(protocol::to_string(s.view_.state));
      if (s.view_.waiting_for) last += fmt::format(", waiting for {}", *s.view_.waiting_for);
      if (s.view_.position) last += fmt::format(", queue position {}", *s.view_.position);
      try {
        l.release();
      } catch (...) {  // NOLINT(bugprone-empty-catch): the timeout is the error to report
      }
      throw error("GET", get_url, 0, "timeout",
                  fmt::format("lease {} was not ready within {} s (last state: {}); released it. "
                              "Wait longer, or give the daemon more --slots",
                              s.id_, wait.count(), last));
    }
    int wait_s = static_cast<int>(std::min<seconds::rep>(remaining.count(), max_poll_s));
    s.view_ = c.get(s.id_, wait_s);
  }
  return l;
}

const std::string& lease::id() const noexcept {
  static const std::string empty;
  return s_ ? s_->id_ : empty;
}

const std::string& lease::name() const noexcept {
  static const std::string empty;
  return s_ ? s_->view_.name : empty;
}

const protocol::lease_view& lease::view() const noexcept {
  static const protocol::lease_view empty;
  return s_ ? s_->view_ : empty;
}

const protocol::sandbox_info& lease::sandbox() const {
  if (!s_ || !s_->view_.sandbox) {
    throw std::logic_error("this lease has no sandbox (moved from, or never became ready)");
  }
  return *s_->view_.sandbox;
}

protocol::exec_result lease::exec(std::vector<std::string> argv, std::optional<std::string> stdin_data,
                                  std::map<std::string, std::string> env, int timeout_s) const {
  protocol::exec_request req;
  req.argv = std::move(argv);
  req.stdin_data = std::move(stdin_data);
  req.env = std::move(env);
  req.timeout_s = timeout_s;
  return exec(req);
}

protocol::exec_result lease::exec(const protocol::exec_request& req) const {
  if (!s_) throw std::logic_error("exec on a moved-from lease");
  try {
    return s_->client_.exec(s_->id_, req);
  } catch (const error& e) {
    // The daemon says the lease is gone; if our heartbeat had failed, that is the likely why.
    auto heartbeat = heartbeat_error();
    if (e.status() != 410 || !heartbeat) throw;
    throw error(e.method(), e.url(), e.status(), e.code(),
                fmt::format("{} (this client's heartbeat had failed: {})", e.message(), *heartbeat));
  }
}

void lease::write_file(const std::string& path, std::string_view data, unsigned mode) const {
  if (!s_) throw std::logic_error("write_file on a moved-from lease");
  s_->client_.put_file(s_->id_, path, data, mode);
}

std::string lease::read_file(const std::string& path) const {
  if (!s_) throw std::logic_error("read_file on a moved-from lease");
  return s_->client_.get_file(s_->id_, path);
}

void lease::release() {
  if (!s_ || s_->released_) return;
  s_->stop_heartbeat();
  try {
    s_->client_.release(s_->id_);
  } catch (const error& e) {
    if (e.status() != 404) throw;  // unknown to the daemon: already gone, nothing to free
  }
  s_->released_ = true;
}

fixture lease::hold_fixture(const protocol::fixture_request& req,
                            const std::function<json(const fixture&)>& setup, seconds wait) const {
  if (!s_) throw std::logic_error("hold_fixture on a moved-from lease");
  const client& c = s_->client_;
  const auto deadline = steady_clock::now() + wait;
  protocol::fixture_view v = c.acquire_fixture(s_->id_, req);
  const std::string url = join_url(c.url(), fmt::format("{}/fixtures/{}", protocol::api_prefix, v.id));
  while (v.state != "ready") {
    if (v.state == "gone") {
      std::string code = v.error ? v.error->code : std::string("lease_gone");
      throw error("GET", url, protocol::http_status(protocol::code_from_string(code)), code,
                  v.error ? v.error->message : fmt::format("fixture '{}' is gone", req.name));
    }
    if (v.role == "creator") {
      // Ours to set up: a fresh sandbox nobody else uses until we publish it.
      json data;
      try {
        data = setup(fixture(c, v, s_->id_));
      } catch (const std::exception& e) {
        // The others waiting for it learn now, not when their wait runs out.
        try {
          c.fixture_failed(v.id, s_->id_, e.what());
        } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the setup's failure is the one to report
        }
        throw;
      }
      v = c.fixture_ready(v.id, s_->id_, data.is_null() ? json::object() : data);
      continue;
    }
    auto remaining = std::chrono::ceil<seconds>(deadline - steady_clock::now());
    if (remaining <= seconds{0}) {
      throw error("GET", url, 0, "timeout",
                  fmt::format("fixture '{}' was not ready within {} s (its creator is lease {}); is that test stuck?",
                              req.name, wait.count(), v.creator.empty() ? std::string("?") : v.creator));
    }
    v = c.get_fixture(v.id, s_->id_, static_cast<int>(std::min<seconds::rep>(remaining.count(), 30)));
  }
  return fixture(c, v, s_->id_);
}

std::optional<std::string> lease::heartbeat_error() const {
  if (!s_) return std::nullopt;
  std::lock_guard lock(s_->mutex_);
  return s_->heartbeat_error_;
}

}  // namespace sandlot::client
