// What a command finds around it: the environment from the lease and from exec (exec wins), the
// user it runs as, the sandbox's hostname, the default working directory, PATH and HOME.
#include <catch2/catch.hpp>

#include <map>
#include <vector>

#include "support.hpp"

using Catch::Matchers::Contains;
using sandlot::testing::lease_sandbox;

TEST_CASE("environment from the lease request and from exec is visible to commands", "[environment]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.env = {{"SANDLOT_E2E_FROM_LEASE", "lease value"}};
  auto sb = lease_sandbox(req);

  // Debian's busybox has no printenv applet; `env` lists everything a command was given.
  auto lease_only = sb.exec({"env"});
  INFO("stderr: " << lease_only.stderr_data);
  CHECK(lease_only.exit_code == 0);
  CHECK_THAT(lease_only.stdout_data, Contains("SANDLOT_E2E_FROM_LEASE=lease value\n"));

  auto both = sb.exec({"env"}, std::nullopt, {{"SANDLOT_E2E_FROM_EXEC", "exec value"}});
  CHECK(both.exit_code == 0);
  CHECK_THAT(both.stdout_data, Contains("SANDLOT_E2E_FROM_LEASE=lease value\n"));
  CHECK_THAT(both.stdout_data, Contains("SANDLOT_E2E_FROM_EXEC=exec value\n"));

  // exec env belongs to that one command, not to the sandbox.
  auto later = sb.exec({"env"});
  CHECK_THAT(later.stdout_data, !Contains("SANDLOT_E2E_FROM_EXEC"));
}

TEST_CASE("an exec variable overrides a lease variable of the same name for that command", "[environment]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.env = {{"SANDLOT_E2E_MODE", "from-lease"}};
  auto sb = lease_sandbox(req);
  const std::vector<std::string> show = {"sh", "-c", "printf %s \"$SANDLOT_E2E_MODE\""};

  const std::map<std::string, std::string> override_it = {{"SANDLOT_E2E_MODE", "from-exec"}};
  CHECK(sb.exec(show, std::nullopt, override_it).stdout_data == "from-exec");
  // Only one definition reaches the command, not both.
  auto listed = sb.exec({"env"}, std::nullopt, override_it).stdout_data;
  CHECK_THAT(listed, !Contains("SANDLOT_E2E_MODE=from-lease"));
  // The next command sees the lease's value again.
  CHECK(sb.exec(show).stdout_data == "from-lease");
}

TEST_CASE("environment values with spaces quotes equals signs and newlines arrive verbatim", "[environment]") {
  const std::string tricky = "a b=c $NOT_EXPANDED \"double\" 'single'\nsecond line";
  auto req = sandlot::e2e::request_for_this_test();
  req.env = {{"SANDLOT_E2E_TRICKY", tricky}};
  auto sb = lease_sandbox(req);
  const std::vector<std::string> show = {"sh", "-c", "printf %s \"$SANDLOT_E2E_TRICKY\""};

  CHECK(sb.exec(show).stdout_data == tricky);
  CHECK(sb.exec(show, std::nullopt, {{"SANDLOT_E2E_TRICKY", tricky + " (exec)"}}).stdout_data ==
        tricky + " (exec)");
}

TEST_CASE("commands run as root with user and group id 0", "[environment]") {
  auto sb = lease_sandbox();
  CHECK(sandlot::e2e::chomp(sb.exec({"id", "-u"}).stdout_data) == "0");
  CHECK(sandlot::e2e::chomp(sb.exec({"id", "-g"}).stdout_data) == "0");
  CHECK(sandlot::e2e::chomp(sb.exec({"whoami"}).stdout_data) == "root");
}

TEST_CASE("the hostname command and HOSTNAME and the hostname file in etc all name the sandbox's host", "[environment]") {
  auto sb = lease_sandbox();
  const std::string& expected = sb.sandbox().hostname;
  REQUIRE_FALSE(expected.empty());
  CHECK(sandlot::e2e::chomp(sb.exec({"hostname"}).stdout_data) == expected);
  CHECK(sb.exec({"sh", "-c", "printf %s \"$HOSTNAME\""}).stdout_data == expected);
  CHECK(sandlot::e2e::chomp(sb.exec({"cat", "/etc/hostname"}).stdout_data) == expected);
  // Named after the lease, so a person reading a hostname in a log can find the lease.
  CHECK_THAT(expected, Contains(sb.id()));
}

TEST_CASE("a command runs in the root directory unless a working directory is asked for", "[environment]") {
  auto sb = lease_sandbox();
  CHECK(sb.exec({"pwd"}).stdout_data == "/\n");
  CHECK(sb.exec({"sh", "-c", "printf %s \"$PWD\""}).stdout_data == "/");
}

TEST_CASE("PATH is set and finds the image's commands", "[environment]") {
  auto sb = lease_sandbox();
  auto path = sb.exec({"sh", "-c", "printf %s \"$PATH\""}).stdout_data;
  INFO("PATH=" << path);
  CHECK_THAT(":" + path + ":", Contains(":/bin:") && Contains(":/usr/bin:"));
  // argv[0] without a slash is looked up on PATH by the runtime too.
  auto which = sb.exec({"which", "sh"});
  CHECK(which.exit_code == 0);
  CHECK_THAT(which.stdout_data, Contains("/sh\n"));
}

TEST_CASE("HOME is root's home directory and exists", "[environment]") {
  auto sb = lease_sandbox();
  CHECK(sb.exec({"sh", "-c", "printf %s \"$HOME\""}).stdout_data == "/root");
  CHECK(sb.exec({"test", "-d", "/root"}).exit_code == 0);
}
