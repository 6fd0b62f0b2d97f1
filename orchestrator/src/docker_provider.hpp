// Sandboxes on a Docker engine: what a lease asks for, turned into a hardened container.
#pragma once

#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "docker_client.hpp"

namespace sandlot::orchestrator {

/// Label keys every sandbox carries; a restarted daemon finds its leftovers by them.
namespace labels {
inline constexpr const char* daemon = "sandlot.daemon";
inline constexpr const char* run = "sandlot.run";
inline constexpr const char* lease = "sandlot.lease";
inline constexpr const char* test = "sandlot.test";
inline constexpr const char* owner = "sandlot.owner";  // the process that made it (instance_owner.hpp)
}  // namespace labels

struct sandbox_spec {
  std::string lease_id;
  std::string lease_name;
  protocol::lease_request request;
  std::string image_id;  // what the sandbox is made from: the run's pinned image (empty: request.image)
};

class docker_provider {
 public:
  /// `owner` labels every sandbox this process makes (default: self_owner()).
  docker_provider(docker_client& engine, std::string instance, std::string owner = {});

  /// Creates and starts the sandbox and checks it is running. Throws engine_error; a container
  /// the engine made before a later step failed is removed first.
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec);
  /// Removes a sandbox; returns once the engine confirms it is gone.
  boost::asio::awaitable<void> remove(const std::string& container_id);
  /// Removes every sandbox labelled with this lease (for a create that was cut short).
  boost::asio::awaitable<int> remove_lease(const std::string& lease_id);
  /// Every sandbox of this daemon instance, with its lease id.
  boost::asio::awaitable<std::vector<docker_client::container_summary>> list_own();
  /// Removes every sandbox of this daemon instance that this process made or whose maker is gone
  /// (start-up and shutdown); a live or foreign maker's are left alone, with a warning.
  boost::asio::awaitable<int> remove_all_own();
  /// True when sandbox `c` (of this instance) may be removed as an orphan by this process: it
  /// made it, or its maker is gone. Logs once per foreign or live maker otherwise.
  bool may_reap(const docker_client::container_summary& c);
  boost::asio::awaitable<exec_output> exec(const std::string& container_id, const exec_spec& spec);

  /// The Engine API body for a sandbox (exposed for unit tests). `size_the_layer`: limit the
  /// writable layer to disk_mb (StorageOpt); otherwise /scratch is a tmpfs of disk_mb.
  nlohmann::json container_spec(const sandbox_spec& spec, bool size_the_layer = false) const;
  const std::string& instance() const noexcept { return instance_; }
  const std::string& owner() const noexcept { return owner_; }
  docker_client& engine() noexcept { return engine_; }

 private:
  docker_client& engine_;
  std::string instance_;
  std::string owner_;
  // Whether the engine's storage driver takes a writable-layer size (overlay2 only on xfs with
  // pquota, btrfs, zfs...): unknown until the first create tries it.
  enum class disk_quota { unknown, supported, unsupported } disk_quota_ = disk_quota::unknown;
  std::vector<std::string> warned_owners_;
};

}  // namespace sandlot::orchestrator
