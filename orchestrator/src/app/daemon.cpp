// The daemon's wiring: configuration, the engine and its provider, the lease service, the API
// listener, signals and the idle exit. main.cpp only calls run_daemon().
#include "daemon.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <spdlog/spdlog.h>

#include "config.hpp"
#include "docker_client.hpp"
#include "docker_provider.hpp"
#include "instance_owner.hpp"
#include "duration_store.hpp"
#include "engine_pool.hpp"
#include "kube_provider.hpp"
#include "lease_service.hpp"
#include "listener.hpp"
#include "log_format.hpp"
#include "router.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;

namespace {

/// An io_context whose pending work can be destroyed on demand. Coroutines still suspended when
/// the loop stops (a pull waiting for a pull slot, a long-poll) hold references into the lease
/// service; they must be destroyed while it still exists, not by ~io_context after it is gone.
class owning_io_context : public asio::io_context {
 public:
  using asio::io_context::io_context;
  void destroy_pending_work() { shutdown(); }
};

/// As many descriptors as the hard limit allows: each connection, engine call and exec stream
/// takes one, and the soft default (often 1024) is easy to reach under load.
void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  const auto was = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) == 0) {
    spdlog::info("raised the open-file limit from {} to {}", was, lim.rlim_cur);
  }
}

/// `orchestratord health [--listen HOST:PORT] [--token-file F]`: exit 0 when the daemon there is
/// ready (/readyz 200: prepulls done), 1 otherwise. A container HEALTHCHECK or a CI wait loop runs
/// it; it takes SANDLOT_LISTEN, SANDLOT_TOKEN_FILE and SANDLOT_TOKEN like the daemon, so one
/// environment serves both.
int health_main(int argc, char** argv) {
  auto env_or = [](const char* name, std::string fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
  };
  std::string listen = env_or("SANDLOT_LISTEN", "127.0.0.1:7345");
  std::string token_file = env_or("SANDLOT_TOKEN_FILE", "");
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string_view flag = argv[i];
    if (flag == "--listen") {
      listen = argv[i + 1];
    } else if (flag == "--token-file") {
      token_file = argv[i + 1];
    } else {
      std::cerr << "orchestratord health: unknown option " << flag << "; use --listen HOST:PORT, --token-file F\n";
      return 2;
    }
  }
  const auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  const std::string port = colon == std::string::npos ? "7345" : listen.substr(colon + 1);
  // A daemon listening on every address is reached on loopback.
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = "127.0.0.1";
  sandlot::client::options o;
  o.url = fmt::format("http://{}:{}", host, port);
  o.request_timeout = std::chrono::seconds(3);
  try {
    o.token = resolve_token(token_file);
    const sandlot::client::client c(o);
    const auto res = c.request("GET", "/readyz");
    if (res.status == 200) {
      std::cout << "orchestratord at " << o.url << " is ready\n";
      return 0;
    }
    std::cout << "orchestratord at " << o.url << " is not ready (" << res.status << "): " << res.body;
  } catch (const std::exception& e) {
    std::cout << "orchestratord health: " << e.what() << "\n";
  }
  return 1;
}

/// The daemon's configuration and engine address, or the exit code when it must not run.
std::variant<std::pair<daemon_config, engine_address>, int> configure(int argc, char** argv) {
  try {
    auto cfg = parse_config(argc, argv);
    if (!cfg) return 0;
    auto addr = engine_address::parse(cfg->docker_host.empty() ? engine_address::default_spec() : cfg->docker_host);
    return std::pair{std::move(*cfg), std::move(addr)};
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }
}

void start_logging(const daemon_config& cfg, const engine_address& engine_addr) {
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  use_log_format(cfg.log_format);
  if (!cfg.slots_auto) return;
  spdlog::info("{}", cfg.slots_explanation);
  // The sandboxes run where the engine runs; auto measured the host this daemon runs on.
  if (engine_addr.type == engine_address::kind::tcp && !is_loopback(engine_addr.host)) {
    spdlog::warn("slots auto measured this host, but the engine at {} is elsewhere; give --slots N "
                 "for the engine's host (docs/sizing.md)",
                 engine_addr.to_string());
  }
}

void announce(const daemon_config& cfg, const asio::ip::tcp::endpoint& ep) {
  spdlog::info("orchestratord '{}' listening on http://{}:{} with {} slot(s)", cfg.instance, ep.address().to_string(),
               ep.port(), cfg.slots);
  if (!cfg.token.empty()) spdlog::info("every request but /healthz needs the bearer token of {}", cfg.token_file);
  spdlog::info("per slot of its weight a lease may ask up to {} MB of memory, {} CPUs, {} pids and {} MB of "
               "disk; ttl_s up to {} s (docs/sizing.md)",
               cfg.per_slot.memory_mb, cfg.per_slot.cpus, cfg.per_slot.pids, cfg.per_slot.disk_mb, cfg.max_ttl_s);
  if (cfg.allow_host_network) {
    spdlog::warn("--allow-host-network: sandboxes may share this host's network, loopback services included");
  }
  if (cfg.idle_exit_s > 0) {
    spdlog::info("stopping after {} s with no lease, fixture or connection (--idle-exit)", cfg.idle_exit_s);
  }
}

/// The daemon once wired: serving, its signals, its idle exit and its graceful stop.
class running_daemon {
 public:
  running_daemon(owning_io_context& ioc, const daemon_config& cfg, lease_service& service, listener& server,
                 const duration_store* durations)
      : ioc_(ioc),
        cfg_(cfg),
        service_(service),
        server_(server),
        durations_(durations),
        signals_(ioc, SIGINT, SIGTERM) {}

  int run() {
    watch_signals();
    asio::co_spawn(ioc_, serve(), [this](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::critical("{}", ex.what());
      }
      stop(1);
    });
    ioc_.run();
    // Whatever is still suspended goes now, while the service it points into is alive.
    ioc_.destroy_pending_work();
    if (durations_ != nullptr && service_.durations().dirty()) durations_->save(service_.durations());
    return exit_code_;
  }

 private:
  asio::awaitable<void> serve() {
    co_await service_.start();
    announce(cfg_, server_.local_endpoint());
    if (cfg_.idle_exit_s > 0) asio::co_spawn(ioc_, idle_watch(), asio::detached);
    if (durations_ != nullptr) asio::co_spawn(ioc_, save_durations(), asio::detached);
    co_await server_.run();
  }

  /// A graceful stop removes every sandbox; an engine that hangs must not hold the daemon for
  /// longer than --shutdown-timeout.
  void stop(int code) {
    if (stopping_) return;
    stopping_ = true;
    exit_code_ = code;
    server_.stop();
    asio::co_spawn(ioc_, bounded_shutdown(), [this](std::exception_ptr) { ioc_.stop(); });
  }

  asio::awaitable<void> bounded_shutdown() {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer limit(ioc_, std::chrono::seconds(cfg_.shutdown_timeout_s));
    auto raced = co_await (service_.shutdown() || limit.async_wait(asio::use_awaitable));
    if (raced.index() == 1) {
      spdlog::error("shutdown did not finish within {} s (--shutdown-timeout; is the engine hung?); exiting "
                    "anyway: a restart with instance '{}' removes what is left",
                    cfg_.shutdown_timeout_s, cfg_.instance);
      exit_code_ = 1;
    }
  }

  void watch_signals() {
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (stopping_) {
        // Asked twice: the operator wants out now. What is left is removed by the next start.
        spdlog::warn("received signal {} again; exiting now without cleaning up", sig);
        spdlog::default_logger()->flush();
        ::_exit(128 + sig);
      }
      spdlog::info("received signal {}; stopping (send it again to exit at once)", sig);
      stop(0);
      watch_signals();
    });
  }

  /// --idle-exit: a daemon started on demand goes away once nothing has used it for that long.
  /// Only when nothing is in use, so it removes nothing anyone holds.
  asio::awaitable<void> idle_watch() {
    using clock = std::chrono::steady_clock;
    const auto idle_limit = std::chrono::seconds(cfg_.idle_exit_s);
    const auto tick = std::clamp<clock::duration>(idle_limit / 10, std::chrono::seconds(1), std::chrono::seconds(10));
    auto quiet_since = clock::now();
    asio::steady_timer timer(ioc_);
    while (!stopping_) {
      timer.expires_after(tick);
      co_await timer.async_wait(asio::use_awaitable);
      const auto now = clock::now();
      if (!service_.idle() || server_.open_connections() > 0) {
        quiet_since = now;
        continue;
      }
      quiet_since = std::max(quiet_since, server_.last_activity());
      if (now - quiet_since >= idle_limit && !stopping_) {
        spdlog::info("nothing used this daemon for {} s; stopping (--idle-exit)", cfg_.idle_exit_s);
        stop(0);
      }
    }
  }

  /// --state-dir: what was learned of test durations goes to the file every few seconds (and at
  /// exit), so a daemon killed mid-run loses little and the next run of the suite finds it.
  asio::awaitable<void> save_durations() {
    asio::steady_timer timer(ioc_);
    while (!stopping_) {
      timer.expires_after(std::chrono::seconds(5));
      co_await timer.async_wait(asio::use_awaitable);
      if (service_.durations().dirty()) durations_->save(service_.durations());
    }
  }

  owning_io_context& ioc_;
  const daemon_config& cfg_;
  lease_service& service_;
  listener& server_;
  const duration_store* durations_;
  asio::signal_set signals_;
  int exit_code_ = 0;
  bool stopping_ = false;
};

/// The providers the daemon drives: one engine (Docker, or Kubernetes alone), or a pool (--engine).
struct engines {
  std::vector<std::unique_ptr<docker_client>> clients;
  std::vector<std::unique_ptr<kube_client>> kube_clients;
  std::vector<std::unique_ptr<sandbox_provider>> members;
  std::unique_ptr<engine_pool> pool;
  sandbox_provider* provider = nullptr;
};

engines make_engines(const asio::any_io_executor& ex, const daemon_config& cfg, const engine_address& single) {
  engines out;
  const auto add = [&](const engine_address& addr) {
    out.clients.push_back(std::make_unique<docker_client>(ex, addr));
    out.clients.back()->set_call_timeout(std::chrono::seconds(cfg.engine_timeout_s));
    out.members.push_back(std::make_unique<docker_provider>(*out.clients.back(), cfg.instance));
    return out.members.back().get();
  };
  // A Kubernetes engine alone takes its budget from the nodes unless slots= says otherwise; in a
  // pool, each engine's slots are fixed (slots=, else --slots).
  const auto add_kube = [&](const engine_spec& e, int slots) {
    auto target = e.kubeconfig == "in-cluster" ? in_cluster_target() : load_kubeconfig(e.kubeconfig, e.context);
    out.kube_clients.push_back(std::make_unique<kube_client>(ex, std::move(target)));
    out.kube_clients.back()->set_call_timeout(std::chrono::seconds(cfg.engine_timeout_s));
    kube_provider::options o;
    o.ns = e.kube_namespace();
    o.slots = slots;
    out.members.push_back(std::make_unique<kube_provider>(*out.kube_clients.back(), cfg.instance, o));
    return out.members.back().get();
  };
  if (cfg.engines.empty()) {
    out.provider = add(single);
    return out;
  }
  if (cfg.engines.size() == 1 && cfg.engines[0].kubernetes()) {
    const auto& e = cfg.engines[0];
    out.provider = add_kube(e, e.slots_given ? e.slots : 0);
    return out;
  }
  std::vector<pool_member> members;
  for (const auto& e : cfg.engines) {
    if (e.kubernetes()) {
      members.push_back(pool_member{e.name, e.url, "kubernetes", e.slots, add_kube(e, e.slots)});
      continue;
    }
    const auto addr = engine_address::parse(e.url);
    members.push_back(pool_member{e.name, addr.to_string(), "docker", e.slots, add(addr)});
  }
  out.pool = std::make_unique<engine_pool>(ex, std::move(members));
  out.provider = out.pool.get();
  return out;
}

}  // namespace

int run_daemon(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "health") return health_main(argc, argv);
  auto configured = configure(argc, argv);
  if (const int* code = std::get_if<int>(&configured)) return *code;
  auto& [cfg, engine_addr] = std::get<0>(configured);
  start_logging(cfg, engine_addr);
  raise_fd_limit();
  // One daemon per instance on this host: a second one would remove the first one's sandboxes.
  std::optional<instance_lock> lock;
  try {
    lock.emplace(cfg.instance);
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }
  // One thread owns every piece of state; engine calls are asynchronous, so none blocks it. The
  // core sees only the sandbox_provider: one Docker engine, or a pool of them (--engine).
  owning_io_context ioc{1};
  engines made;
  try {
    made = make_engines(ioc.get_executor(), cfg, engine_addr);
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }
  lease_service service(ioc.get_executor(), *made.provider, cfg.service());
  std::optional<duration_store> durations;
  if (!cfg.state_dir.empty()) {
    try {
      durations.emplace(cfg.state_dir);
    } catch (const std::exception& e) {
      std::cerr << "orchestratord: " << e.what() << "\n";
      return 2;
    }
    const auto known = durations->load(service.durations());
    spdlog::info("durations: {} test(s) known from {} (--schedule {})", known, durations->file().string(),
                 cfg.schedule);
  } else {
    spdlog::info("durations: kept in memory only (no --state-dir); --schedule {}", cfg.schedule);
  }
  router api(service, access_policy{cfg.token, cfg.allow_hosts, cfg.allow_origins});
  std::optional<listener> server;
  try {
    session_limits limits;
    limits.read_timeout = std::chrono::seconds(cfg.read_timeout_s);
    limits.max_connections = cfg.max_connections;
    const std::string host = cfg.listen_host == "localhost" ? "127.0.0.1" : cfg.listen_host;
    server.emplace(ioc.get_executor(), asio::ip::tcp::endpoint(asio::ip::make_address(host), cfg.listen_port), api,
                   limits);
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }
  return running_daemon(ioc, cfg, service, *server, durations ? &*durations : nullptr).run();
}

}  // namespace sandlot::orchestrator
