// Leases sandboxes the way a team's own Catch2 v3 suite would.
#include <catch2/catch_test_macros.hpp>
#include <sandlot/catch2.hpp>

TEST_CASE("a Catch2 3 test leases a sandbox in one line", "[consumer]") {
  auto sb = sandlot::testing::lease_sandbox();
  const auto r = sb.exec({"echo", "hello from catch2 v3"});
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "hello from catch2 v3\n");
  CHECK(sb.view().test == "a Catch2 3 test leases a sandbox in one line");
}

TEST_CASE("a Catch2 3 test gets a sandbox of its own", "[consumer]") {
  auto first = sandlot::testing::lease_sandbox();
  auto second = sandlot::testing::lease_sandbox();
  CHECK(first.sandbox().id != second.sandbox().id);
  second.write_file("/tmp/mark", "mine");
  CHECK(second.read_file("/tmp/mark") == "mine");
  CHECK(first.exec({"cat", "/tmp/mark"}).exit_code != 0);
}
