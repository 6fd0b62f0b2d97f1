// Sandboxes as Kubernetes pods (docs/scale-out.md#kubernetes): one pod per sandbox in one
// namespace, labelled like the Docker provider's containers and removed by label selector.
// Readiness comes from a watch on the pod, never from polling it; a pull that fails
// (ErrImagePull, ImagePullBackOff, InvalidImageName) fails the create at once with its own reason,
// apart from a readiness timeout. Exec runs over WebSocket; files go through exec (sh, cat).
// The gate's pull is a prepull: a short-lived pod per Ready node that lacks the image.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "kube_client.hpp"
#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

/// Label and annotation keys. Label values must be short and plain (63 characters of
/// [A-Za-z0-9._-]), so the instance is labelled by a hash and spelled out in an annotation.
namespace kube_keys {
inline constexpr const char* daemon = "sandlot.daemon";          // label: hash of the instance
inline constexpr const char* lease = "sandlot.lease";            // label: the lease id
inline constexpr const char* role = "sandlot.role";              // label: "sandbox" or "prepull"
inline constexpr const char* network = "sandlot.network";        // label: "none" (the NetworkPolicy's selector) or "host"
inline constexpr const char* instance = "sandlot.dev/instance";  // annotations from here on
inline constexpr const char* owner = "sandlot.dev/owner";
inline constexpr const char* run = "sandlot.dev/run";
inline constexpr const char* test = "sandlot.dev/test";
inline constexpr const char* lease_name = "sandlot.dev/lease-name";
inline constexpr const char* lease_id = "sandlot.dev/lease";  // the lease id as given (the label is its DNS form)
}  // namespace kube_keys

/// Where a pod stands on its way to ready, from its status alone.
struct pod_verdict {
  enum class kind { waiting, ready, failed } what = kind::waiting;
  provider_failure failure = provider_failure::failed;
  bool pull = false;  // failed pulling the image (not starting the container)
  std::string message;
};
pod_verdict judge_pod(const nlohmann::json& pod);

class kube_provider final : public sandbox_provider {
 public:
  struct options {
    std::string ns;          // empty: the kubeconfig context's namespace
    int slots = 0;           // 0: from the Ready nodes' allocatable cpu
    std::string container = "sandbox";
  };
  kube_provider(kube_client& api, std::string instance, options opts, std::string owner = {});

  boost::asio::awaitable<std::string> connect() override;
  /// Present on every Ready node (so no lease waits for a pull wherever it is placed).
  boost::asio::awaitable<bool> image_present(std::string image) override;
  /// The digest reference (repo@sha256:...) the nodes report for `image`, else `image` itself.
  boost::asio::awaitable<std::string> image_id(std::string image) override;
  /// A prepull pod (IfNotPresent) on each Ready node that lacks the image, watched until its
  /// container has the image or the pull fails; then removed.
  boost::asio::awaitable<void> pull(std::string image, clock::time_point deadline, pull_progress progress) override;
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec) override;
  boost::asio::awaitable<exec_output> exec(std::string sandbox_id, exec_spec spec) override;
  boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string path, std::string data,
                                          unsigned mode) override;
  boost::asio::awaitable<std::optional<std::string>> read_file(std::string sandbox_id, std::string path,
                                                               std::size_t limit) override;
  boost::asio::awaitable<void> remove(std::string sandbox_id) override;
  /// DELETE of the collection by label selector (daemon and lease), then waits until they are gone.
  boost::asio::awaitable<int> remove_lease(std::string lease_id) override;
  boost::asio::awaitable<std::vector<owned_sandbox>> list_own() override;
  boost::asio::awaitable<int> remove_all_own() override;
  bool may_reap(const owned_sandbox& s) override;
  int slots_total() const override { return slots_; }
  /// The most one lease may take: the largest node's allocatable cpu (0 with slots=N: unknown).
  int widest_sandbox() const override { return widest_; }

  /// The pod object for a sandbox (exposed for unit tests).
  nlohmann::json pod_spec(const sandbox_spec& spec) const;
  /// The label value for an instance name ("i-" and 16 hex digits of its FNV-1a hash).
  static std::string instance_label(const std::string& instance);
  const std::string& ns() const noexcept { return ns_; }

 private:
  std::string pods_path() const;
  /// Waits until the pod is gone (DELETED, or 404).
  boost::asio::awaitable<void> wait_gone(std::string name);
  /// One watch on the pod `name` from `rv` (kept up to date), each event to `on_event` until it
  /// returns true (then: true). Bookmarks only move `rv`. A version too old to watch from (410
  /// Expired) is answered with one GET: its pod as a MODIFIED event, or DELETED when it is gone.
  boost::asio::awaitable<bool> watch_pod(std::string name, std::string& rv,
                                         const std::function<bool(const std::string& type, const nlohmann::json& pod)>& on_event);
  /// Waits on a watch until the pod is ready or has failed (the caller bounds the wait).
  boost::asio::awaitable<pod_verdict> wait_ready(std::string name, std::string rv, nlohmann::json& last);
  boost::asio::awaitable<nlohmann::json> ready_nodes();
  /// Ready nodes whose kubelet lacks `image`; `all` gets the count of Ready nodes.
  boost::asio::awaitable<std::vector<std::string>> nodes_lacking(std::string image, int& all);
  boost::asio::awaitable<void> prepull_on(std::string image, std::string node, clock::time_point deadline);

  kube_client& api_;
  std::string instance_;
  std::string daemon_label_;
  options opts_;
  std::string ns_;
  std::string owner_;
  int slots_ = 0;
  int widest_ = 0;
  std::vector<std::string> warned_owners_;
};

}  // namespace sandlot::orchestrator
