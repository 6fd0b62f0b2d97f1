// Sandboxes on a Docker engine: what a lease asks for, turned into a hardened container. The
// only provider today; the core sees it as a sandbox_provider.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "docker_client.hpp"
#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

/// Label keys every sandbox carries; a restarted daemon finds its leftovers by them.
namespace labels {
inline constexpr const char* daemon = "sandlot.daemon";
inline constexpr const char* run = "sandlot.run";
inline constexpr const char* lease = "sandlot.lease";
inline constexpr const char* test = "sandlot.test";
inline constexpr const char* owner = "sandlot.owner";  // the process that made it (instance_owner.hpp)
}  // namespace labels

/// The sandbox_provider of one Docker engine (or a Docker-compatible one).
class docker_provider final : public sandbox_provider {
 public:
  /// `owner` labels every sandbox this process makes (default: self_owner()).
  docker_provider(docker_client& engine, std::string instance, std::string owner = {});

  boost::asio::awaitable<std::string> connect() override;
  boost::asio::awaitable<bool> image_present(std::string image) override;
  boost::asio::awaitable<std::string> image_id(std::string image) override;
  boost::asio::awaitable<void> pull(std::string image, clock::time_point deadline, pull_progress progress) override;
  /// Creates and starts the container and checks it is running (see sandbox_provider::create).
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec) override;
  boost::asio::awaitable<exec_output> exec(std::string sandbox_id, exec_spec spec) override;
  /// A one-file tar archive PUT into the directory.
  boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string path, std::string data,
                                          unsigned mode) override;
  /// The path's tar archive, unpacked.
  boost::asio::awaitable<std::optional<std::string>> read_file(std::string sandbox_id, std::string path,
                                                               std::size_t limit) override;
  boost::asio::awaitable<void> remove(std::string sandbox_id) override;
  boost::asio::awaitable<int> remove_lease(std::string lease_id) override;
  boost::asio::awaitable<std::vector<owned_sandbox>> list_own() override;
  boost::asio::awaitable<int> remove_all_own() override;
  /// Logs once per foreign or live maker whose sandboxes are left alone.
  bool may_reap(const owned_sandbox& s) override;

  /// The Engine API body for a sandbox (exposed for unit tests). `size_the_layer`: limit the
  /// writable layer to disk_mb (StorageOpt); otherwise /scratch is a tmpfs of disk_mb.
  nlohmann::json container_spec(const sandbox_spec& spec, bool size_the_layer = false) const;
  const std::string& instance() const noexcept { return instance_; }
  const std::string& owner() const noexcept { return owner_; }

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
