// The seam between the lease core and whatever runs sandboxes (a Docker engine today; podman,
// Kubernetes or a pool of engines next). The core speaks only this interface: it never sees an
// engine's types, wire format or wording. Failures come back as provider_error with a typed
// reason, so retry and error-mapping decisions never depend on how an engine words a message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

namespace sandlot::orchestrator {

/// Why a provider call failed. The core decides on these alone (see docs/architecture.md).
enum class provider_failure {
  unreachable,        // the engine could not be reached, or the connection broke mid-call
  timed_out,          // it took the call and did not answer within the deadline (hung)
  image_not_found,    // the engine or its registry does not know the image
  invalid_reference,  // the image reference is malformed for this engine
  not_allowed,        // policy refuses it (a registry outside --allow-registry)
  auth,               // the registry refused credentials, or wants some
  not_found,          // no such sandbox, directory or file
  conflict,           // the sandbox's state forbids it (a name in use, not running ...)
  read_only,          // the sandbox's filesystem takes no writes
  too_large,          // more bytes than the caller's limit
  not_a_file,         // the path is not a regular file
  rejected,           // the engine refused the request as invalid
  failed,             // anything else the engine reported
  engine_lost,        // the engine of a pool that ran (or was to run) it is down
};

std::string_view to_string(provider_failure f) noexcept;

class provider_error : public std::runtime_error {
 public:
  provider_error(provider_failure reason, const std::string& message)
      : std::runtime_error(message), reason_(reason) {}
  provider_failure reason() const noexcept { return reason_; }
  /// The same request cannot succeed on retry (an unknown image, a refused registry ...).
  bool permanent() const noexcept;

 private:
  provider_failure reason_;
};

/// What to make: the lease's request, its ids, and the exact image to use.
struct sandbox_spec {
  std::string lease_id;  // also a fixture's id: what the sandbox is labelled and swept by
  std::string lease_name;
  protocol::lease_request request;
  std::string image_id;  // the run's pinned image (empty: request.image)
  bool fixture = false;  // a run's fixture: holds no slots of the budget
};

struct exec_spec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE
  std::string workdir;
  std::optional<std::string> stdin_data;
  std::chrono::milliseconds timeout{60000};
  std::size_t output_limit = 8 * 1024 * 1024;  // per stream; the rest is dropped and flagged
};

struct exec_output {
  int exit_code = -1;
  std::string stdout_data;
  std::string stderr_data;
  bool truncated = false;
  bool timed_out = false;
};

/// A sandbox this daemon instance made, as the engine lists it.
struct owned_sandbox {
  std::string id;
  std::string lease_id;  // the lease (or fixture) it was made for
  std::string owner;     // the process that made it (instance_owner.hpp)
  bool running = true;
  std::string state;  // the engine's word for it, for messages ("exited", ...)
};

/// An engine of a pool went away or came back (sandbox_provider::on_capacity_change).
struct capacity_change {
  std::string engine;
  bool up = false;
  int slots_total = 0;                      // the budget the provider can serve now
  std::vector<std::string> lost_sandboxes;  // sandbox ids that went with it
  std::string reason;                       // why it went, or what answered when it came back
};

class sandbox_provider {
 public:
  using clock = std::chrono::steady_clock;
  virtual ~sandbox_provider() = default;

  /// Reaches the engine and agrees on a protocol; returns a line saying what answered.
  virtual boost::asio::awaitable<std::string> connect() = 0;

  virtual boost::asio::awaitable<bool> image_present(std::string image) = 0;
  /// The id of the image `image` names now (what a run pins its leases to).
  virtual boost::asio::awaitable<std::string> image_id(std::string image) = 0;
  /// Bytes of an image's layers fetched so far and in all, as the engine reports them.
  using pull_progress = std::function<void(std::int64_t done, std::int64_t total)>;
  /// Fetches the image from its registry, giving up at `deadline`; `progress` (may be empty) is
  /// called as the engine reports layer sizes.
  virtual boost::asio::awaitable<void> pull(std::string image, clock::time_point deadline, pull_progress progress) = 0;

  /// Makes the sandbox, starts it and checks it runs. A sandbox made before a later step failed
  /// is removed before this throws.
  virtual boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec) = 0;
  virtual boost::asio::awaitable<exec_output> exec(std::string sandbox_id, exec_spec spec) = 0;
  /// Writes one file; its directory must exist (not_found otherwise).
  virtual boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string path, std::string data,
                                                  unsigned mode) = 0;
  /// One regular file's bytes, at most `limit` (too_large beyond); nullopt when nothing is there.
  virtual boost::asio::awaitable<std::optional<std::string>> read_file(std::string sandbox_id, std::string path,
                                                                       std::size_t limit) = 0;
  /// Returns once the engine confirms the sandbox is gone (already gone counts).
  virtual boost::asio::awaitable<void> remove(std::string sandbox_id) = 0;
  /// Removes every sandbox made for this lease (a create that was cut short may have left one).
  virtual boost::asio::awaitable<int> remove_lease(std::string lease_id) = 0;

  /// Every sandbox of this daemon instance.
  virtual boost::asio::awaitable<std::vector<owned_sandbox>> list_own() = 0;
  /// Removes every sandbox of this instance that this process made or whose maker is gone.
  virtual boost::asio::awaitable<int> remove_all_own() = 0;
  /// True when this process may remove `s` as an orphan: it made it, or its maker is gone.
  virtual bool may_reap(const owned_sandbox& s) = 0;

  // --- providers that place sandboxes on several engines (a pool); one engine needs none of it
  /// The engines and their use, for status and metrics; empty for a single engine.
  virtual std::vector<protocol::engine_status> engines() const { return {}; }
  /// The budget the engines give (the sum of their slots); 0 when the provider sets none.
  virtual int slots_total() const { return 0; }
  /// The most slots one sandbox may take (the widest engine's); 0 when the budget is the only bound.
  virtual int widest_sandbox() const { return 0; }
  /// Called on the provider's executor when an engine goes away or comes back.
  virtual void on_capacity_change(std::function<void(capacity_change)> handler) { (void)handler; }
};

}  // namespace sandlot::orchestrator
