#include "config.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include <unistd.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>

#include "sizing.hpp"

namespace sandlot::orchestrator {

namespace {

constexpr int max_slots = sizing_policy{}.max_slots;

// What --slots and the file's `slots` accept, for their error messages; `auto_spelled` is how
// the word is written there (a TOML string needs its quotes).
std::string slots_accepted(std::string_view auto_spelled) {
  return fmt::format("a whole number from 1 to {}, or {} to derive it from this host's CPUs and memory "
                     "(docs/sizing.md)",
                     max_slots, auto_spelled);
}

// Empty when `text` is a valid --slots value; otherwise what is wrong and what to give instead.
std::string slots_problem(const std::string& text) {
  if (text == "auto") return {};
  int n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc{} && end == text.data() + text.size() && n >= 1 && n <= max_slots) return {};
  return fmt::format("'{}' is not a slot budget; give {}", text, slots_accepted("auto"));
}

// `slots` is the one key with two types: a number, or the string "auto".
void slots_from_toml(const toml::table& t, CLI::App& app, daemon_config& c) {
  if (app.count("--slots") > 0) return;  // the flag wins
  auto node = t["slots"];
  if (!node) return;
  // is_integer() first: toml++'s value<int>() also turns `true` into 1.
  if (auto n = node.value<std::int64_t>(); node.is_integer() && n && *n >= 1 && *n <= max_slots) {
    c.slots = static_cast<int>(*n);
    c.slots_auto = false;
    return;
  }
  if (auto s = node.value<std::string>(); s && *s == "auto") {
    c.slots_auto = true;
    return;
  }
  std::ostringstream given;
  given << node;
  throw std::runtime_error(fmt::format("config file {}: 'slots' is {} but must be {}", c.config_file,
                                       given.str(), slots_accepted("\"auto\"")));
}

void split_listen(daemon_config& c) {
  auto colon = c.listen.rfind(':');
  if (colon == std::string::npos) {
    throw std::runtime_error(fmt::format("--listen '{}' needs HOST:PORT, e.g. 127.0.0.1:7345", c.listen));
  }
  c.listen_host = c.listen.substr(0, colon);
  if (c.listen_host.size() > 2 && c.listen_host.front() == '[' && c.listen_host.back() == ']') {
    c.listen_host = c.listen_host.substr(1, c.listen_host.size() - 2);
  }
  int port = 0;
  try {
    port = std::stoi(c.listen.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    throw std::runtime_error(fmt::format("--listen '{}' has an invalid port (0-65535)", c.listen));
  }
  c.listen_port = static_cast<unsigned short>(port);
}

template <class T>
void from_toml(const toml::table& t, const char* key, CLI::App& app, const char* flag, T& out) {
  if (app.count(flag) > 0) return;  // the flag wins
  auto node = t[key];
  if (!node) return;
  if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    const auto* arr = node.as_array();
    if (arr == nullptr) throw std::runtime_error(fmt::format("config key '{}' must be an array of strings", key));
    out.clear();
    for (const auto& el : *arr) {
      auto s = el.value<std::string>();
      if (!s) throw std::runtime_error(fmt::format("config key '{}' must be an array of strings", key));
      out.push_back(*s);
    }
  } else {
    auto v = node.template value<T>();
    if (!v) throw std::runtime_error(fmt::format("config key '{}' has the wrong type", key));
    out = *v;
  }
}

// The whole-number settings with a range: one table for the flag's check and the file's, so the
// two cannot drift apart.
struct int_range {
  const char* flag;
  const char* key;  // in the TOML file
  int daemon_config::*field;
  int lo;
  int hi;
};
constexpr std::array ranged_ints{
    int_range{"--max-pulls", "max_pulls", &daemon_config::max_pulls, 1, 64},
    int_range{"--max-queued-per-run", "max_queued_per_run", &daemon_config::max_queued_per_run, 1, 1000000},
    int_range{"--read-timeout", "read_timeout_s", &daemon_config::read_timeout_s, 1, 3600},
    int_range{"--pull-attempts", "pull_attempts", &daemon_config::pull_attempts, 1, 20},
    int_range{"--pull-deadline", "pull_deadline_s", &daemon_config::pull_deadline_s, 1, 86400},
    int_range{"--max-ttl", "max_ttl_s", &daemon_config::max_ttl_s, 1, 86400},
    int_range{"--max-fixtures", "max_fixtures", &daemon_config::max_fixtures, 1, 100000},
    int_range{"--keep-runs", "keep_runs", &daemon_config::keep_runs, 1, 100000},
    int_range{"--max-connections", "max_connections", &daemon_config::max_connections, 4, 1000000},
    int_range{"--engine-timeout", "engine_timeout_s", &daemon_config::engine_timeout_s, 1, 3600},
    int_range{"--sweep-interval", "sweep_interval_s", &daemon_config::sweep_interval_s, 1, 3600},
    int_range{"--shutdown-timeout", "shutdown_timeout_s", &daemon_config::shutdown_timeout_s, 1, 300},
};

CLI::Range range_of(std::string_view flag) {
  for (const auto& r : ranged_ints) {
    if (flag == r.flag) return CLI::Range(r.lo, r.hi);
  }
  throw std::logic_error(fmt::format("no range for {}", flag));
}

}  // namespace

std::string checked_token(std::string token, const std::string& source) {
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' || token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) {
    throw std::runtime_error(fmt::format("{} is empty; put a long random token in it, e.g. from "
                                         "head -c 32 /dev/urandom | base64", source));
  }
  if (token.size() > 4096) throw std::runtime_error(fmt::format("{}: the token is over 4096 bytes", source));
  for (char ch : token) {
    if (ch < 0x21 || ch > 0x7e) {
      throw std::runtime_error(fmt::format("{}: the token may only hold printable ASCII without spaces "
                                           "(it travels in an HTTP header)", source));
    }
  }
  return token;
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("--token-file {}: cannot be read; check the path and its permissions", path));
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return checked_token(std::move(token), fmt::format("--token-file {}", path));
}

std::string resolve_token(const std::string& token_file) {
  if (!token_file.empty()) return read_token_file(token_file);
  // The clients' variable: a service container gets its token as a secret in the environment.
  if (const char* env = std::getenv("SANDLOT_TOKEN"); env != nullptr && *env != '\0') {
    return checked_token(env, "SANDLOT_TOKEN");
  }
  return {};
}

int parse_duration_s(const std::string& text, const std::string& what) {
  const auto bad = [&] {
    return std::runtime_error(fmt::format("{} '{}' is not a duration; give seconds (600 or 600s), minutes (10m) or "
                                          "hours (1h), or 0 for never",
                                          what, text));
  };
  long long n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end == text.data() || n < 0) throw bad();
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  long long scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else {
    throw bad();
  }
  if (n > 7 * 24 * 3600 / scale) {
    throw std::runtime_error(fmt::format("{} '{}' is over a week; give at most 168h", what, text));
  }
  return static_cast<int>(n * scale);
}

bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

service_options daemon_config::service() const {
  service_options o;
  o.instance = instance;
  o.slots = slots;
  o.prepull = prepull;
  for (const auto& entry : warm) parse_warm_entry(entry, o.warm);  // checked in settle()
  o.allowed_registries = allow_registries;
  o.gate.max_concurrent_pulls = max_pulls;
  o.max_queued_per_run = max_queued_per_run;
  o.gate.attempts = pull_attempts;
  o.gate.pull_deadline = std::chrono::seconds(pull_deadline_s);
  o.allow_host_network = allow_host_network;
  o.max_ttl_s = max_ttl_s;
  o.per_slot = per_slot;
  o.max_fixtures = max_fixtures > 0 ? max_fixtures : slots;
  o.keep_runs_count = static_cast<std::size_t>(keep_runs);
  o.exec_output_limit = static_cast<std::size_t>(max_output_bytes);
  o.orphan_sweep_interval = std::chrono::seconds(sweep_interval_s);
  o.shutdown_timeout = std::chrono::seconds(shutdown_timeout_s);
  o.order = schedule == "fifo" ? orchestrator::schedule::fifo : orchestrator::schedule::duration;
  return o;
}

namespace {

void add_listen_options(CLI::App& app, daemon_config& c, std::string& slots_text) {
  app.add_option("--slots", slots_text,
                 "Concurrency budget: sandboxes (lease weights) that may exist at once, or auto to derive "
                 "it from this host's CPUs and memory (logged at start; docs/sizing.md)")
      ->type_name("N|auto")
      ->check(CLI::Validator([](std::string& v) { return slots_problem(v); }, ""));
  app.add_option("--listen", c.listen,
                 "HOST:PORT for the HTTP API (default 127.0.0.1:7345; in the container image 0.0.0.0:7345, which "
                 "needs a token); beyond loopback only with --token-file or SANDLOT_TOKEN")
      ->type_name("HOST:PORT");
  app.add_option("--token-file", c.token_file,
                 "File holding a bearer token: every request but /healthz must send Authorization: Bearer "
                 "<token> (clients: SANDLOT_TOKEN)");
  app.add_option("--docker-host", c.docker_host,
                 "Engine address: unix:///path.sock or tcp://HOST:PORT (default: $DOCKER_HOST or "
                 "unix:///var/run/docker.sock)");
  app.add_option("--engine", c.engine_entries,
                 "An engine of a pool: NAME=unix:///path.sock, NAME=tcp://127.0.0.1:PORT or "
                 "NAME=kubernetes://NAMESPACE[;kubeconfig=PATH|in-cluster][;context=NAME], optionally ;slots=N "
                 "(default: --slots; one Kubernetes engine alone: its Ready nodes' allocatable cpu). Repeatable; the "
                 "budget is the sum of the engines' slots, and each sandbox runs on one engine (docs/scale-out.md)")
      ->type_name("NAME=URL[;slots=N]");
}

void add_engine_options(CLI::App& app, daemon_config& c) {
  app.add_option("--prepull", c.prepull, "Image to pull at start; /readyz turns 200 once all are done (repeatable)");
  app.add_option("--warm", c.warm,
                 "Keep N ready, never-used sandboxes of IMAGE in idle slots, for leases with a default lease's "
                 "limits (repeatable); auto: per image and limits, as many as were held at once in the last 5 "
                 "minutes. Warm sandboxes never delay a lease: they are removed when its slot is needed "
                 "(docs/operations.md)")
      ->type_name("IMAGE[=N]|auto");
  app.add_option("--allow-registry", c.allow_registries,
                 "Registry HOST[:PORT] the engine may pull from besides loopback ones (repeatable); "
                 "images already in the engine are usable whatever their registry");
  app.add_option("--max-pulls", c.max_pulls, "Most distinct images pulled at once")->check(range_of("--max-pulls"));
  app.add_option("--read-timeout", c.read_timeout_s,
                 "Seconds a client has to send a whole request (and an idle keep-alive connection stays open)")
      ->check(range_of("--read-timeout"));
  app.add_option("--max-queued-per-run", c.max_queued_per_run,
                 "Most leases one run may have queued; more get 429 too_many_requests")
      ->check(range_of("--max-queued-per-run"));
  app.add_option("--pull-attempts", c.pull_attempts, "Tries per pull before its waiters fail")
      ->check(range_of("--pull-attempts"));
  app.add_option("--pull-deadline", c.pull_deadline_s, "Seconds a pull may take, all attempts (apart from "
                 "a lease's ready_timeout_s)")
      ->check(range_of("--pull-deadline"));
  app.add_option("--instance", c.instance, "Name labelled on every sandbox; a restart with the same name "
                 "removes what the previous run left (default: orchestratord@LISTEN)");
}

void add_limit_options(CLI::App& app, daemon_config& c) {
  app.add_option("--allow-host", c.allow_hosts,
                 "Without --token-file, answer requests whose Host is NAME besides loopback names (repeatable; "
                 "also SANDLOT_ALLOW_HOSTS=NAME,NAME)");
  app.add_option("--allow-origin", c.allow_origins,
                 "Answer requests from web pages of this origin, e.g. http://127.0.0.1:8080 (repeatable); any other "
                 "Origin gets 403");
  app.add_flag("--allow-host-network", c.allow_host_network,
               "Let leases ask for network \"host\": such a sandbox reaches everything on this host's loopback, "
               "this daemon's API and the registry included");
  app.add_option("--max-ttl", c.max_ttl_s, "Most seconds a lease's ttl_s may be")->check(range_of("--max-ttl"));
  app.add_option("--max-memory", c.max_memory_mb,
                 "Most memory_mb a lease may ask per slot of its weight (default: the host's usable memory "
                 "share of one slot, docs/sizing.md)")
      ->check(CLI::Range(std::int64_t{6}, std::int64_t{1} << 20));
  app.add_option("--max-cpus", c.max_cpus, "Most cpus a lease may ask per slot of its weight (default: from sizing)")
      ->check(CLI::Range(0.01, 1024.0));
  app.add_option("--max-pids", c.max_pids, "Most pids_limit a lease may ask per slot of its weight (default 1024)")
      ->check(CLI::Range(8, 1 << 22));
  app.add_option("--max-disk", c.max_disk_mb, "Most disk_mb a lease may ask per slot of its weight (default 2048)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  app.add_option("--max-fixtures", c.max_fixtures,
                 "Most fixtures alive at once, a budget of their own beside --slots (default: as many as --slots)")
      ->check(range_of("--max-fixtures"));
  app.add_option("--keep-runs", c.keep_runs,
                 "Most runs whose timelines are remembered; beyond it the oldest idle run is forgotten")
      ->check(range_of("--keep-runs"));
  app.add_option("--max-connections", c.max_connections,
                 "Most API connections served at once; beyond it a connection gets 503 (GET /healthz is still answered)")
      ->check(range_of("--max-connections"));
  app.add_option("--max-output-bytes", c.max_output_bytes,
                 "Most bytes of stdout and of stderr an exec returns (and a file read); the rest is cut, truncated: true")
      ->check(CLI::Range(std::int64_t{1024}, std::int64_t{8} << 20));
  app.add_option("--engine-timeout", c.engine_timeout_s,
                 "Seconds any one engine call may take before the lease fails with engine_unavailable")
      ->check(range_of("--engine-timeout"));
  app.add_option("--sweep-interval", c.sweep_interval_s,
                 "Seconds between orphan sweeps (sandboxes of this instance with no live lease)")
      ->check(range_of("--sweep-interval"));
  app.add_option("--shutdown-timeout", c.shutdown_timeout_s,
                 "Seconds a graceful stop may take (a hung engine); a second SIGTERM stops at once")
      ->check(range_of("--shutdown-timeout"));
}

void add_schedule_options(CLI::App& app, daemon_config& c) {
  app.add_option("--schedule", c.schedule,
                 "Order of a run's queued leases: duration (longest expected first, with backfill past a wide "
                 "lease; docs/architecture.md) or fifo (first in, first out, no backfill)")
      ->check(CLI::IsMember({"duration", "fifo"}));
  app.add_option("--state-dir", c.state_dir,
                 "Directory for what the daemon learns across restarts (durations.json: how long each test "
                 "holds its slots); daemons may share it. Default: none, durations are kept in memory only")
      ->type_name("DIR");
}

void add_log_options(CLI::App& app, daemon_config& c, std::string& idle_exit_text) {
  app.add_option("--config", c.config_file, "TOML file with any of these settings (flags win), see config/");
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", c.log_format,
                 "text: one line per event, UTC time, level, message; json: one JSON object per line "
                 "(time, level, msg) for log collectors")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--idle-exit", idle_exit_text,
                 "Stop by itself after this long with no lease, fixture or connection (e.g. 10m, 600s; 0: never). "
                 "The daemon a client starts on demand runs with 10m")
      ->type_name("DURATION");
}

void bind_environment(CLI::App& app) {
  // Every setting also from the environment, SANDLOT_ and the flag's name (--max-pulls:
  // SANDLOT_MAX_PULLS), as a service container takes its settings: flags win over the environment,
  // the environment over the file. Lists take commas (SANDLOT_PREPULL=a:1,b:2).
  for (CLI::Option* opt : app.get_options()) {
    const std::string name = opt->get_single_name();
    if (name.empty() || name == "help" || name == "allow-host") continue;  // SANDLOT_ALLOW_HOSTS below
    std::string env = "SANDLOT_";
    for (char ch : name) env.push_back(ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
    opt->envname(env);
    if (opt->get_items_expected_max() > 1) opt->delimiter(',');
  }
}

/// The file's settings, for each one no flag (or variable) gave.
void read_toml(toml::table& t, CLI::App& app, daemon_config& c) {
  slots_from_toml(t, app, c);
  from_toml(t, "listen", app, "--listen", c.listen);
  from_toml(t, "docker_host", app, "--docker-host", c.docker_host);
  from_toml(t, "engines", app, "--engine", c.engine_entries);
  from_toml(t, "prepull", app, "--prepull", c.prepull);
  from_toml(t, "warm", app, "--warm", c.warm);
  from_toml(t, "allow_registries", app, "--allow-registry", c.allow_registries);
  from_toml(t, "max_pulls", app, "--max-pulls", c.max_pulls);
  from_toml(t, "max_queued_per_run", app, "--max-queued-per-run", c.max_queued_per_run);
  from_toml(t, "read_timeout_s", app, "--read-timeout", c.read_timeout_s);
  from_toml(t, "pull_attempts", app, "--pull-attempts", c.pull_attempts);
  from_toml(t, "pull_deadline_s", app, "--pull-deadline", c.pull_deadline_s);
  from_toml(t, "instance", app, "--instance", c.instance);
  from_toml(t, "log_level", app, "--log-level", c.log_level);
  from_toml(t, "log_format", app, "--log-format", c.log_format);
  if (app.count("--idle-exit") == 0 && t["idle_exit"]) {
    auto v = t["idle_exit"].value<std::string>();
    if (!v) throw std::runtime_error(fmt::format("config file {}: 'idle_exit' must be a string such as \"10m\"", c.config_file));
    c.idle_exit_s = parse_duration_s(*v, fmt::format("config file {}: 'idle_exit'", c.config_file));
  }
  from_toml(t, "token_file", app, "--token-file", c.token_file);
  from_toml(t, "allow_hosts", app, "--allow-host", c.allow_hosts);
  from_toml(t, "allow_origins", app, "--allow-origin", c.allow_origins);
  from_toml(t, "allow_host_network", app, "--allow-host-network", c.allow_host_network);
  from_toml(t, "max_ttl_s", app, "--max-ttl", c.max_ttl_s);
  from_toml(t, "max_memory_mb", app, "--max-memory", c.max_memory_mb);
  from_toml(t, "max_cpus", app, "--max-cpus", c.max_cpus);
  from_toml(t, "max_pids", app, "--max-pids", c.max_pids);
  from_toml(t, "max_disk_mb", app, "--max-disk", c.max_disk_mb);
  from_toml(t, "max_fixtures", app, "--max-fixtures", c.max_fixtures);
  from_toml(t, "keep_runs", app, "--keep-runs", c.keep_runs);
  from_toml(t, "max_connections", app, "--max-connections", c.max_connections);
  from_toml(t, "max_output_bytes", app, "--max-output-bytes", c.max_output_bytes);
  from_toml(t, "engine_timeout_s", app, "--engine-timeout", c.engine_timeout_s);
  from_toml(t, "sweep_interval_s", app, "--sweep-interval", c.sweep_interval_s);
  from_toml(t, "shutdown_timeout_s", app, "--shutdown-timeout", c.shutdown_timeout_s);
  from_toml(t, "schedule", app, "--schedule", c.schedule);
  from_toml(t, "state_dir", app, "--state-dir", c.state_dir);
}

/// The file gets the same checks as the flags.
void check_file_values(const daemon_config& c) {
  // The file gets the same checks as the flags; a typo must not silently change behaviour
  // (spdlog turns an unknown level name into "off").
  auto in_range = [&](const char* key, int v, int lo, int hi) {
    if (v < lo || v > hi) {
      throw std::runtime_error(fmt::format("config file {}: '{}' is {} but must be between {} and {}",
                                           c.config_file, key, v, lo, hi));
    }
  };
  for (const auto& r : ranged_ints) {
    // max_fixtures 0 is the default, "as many as --slots".
    const int v = c.*r.field;
    in_range(r.key, r.field == &daemon_config::max_fixtures ? std::max(v, 1) : v, r.lo, r.hi);
  }
  if (c.max_output_bytes < 1024 || c.max_output_bytes > (std::int64_t{8} << 20)) {
    throw std::runtime_error(fmt::format("config file {}: 'max_output_bytes' must be between 1024 and {}",
                                         c.config_file, std::int64_t{8} << 20));
  }
  if (c.log_format != "text" && c.log_format != "json") {
    throw std::runtime_error(fmt::format("config file {}: 'log_format' is '{}' but must be text or json",
                                         c.config_file, c.log_format));
  }
  if (c.schedule != "duration" && c.schedule != "fifo") {
    throw std::runtime_error(fmt::format("config file {}: 'schedule' is '{}' but must be duration or fifo",
                                         c.config_file, c.schedule));
  }
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
  if (levels.count(c.log_level) == 0) {
    throw std::runtime_error(fmt::format("config file {}: 'log_level' is '{}' but must be one of trace, "
                                         "debug, info, warn, error",
                                         c.config_file, c.log_level));
  }
}

void apply_config_file(CLI::App& app, daemon_config& c) {
  toml::table t;
  try {
    t = toml::parse_file(c.config_file);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(fmt::format("config file {}: {} (line {})", c.config_file, e.description(),
                                         e.source().begin.line));
  }
  read_toml(t, app, c);
  check_file_values(c);
}

/// Where to listen, who may call, and the per-slot shares: what follows from the rest.
void settle(daemon_config& c) {
  warm_options warm;
  for (const auto& entry : c.warm) {
    try {
      parse_warm_entry(entry, warm);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
  }
  c.token = resolve_token(c.token_file);
  if (c.listen.empty()) {
    // The container image sets SANDLOT_IN_CONTAINER: there the job reaches the daemon through a
    // published port, so it must listen on every address of the container, and that needs a token.
    const char* in_container = std::getenv("SANDLOT_IN_CONTAINER");
    if (in_container != nullptr && std::string_view(in_container) == "1") {
      if (c.token.empty()) {
        throw std::runtime_error(
            "in the container orchestratord listens on 0.0.0.0:7345 so that jobs reach it through a published "
            "port, and beyond loopback it needs a token: set SANDLOT_TOKEN (a secret) or SANDLOT_TOKEN_FILE (a "
            "mounted file); or run the container with --network host and SANDLOT_LISTEN=127.0.0.1:7345 (docs/ci.md)");
      }
      c.listen = "0.0.0.0:7345";
    } else {
      c.listen = "127.0.0.1:7345";
    }
  }
  split_listen(c);
  if (!is_loopback(c.listen_host) && c.token.empty()) {
    throw std::runtime_error(fmt::format(
        "--listen {} is not a loopback address; beyond loopback orchestratord needs --token-file (or SANDLOT_TOKEN), since "
        "anyone reaching the port could start containers on this host",
        c.listen));
  }
  // The host's name makes the default unique to this machine (or container): two daemons on two
  // hosts sharing one engine, both on 127.0.0.1:7345, must not take each other's sandboxes.
  if (c.instance.empty()) c.instance = fmt::format("orchestratord@{}/{}", host_name(), c.listen);
  if (const char* env = std::getenv("SANDLOT_ALLOW_HOSTS"); env != nullptr) {
    std::string_view rest = env;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      auto name = rest.substr(0, comma);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (!name.empty()) c.allow_hosts.emplace_back(name);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  // A listen host that is a name is a name clients will use.
  if (!is_loopback(c.listen_host)) c.allow_hosts.push_back(c.listen_host);
  const auto host = read_host_resources();
  if (c.slots_auto) {
    const auto estimate = estimate_slots(host);
    c.slots = estimate.slots;
    c.slots_explanation = estimate.explanation;
  }
  if (!c.engine_entries.empty()) {
    if (!c.docker_host.empty()) {
      throw std::runtime_error("give either --docker-host (one engine) or --engine (a pool), not both");
    }
    c.engines = resolve_engines(c.engine_entries, c.slots);
    int sum = 0;
    for (const auto& e : c.engines) sum += e.slots;
    if (sum > 4096) throw std::runtime_error(fmt::format("the engines' slots add up to {}; at most 4096", sum));
    c.slots = sum;
  }
  c.per_slot = share_per_slot(host, c.slots);
  if (c.max_memory_mb > 0) c.per_slot.memory_mb = c.max_memory_mb;
  if (c.max_cpus > 0) c.per_slot.cpus = c.max_cpus;
  if (c.max_pids > 0) c.per_slot.pids = c.max_pids;
  if (c.max_disk_mb > 0) c.per_slot.disk_mb = c.max_disk_mb;
}

}  // namespace

std::optional<daemon_config> parse_config(int argc, char** argv) {
  daemon_config c;
  std::string slots_text = std::to_string(c.slots);
  std::string idle_exit_text = "0";
  CLI::App app{"orchestratord: leases real container sandboxes to end-to-end tests within a slot budget"};
  app.option_defaults()->always_capture_default();
  add_listen_options(app, c, slots_text);
  add_engine_options(app, c);
  add_limit_options(app, c);
  add_schedule_options(app, c);
  add_log_options(app, c, idle_exit_text);
  bind_environment(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw std::runtime_error(fmt::format("{}; run orchestratord --help", e.what()));
  }
  c.idle_exit_s = parse_duration_s(idle_exit_text, "--idle-exit");
  if (slots_text == "auto") {
    c.slots_auto = true;
  } else {
    c.slots = std::stoi(slots_text);  // checked above
  }
  if (!c.config_file.empty()) apply_config_file(app, c);
  settle(c);
  return c;
}

}  // namespace sandlot::orchestrator
