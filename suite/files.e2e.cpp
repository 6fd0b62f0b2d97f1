// Files inside a sandbox, written and read through exec the way a test does it today (there is no
// file endpoint yet): content through stdin comes back byte for byte, modes and links behave, /tmp
// is writable, and a new sandbox starts from the image's clean filesystem.
#include <catch2/catch.hpp>

#include <random>

#include "support.hpp"

using Catch::Matchers::Contains;
using sandlot::testing::lease_sandbox;

namespace {

// Writes `content` to `path` through stdin; argv carries the path, so no quoting is involved.
void write_file(const sandlot::client::lease& sb, const std::string& path,
                const std::string& content) {
  auto r = sb.exec({"sh", "-c", "cat > \"$1\"", "sh", path}, content);
  INFO("writing " << path << ": " << r.stderr_data);
  REQUIRE(r.exit_code == 0);
}

std::string read_file(const sandlot::client::lease& sb, const std::string& path) {
  auto r = sb.exec({"cat", path});
  INFO("reading " << path << ": " << r.stderr_data);
  REQUIRE(r.exit_code == 0);
  return r.stdout_data;
}

std::string mode_of(const sandlot::client::lease& sb, const std::string& path) {
  return sandlot::e2e::chomp(sb.exec({"stat", "-c", "%a", path}).stdout_data);
}

}  // namespace

TEST_CASE("a file written by one exec is read by the next", "[files]") {
  auto sb = lease_sandbox();
  auto write = sb.exec({"sh", "-c", "printf 'kept between execs\\n' > /tmp/state.txt"});
  INFO("stderr: " << write.stderr_data);
  REQUIRE(write.exit_code == 0);
  auto read = sb.exec({"cat", "/tmp/state.txt"});
  CHECK(read.exit_code == 0);
  CHECK(read.stdout_data == "kept between execs\n");
}

TEST_CASE("a file written through stdin reads back byte for byte", "[files]") {
  auto sb = lease_sandbox();
  const std::string content = "line one\n\ttabbed $HOME `id` 'quoted'\n\nno final newline";
  write_file(sb, "/tmp/note.txt", content);
  CHECK(read_file(sb, "/tmp/note.txt") == content);
  CHECK(sandlot::e2e::trim(sb.exec({"wc", "-c", "/tmp/note.txt"}).stdout_data) ==
        std::to_string(content.size()) + " /tmp/note.txt");
}

TEST_CASE("a 256 KiB payload written through stdin reads back byte for byte", "[files]") {
  auto sb = lease_sandbox();
  // Printable bytes and newlines from a fixed seed: the same payload every run, no pattern to hide
  // a dropped or repeated chunk.
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> pick(0, 95);
  std::string payload(256u * 1024u, ' ');
  for (auto& ch : payload) {
    int v = pick(rng);
    ch = v == 95 ? '\n' : static_cast<char>(' ' + v);
  }
  write_file(sb, "/tmp/payload.bin", payload);

  CHECK(sandlot::e2e::trim(sb.exec({"wc", "-c", "/tmp/payload.bin"}).stdout_data) ==
        "262144 /tmp/payload.bin");
  auto back = read_file(sb, "/tmp/payload.bin");
  CHECK(back.size() == payload.size());
  const bool identical = back == payload;
  CHECK(identical);
}

TEST_CASE("appending through stdin extends a file", "[files]") {
  auto sb = lease_sandbox();
  write_file(sb, "/tmp/log.txt", "first\n");
  auto r = sb.exec({"sh", "-c", "cat >> /tmp/log.txt"}, std::string("second\n"));
  REQUIRE(r.exit_code == 0);
  CHECK(read_file(sb, "/tmp/log.txt") == "first\nsecond\n");
}

TEST_CASE("new files and directories get their modes from umask 022", "[files]") {
  auto sb = lease_sandbox();
  REQUIRE(sb.exec({"touch", "/tmp/plain"}).exit_code == 0);
  REQUIRE(sb.exec({"mkdir", "/tmp/folder"}).exit_code == 0);
  CHECK(mode_of(sb, "/tmp/plain") == "644");
  CHECK(mode_of(sb, "/tmp/folder") == "755");
}

TEST_CASE("chmod sets the mode that stat reports", "[files]") {
  auto sb = lease_sandbox();
  write_file(sb, "/tmp/secret", "s3cret\n");
  REQUIRE(sb.exec({"chmod", "600", "/tmp/secret"}).exit_code == 0);
  CHECK(mode_of(sb, "/tmp/secret") == "600");
  REQUIRE(sb.exec({"chmod", "u=rwx,g=rx,o=", "/tmp/secret"}).exit_code == 0);
  CHECK(mode_of(sb, "/tmp/secret") == "750");
  auto long_listing = sb.exec({"ls", "-l", "/tmp/secret"}).stdout_data;
  CHECK(long_listing.substr(0, 10) == "-rwxr-x---");
}

TEST_CASE("a script written through stdin runs once it is made executable", "[files]") {
  auto sb = lease_sandbox();
  write_file(sb, "/tmp/greet.sh", "#!/bin/sh\necho \"hello from a script, $1\"\n");

  auto before = sb.exec({"/tmp/greet.sh", "world"});
  CHECK(before.exit_code == 126);  // found, but not executable
  REQUIRE(sb.exec({"chmod", "+x", "/tmp/greet.sh"}).exit_code == 0);
  auto after = sb.exec({"/tmp/greet.sh", "world"});
  INFO("stderr: " << after.stderr_data);
  CHECK(after.exit_code == 0);
  CHECK(after.stdout_data == "hello from a script, world\n");
}

TEST_CASE("the tmp directory is sticky and world-writable and mktemp makes unique files in it", "[files]") {
  auto sb = lease_sandbox();
  CHECK(mode_of(sb, "/tmp") == "1777");
  auto one = sandlot::e2e::chomp(sb.exec({"mktemp"}).stdout_data);
  auto two = sandlot::e2e::chomp(sb.exec({"mktemp"}).stdout_data);
  CHECK_THAT(one, Catch::Matchers::StartsWith("/tmp/"));
  CHECK_THAT(two, Catch::Matchers::StartsWith("/tmp/"));
  CHECK(one != two);
  CHECK(sb.exec({"test", "-f", one}).exit_code == 0);
  CHECK(sb.exec({"test", "-f", two}).exit_code == 0);
}

TEST_CASE("a directory tree made by one exec is listed by the next", "[files]") {
  auto sb = lease_sandbox();
  auto made = sb.exec({"sh", "-c",
                       "mkdir -p /tmp/tree/src/lib /tmp/tree/docs && "
                       "echo a > /tmp/tree/src/main.c && echo b > /tmp/tree/src/lib/util.c && "
                       "echo c > /tmp/tree/docs/README"});
  INFO("stderr: " << made.stderr_data);
  REQUIRE(made.exit_code == 0);

  auto listed = sb.exec({"sh", "-c", "cd /tmp/tree && find . | sort"});
  CHECK(listed.stdout_data ==
        ".\n./docs\n./docs/README\n./src\n./src/lib\n./src/lib/util.c\n./src/main.c\n");
  auto files = sb.exec({"sh", "-c", "find /tmp/tree -type f | wc -l"});
  CHECK(sandlot::e2e::trim(files.stdout_data) == "3");
}

TEST_CASE("a removed file is gone for the next exec", "[files]") {
  auto sb = lease_sandbox();
  write_file(sb, "/tmp/doomed", "soon gone\n");
  REQUIRE(sb.exec({"rm", "/tmp/doomed"}).exit_code == 0);
  auto r = sb.exec({"cat", "/tmp/doomed"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.stderr_data, Contains("No such file"));
}

TEST_CASE("a symbolic link leads to its target", "[files]") {
  auto sb = lease_sandbox();
  write_file(sb, "/tmp/target.txt", "through the link\n");
  REQUIRE(sb.exec({"ln", "-s", "/tmp/target.txt", "/tmp/link"}).exit_code == 0);
  CHECK(sandlot::e2e::chomp(sb.exec({"readlink", "/tmp/link"}).stdout_data) == "/tmp/target.txt");
  CHECK(read_file(sb, "/tmp/link") == "through the link\n");
}

TEST_CASE("a relative path is resolved against the exec's working directory", "[files]") {
  auto sb = lease_sandbox();
  REQUIRE(sb.exec({"mkdir", "-p", "/tmp/work"}).exit_code == 0);
  sandlot::protocol::exec_request req;
  req.argv = {"sh", "-c", "echo relative > out.txt"};
  req.workdir = "/tmp/work";
  REQUIRE(sb.exec(req).exit_code == 0);
  CHECK(read_file(sb, "/tmp/work/out.txt") == "relative\n");
  CHECK(sb.exec({"test", "-e", "/out.txt"}).exit_code != 0);
}

TEST_CASE("a file name with spaces and non-ASCII letters passes through argv unchanged", "[files]") {
  auto sb = lease_sandbox();
  const std::string name = "/tmp/report for Zoë (final).txt";
  write_file(sb, name, "ok\n");
  CHECK(read_file(sb, name) == "ok\n");
  // find prints names as they are (busybox ls shows non-ASCII bytes as '?').
  auto listed = sb.exec({"find", "/tmp", "-name", "report*"});
  CHECK(listed.stdout_data == name + "\n");
}

TEST_CASE("files from an earlier sandbox are gone when a new one is leased", "[files]") {
  std::string first_id;
  {
    auto sb = lease_sandbox();
    first_id = sb.sandbox().id;
    write_file(sb, "/tmp/left-behind", "from the first sandbox\n");
    write_file(sb, "/root/also-left", "from the first sandbox\n");
    REQUIRE(sb.exec({"test", "-f", "/tmp/left-behind"}).exit_code == 0);
  }
  auto sb = lease_sandbox();
  CHECK(sb.sandbox().id != first_id);
  CHECK(sb.exec({"test", "-e", "/tmp/left-behind"}).exit_code != 0);
  CHECK(sb.exec({"test", "-e", "/root/also-left"}).exit_code != 0);
}
