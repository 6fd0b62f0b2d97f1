// Running commands in a sandbox: output of any size and any bytes, exit codes (signals too),
// stdin, argv without a shell, working directory, timeouts and commands running side by side.
#include <catch2/catch.hpp>

#include <future>

#include "support.hpp"

using namespace std::chrono_literals;
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

TEST_CASE("a command that prints nothing returns empty stdout and stderr", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"true"});
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data.empty());
  CHECK(r.stderr_data.empty());
  CHECK_FALSE(r.truncated);
}

TEST_CASE("output without a final newline comes back exactly as printed", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"printf", "  leading and trailing spaces  "});
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "  leading and trailing spaces  ");
}

TEST_CASE("exit codes up to 255 are reported unchanged", "[exec]") {
  auto sb = lease_sandbox();
  for (int code : {2, 100, 126, 255}) {
    INFO("exit " << code);
    CHECK(sb.exec({"sh", "-c", "exit " + std::to_string(code)}).exit_code == code);
  }
}

TEST_CASE("a command killed by a signal reports 128 plus the signal number", "[exec]") {
  auto sb = lease_sandbox();
  // The shell signals itself, so nothing else in the sandbox is touched.
  CHECK(sb.exec({"sh", "-c", "kill -TERM $$"}).exit_code == 128 + 15);
  CHECK(sb.exec({"sh", "-c", "kill -KILL $$"}).exit_code == 128 + 9);
}

TEST_CASE("a large stdout and stderr come back whole", "[exec]") {
  auto sb = lease_sandbox();
  // About 2 MiB on stdout and 0.3 MiB on stderr, interleaved by the engine's stream framing.
  auto r = sb.exec({"sh", "-c", "seq 1 300000; seq 1 50000 >&2"});
  std::string out;
  for (int i = 1; i <= 300000; ++i) out += std::to_string(i) + "\n";
  std::string err;
  for (int i = 1; i <= 50000; ++i) err += std::to_string(i) + "\n";

  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.truncated);
  CHECK(r.stdout_data.size() == out.size());
  CHECK(r.stderr_data.size() == err.size());
  // Compared as a whole but reported as a flag: a 2 MiB string in a failure message helps nobody.
  const bool stdout_whole = r.stdout_data == out;
  const bool stderr_whole = r.stderr_data == err;
  CHECK(stdout_whole);
  CHECK(stderr_whole);
}

TEST_CASE("output beyond the 4 MiB cap is cut and flagged as truncated", "[exec]") {
  auto sb = lease_sandbox();
  constexpr std::size_t cap = 4u * 1024u * 1024u;  // the daemon's default --max-output-bytes
  // 5 MiB of eight-byte lines, then a word on stderr: the command itself runs to its end.
  auto r = sb.exec({"sh", "-c", "yes xxxxxxx | head -c 5242880; echo finished >&2"});
  CHECK(r.exit_code == 0);
  CHECK(r.truncated);
  CHECK(r.stdout_data.size() == cap);
  const bool only_lines = r.stdout_data.find_first_not_of("x\n") == std::string::npos;
  CHECK(only_lines);
  CHECK(r.stderr_data == "finished\n");
}

TEST_CASE("every ASCII byte including NUL passes through stdin and stdout unchanged", "[exec]") {
  auto sb = lease_sandbox();
  std::string bytes;
  for (int round = 0; round < 4; ++round) {
    for (int b = 0; b < 128; ++b) bytes.push_back(static_cast<char>(b));
  }
  auto r = sb.exec({"cat"}, bytes);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data.size() == bytes.size());
  const bool same = r.stdout_data == bytes;
  CHECK(same);

  // Bytes a command prints itself, NUL and escape included.
  auto printed = sb.exec({"printf", "a\\000b\\tc\\033[0m\\r\\n"});
  CHECK(printed.stdout_data == std::string("a\0b\tc\033[0m\r\n", 11));
}

TEST_CASE("UTF-8 text passes through stdin and stdout unchanged", "[exec]") {
  auto sb = lease_sandbox();
  const std::string text = "Grüße, 日本語, Ελληνικά and 🚀\n";
  auto r = sb.exec({"cat"}, text);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == text);
  // wc counts bytes, so multi-byte characters arrived as they were sent.
  CHECK(sandlot::e2e::trim(sb.exec({"wc", "-c"}, text).stdout_data) == std::to_string(text.size()));
}

TEST_CASE("an empty stdin gives the command an immediate end of file", "[exec]") {
  auto sb = lease_sandbox();
  sandlot::protocol::exec_request req;
  req.argv = {"cat"};
  req.stdin_data = "";
  req.timeout_s = 10;
  auto r = sb.exec(req);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data.empty());
}

TEST_CASE("a command given no stdin reads end of file at once", "[exec]") {
  auto sb = lease_sandbox();
  sandlot::protocol::exec_request req;
  req.argv = {"sh", "-c", "cat; echo read-to-the-end"};
  req.timeout_s = 10;
  auto r = sb.exec(req);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout_data == "read-to-the-end\n");
}

TEST_CASE("output printed before a timeout is returned with it", "[exec]") {
  auto sb = lease_sandbox();
  sandlot::protocol::exec_request req;
  req.argv = {"sh", "-c", "echo before; echo warned >&2; sleep 30; echo after"};
  req.timeout_s = 1;
  auto r = sb.exec(req);
  CHECK(r.timed_out);
  CHECK(r.exit_code == -1);
  CHECK(r.stdout_data == "before\n");
  CHECK(r.stderr_data == "warned\n");
}

TEST_CASE("the reported duration covers the time the command ran", "[exec]") {
  auto sb = lease_sandbox();
  auto r = sb.exec({"sleep", "1"});
  CHECK(r.exit_code == 0);
  CHECK(r.duration_s >= 1.0);
  CHECK(r.duration_s < 30.0);
}

TEST_CASE("two commands run side by side in one sandbox", "[exec]") {
  auto sb = lease_sandbox();
  // Each command announces itself, then waits for the other's announcement: run one after the
  // other, the first would give up after about 10 s and exit 3.
  auto meet = [&](const std::string& me, const std::string& other) {
    return sb.exec({"sh", "-c",
                    "touch /tmp/$1; i=0; while [ ! -e /tmp/$2 ]; do i=$((i+1)); "
                    "[ $i -gt 100 ] && exit 3; sleep 0.1; done; echo $1 met $2",
                    "sh", me, other},
                   std::nullopt, {}, /*timeout_s=*/30);
  };
  auto a = std::async(std::launch::async, meet, "left", "right");
  auto b = std::async(std::launch::async, meet, "right", "left");
  auto ra = a.get();
  auto rb = b.get();
  CHECK(ra.exit_code == 0);
  CHECK(rb.exit_code == 0);
  CHECK(ra.stdout_data == "left met right\n");
  CHECK(rb.stdout_data == "right met left\n");
}

TEST_CASE("a process started in the background outlives the exec that started it", "[exec]") {
  auto sb = lease_sandbox();
  // Its output goes elsewhere, so the exec's streams close when the shell exits.
  auto r = sb.exec({"sh", "-c", "sleep 300 >/dev/null 2>&1 & echo started"}, std::nullopt, {}, 20);
  CHECK(r.exit_code == 0);
  CHECK_FALSE(r.timed_out);
  CHECK(r.stdout_data == "started\n");
  CHECK_THAT(sb.exec({"ps", "-o", "args"}).stdout_data, Catch::Contains("sleep 300"));
}
