// Leases sandboxes the way a team's own Catch2 2.13 suite would.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#include <sandlot/catch2.hpp>

SANDLOT_REGISTER_OUTCOME_LISTENER()

TEST_CASE("a Catch2 2 test leases a sandbox in one line", "[consumer]") {
  auto sb = sandlot::testing::lease_sandbox();
  const auto r = sb.exec({"echo", "hello from catch2 v2"});
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "hello from catch2 v2\n");
  CHECK(sb.view().test == "a Catch2 2 test leases a sandbox in one line");
}

TEST_CASE("a Catch2 2 test gets a sandbox of its own", "[consumer]") {
  auto first = sandlot::testing::lease_sandbox();
  auto second = sandlot::testing::lease_sandbox();
  CHECK(first.sandbox().id != second.sandbox().id);
  second.write_file("/tmp/mark", "mine");
  CHECK(second.read_file("/tmp/mark") == "mine");
  CHECK(first.exec({"cat", "/tmp/mark"}).exit_code != 0);
}
