#include "docker_provider.hpp"

#include <cmath>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using json = nlohmann::json;

docker_provider::docker_provider(docker_client& engine, std::string instance)
    : engine_(engine), instance_(std::move(instance)) {}

json docker_provider::container_spec(const sandbox_spec& spec) const {
  const auto& req = spec.request;
  std::vector<std::string> env;
  for (const auto& [k, v] : req.env) env.push_back(k + "=" + v);
  const auto memory = req.memory_mb * 1024 * 1024;
  json host_config = {
      {"Memory", memory},
      {"MemorySwap", memory},  // equal to Memory: no swap beyond the limit
      {"NanoCpus", static_cast<std::int64_t>(std::llround(req.cpus * 1e9))},
      {"PidsLimit", req.pids_limit},
      {"CapDrop", json::array({"ALL"})},
      {"SecurityOpt", json::array({"no-new-privileges"})},
      {"NetworkMode", std::string(protocol::to_string(req.network))},
      {"Init", true},
      {"ReadonlyRootfs", req.read_only},
  };
  if (req.read_only) host_config["Tmpfs"] = {{"/tmp", "rw,nosuid,size=64m"}};
  json body = {
      {"Image", req.image},
      {"Env", env},
      // The image's own command runs; an open stdin keeps a shell-CMD image (busybox) alive
      // until the sandbox is removed, without the daemon choosing a command for it.
      {"OpenStdin", true},
      {"StdinOnce", false},
      {"Tty", false},
      {"HostConfig", host_config},
  };
  json& l = body["Labels"];
  l[labels::daemon] = instance_;
  l[labels::run] = req.run;
  l[labels::lease] = spec.lease_id;
  l[labels::test] = req.test.substr(0, 200);
  // The engine refuses a hostname with the host network; there the sandbox shares the host's.
  if (req.network != protocol::network_mode::host) body["Hostname"] = "sb-" + spec.lease_id;
  return body;
}

asio::awaitable<protocol::sandbox_info> docker_provider::create(const sandbox_spec& spec) {
  const std::string name = "sandlot-" + spec.lease_id;
  const std::string id = co_await engine_.create_container(name, container_spec(spec));
  co_await engine_.start_container(id);
  auto info = co_await engine_.inspect_container(id);
  const auto& state = info.at("State");
  if (!state.value("Running", false)) {
    throw engine_error(0, fmt::format("sandbox {} is not running after start (exit code {}{})", name,
                                      state.value("ExitCode", -1),
                                      state.value("Error", "").empty() ? "" : ", " + state.value("Error", "")));
  }
  protocol::sandbox_info out;
  out.id = id;
  out.name = name;
  out.hostname = info.at("Config").value("Hostname", "");
  out.image = spec.request.image;
  out.network = std::string(protocol::to_string(spec.request.network));
  co_return out;
}

asio::awaitable<void> docker_provider::remove(const std::string& container_id) {
  co_await engine_.remove_container(container_id);
}

asio::awaitable<int> docker_provider::remove_lease(const std::string& lease_id) {
  // (A named vector: GCC 12 miscompiles a braced list inside a co_await expression.)
  std::vector<std::string> filter{fmt::format("{}={}", labels::daemon, instance_),
                                  fmt::format("{}={}", labels::lease, lease_id)};
  auto found = co_await engine_.list_containers(filter);
  for (const auto& c : found) co_await engine_.remove_container(c.id);
  co_return static_cast<int>(found.size());
}

asio::awaitable<std::vector<docker_client::container_summary>> docker_provider::list_own() {
  std::vector<std::string> filter{fmt::format("{}={}", labels::daemon, instance_)};
  co_return co_await engine_.list_containers(filter);
}

asio::awaitable<int> docker_provider::remove_all_own() {
  auto found = co_await list_own();
  int removed = 0;
  for (const auto& c : found) {
    try {
      co_await engine_.remove_container(c.id);
      ++removed;
    } catch (const std::exception& e) {
      spdlog::error("could not remove sandbox {}: {}", c.id.substr(0, 12), e.what());
    }
  }
  co_return removed;
}

asio::awaitable<exec_output> docker_provider::exec(const std::string& container_id, const exec_spec& spec) {
  co_return co_await engine_.exec(container_id, spec);
}

}  // namespace sandlot::orchestrator
