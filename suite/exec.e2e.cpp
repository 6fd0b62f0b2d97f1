// Running commands in a sandbox: output, exit codes, stdin, environment, argv without a shell,
// state that persists between execs, working directory and timeouts.
#include <catch2/catch.hpp>

#include "support.hpp"

using sandlot::testing::lease_sandbox;

TEST_CASE("echo prints its arguments on stdout", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"echo", "hello", "sandlot"});
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "hello sandlot\n");
  CHECK(r.stderr_data.empty());
  CHECK_FALSE(r.timed_out);
  CHECK_FALSE(r.truncated);
}

TEST_CASE("a command's stderr comes back apart from its stdout", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"sh", "-c", "echo to-out; echo to-err >&2"});
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "to-out\n");
  CHECK(r.stderr_data == "to-err\n");
}

TEST_CASE("a non-zero exit code is reported as it was", "[exec]") {
  auto sb = lease_sandbox();
  CHECK(sb.exec({"sh", "-c", "exit 7"}).exit_code == 7);
  CHECK(sb.exec({"false"}).exit_code == 1);
}

TEST_CASE("stdin is passed through to the command", "[exec]") {
  auto sb = lease_sandbox();
  const std::string input = "first line\nsecond line with $dollar and 'quotes'\n";
  auto r = sb.exec({"cat"}, input);
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == input);

  auto counted = sb.exec({"wc", "-l"}, input);
  CHECK(sandlot::e2e::trim(counted.stdout_data) == "2");
}

TEST_CASE("argv reaches the command verbatim and never through a shell", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"echo", "$HOME", "*", ";", "a|b", "`id`", "x > /tmp/y"});
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "$HOME * ; a|b `id` x > /tmp/y\n");
  // Had a shell seen "x > /tmp/y", the file would now exist.
  CHECK(sb.exec({"test", "-e", "/tmp/y"}).exit_code != 0);
}

TEST_CASE("environment from the lease request and from exec is visible to commands", "[exec]") {
  auto req = sandlot::e2e::request_for_this_test();
  req.env = {{"SANDLOT_E2E_FROM_LEASE", "lease value"}};
  auto sb = lease_sandbox(req);

  // Debian's busybox has no printenv applet; `env` lists everything a command was given.
  auto lease_only = sb.exec({"env"});
  INFO("stderr: " << lease_only.stderr_data);
  CHECK(lease_only.exit_code == 0);
  CHECK_THAT(lease_only.stdout_data, Catch::Matchers::Contains("SANDLOT_E2E_FROM_LEASE=lease value\n"));

  auto both = sb.exec({"env"}, std::nullopt, {{"SANDLOT_E2E_FROM_EXEC", "exec value"}});
  CHECK(both.exit_code == 0);
  CHECK_THAT(both.stdout_data, Catch::Matchers::Contains("SANDLOT_E2E_FROM_LEASE=lease value\n"));
  CHECK_THAT(both.stdout_data, Catch::Matchers::Contains("SANDLOT_E2E_FROM_EXEC=exec value\n"));

  // exec env belongs to that one command, not to the sandbox.
  auto later = sb.exec({"env"});
  CHECK_THAT(later.stdout_data, !Catch::Matchers::Contains("SANDLOT_E2E_FROM_EXEC"));
}

TEST_CASE("a file written by one exec is read by the next", "[exec]") {
  auto sb = lease_sandbox();
  auto write = sb.exec({"sh", "-c", "printf 'kept between execs\\n' > /tmp/state.txt"});
  INFO("stderr: " << write.stderr_data);
  REQUIRE(write.exit_code == 0);
  auto read = sb.exec({"cat", "/tmp/state.txt"});
  CHECK(read.exit_code == 0);
  CHECK(read.stdout_data == "kept between execs\n");
}

TEST_CASE("a command runs in the requested working directory", "[exec]") {
  auto sb = lease_sandbox();
  sandlot::protocol::exec_request req;
  req.argv = {"pwd"};
  req.workdir = "/tmp";
  auto r = sb.exec(req);
  INFO("stderr: " << r.stderr_data);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "/tmp\n");
}

TEST_CASE("a command that outlives its timeout is stopped and reported as timed out", "[exec]") {
  auto sb = lease_sandbox();
  sandlot::protocol::exec_request req;
  req.argv = {"sh", "-c", "sleep 30; echo finished"};
  req.timeout_s = 1;
  auto r = sb.exec(req);
  CHECK(r.timed_out);
  CHECK(r.exit_code != 0);
  CHECK(r.stdout_data.find("finished") == std::string::npos);
  // The command and its child are gone, and the sandbox is still usable afterwards.
  auto ps = sb.exec({"ps", "-o", "args"});
  CHECK(ps.exit_code == 0);
  CHECK(ps.stdout_data.find("sleep 30") == std::string::npos);
}

TEST_CASE("a command that does not exist fails with the runtime's reason on stderr", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"no-such-command-here"});
  CHECK(r.exit_code != 0);
  CHECK(r.stdout_data.empty());
  CHECK_THAT(r.stderr_data, Catch::Contains("no-such-command-here"));
}
