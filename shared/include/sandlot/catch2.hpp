// Catch2 helpers: lease a sandbox in one line, named after the running test case.
//
//   TEST_CASE("echo prints its argument", "[exec]") {
//     auto sb = sandlot::testing::lease_sandbox();
//     CHECK(sb.exec({"echo", "hi"}).stdout_data == "hi\n");
//   }
//
// Include after <catch2/catch.hpp>.
#pragma once

#include <cstdlib>
#include <string>

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

/// Leases a ready sandbox for the running test case. Fields left empty in `req` are filled:
/// image (default_image()), run (SANDLOT_RUN or the ctest invocation), test (the Catch2 test name).
inline client::lease lease_sandbox(protocol::lease_request req = {}) {
  if (req.image.empty()) req.image = default_image();
  if (req.run.empty()) req.run = client::run_from_env();
  if (req.test.empty()) req.test = Catch::getResultCapture().getCurrentTestName();
  return client::lease::acquire(default_client(), std::move(req));
}

}  // namespace sandlot::testing
