// What the integration and fault tests share: images from the environment, lease requests, error
// bodies, cleanup of an instance's containers, and a listener that prints the daemons' logs of a
// failing test. Include after <catch2/catch.hpp> in the file that defines CATCH_CONFIG_MAIN.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

#include "support/daemon_process.hpp"
#include "support/engine_probe.hpp"

namespace sandlot::itest {

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : std::string(fallback);
}

inline std::string test_image() { return env_or("SANDLOT_TEST_IMAGE", "127.0.0.1:5000/sandlot/busybox:1"); }
inline std::string cold_image() { return env_or("SANDLOT_COLD_IMAGE", "127.0.0.1:5000/sandlot/cold:1"); }

/// A lease request of this test process's run.
inline protocol::lease_request lease_of(std::string image, std::string test, int ttl_s = 30) {
  protocol::lease_request req;
  req.image = std::move(image);
  req.run = fmt::format("itest-{}", getpid());
  req.test = std::move(test);
  req.ttl_s = ttl_s;
  return req;
}

/// Long-polls until the lease is ready or final, within `timeout`.
inline protocol::lease_view wait_settled(const client::client& c, const std::string& id,
                                         std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto v = c.get(id);
  while (v.state != protocol::lease_state::ready && !protocol::is_final(v.state)) {
    auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    if (left <= std::chrono::seconds(0)) break;
    v = c.get(id, static_cast<int>(std::min<std::chrono::seconds::rep>(left.count(), 30)));
  }
  return v;
}

/// A daemon error body, decoded; `code` is empty when the body is not one.
struct api_error_seen {
  int status = 0;
  std::string code;
  std::string message;
};

inline api_error_seen error_of(const client::client::response& r) {
  api_error_seen out;
  out.status = r.status;
  const auto j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    out.code = j["error"].value("code", "");
    out.message = j["error"].value("message", "");
  }
  return out;
}

/// Removes whatever an instance still has on the engine when a test ends, so that a failing test
/// does not leak sandboxes. Declare it before the daemon_process: it runs after the daemon stopped.
struct leftover_guard {
  const engine_probe& engine;
  std::string instance;
  leftover_guard(const engine_probe& e, std::string i) : engine(e), instance(std::move(i)) {}
  leftover_guard(const leftover_guard&) = delete;
  leftover_guard& operator=(const leftover_guard&) = delete;
  ~leftover_guard() {
    try {
      if (int n = engine.remove_containers_of(instance); n > 0) {
        std::cout << "cleanup: removed " << n << " leftover container(s) of instance " << instance << "\n";
      }
    } catch (const std::exception& e) {
      std::cout << "cleanup of instance " << instance << " failed: " << e.what() << "\n";
    }
  }
};

}  // namespace sandlot::itest

/// Registers a listener that prints the logs of every daemon a failing test started, and removes
/// the scratch directory of a passing run (SANDLOT_ITEST_KEEP_LOGS=1 keeps it). Use once, in the
/// file that defines CATCH_CONFIG_MAIN (Catch2 v2 declares listener bases only there).
#define SANDLOT_ITEST_LOG_PRINTER()                                                                     \
  namespace sandlot::itest {                                                                            \
  class daemon_log_printer : public Catch::TestEventListenerBase {                                      \
   public:                                                                                              \
    using Catch::TestEventListenerBase::TestEventListenerBase;                                          \
    void testCaseStarting(const Catch::TestCaseInfo& info) override {                                   \
      forget_started_daemons();                                                                         \
      Catch::TestEventListenerBase::testCaseStarting(info);                                             \
    }                                                                                                   \
    void testCaseEnded(const Catch::TestCaseStats& stats) override {                                    \
      if (stats.totals.assertions.failed > 0) {                                                         \
        any_failed_ = true;                                                                             \
        for (const auto& log : started_daemon_logs()) {                                                 \
          std::cout << "\n---------- orchestratord log " << log.string() << " ----------\n"             \
                    << file_tail(log, 64 * 1024) << "---------- end of log ----------\n";               \
        }                                                                                               \
      }                                                                                                 \
      Catch::TestEventListenerBase::testCaseEnded(stats);                                               \
    }                                                                                                   \
    void testRunEnded(const Catch::TestRunStats& stats) override {                                      \
      const char* keep = std::getenv("SANDLOT_ITEST_KEEP_LOGS");                                        \
      const bool keep_logs = keep != nullptr && *keep != '\0' && std::string_view(keep) != "0";         \
      if (!keep_logs && !any_failed_ && stats.totals.assertions.failed == 0) {                          \
        std::error_code ignored;                                                                        \
        std::filesystem::remove_all(scratch_dir(), ignored);                                            \
      } else {                                                                                          \
        std::cout << "daemon logs kept in " << scratch_dir().string() << "\n";                          \
      }                                                                                                 \
      Catch::TestEventListenerBase::testRunEnded(stats);                                                \
    }                                                                                                   \
                                                                                                        \
   private:                                                                                             \
    bool any_failed_ = false;                                                                           \
  };                                                                                                    \
  }                                                                                                     \
  using sandlot_itest_log_printer = sandlot::itest::daemon_log_printer;                                 \
  CATCH_REGISTER_LISTENER(sandlot_itest_log_printer)
