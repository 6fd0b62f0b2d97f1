#include "docker_provider.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "instance_owner.hpp"
#include "tar_file.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using json = nlohmann::json;

docker_provider::docker_provider(docker_client& engine, std::string instance, std::string owner)
    : engine_(engine), instance_(std::move(instance)), owner_(owner.empty() ? self_owner() : std::move(owner)) {}

bool docker_provider::may_reap(const owned_sandbox& s) {
  const std::string& owner = s.owner;
  if (owner == owner_) return true;
  const owner_state state = classify_owner(owner);
  switch (state) {
    case owner_state::self:
    case owner_state::gone:
      return true;
    case owner_state::alive:
    case owner_state::foreign:
      break;
  }
  if (std::find(warned_owners_.begin(), warned_owners_.end(), owner) == warned_owners_.end()) {
    warned_owners_.push_back(owner);
    spdlog::warn("sandboxes of instance '{}' made by {} are left alone: that daemon {}; give each daemon its own "
                 "--instance",
                 instance_, owner,
                 state == owner_state::alive ? "still runs on this host"
                                                             : "runs on another host sharing this engine");
  }
  return false;
}

json docker_provider::container_spec(const sandbox_spec& spec, bool size_the_layer) const {
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
  json tmpfs = json::object();
  if (req.read_only) tmpfs["/tmp"] = "rw,nosuid,size=64m";
  if (size_the_layer) {
    host_config["StorageOpt"] = {{"size", fmt::format("{}M", req.disk_mb)}};
  } else {
    // The driver cannot bound the writable layer: a bounded scratch space instead (its pages count
    // against the memory limit too). docs/api.md says where to write.
    tmpfs["/scratch"] = fmt::format("rw,nosuid,nodev,size={}m", req.disk_mb);
  }
  if (!tmpfs.empty()) host_config["Tmpfs"] = std::move(tmpfs);
  json body = {
      {"Image", spec.image_id.empty() ? req.image : spec.image_id},
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
  l[labels::owner] = owner_;
  // The engine refuses a hostname with the host network; there the sandbox shares the host's.
  if (req.network != protocol::network_mode::host) body["Hostname"] = "sb-" + spec.lease_id;
  return body;
}

asio::awaitable<protocol::sandbox_info> docker_provider::create(const sandbox_spec& spec) {
  const std::string name = "sandlot-" + spec.lease_id;
  std::string id;
  if (disk_quota_ != disk_quota::unsupported) {
    std::string refusal;
    try {
      id = co_await engine_.create_container(name, container_spec(spec, true));
      disk_quota_ = disk_quota::supported;
    } catch (const engine_error& e) {
      const std::string_view what = e.what();
      if (e.status() != 400 && e.status() != 500) throw;
      if (what.find("storage-opt") == std::string_view::npos && what.find("StorageOpt") == std::string_view::npos &&
          what.find("quota") == std::string_view::npos) {
        throw;
      }
      refusal = e.what();
    }
    if (!refusal.empty()) {
      disk_quota_ = disk_quota::unsupported;
      spdlog::warn("the engine's storage driver cannot limit a sandbox's writable layer ({}); sandboxes get a "
                   "tmpfs /scratch of disk_mb instead, and writes elsewhere are bounded only by the host's disk "
                   "(docs/operations.md)",
                   refusal);
    }
  }
  if (id.empty()) id = co_await engine_.create_container(name, container_spec(spec, false));
  nlohmann::json info;
  std::exception_ptr failure;
  try {
    co_await engine_.start_container(id);
    info = co_await engine_.inspect_container(id);
    const auto& state = info.at("State");
    if (!state.value("Running", false)) {
      throw provider_error(provider_failure::failed, fmt::format("sandbox {} is not running after start (exit code {}{})", name,
                                        state.value("ExitCode", -1),
                                        state.value("Error", "").empty() ? "" : ", " + state.value("Error", "")));
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    // The engine made it, so it is ours to remove now rather than the sweep's, minutes later.
    // (Not from inside the catch: a coroutine cannot co_await there.)
    try {
      co_await engine_.remove_container(id);
    } catch (const std::exception& e) {
      spdlog::warn("sandbox {} failed to start and could not be removed yet (the sweep retries): {}", name, e.what());
    }
    std::rethrow_exception(failure);
  }
  protocol::sandbox_info out;
  out.id = id;
  out.name = name;
  out.hostname = info.at("Config").value("Hostname", "");
  out.image = spec.request.image;
  out.network = std::string(protocol::to_string(spec.request.network));
  co_return out;
}

asio::awaitable<std::string> docker_provider::connect() {
  auto version = co_await engine_.negotiate();
  co_return fmt::format("engine {} answers, API version {}", engine_.address().to_string(), version);
}

asio::awaitable<bool> docker_provider::image_present(std::string image) {
  co_return co_await engine_.image_exists(image);
}

asio::awaitable<std::string> docker_provider::image_id(std::string image) {
  co_return co_await engine_.image_id(image);
}

asio::awaitable<void> docker_provider::pull(std::string image, clock::time_point deadline, pull_progress progress) {
  co_await engine_.pull(image, deadline, std::chrono::seconds(60), std::move(progress));
}

asio::awaitable<void> docker_provider::remove(std::string sandbox_id) {
  co_await engine_.remove_container(sandbox_id);
}

asio::awaitable<int> docker_provider::remove_lease(std::string lease_id) {
  // (A named vector: GCC 12 miscompiles a braced list inside a co_await expression.)
  std::vector<std::string> filter{fmt::format("{}={}", labels::daemon, instance_),
                                  fmt::format("{}={}", labels::lease, lease_id)};
  auto found = co_await engine_.list_containers(filter);
  for (const auto& c : found) co_await engine_.remove_container(c.id);
  co_return static_cast<int>(found.size());
}

asio::awaitable<std::vector<owned_sandbox>> docker_provider::list_own() {
  std::vector<std::string> filter{fmt::format("{}={}", labels::daemon, instance_)};
  auto found = co_await engine_.list_containers(filter);
  std::vector<owned_sandbox> out;
  out.reserve(found.size());
  auto label = [](const docker_client::container_summary& c, const char* key) {
    auto it = c.labels.find(key);
    return it == c.labels.end() ? std::string() : it->second;
  };
  for (auto& c : found) {
    // An empty state (an engine that does not say) counts as running: never fail a lease on a guess.
    const bool running = c.state.empty() || c.state == "running";
    out.push_back(owned_sandbox{c.id, label(c, labels::lease), label(c, labels::owner), running, c.state});
  }
  co_return out;
}

asio::awaitable<int> docker_provider::remove_all_own() {
  auto found = co_await list_own();
  int removed = 0;
  for (const auto& c : found) {
    if (!may_reap(c)) continue;
    try {
      co_await engine_.remove_container(c.id);
      ++removed;
    } catch (const std::exception& e) {
      spdlog::error("could not remove sandbox {}: {}", c.id.substr(0, 12), e.what());
    }
  }
  co_return removed;
}

asio::awaitable<exec_output> docker_provider::exec(std::string sandbox_id, exec_spec spec) {
  co_return co_await engine_.exec(sandbox_id, spec);
}

asio::awaitable<void> docker_provider::write_file(std::string sandbox_id, std::string path, std::string data,
                                                  unsigned mode) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == 0 ? std::string("/") : path.substr(0, slash);
  std::string tar = make_single_file_tar(path.substr(slash + 1), data, mode);
  co_await engine_.put_archive(sandbox_id, dir, std::move(tar));
}

asio::awaitable<std::optional<std::string>> docker_provider::read_file(std::string sandbox_id, std::string path,
                                                                       std::size_t limit) {
  auto tar = co_await engine_.get_archive(sandbox_id, path);
  if (!tar) co_return std::nullopt;
  tar_entry entry;
  try {
    entry = read_first_tar_entry(*tar, limit);
  } catch (const std::length_error& e) {
    throw provider_error(provider_failure::too_large, e.what());
  }
  if (!entry.found || !entry.regular) throw provider_error(provider_failure::not_a_file, "not a regular file");
  co_return std::move(entry.data);
}

}  // namespace sandlot::orchestrator
