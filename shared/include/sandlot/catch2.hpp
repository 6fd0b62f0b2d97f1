// Catch2 helpers: lease a sandbox in one line, named after the running test case.
//
//   TEST_CASE("echo prints its argument", "[exec]") {
//     auto sb = sandlot::testing::lease_sandbox();
//     CHECK(sb.exec({"echo", "hi"}).stdout_data == "hi\n");
//   }
//
// Works with Catch2 2.13 and 3.x. Include after <catch2/catch.hpp> (v2) or
// <catch2/catch_test_macros.hpp> (v3). To show each test's pass/fail in the run report, register
// the listener once: with v2 next to CATCH_CONFIG_MAIN (v2 declares listener bases only there),
// with v3 in any one translation unit of a binary linked with Catch2WithMain:
//
//   SANDLOT_REGISTER_OUTCOME_LISTENER()
#pragma once

// Which Catch2: v3 has its version macros in a header of their own; v2's single header defines
// them before this file is included.
#if !defined(CATCH_VERSION_MAJOR) && __has_include(<catch2/catch_version_macros.hpp>)
#include <catch2/catch_version_macros.hpp>
#endif
#if defined(CATCH_VERSION_MAJOR) && CATCH_VERSION_MAJOR >= 3
#include <catch2/interfaces/catch_interfaces_capture.hpp>
#include <catch2/reporters/catch_reporter_event_listener.hpp>
#include <catch2/reporters/catch_reporter_registrars.hpp>
#define SANDLOT_CATCH2_V3 1
#endif

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <sandlot/client.hpp>

namespace sandlot::testing {

/// SANDLOT_TEST_IMAGE, or the busybox image scripts/e2e-env pushes to the loopback registry.
inline std::string default_image() {
  const char* v = std::getenv("SANDLOT_TEST_IMAGE");
  return (v != nullptr && *v != '\0') ? std::string(v) : std::string("127.0.0.1:5000/sandlot/busybox:1");
}

/// The client every helper uses (SANDLOT_URL, SANDLOT_TOKEN).
inline const client::client& default_client() {
  static const client::client c;
  return c;
}

/// Lease ids taken by the running test case, for outcome_listener.
inline std::vector<std::string>& leases_of_this_test() {
  static std::vector<std::string> ids;
  return ids;
}

/// Leases a ready sandbox for the running test case. Fields left empty in `req` are filled:
/// image (default_image()), run (SANDLOT_RUN or the ctest invocation), test (the Catch2 test name).
inline client::lease lease_sandbox(protocol::lease_request req = {}) {
  if (req.image.empty()) req.image = default_image();
  if (req.run.empty()) req.run = client::run_from_env();
  if (req.test.empty()) req.test = Catch::getResultCapture().getCurrentTestName();
  auto l = client::lease::acquire(default_client(), std::move(req));
  leases_of_this_test().push_back(l.id());
  // On stdout, so the JUnit report (and Catch2's -s) names the lease and sandbox of each test.
  std::cout << "sandlot: lease " << l.id() << " (" << l.name() << ") sandbox " << l.sandbox().name
            << " image " << l.sandbox().image << " run " << l.view().run << '\n';
  return l;
}

/// Tells the daemon whether each test passed, for the run report.
inline void report_outcomes_of_this_test(bool failed) {
  const char* outcome = failed ? "failed" : "passed";
  for (const auto& id : leases_of_this_test()) {
    try {
      default_client().report_outcome(id, outcome);
    } catch (const std::exception& e) {
      // The report only loses a colour; the test's own result stands.
      std::cerr << "sandlot: could not report the outcome of lease " << id << ": " << e.what() << '\n';
    }
  }
  leases_of_this_test().clear();
}

}  // namespace sandlot::testing

/// Registers a Catch2 listener that reports each test's pass/fail to the daemon (GET /v1/runs/{id}
/// shows it). Use once per test binary: with Catch2 v2 in the translation unit that defines
/// CATCH_CONFIG_MAIN (v2 only declares listener bases there), with v3 in any one.
#if defined(SANDLOT_CATCH2_V3)
#define SANDLOT_REGISTER_OUTCOME_LISTENER()                                                   \
  namespace sandlot::testing {                                                                \
  class outcome_listener : public Catch::EventListenerBase {                                  \
   public:                                                                                    \
    using Catch::EventListenerBase::EventListenerBase;                                        \
    void testCaseStarting(const Catch::TestCaseInfo&) override { leases_of_this_test().clear(); } \
    void testCaseEnded(const Catch::TestCaseStats& stats) override {                          \
      report_outcomes_of_this_test(stats.totals.assertions.failed > 0);                       \
    }                                                                                         \
  };                                                                                          \
  }                                                                                           \
  using sandlot_outcome_listener = sandlot::testing::outcome_listener;                        \
  CATCH_REGISTER_LISTENER(sandlot_outcome_listener)
#else
#define SANDLOT_REGISTER_OUTCOME_LISTENER()                                                   \
  namespace sandlot::testing {                                                                \
  class outcome_listener : public Catch::TestEventListenerBase {                              \
   public:                                                                                    \
    using Catch::TestEventListenerBase::TestEventListenerBase;                                \
    void testCaseStarting(const Catch::TestCaseInfo& info) override {                         \
      leases_of_this_test().clear();                                                          \
      Catch::TestEventListenerBase::testCaseStarting(info);                                   \
    }                                                                                         \
    void testCaseEnded(const Catch::TestCaseStats& stats) override {                          \
      report_outcomes_of_this_test(stats.totals.assertions.failed > 0);                       \
      Catch::TestEventListenerBase::testCaseEnded(stats);                                     \
    }                                                                                         \
  };                                                                                          \
  }                                                                                           \
  using sandlot_outcome_listener = sandlot::testing::outcome_listener;                        \
  CATCH_REGISTER_LISTENER(sandlot_outcome_listener)
#endif
