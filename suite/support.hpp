// Helpers shared by the e2e suite: raw leases for tests that drive the API below sandlot::testing,
// waiting on a lease's state with a deadline, and reading what a sandbox prints.
// Include after <catch2/catch.hpp>.
#pragma once

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <sandlot/catch2.hpp>

namespace sandlot::e2e {

using namespace std::chrono_literals;

/// A lease request filled like lease_sandbox() fills it, for tests that call the client directly.
inline protocol::lease_request request_for_this_test() {
  protocol::lease_request req;
  req.image = testing::default_image();
  req.run = client::run_from_env();
  req.test = Catch::getResultCapture().getCurrentTestName();
  return req;
}

/// The client::error that `f` raises, or nothing when it succeeds, so a test can check the
/// daemon's status, code and message one by one.
template <class F>
std::optional<client::error> error_from(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const client::error& e) {
    return e;
  }
  return std::nullopt;
}

/// The `{"error": {"code", "message"}}` of a raw answer; both empty when the body has none.
inline protocol::error_body error_of(const client::client::response& res) {
  protocol::error_body out;
  auto body = nlohmann::json::parse(res.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("error") || !body["error"].is_object()) return out;
  const auto& e = body["error"];
  if (e.contains("code") && e["code"].is_string()) out.code = e["code"].get<std::string>();
  if (e.contains("message") && e["message"].is_string()) {
    out.message = e["message"].get<std::string>();
  }
  return out;
}

/// For wait_for_lease: the lease is ready.
inline bool is_ready(const protocol::lease_view& v) {
  return v.state == protocol::lease_state::ready;
}

/// A request_id no other test or run will repeat.
inline std::string unique_request_id() {
  std::random_device rd;
  std::uniform_int_distribution<unsigned long long> dist;
  return "e2e-" + std::to_string(dist(rd));
}

/// Releases a lease created with client::create when the test ends, however it ends, so a failed
/// assertion never leaves a sandbox (or a queued claim on every slot) behind.
class release_on_exit {
 public:
  release_on_exit(const client::client& c, std::string id) : client_(c), id_(std::move(id)) {}
  release_on_exit(const release_on_exit&) = delete;
  release_on_exit& operator=(const release_on_exit&) = delete;
  ~release_on_exit() {
    try {
      client_.release(id_);
    } catch (...) {  // NOLINT(bugprone-empty-catch): already gone, or the TTL reaps it
    }
  }

 private:
  const client::client& client_;
  std::string id_;
};

/// Long-polls the lease until `done(view)` holds or `timeout` passes; returns the last view.
/// Renews on every round so a raw lease (no heartbeat thread) does not expire while it waits.
inline protocol::lease_view wait_for_lease(const client::client& c, const std::string& id,
                                           const std::function<bool(const protocol::lease_view&)>& done,
                                           std::chrono::seconds timeout, bool renew = true) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  protocol::lease_view view = c.get(id);
  while (!done(view) && !protocol::is_final(view.state) && std::chrono::steady_clock::now() < deadline) {
    if (renew) (void)c.renew(id);
    view = c.get(id, /*wait_s=*/2);
  }
  return view;
}

/// Polls `check` until it holds or `timeout` passes, for conditions the API cannot long-poll
/// (a ready lease answers a long-poll at once). Returns whether it held.
inline bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds interval = 200ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (check()) return true;
    if (std::chrono::steady_clock::now() + interval > deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

/// The lease's state as /v1/status lists it, or nothing once it is no longer listed (final).
/// Unlike a GET of the lease itself, reading status does not count as a sign of life, so it can
/// watch a lease without keeping it alive.
inline std::optional<protocol::lease_state> state_in_status(const client::client& c, const std::string& id) {
  for (const auto& l : c.status().leases) {
    if (l.id == id) return l.state;
  }
  return std::nullopt;
}

/// Interface names in a /proc/net/dev listing ("lo", "eth0", ...).
inline std::set<std::string> interfaces(const std::string& proc_net_dev) {
  std::set<std::string> names;
  std::istringstream in(proc_net_dev);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;  // the two header lines have '|' but no ':'
    auto begin = line.find_first_not_of(' ');
    names.insert(line.substr(begin, colon - begin));
  }
  return names;
}

/// The interfaces this test process sees; a `network: host` sandbox shares them.
inline std::set<std::string> host_interfaces() {
  std::ifstream in("/proc/net/dev");
  return interfaces(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
}

/// `s` without trailing newlines or spaces.
inline std::string chomp(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

/// `s` without leading or trailing whitespace (busybox pads some outputs, e.g. `wc -l`).
inline std::string trim(const std::string& s) {
  auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return {};
  auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

/// The value of `key:` in a /proc/<pid>/status listing, tabs and spaces trimmed.
inline std::string status_field(const std::string& proc_status, std::string_view key) {
  std::istringstream in(proc_status);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ':') {
      auto begin = line.find_first_not_of(" \t", key.size() + 1);
      return begin == std::string::npos ? std::string() : chomp(line.substr(begin));
    }
  }
  return {};
}

}  // namespace sandlot::e2e
