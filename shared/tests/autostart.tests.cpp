// The client's daemon on demand: when it may start one, which binary it picks, where the lock and
// log go, what the daemon's environment holds, and how it is started (detached, with nothing of
// the test binary's but its environment). The whole flow against a real daemon and engine is
// scripts/autostart-check.
#include "autostart.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sandlot/client.hpp>
#include <set>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using namespace sandlot::client::detail;
using Catch::Matchers::Contains;

/// Sets (or unsets, with nullopt) an environment variable for one scope.
class scoped_env {
 public:
  scoped_env(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  scoped_env(const scoped_env&) = delete;
  scoped_env& operator=(const scoped_env&) = delete;
  ~scoped_env() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// A fresh directory, removed with everything in it at the end of the test.
struct temp_dir {
  temp_dir() {
    std::string pattern = (fs::temp_directory_path() / "sandlot-autostart-test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

fs::path write_script(const fs::path& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  fs::permissions(path, fs::perms::owner_all);
  return path;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

auto executable_among(std::set<std::string> files) {
  return [files = std::move(files)](const std::string& p) { return files.count(p) > 0; };
}

}  // namespace

TEST_CASE("a client starts a daemon only at the default URL and only when SANDLOT_AUTOSTART allows",
          "[autostart]") {
  CHECK(autostart_allowed(false, nullptr, nullptr));
  CHECK(autostart_allowed(false, "", nullptr));  // empty is unset, as for every SANDLOT_ variable
  CHECK(autostart_allowed(false, nullptr, "1"));
  CHECK(autostart_allowed(false, nullptr, ""));
  // The caller chose a URL, or SANDLOT_URL did (even the default one): that is where they go.
  CHECK_FALSE(autostart_allowed(true, nullptr, nullptr));
  CHECK_FALSE(autostart_allowed(false, "http://127.0.0.1:7345", nullptr));
  CHECK_FALSE(autostart_allowed(false, "http://127.0.0.1:9000", "1"));
  // What CI sets, and its spellings.
  for (const char* off : {"0", "false", "no", "off", "OFF", "False"}) {
    INFO(off);
    CHECK_FALSE(autostart_allowed(false, nullptr, off));
  }
}

TEST_CASE("a client given a URL, or told one by SANDLOT_URL, never starts a daemon",
          "[autostart]") {
  temp_dir tmp;
  const fs::path marker = tmp.path / "started";
  // A stand-in daemon that leaves a mark if anything starts it.
  const fs::path fake =
      write_script(tmp.path / "orchestratord", fmt::format("touch '{}'\n", marker.string()));
  const scoped_env binary("SANDLOT_ORCHESTRATORD", fake.string());
  const scoped_env autostart("SANDLOT_AUTOSTART", std::nullopt);
  const scoped_env runtime("XDG_RUNTIME_DIR", tmp.path.string());
  const scoped_env state("XDG_STATE_HOME", tmp.path.string());

  std::optional<sandlot::client::error> refused;
  SECTION("in options") {
    const scoped_env url("SANDLOT_URL", std::nullopt);
    const sandlot::client::client c("http://127.0.0.1:1");  // nothing listens on port 1
    try {
      (void)c.status();
    } catch (const sandlot::client::error& e) {
      refused = e;
    }
  }
  SECTION("in SANDLOT_URL") {
    const scoped_env url("SANDLOT_URL", "http://127.0.0.1:1");
    const sandlot::client::client c;
    CHECK(c.url() == "http://127.0.0.1:1");
    try {
      (void)c.status();
    } catch (const sandlot::client::error& e) {
      refused = e;
    }
  }
  REQUIRE(refused);
  CHECK(refused->code() == "unreachable");
  CHECK_THAT(refused->message(), Contains("point SANDLOT_URL at a running one"));
  CHECK_THAT(refused->message(), !Contains("starting one failed"));
  CHECK_FALSE(fs::exists(marker));
  CHECK_FALSE(fs::exists(tmp.path / "sandlot"));  // not even a lock was taken
}

TEST_CASE(
    "orchestratord is looked for in SANDLOT_ORCHESTRATORD, beside the library's install, then on "
    "PATH",
    "[autostart]") {
  const std::string lib = "/opt/sandlot/lib/libsandlot_client.so";
  const std::string beside = "/opt/sandlot/bin/orchestratord";
  const std::string on_path = "/usr/local/bin/orchestratord";
  const std::string mine = "/home/me/build/orchestrator/orchestratord";
  const std::string path = "/usr/bin:/usr/local/bin";

  CHECK(find_orchestratord({mine, lib, path}, executable_among({mine, beside, on_path})) == mine);
  CHECK(find_orchestratord({"", lib, path}, executable_among({mine, beside, on_path})) == beside);
  CHECK(find_orchestratord({"", lib, path}, executable_among({on_path})) == on_path);
  // The first PATH entry that has one, as a shell would pick.
  CHECK(find_orchestratord({"", "", "/a:/b:/c"},
                           executable_among({"/b/orchestratord", "/c/orchestratord"})) ==
        "/b/orchestratord");
  // Statically linked into a test executable in PREFIX/bin: the daemon installed beside it.
  CHECK(find_orchestratord({"", "/opt/sandlot/bin/my-tests", ""}, executable_among({beside})) ==
        beside);
  // A relative SANDLOT_ORCHESTRATORD is taken from the current directory, made absolute.
  const std::string relative = (fs::current_path() / "orchestratord").lexically_normal().string();
  CHECK(find_orchestratord({"./orchestratord", "", ""}, executable_among({relative})) == relative);
}

TEST_CASE("empty and relative PATH entries are never searched for orchestratord", "[autostart]") {
  // They mean the current directory, which is wherever the test happens to run.
  std::vector<std::string> asked;
  const auto record = [&asked](const std::string& p) {
    asked.push_back(p);
    return false;
  };
  CHECK_THROWS(find_orchestratord({"", "", ":bin:.:/usr/bin:"}, record));
  CHECK(asked == std::vector<std::string>{"/usr/bin/orchestratord"});
}

TEST_CASE(
    "a SANDLOT_ORCHESTRATORD that names no executable is an error, not a reason to pick another",
    "[autostart]") {
  const std::string on_path = "/usr/bin/orchestratord";
  try {
    (void)find_orchestratord({"/nowhere/orchestratord", "", "/usr/bin"},
                             executable_among({on_path}));
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(),
               Contains("SANDLOT_ORCHESTRATORD=/nowhere/orchestratord is not an executable file"));
    CHECK_THAT(e.what(), Contains("unset it"));
  }
}

TEST_CASE("with no orchestratord anywhere the error says every way to get one", "[autostart]") {
  try {
    (void)find_orchestratord({"", "/opt/sandlot/lib/libx.so", "/usr/bin"}, executable_among({}));
    FAIL("no error");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains("orchestratord was not found (/opt/sandlot/bin, PATH)"));
    CHECK_THAT(what, Contains("cmake --install"));
    CHECK_THAT(what, Contains("put orchestratord on PATH"));
    CHECK_THAT(what, Contains("set SANDLOT_ORCHESTRATORD"));
    CHECK_THAT(what, Contains("set SANDLOT_URL"));
  }
}

TEST_CASE("the library finds the file it was loaded from", "[autostart]") {
  // Linked statically into this test: the executable itself.
  CHECK(this_library_file() == fs::read_symlink("/proc/self/exe").string());
}

TEST_CASE(
    "the start lock lives in the runtime dir and the log in the state dir, or the runtime dir",
    "[autostart]") {
  CHECK(runtime_dir("/run/user/1000", 1000) == "/run/user/1000/sandlot");
  CHECK(runtime_dir(nullptr, 1000) == "/tmp/sandlot-1000");
  CHECK(runtime_dir("", 1000) == "/tmp/sandlot-1000");
  CHECK(runtime_dir("relative", 1000) == "/tmp/sandlot-1000");

  const std::string rt = "/run/user/1000/sandlot";
  CHECK(log_dirs("/state", "/home/me", rt) ==
        std::vector<std::string>{"/state/sandlot", "/home/me/.local/state/sandlot", rt});
  CHECK(log_dirs(nullptr, "/home/me/", rt) ==
        std::vector<std::string>{"/home/me/.local/state/sandlot", rt});
  // A relative XDG_STATE_HOME or HOME is ignored (the XDG spec), an unset HOME leaves the runtime
  // dir.
  CHECK(log_dirs("state", "home", rt) == std::vector<std::string>{rt});
  CHECK(log_dirs(nullptr, nullptr, rt) == std::vector<std::string>{rt});
  CHECK(log_dirs(nullptr, "/", rt) == std::vector<std::string>{"/.local/state/sandlot", rt});
}

TEST_CASE("the daemon's slots and idle exit come through its environment, and the user's own values win",
          "[autostart]") {
  const std::vector<std::string> plain{"PATH=/usr/bin", "HOME=/home/me"};
  const auto with_default = daemon_environment(plain);
  CHECK(with_default == std::vector<std::string>{"PATH=/usr/bin", "HOME=/home/me", "SANDLOT_SLOTS=auto",
                                                 "SANDLOT_IDLE_EXIT=10m"});

  const std::vector<std::string> users{"SANDLOT_IDLE_EXIT=2h", "SANDLOT_SLOTS=3", "PATH=/usr/bin"};
  CHECK(daemon_environment(users) == users);
  CHECK(env_value(daemon_environment(users), "SANDLOT_IDLE_EXIT") == "2h");
  CHECK(env_value(daemon_environment(users), "SANDLOT_SLOTS") == "3");

  // Empty counts as unset (as the daemon reads it): replaced, not duplicated.
  const auto from_empty = daemon_environment({"SANDLOT_IDLE_EXIT=", "PATH=/usr/bin", "SANDLOT_SLOTS="});
  CHECK(from_empty ==
        std::vector<std::string>{"PATH=/usr/bin", "SANDLOT_SLOTS=auto", "SANDLOT_IDLE_EXIT=10m"});
  // A longer name with the same start is another variable.
  CHECK(env_value({"SANDLOT_IDLE_EXIT_X=1"}, "SANDLOT_IDLE_EXIT").empty());
}

TEST_CASE("a started daemon is nobody's child and gets only /dev/null, its log and its environment",
          "[autostart]") {
  temp_dir tmp;
  const fs::path log = tmp.path / "orchestratord.log";
  std::ofstream(log) << "an earlier daemon's line\n";
  const auto offset = fs::file_size(log);
  // A stand-in daemon that reports what it was given, then fails as a daemon with a bad flag would.
  const fs::path fake = write_script(tmp.path / "orchestratord", R"sh(echo "args: $*"
echo "stdin: [$(cat)]"
echo "idle: $SANDLOT_IDLE_EXIT"
if [ -e /proc/$$/fd/50 ]; then echo "fd 50: open"; else echo "fd 50: closed"; fi
echo "sid: $(cut -d' ' -f6 /proc/$$/stat)"
echo "orchestratord: unknown option --bogus" >&2
# Read with exec, not from a forked child: a shell blocks signals around its own forks.
exec grep SigBlk /proc/self/status
)sh");
  // A descriptor the test binary holds without close-on-exec (a CI runner's pipe, say), and
  // SIGTERM blocked in this thread: neither may reach the daemon.
  const int leaked = ::open("/dev/null", O_RDONLY);
  REQUIRE(::dup2(leaked, 50) == 50);
  ::close(leaked);
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigset_t before;
  ::pthread_sigmask(SIG_BLOCK, &term, &before);

  spawn_request req;
  req.binary = fake.string();
  req.args = {"--slots", "auto", "--listen", "127.0.0.1:7345"};
  req.env = daemon_environment({"PATH=/usr/bin:/bin"});
  req.log_file = log.string();
  const pid_t pid = spawn_detached(req);
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  ::close(50);

  CHECK(pid > 0);
  // Not our child: nothing for us to reap, nothing left as a zombie when the test binary ends.
  CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
  CHECK(errno == ECHILD);

  try {
    wait_until_answering(
        pid, [] { return false; }, std::chrono::seconds{20}, log.string(), offset);
    FAIL("the wait did not fail");
  } catch (const std::runtime_error& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Contains("exited before answering /healthz"));
    CHECK_THAT(what, Contains(log.string()));
    CHECK_THAT(what, Contains("orchestratord: unknown option --bogus"));  // its last lines
    CHECK_THAT(what, !Contains("an earlier daemon's line"));              // only this start's
    CHECK_THAT(what, Contains("start one yourself and set SANDLOT_URL"));
  }
  const std::string out = read_file(log);
  CHECK_THAT(out, Contains("an earlier daemon's line\n"));  // appended to, not truncated
  CHECK_THAT(out, Contains("args: --slots auto --listen 127.0.0.1:7345\n"));
  CHECK_THAT(out, Contains("stdin: []\n"));
  CHECK_THAT(out, Contains("idle: 10m\n"));
  CHECK_THAT(out, Contains("fd 50: closed\n"));
  CHECK_THAT(out, Contains("SigBlk:\t0000000000000000\n"));
  CHECK_THAT(out, !Contains(fmt::format("sid: {}\n", ::getsid(0))));  // a session of its own
}

TEST_CASE("a daemon binary that cannot be executed fails the start at once, naming it",
          "[autostart]") {
  temp_dir tmp;
  spawn_request req;
  req.binary = (tmp.path / "not-there").string();
  req.log_file = (tmp.path / "log").string();
  CHECK_THROWS_WITH(spawn_detached(req), Contains("could not execute " + req.binary));
}
