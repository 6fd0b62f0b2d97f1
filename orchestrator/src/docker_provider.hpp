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
}  // namespace labels

struct sandbox_spec {
  std::string lease_id;
  std::string lease_name;
  protocol::lease_request request;
};

class docker_provider {
 public:
  docker_provider(docker_client& engine, std::string instance);

  /// Creates and starts the sandbox and checks it is running. Throws engine_error.
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec);
  /// Removes a sandbox; returns once the engine confirms it is gone.
  boost::asio::awaitable<void> remove(const std::string& container_id);
  /// Removes every sandbox labelled with this lease (for a create that was cut short).
  boost::asio::awaitable<int> remove_lease(const std::string& lease_id);
  /// Every sandbox of this daemon instance, with its lease id.
  boost::asio::awaitable<std::vector<docker_client::container_summary>> list_own();
  /// Removes every sandbox of this daemon instance (start-up and shutdown).
  boost::asio::awaitable<int> remove_all_own();
  boost::asio::awaitable<exec_output> exec(const std::string& container_id, const exec_spec& spec);

  /// The Engine API body for a sandbox (exposed for unit tests).
  nlohmann::json container_spec(const sandbox_spec& spec) const;
  const std::string& instance() const noexcept { return instance_; }
  docker_client& engine() noexcept { return engine_; }

 private:
  docker_client& engine_;
  std::string instance_;
};

}  // namespace sandlot::orchestrator
