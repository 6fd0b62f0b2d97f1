// The sandlot binary against a real orchestratord and engine (docs/test-environment.md): every
// subcommand, and what an operator would check after each control command.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sandlot/client.hpp>

#include "support/daemon_process.hpp"

namespace {

using namespace std::chrono_literals;
using sandlot::itest::daemon_process;
using sandlot::itest::wait_until;
using Catch::Matchers::Contains;
namespace protocol = sandlot::protocol;
namespace fs = std::filesystem;

std::string test_image() {
  const char* v = std::getenv("SANDLOT_TEST_IMAGE");
  return (v != nullptr && *v != '\0') ? v : "127.0.0.1:5000/sandlot/busybox:1";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// A sandlot child process with stdout and stderr in files, stdin from /dev/null.
class cli_process {
 public:
  explicit cli_process(const std::vector<std::string>& args) {
    static int counter = 0;
    const fs::path base = sandlot::itest::scratch_dir() / fmt::format("sandlot-{}", ++counter);
    out_ = base.string() + ".out";
    err_ = base.string() + ".err";
    pid_ = ::fork();
    if (pid_ == 0) exec_child(args);
    REQUIRE(pid_ > 0);
  }
  ~cli_process() {
    if (!code_ && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  cli_process(const cli_process&) = delete;
  cli_process& operator=(const cli_process&) = delete;

  /// The exit code once it exits within `timeout` (-1 for a signal, nullopt if still running).
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    wait_until([&] { return reap(); }, timeout);
    return code_;
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

 private:
  [[noreturn]] void exec_child(const std::vector<std::string>& args) {
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    std::string bin = SANDLOT_CLI;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  bool reap() {
    if (code_) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return true;
  }

  pid_t pid_ = -1;
  std::string out_;
  std::string err_;
  std::optional<int> code_;
};

struct result {
  int code = -1;
  std::string out;
  std::string err;
};

/// Runs `sandlot --url URL args...` to its end (it must end within a minute).
result sandlot_cli(const daemon_process& d, std::vector<std::string> args) {
  args.insert(args.begin(), {"--url", d.url()});
  cli_process p(args);
  auto code = p.wait(60s);
  REQUIRE(code.has_value());
  UNSCOPED_INFO("sandlot " << fmt::format("{}", fmt::join(args, " ")) << "\nstdout:\n" << p.out() << "\nstderr:\n" << p.err());
  return {*code, p.out(), p.err()};
}

protocol::lease_request lease_of(std::string test) {
  protocol::lease_request req;
  req.image = test_image();
  req.run = fmt::format("cli-itest-{}", ::getpid());
  req.test = std::move(test);
  req.ttl_s = 60;
  return req;
}

protocol::lease_view wait_state(const sandlot::client::client& c, const std::string& id, protocol::lease_state want) {
  protocol::lease_view v = c.get(id);
  wait_until([&] {
    v = c.get(id, 1);
    return v.state == want || protocol::is_final(v.state);
  }, 60s);
  return v;
}

std::optional<std::string> waiting_for(const sandlot::client::client& c, const std::string& id) {
  return c.why(id).waiting_for;
}

}  // namespace

TEST_CASE("sandlot exits 3 when no daemon answers and 2 on a usage error", "[cli]") {
  cli_process down({"--url", fmt::format("http://127.0.0.1:{}", sandlot::itest::free_loopback_port()), "status"});
  CHECK(down.wait(60s) == 3);
  CHECK_THAT(down.err(), Contains("no orchestratord answered"));
  cli_process bad({"slots", "0"});
  CHECK(bad.wait(60s) == 2);
  cli_process none({});
  CHECK(none.wait(60s) == 2);
  cli_process help({"watch", "--help"});
  CHECK(help.wait(60s) == 0);
  CHECK_THAT(help.out(), Contains("--once"));
}

TEST_CASE("status, leases, why, runs and health describe a live daemon", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-status"), 2);
  sandlot::client::client c(d.url());
  auto l = c.create(lease_of("cli: status sees me"));
  REQUIRE(wait_state(c, l.id, protocol::lease_state::ready).state == protocol::lease_state::ready);

  auto status = sandlot_cli(d, {"status"});
  CHECK(status.code == 0);
  CHECK_THAT(status.out, Contains("slots     1 of 2 in use"));
  CHECK_THAT(status.out, Contains("cli: status sees me"));

  auto json_status = sandlot_cli(d, {"--json", "status"});
  REQUIRE(json_status.code == 0);
  auto j = nlohmann::json::parse(json_status.out);
  CHECK(j.at("slots_total") == 2);
  CHECK(j.at("lanes").size() == 2);

  auto leases = sandlot_cli(d, {"leases", "--run", l.run});
  CHECK(leases.code == 0);
  CHECK_THAT(leases.out, Contains(l.id));

  auto why = sandlot_cli(d, {"why", "cli: status sees me"});
  CHECK(why.code == 0);
  CHECK_THAT(why.out, Contains(l.id));
  CHECK_THAT(why.out, Contains("waiting   nothing"));

  auto runs = sandlot_cli(d, {"runs"});
  CHECK(runs.code == 0);
  CHECK_THAT(runs.out, Contains(l.run));

  CHECK(sandlot_cli(d, {"health"}).code == 0);
  CHECK(sandlot_cli(d, {"why", "no-such-lease"}).code == 1);
  c.release(l.id);
}

TEST_CASE("why on a test name two leases share lists both and exits 1", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-ambiguous"), 2);
  sandlot::client::client c(d.url());
  auto a = c.create(lease_of("cli: twice"));
  auto b = c.create(lease_of("cli: twice"));
  auto why = sandlot_cli(d, {"why", "cli: twice"});
  CHECK(why.code == 1);
  CHECK_THAT(why.err, Contains(a.id) && Contains(b.id));
  c.release(a.id);
  c.release(b.id);
}

TEST_CASE("slots N growing the budget admits a queued lease", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-slots"), 1);
  sandlot::client::client c(d.url());
  auto holder = c.create(lease_of("cli: holds the only slot"));
  REQUIRE(wait_state(c, holder.id, protocol::lease_state::ready).state == protocol::lease_state::ready);
  auto waiter = c.create(lease_of("cli: waits for a slot"));
  REQUIRE(waiting_for(c, waiter.id) == std::optional<std::string>("slots"));

  auto why = sandlot_cli(d, {"why", "cli: waits for a slot"});
  CHECK(why.code == 0);
  CHECK_THAT(why.out, Contains("waiting   slots"));
  CHECK_THAT(why.out, Contains("cli: holds the only slot"));  // who holds it

  auto slots = sandlot_cli(d, {"slots", "2"});
  CHECK(slots.code == 0);
  CHECK_THAT(slots.out, Contains("slots 2 (was 1)"));
  CHECK(wait_state(c, waiter.id, protocol::lease_state::ready).state == protocol::lease_state::ready);
  c.release(holder.id);
  c.release(waiter.id);
}

TEST_CASE("drain keeps a new lease queued and readyz 503 until resume admits it", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-drain"), 2);
  sandlot::client::client c(d.url());
  auto drain = sandlot_cli(d, {"drain"});
  CHECK(drain.code == 0);
  CHECK_THAT(drain.out, Contains("draining yes"));
  CHECK(c.request("GET", "/readyz").status == 503);
  CHECK(sandlot_cli(d, {"health"}).code == 1);

  auto l = c.create(lease_of("cli: arrives while draining"));
  CHECK(waiting_for(c, l.id) == std::optional<std::string>("draining"));
  CHECK(c.get(l.id).state == protocol::lease_state::queued);
  CHECK(sandlot_cli(d, {"drain", "--wait", "--timeout", "30"}).code == 0);  // nothing holds slots

  auto resume = sandlot_cli(d, {"resume"});
  CHECK(resume.code == 0);
  CHECK_THAT(resume.out, Contains("draining no"));
  CHECK(wait_state(c, l.id, protocol::lease_state::ready).state == protocol::lease_state::ready);
  CHECK(sandlot_cli(d, {"health"}).code == 0);

  // A lease holding slots keeps a drain from completing: --wait gives up with exit 1.
  CHECK(sandlot_cli(d, {"drain", "--wait", "--timeout", "1"}).code == 1);
  c.release(l.id);
  CHECK(sandlot_cli(d, {"drain", "--wait", "--timeout", "60"}).code == 0);
}

TEST_CASE("release ends a lease and its holder's next call gets 410 lease_gone", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-release"), 2);
  sandlot::client::client c(d.url());
  auto l = c.create(lease_of("cli: gets evicted"));
  REQUIRE(wait_state(c, l.id, protocol::lease_state::ready).state == protocol::lease_state::ready);

  auto release = sandlot_cli(d, {"release", l.id, "--reason", "stuck for 20 min"});
  CHECK(release.code == 0);
  CHECK_THAT(release.out, Contains("failed"));
  try {
    c.renew(l.id);
    FAIL("renew after release succeeded");
  } catch (const sandlot::client::error& e) {
    CHECK(e.status() == 410);
    CHECK(e.code() == "lease_gone");
    CHECK_THAT(e.message(), Contains("stuck for 20 min"));
  }
}

TEST_CASE("report prints the summary and writes the HTML and JUnit files", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-report"), 2);
  sandlot::client::client c(d.url());
  auto l = c.create(lease_of("cli: in the report"));
  REQUIRE(wait_state(c, l.id, protocol::lease_state::ready).state == protocol::lease_state::ready);
  c.report_outcome(l.id, "passed");
  c.release(l.id);

  const auto html = sandlot::itest::scratch_dir() / "report.html";
  const auto junit = sandlot::itest::scratch_dir() / "junit.xml";
  auto files = sandlot_cli(d, {"report", l.run, "--html", html.string(), "--junit", junit.string()});
  CHECK(files.code == 0);
  CHECK_THAT(slurp(html), Contains("cli: in the report"));
  CHECK_THAT(slurp(junit), Contains("<testsuite") && Contains("cli: in the report"));

  auto summary = sandlot_cli(d, {"report", l.run});
  CHECK(summary.code == 0);
  CHECK_THAT(summary.out, Contains("leases    1 (0 failed)"));
  CHECK(sandlot_cli(d, {"report", "no-such-run"}).code == 1);
}

TEST_CASE("watch prints a frame, follows changes and exits 3 when the daemon stops", "[cli]") {
  daemon_process d(sandlot::itest::unique_instance("cli-watch"), 2);
  auto once = sandlot_cli(d, {"watch", "--once"});
  CHECK(once.code == 0);
  CHECK_THAT(once.out, Contains("LANES") && Contains("slots 0/2"));
  CHECK(once.out.find('\x1b') == std::string::npos);  // not a terminal: no ANSI

  // Ctrl-C ends a watch cleanly.
  cli_process interrupted({"--url", d.url(), "watch"});
  REQUIRE(wait_until([&] { return interrupted.out().find("LANES") != std::string::npos; }, 30s));
  interrupted.signal(SIGINT);
  CHECK(interrupted.wait(30s) == 0);

  cli_process watch({"--url", d.url(), "watch"});
  REQUIRE(wait_until([&] { return watch.out().find("slots 0/2") != std::string::npos; }, 30s));
  sandlot::client::client c(d.url());
  auto l = c.create(lease_of("cli: watched"));
  CHECK(wait_until([&] { return watch.out().find("cli: watched") != std::string::npos; }, 60s));
  c.release(l.id);
  REQUIRE(d.terminate(30s).has_value());
  CHECK(watch.wait(60s) == 3);
  CHECK_THAT(watch.err(), Contains("closed the event stream"));
}
