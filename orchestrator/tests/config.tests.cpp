// orchestratord's settings as an operator gives them: flags, a TOML file, or both.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "config.hpp"
#include "metrics.hpp"

namespace {

using sandlot::orchestrator::daemon_config;
using sandlot::orchestrator::histogram;
using sandlot::orchestrator::parse_config;

/// Parses a command line as main() would see it; the program name is added.
daemon_config parse(std::initializer_list<std::string> args) {
  std::vector<std::string> storage{"orchestratord"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  auto cfg = parse_config(static_cast<int>(storage.size()), argv.data());
  REQUIRE(cfg.has_value());
  return *cfg;
}

/// Environment variables set for one test and unset when it ends.
struct env_guard {
  std::vector<std::string> names;
  void set(const std::string& name, const std::string& value) {
    ::setenv(name.c_str(), value.c_str(), 1);
    names.push_back(name);
  }
  ~env_guard() {
    for (const auto& n : names) ::unsetenv(n.c_str());
  }
};

/// A config file under the temp directory, removed when the test ends. The pid keeps parallel
/// test processes apart.
class temp_toml {
 public:
  temp_toml(const std::string& name, const std::string& content)
      : path_(std::filesystem::temp_directory_path() /
              ("sandlot-config-" + std::to_string(::getpid()) + "-" + name + ".toml")) {
    std::ofstream(path_) << content;
  }
  ~temp_toml() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  temp_toml(const temp_toml&) = delete;
  temp_toml& operator=(const temp_toml&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace

TEST_CASE("without arguments the daemon uses its documented defaults", "[config]") {
  const daemon_config c = parse({});
  CHECK(c.slots == 4);
  CHECK_FALSE(c.slots_auto);
  CHECK(c.listen == "127.0.0.1:7345");
  CHECK(c.listen_host == "127.0.0.1");
  CHECK(c.listen_port == 7345);
  CHECK(c.docker_host.empty());
  CHECK(c.prepull.empty());
  CHECK(c.max_pulls == 2);
  CHECK(c.pull_attempts == 3);
  CHECK(c.pull_deadline_s == 600);
  CHECK(c.log_level == "info");
  // Unique to the host: two daemons on two hosts sharing one engine must not share an instance.
  CHECK(c.instance == "orchestratord@" + sandlot::orchestrator::host_name() + "/127.0.0.1:7345");
}

TEST_CASE("flags set the daemon's settings", "[config]") {
  const daemon_config c = parse({"--slots", "8", "--listen", "[::1]:9000", "--prepull", "a:1",
                                 "--prepull", "b:2", "--max-pulls", "3", "--instance", "ci-7"});
  CHECK(c.slots == 8);
  CHECK(c.listen_host == "::1");
  CHECK(c.listen_port == 9000);
  CHECK(c.prepull == std::vector<std::string>{"a:1", "b:2"});
  CHECK(c.max_pulls == 3);
  CHECK(c.instance == "ci-7");

  const auto service = c.service();
  CHECK(service.slots == 8);
  CHECK(service.gate.max_concurrent_pulls == 3);
}

TEST_CASE("a budget of zero slots is rejected", "[config]") {
  CHECK_THROWS_WITH(parse({"--slots", "0"}), Catch::Contains("--slots") && Catch::Contains("auto"));
}

TEST_CASE("a budget that is neither a number nor auto is rejected saying what to give", "[config]") {
  CHECK_THROWS_WITH(parse({"--slots", "abc"}),
                    Catch::Contains("--slots") && Catch::Contains("'abc'") &&
                        Catch::Contains("from 1 to 4096, or auto"));
  CHECK_THROWS_WITH(parse({"--slots", "5000"}), Catch::Contains("from 1 to 4096, or auto"));
  CHECK_THROWS_WITH(parse({"--slots", "Auto"}), Catch::Contains("--slots"));
}

TEST_CASE("slots auto derives the budget from the host and says how", "[config]") {
  const daemon_config c = parse({"--slots", "auto"});
  CHECK(c.slots_auto);
  CHECK(c.slots >= 1);
  CHECK(c.slots <= 4096);
  CHECK_THAT(c.slots_explanation, Catch::StartsWith("slots auto: " + std::to_string(c.slots) + " ("));
  CHECK(c.service().slots == c.slots);
}

TEST_CASE("a listen address that is not loopback is rejected", "[config]") {
  CHECK_THROWS_WITH(parse({"--listen", "0.0.0.0:7345"}), Catch::Contains("loopback"));
  CHECK_THROWS_WITH(parse({"--listen", "192.168.1.10:7345"}), Catch::Contains("loopback"));
  CHECK(parse({"--listen", "localhost:7345"}).listen_host == "localhost");
}

TEST_CASE("a token file sets the bearer token without its trailing newline", "[config][auth]") {
  temp_toml token("token", "s3cret-Token_42\n");
  auto c = parse({"--token-file", token.path()});
  CHECK(c.token == "s3cret-Token_42");
  CHECK(c.token_file == token.path());
}

TEST_CASE("a listen address beyond loopback is accepted only with a token file", "[config][auth]") {
  temp_toml token("token-public", "s3cret\n");
  auto c = parse({"--listen", "0.0.0.0:7345", "--token-file", token.path()});
  CHECK(c.listen_host == "0.0.0.0");
  CHECK_THROWS_WITH(parse({"--listen", "0.0.0.0:7345"}), Catch::Contains("--token-file"));
}

TEST_CASE("an empty unreadable or unprintable token file is rejected saying what to fix", "[config][auth]") {
  temp_toml empty("token-empty", "\n");
  CHECK_THROWS_WITH(parse({"--token-file", empty.path()}), Catch::Contains("is empty"));
  temp_toml spaced("token-spaced", "two words\n");
  CHECK_THROWS_WITH(parse({"--token-file", spaced.path()}), Catch::Contains("printable ASCII"));
  const auto missing = (std::filesystem::temp_directory_path() / "sandlot-no-such-token").string();
  CHECK_THROWS_WITH(parse({"--token-file", missing}), Catch::Contains("cannot be read"));
}

TEST_CASE("a listen address needs a valid port", "[config]") {
  CHECK_THROWS_WITH(parse({"--listen", "127.0.0.1"}), Catch::Contains("HOST:PORT"));
  CHECK_THROWS_WITH(parse({"--listen", "127.0.0.1:70000"}), Catch::Contains("invalid port"));
}

TEST_CASE("a TOML config file supplies settings", "[config]") {
  temp_toml file("supplies", R"(
slots = 6
listen = "127.0.0.1:9100"
prepull = ["busybox:1.36", "alpine:3.19"]
max_pulls = 4
pull_attempts = 5
pull_deadline_s = 120
log_level = "debug"
)");
  const daemon_config c = parse({"--config", file.path()});
  CHECK(c.slots == 6);
  CHECK(c.listen_port == 9100);
  CHECK(c.prepull == std::vector<std::string>{"busybox:1.36", "alpine:3.19"});
  CHECK(c.max_pulls == 4);
  CHECK(c.pull_attempts == 5);
  CHECK(c.pull_deadline_s == 120);
  CHECK(c.log_level == "debug");
  CHECK(c.instance == "orchestratord@" + sandlot::orchestrator::host_name() + "/127.0.0.1:9100");
}

TEST_CASE("flags win over the config file", "[config]") {
  temp_toml file("flags-win", R"(
slots = 6
listen = "127.0.0.1:9100"
prepull = ["from-file:1"]
)");
  const daemon_config c =
      parse({"--config", file.path(), "--slots", "2", "--prepull", "from-flag:1"});
  CHECK(c.slots == 2);
  CHECK(c.prepull == std::vector<std::string>{"from-flag:1"});
  CHECK(c.listen_port == 9100);  // not given as a flag: the file's value stands
}

TEST_CASE("a config file can ask for slots auto", "[config]") {
  temp_toml file("auto", "slots = \"auto\"\n");
  const daemon_config c = parse({"--config", file.path()});
  CHECK(c.slots_auto);
  CHECK(c.slots >= 1);
  CHECK_THAT(c.slots_explanation, Catch::StartsWith("slots auto: "));
}

TEST_CASE("a slots flag wins over auto in the file and auto on the command line wins over a number",
          "[config]") {
  temp_toml auto_file("auto-file", "slots = \"auto\"\n");
  const daemon_config fixed = parse({"--config", auto_file.path(), "--slots", "3"});
  CHECK_FALSE(fixed.slots_auto);
  CHECK(fixed.slots == 3);
  CHECK(fixed.slots_explanation.empty());

  temp_toml number_file("number-file", "slots = 6\n");
  const daemon_config derived = parse({"--config", number_file.path(), "--slots", "auto"});
  CHECK(derived.slots_auto);
  CHECK_THAT(derived.slots_explanation, Catch::StartsWith("slots auto: "));
}

TEST_CASE("a config file that is not valid TOML is rejected naming the file", "[config]") {
  temp_toml file("bad-syntax", "slots = [\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains(file.path()));
}

TEST_CASE("a config value of the wrong type is rejected naming the key", "[config]") {
  temp_toml file("wrong-type", "slots = \"eight\"\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}),
                    Catch::Contains("'slots'") && Catch::Contains("eight") && Catch::Contains("\"auto\""));
}

TEST_CASE("a config file cannot set a budget of zero slots", "[config]") {
  temp_toml file("zero-slots", "slots = 0\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("slots"));
}

TEST_CASE("a config file cannot listen beyond loopback either", "[config]") {
  temp_toml file("public", "listen = \"0.0.0.0:7345\"\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("loopback"));
}

TEST_CASE("a missing config file is rejected naming the file", "[config]") {
  const auto missing =
      (std::filesystem::temp_directory_path() / "sandlot-config-does-not-exist.toml").string();
  CHECK_THROWS_WITH(parse({"--config", missing}), Catch::Contains(missing));
}

// Values from the TOML file get the same checks (ranges, allowed names) as the flags.
TEST_CASE("a config file cannot set a log level the flag would refuse", "[config]") {
  // main() hands log_level to spdlog::level::from_str, which maps unknown names to "off".
  temp_toml file("log-level", "log_level = \"verbose\"\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("log_level"));
}

TEST_CASE("config file numbers are held to the same ranges as the flags",
          "[config]") {
  SECTION("slots above 4096") {
    temp_toml file("slots-range", "slots = 5000\n");
    CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("slots"));
  }
  SECTION("slots given as a boolean or a fraction") {
    temp_toml boolean("slots-bool", "slots = true\n");
    CHECK_THROWS_WITH(parse({"--config", boolean.path()}), Catch::Contains("'slots'"));
    temp_toml fraction("slots-fraction", "slots = 2.5\n");
    CHECK_THROWS_WITH(parse({"--config", fraction.path()}), Catch::Contains("'slots'"));
  }
  SECTION("max_pulls above 64") {
    temp_toml file("max-pulls-range", "max_pulls = 100\n");
    CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("max_pulls"));
  }
  SECTION("pull_attempts of zero") {
    temp_toml file("attempts-range", "pull_attempts = 0\n");
    CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("pull_attempts"));
  }
  SECTION("a pull deadline of zero seconds") {
    temp_toml file("deadline-range", "pull_deadline_s = 0\n");
    CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("pull_deadline_s"));
  }
}

// --- metrics ---------------------------------------------------------------------------------

TEST_CASE("a histogram renders cumulative buckets, +Inf, sum and count", "[metrics]") {
  histogram h({0.5, 1, 0.25});  // bounds given out of order
  h.observe(0.125);
  h.observe(0.5);  // on a bound: counts in that bucket (le is "less or equal")
  h.observe(0.75);
  h.observe(4);
  std::string out;
  h.render(out, "sandlot_wait_seconds", "Time spent waiting.");

  CHECK(out ==
        "# HELP sandlot_wait_seconds Time spent waiting.\n"
        "# TYPE sandlot_wait_seconds histogram\n"
        "sandlot_wait_seconds_bucket{le=\"0.25\"} 1\n"
        "sandlot_wait_seconds_bucket{le=\"0.5\"} 2\n"
        "sandlot_wait_seconds_bucket{le=\"1\"} 3\n"
        "sandlot_wait_seconds_bucket{le=\"+Inf\"} 4\n"
        "sandlot_wait_seconds_sum 5.375\n"
        "sandlot_wait_seconds_count 4\n");
  CHECK(h.count() == 4);
}

TEST_CASE("an empty histogram renders zero buckets", "[metrics]") {
  histogram h(sandlot::orchestrator::default_latency_buckets());
  std::string out;
  h.render(out, "x", "help");
  CHECK_THAT(out, Catch::Contains("x_bucket{le=\"0.01\"} 0\n"));
  CHECK_THAT(out, Catch::Contains("x_bucket{le=\"600\"} 0\n"));
  CHECK_THAT(out, Catch::Contains("x_bucket{le=\"+Inf\"} 0\n"));
  CHECK_THAT(out, Catch::EndsWith("x_count 0\n"));
}

TEST_CASE("every setting also comes from a SANDLOT_ variable: flags win over it, it wins over the file", "[config]") {
  env_guard env;
  env.set("SANDLOT_SLOTS", "7");
  env.set("SANDLOT_PREPULL", "127.0.0.1:5000/a:1,127.0.0.1:5000/b:2");
  env.set("SANDLOT_MAX_PULLS", "3");
  env.set("SANDLOT_INSTANCE", "from-env");
  env.set("SANDLOT_ALLOW_HOST_NETWORK", "true");
  const auto from_env = parse({});
  CHECK(from_env.slots == 7);
  CHECK(from_env.prepull == std::vector<std::string>{"127.0.0.1:5000/a:1", "127.0.0.1:5000/b:2"});
  CHECK(from_env.max_pulls == 3);
  CHECK(from_env.instance == "from-env");
  CHECK(from_env.allow_host_network);
  CHECK(parse({"--slots", "2"}).slots == 2);  // the flag wins
  temp_toml file("env-order", "slots = 9\nmax_pulls = 5\nread_timeout_s = 11\n");
  const auto both = parse({"--config", file.path()});
  CHECK(both.slots == 7);             // the environment wins over the file
  CHECK(both.max_pulls == 3);
  CHECK(both.read_timeout_s == 11);   // what the environment does not set comes from the file
  env.set("SANDLOT_SLOTS", "many");
  CHECK_THROWS_WITH(parse({}), Catch::Contains("many"));
}

TEST_CASE("idle exit takes seconds minutes or hours and is off by default", "[config]") {
  CHECK(parse({}).idle_exit_s == 0);
  CHECK(parse({"--idle-exit", "10m"}).idle_exit_s == 600);
  CHECK(parse({"--idle-exit", "45s"}).idle_exit_s == 45);
  CHECK(parse({"--idle-exit", "90"}).idle_exit_s == 90);
  CHECK(parse({"--idle-exit", "2h"}).idle_exit_s == 7200);
  CHECK_THROWS_WITH(parse({"--idle-exit", "ten"}), Catch::Contains("10m"));
  CHECK_THROWS_WITH(parse({"--idle-exit", "5d"}), Catch::Contains("not a duration"));
  CHECK_THROWS_WITH(parse({"--idle-exit", "-5"}), Catch::Contains("not a duration"));
  env_guard env;
  env.set("SANDLOT_IDLE_EXIT", "5s");
  CHECK(parse({}).idle_exit_s == 5);
  CHECK(parse({"--idle-exit", "1m"}).idle_exit_s == 60);  // the flag wins
  temp_toml file("idle", "idle_exit = \"3m\"\n");
  CHECK(parse({"--config", file.path()}).idle_exit_s == 5);  // the environment wins over the file
}

TEST_CASE("the log format is text or json", "[config]") {
  CHECK(parse({}).log_format == "text");
  CHECK(parse({"--log-format", "json"}).log_format == "json");
  CHECK_THROWS_WITH(parse({"--log-format", "xml"}), Catch::Contains("xml"));
  temp_toml file("log-format", "log_format = \"yaml\"\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("text or json"));
}

TEST_CASE("the daemon takes its token from SANDLOT_TOKEN when no token file is given", "[config][auth]") {
  env_guard env;
  env.set("SANDLOT_TOKEN", "from-the-environment\n");
  const auto c = parse({"--listen", "0.0.0.0:7345"});
  CHECK(c.token == "from-the-environment");
  temp_toml token("token-wins", "from-the-file\n");
  CHECK(parse({"--token-file", token.path()}).token == "from-the-file");
  env.set("SANDLOT_TOKEN", "two words");
  CHECK_THROWS_WITH(parse({}), Catch::Contains("SANDLOT_TOKEN") && Catch::Contains("printable ASCII"));
}

TEST_CASE("in the container image the default listen is every address, and only with a token", "[config][auth]") {
  CHECK(parse({}).listen == "127.0.0.1:7345");
  env_guard env;
  env.set("SANDLOT_IN_CONTAINER", "1");
  CHECK_THROWS_WITH(parse({}), Catch::Contains("SANDLOT_TOKEN") && Catch::Contains("--network host"));
  // An explicit loopback address needs no token (the host-network way).
  CHECK(parse({"--listen", "127.0.0.1:7400"}).listen_port == 7400);
  env.set("SANDLOT_LISTEN", "127.0.0.1:7401");
  CHECK(parse({}).listen_port == 7401);
  ::unsetenv("SANDLOT_LISTEN");
  env.set("SANDLOT_TOKEN", "s3cret");
  const auto c = parse({});
  CHECK(c.listen_host == "0.0.0.0");
  CHECK(c.listen_port == 7345);
}

TEST_CASE("the schedule is duration by default, or fifo, from a flag or the file", "[config]") {
  using sandlot::orchestrator::schedule;
  CHECK(parse({}).service().order == schedule::duration);
  CHECK(parse({"--schedule", "fifo"}).service().order == schedule::fifo);
  CHECK_THROWS_WITH(parse({"--schedule", "sjf"}), Catch::Contains("sjf"));
  temp_toml file("schedule", "schedule = \"random\"\nstate_dir = \"/tmp/x\"\n");
  CHECK_THROWS_WITH(parse({"--config", file.path()}), Catch::Contains("duration or fifo"));
  temp_toml good("schedule-good", "schedule = \"fifo\"\nstate_dir = \"/tmp/sandlot-state\"\n");
  const auto cfg = parse({"--config", good.path()});
  CHECK(cfg.service().order == schedule::fifo);
  CHECK(cfg.state_dir == "/tmp/sandlot-state");
  CHECK(parse({}).state_dir.empty());  // memory only unless asked
}

TEST_CASE("the warm setting takes IMAGE, IMAGE=N and auto from flags, SANDLOT_WARM and the file", "[config][warm_pool]") {
  const auto flags = parse({"--warm", "127.0.0.1:5000/a:1=2", "--warm", "auto"});
  const auto warm = flags.service().warm;
  CHECK(warm.auto_size);
  CHECK(warm.fixed.at("127.0.0.1:5000/a:1") == 2);
  CHECK_FALSE(parse({}).service().warm.enabled());  // off by default

  env_guard env;
  env.set("SANDLOT_WARM", "127.0.0.1:5000/a:1,127.0.0.1:5000/b:1=3");
  const auto from_env = parse({}).service().warm;
  CHECK(from_env.fixed.at("127.0.0.1:5000/a:1") == 1);
  CHECK(from_env.fixed.at("127.0.0.1:5000/b:1") == 3);
  CHECK_FALSE(from_env.auto_size);
  env.set("SANDLOT_WARM", "");
  CHECK_FALSE(parse({}).service().warm.enabled());  // set but empty: off

  temp_toml file("warm", "warm = [\"auto\"]\n");
  env.set("SANDLOT_WARM", "127.0.0.1:5000/a:1");
  CHECK_FALSE(parse({"--config", file.path()}).service().warm.auto_size);  // the environment wins
  ::unsetenv("SANDLOT_WARM");
  CHECK(parse({"--config", file.path()}).service().warm.auto_size);

  CHECK_THROWS_WITH(parse({"--warm", "127.0.0.1:5000/a:1=lots"}), Catch::Contains("from 0 to 64"));
}

// --- a pool of engines (--engine) -------------------------------------------------------------

TEST_CASE("without --engine the daemon drives the one engine of --docker-host", "[config][engines]") {
  const daemon_config c = parse({"--slots", "3"});
  CHECK(c.engines.empty());
  CHECK(c.slots == 3);
}

TEST_CASE("the budget of a pool is the sum of its engines' slots, --slots being each one's default",
          "[config][engines]") {
  const daemon_config c = parse({"--slots", "2", "--engine", "a=unix:///run/a.sock;slots=3", "--engine",
                                 "b=tcp://127.0.0.1:2375", "--engine", "c=tcp://[::1]:2376;slots=1"});
  REQUIRE(c.engines.size() == 3);
  CHECK(c.engines[0].name == "a");
  CHECK(c.engines[0].url == "unix:///run/a.sock");
  CHECK(c.engines[0].slots == 3);
  CHECK(c.engines[1].name == "b");
  CHECK(c.engines[1].slots == 2);
  CHECK(c.engines[2].url == "tcp://[::1]:2376");
  CHECK(c.engines[2].slots == 1);
  CHECK(c.slots == 6);
}

TEST_CASE("engines come from SANDLOT_ENGINE, comma-separated, and from the file's engines list", "[config][engines]") {
  {
    env_guard env;
    env.set("SANDLOT_ENGINE", "one=unix:///tmp/one.sock;slots=2,two=unix:///tmp/two.sock;slots=5");
    const daemon_config c = parse({});
    REQUIRE(c.engines.size() == 2);
    CHECK(c.engines[1].name == "two");
    CHECK(c.slots == 7);
  }
  temp_toml file("engines", "engines = [\"x=unix:///tmp/x.sock;slots=4\", \"y=tcp://localhost:2375\"]\nslots = 1\n");
  const daemon_config c = parse({"--config", file.path()});
  REQUIRE(c.engines.size() == 2);
  CHECK(c.engines[0].slots == 4);
  CHECK(c.engines[1].slots == 1);
  CHECK(c.slots == 5);
}

TEST_CASE("a bad --engine is refused saying what is accepted", "[config][engines]") {
  CHECK_THROWS_WITH(parse({"--engine", "unix:///run/a.sock"}), Catch::Contains("NAME="));
  CHECK_THROWS_WITH(parse({"--engine", "=unix:///run/a.sock"}), Catch::Contains("1 to 32 characters"));
  CHECK_THROWS_WITH(parse({"--engine", "a b=unix:///run/a.sock"}), Catch::Contains("letters, digits"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix://run/a.sock"}), Catch::Contains("absolute path"));
  CHECK_THROWS_WITH(parse({"--engine", "a=http://127.0.0.1:2375"}), Catch::Contains("unix://, tcp:// or kubernetes://"));
  CHECK_THROWS_WITH(parse({"--engine", "a=tcp://127.0.0.1"}), Catch::Contains("HOST:PORT"));
  CHECK_THROWS_WITH(parse({"--engine", "a=tcp://192.168.1.4:2375"}), Catch::Contains("not a loopback address"));
  CHECK_THROWS_WITH(parse({"--engine", "a=tcp://10.0.0.1:2375"}), Catch::Contains("not a loopback address"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock;slots=0"}), Catch::Contains("from 1 to 4096"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock;slots=2x"}), Catch::Contains("from 1 to 4096"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock;cpus=2"}), Catch::Contains("unknown option 'cpus=2'"));
}

TEST_CASE("a Kubernetes engine names its namespace, kubeconfig and context", "[config][engines][kube]") {
  const daemon_config c =
      parse({"--slots", "2", "--engine", "k8s=kubernetes://sandlot;kubeconfig=/etc/sandlot/kubeconfig;context=kind-e2e"});
  REQUIRE(c.engines.size() == 1);
  const auto& e = c.engines[0];
  CHECK(e.kubernetes());
  CHECK(e.kube_namespace() == "sandlot");
  CHECK(e.kubeconfig == "/etc/sandlot/kubeconfig");
  CHECK(e.context == "kind-e2e");
  CHECK_FALSE(e.slots_given);  // alone, its budget comes from the nodes
  const daemon_config fixed = parse({"--engine", "k=kubernetes://;slots=12;kubeconfig=in-cluster"});
  CHECK(fixed.engines[0].slots == 12);
  CHECK(fixed.engines[0].slots_given);
  CHECK(fixed.engines[0].kube_namespace().empty());
  CHECK_THROWS_WITH(parse({"--engine", "k=kubernetes://Bad_NS"}), Catch::Contains("lower-case letters"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock;kubeconfig=/x"}), Catch::Contains("unknown option"));
}

TEST_CASE("an engine given twice, or --engine with --docker-host, is refused", "[config][engines]") {
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock", "--engine", "a=unix:///b.sock"}),
                    Catch::Contains("'a' is given twice"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock", "--engine", "b=unix:///a.sock"}),
                    Catch::Contains("unix:///a.sock is given twice"));
  CHECK_THROWS_WITH(parse({"--docker-host", "unix:///a.sock", "--engine", "a=unix:///b.sock"}),
                    Catch::Contains("not both"));
  CHECK_THROWS_WITH(parse({"--engine", "a=unix:///a.sock;slots=4000", "--engine", "b=unix:///b.sock;slots=100"}),
                    Catch::Contains("at most 4096"));
}
