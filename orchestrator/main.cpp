// orchestratord: the thin entry point; everything else lives in the sandlot_orchestrator library.
#include <csignal>
#include <cstdlib>
#include <iostream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "src/config.hpp"
#include "src/docker_client.hpp"
#include "src/docker_provider.hpp"
#include "src/lease_service.hpp"
#include "src/listener.hpp"
#include "src/router.hpp"

namespace asio = boost::asio;
using namespace sandlot::orchestrator;

int main(int argc, char** argv) {
  std::optional<daemon_config> cfg;
  engine_address engine_addr;
  try {
    cfg = parse_config(argc, argv);
    if (!cfg) return 0;
    engine_addr = engine_address::parse(cfg->docker_host.empty() ? engine_address::default_spec() : cfg->docker_host);
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (cfg->slots_auto) {
    spdlog::info("{}", cfg->slots_explanation);
    // The sandboxes run where the engine runs; auto measured the host this daemon runs on.
    if (engine_addr.type == engine_address::kind::tcp && !is_loopback(engine_addr.host)) {
      spdlog::warn("slots auto measured this host, but the engine at {} is elsewhere; give --slots N "
                   "for the engine's host (docs/sizing.md)",
                   engine_addr.to_string());
    }
  }

  // One thread owns every piece of state; engine calls are asynchronous, so none blocks it.
  asio::io_context ioc{1};
  docker_client engine(ioc.get_executor(), engine_addr);
  docker_provider provider(engine, cfg->instance);
  lease_service service(ioc.get_executor(), provider, cfg->service());
  router api(service, cfg->token);

  const std::string host = cfg->listen_host == "localhost" ? "127.0.0.1" : cfg->listen_host;
  std::optional<listener> server;
  try {
    session_limits limits;
    limits.read_timeout = std::chrono::seconds(cfg->read_timeout_s);
    server.emplace(ioc.get_executor(), asio::ip::tcp::endpoint(asio::ip::make_address(host), cfg->listen_port), api,
                   limits);
  } catch (const std::exception& e) {
    std::cerr << "orchestratord: " << e.what() << "\n";
    return 2;
  }

  int exit_code = 0;
  bool stopping = false;
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  auto stop = [&](int code) {
    if (stopping) return;
    stopping = true;
    exit_code = code;
    server->stop();
    asio::co_spawn(ioc, service.shutdown(), [&](std::exception_ptr) { ioc.stop(); });
  };
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}; stopping", sig);
    stop(0);
  });

  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        co_await service.start();
        auto ep = server->local_endpoint();
        spdlog::info("orchestratord '{}' listening on http://{}:{} with {} slot(s)", cfg->instance,
                     ep.address().to_string(), ep.port(), cfg->slots);
        if (!cfg->token.empty()) {
          spdlog::info("every request but /healthz needs the bearer token of {}", cfg->token_file);
        }
        co_await server->run();
      },
      [&](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::critical("{}", ex.what());
        }
        signals.cancel();
        stop(1);
      });

  ioc.run();
  return exit_code;
}
