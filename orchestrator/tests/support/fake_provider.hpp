// Unit-test support: an in-memory sandbox_provider, so the lease core runs without an engine.
// Tests steer it (images present, delays, failures of the next N calls) and read back what an
// engine would have seen: the sandboxes it holds, the order removals were confirmed in, and a
// chronological event log.
//
//   fake_provider fake;
//   fake.set_create_delay(200ms);
//   fake.fail_removes(3);
//   ...
//   CHECK(fake.event_index("removed sb-1") < fake.event_index("create " + second_lease));
//
// Events, one string each, in the order they happened:
//   "connect", "pull <image>", "pulled <image>", "pull failed <image>",
//   "create <lease>", "created <lease> <sandbox>", "create failed <lease>",
//   "remove <sandbox>", "removed <sandbox>", "remove failed <sandbox>",
//   "remove_lease <lease>", "remove_lease failed <lease>", "remove_all_own",
//   "exec <sandbox> <argv...>", "write_file <sandbox> <path>", "read_file <sandbox> <path>".
// ("removed" also when it was gone already, as the engine confirms that too. image_present,
// image_id and list_own are not logged: the sweep lists every interval.)
//
// Every call suspends at least once, as real I/O does, so a test sees the interleavings an engine
// would cause. Not thread-safe: it lives on the test's one io_context thread, as the core does.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include <sandlot/protocol.hpp>

#include "sandbox_provider.hpp"

namespace sandlot::orchestrator::testing {

class fake_provider final : public sandbox_provider {
 public:
  /// A sandbox the fake engine holds.
  struct sandbox {
    std::string id;
    std::string name;
    std::string lease_id;  // the lease or fixture it was made for
    std::string owner;
    std::string image;
    bool running = true;
    std::map<std::string, std::string> files;  // path → bytes
  };

  using exec_handler =
      std::function<exec_output(const std::string& sandbox_id, const exec_spec& spec)>;

  explicit fake_provider(std::string owner = "fake-owner");

  // --- steering ------------------------------------------------------------------------------

  /// The engine has `image` (its id: `id`, or one made up from the reference).
  void add_image(const std::string& image, std::string id = {});
  /// Every pull takes this long (timed on the calling coroutine's executor).
  void set_pull_delay(std::chrono::milliseconds delay) { pull_delay_ = delay; }
  /// The next `times` pulls (-1: every one) fail with `reason`.
  void fail_pulls(provider_failure reason, std::string message, int times = -1);
  /// Every create takes this long before its sandbox exists. The engine goes on even when the
  /// caller gives up (an awaitable operator cancels it): the sandbox lands anyway, later.
  void set_create_delay(std::chrono::milliseconds delay) { create_delay_ = delay; }
  /// The next `times` creates (-1: every one) fail with `reason` once their delay has passed.
  void fail_creates(provider_failure reason, std::string message, int times = 1);
  /// Every remove and remove_lease takes this long before the engine confirms.
  void set_remove_delay(std::chrono::milliseconds delay) { remove_delay_ = delay; }
  /// The next `times` remove / remove_lease calls fail (provider_failure::failed) after their
  /// delay.
  void fail_removes(int times, std::string message = "the engine could not remove the container");
  /// What exec answers; by default exit 0 with the argv, space-separated, on stdout.
  void set_exec(exec_handler handler) { exec_ = std::move(handler); }
  /// Puts a sandbox in the engine behind the core's back (a leftover, another daemon's ...);
  /// an empty owner means this fake's own. Returns its id.
  std::string add_sandbox(const std::string& lease_id, std::string owner = {}, bool running = true);
  /// The sandbox stops behind the core's back (its init exited, the engine restarted).
  void mark_stopped(const std::string& sandbox_id);
  /// The engine stops answering (true) or answers again (false): while down, connect() and every
  /// other call fail with provider_failure::unreachable, as a stopped dockerd's socket does. What
  /// it held stays, as a stopped dockerd keeps its stopped containers.
  void set_down(bool down) { down_ = down; }
  bool down() const noexcept { return down_; }
  /// Sandbox ids start with this (default "sb-"): fakes in one pool need distinct ones, as
  /// engines' container ids are.
  void set_id_prefix(std::string prefix) { id_prefix_ = std::move(prefix); }
  /// Called with every event as it is logged (to look at the core at that moment).
  void on_event(std::function<void(const std::string& event)> hook) { on_event_ = std::move(hook); }

  // --- what the engine saw -------------------------------------------------------------------

  const std::string& owner() const noexcept { return owner_; }
  const std::map<std::string, sandbox>& sandboxes() const noexcept { return sandboxes_; }
  bool has_sandbox(const std::string& id) const { return sandboxes_.count(id) != 0; }
  /// The sandboxes held for one lease (or fixture) id.
  std::vector<sandbox> sandboxes_of(const std::string& lease_id) const;
  const std::vector<std::string>& events() const noexcept { return events_; }
  /// Where `event` first appears in events(); -1 if it never happened.
  std::ptrdiff_t event_index(std::string_view event) const;
  bool logged(std::string_view event) const { return event_index(event) >= 0; }
  /// How many times `event` was logged.
  int count(std::string_view event) const;
  /// Ids of every sandbox ever made for one lease (or fixture) id, removed ones included.
  std::vector<std::string> made_for(const std::string& lease_id) const;
  /// Sandbox ids in the order their removal was confirmed.
  const std::vector<std::string>& removed() const noexcept { return removed_; }
  int pulls(const std::string& image) const;
  int create_calls() const noexcept { return create_calls_; }
  int creates_landed() const noexcept { return creates_landed_; }
  int creates_in_flight() const noexcept { return creates_in_flight_; }
  int remove_calls() const noexcept { return remove_calls_; }
  int list_calls() const noexcept { return list_calls_; }
  int image_present_calls() const noexcept { return image_present_calls_; }

  // --- sandbox_provider ----------------------------------------------------------------------

  boost::asio::awaitable<std::string> connect() override;
  boost::asio::awaitable<bool> image_present(std::string image) override;
  boost::asio::awaitable<std::string> image_id(std::string image) override;
  boost::asio::awaitable<void> pull(std::string image, clock::time_point deadline, pull_progress progress) override;
  /// The size every pull reports: half of it before the pull delay, all of it at the end.
  static constexpr std::int64_t fake_image_bytes = 4096;
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec) override;
  boost::asio::awaitable<exec_output> exec(std::string sandbox_id, exec_spec spec) override;
  boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string path,
                                          std::string data, unsigned mode) override;
  boost::asio::awaitable<std::optional<std::string>> read_file(std::string sandbox_id,
                                                               std::string path,
                                                               std::size_t limit) override;
  boost::asio::awaitable<void> remove(std::string sandbox_id) override;
  boost::asio::awaitable<int> remove_lease(std::string lease_id) override;
  boost::asio::awaitable<std::vector<owned_sandbox>> list_own() override;
  boost::asio::awaitable<int> remove_all_own() override;
  bool may_reap(const owned_sandbox& s) override;

 private:
  /// A failure planned for the next calls of one kind.
  struct failure_plan {
    provider_failure reason = provider_failure::failed;
    std::string message;
    int times = 0;  // -1: every call
  };
  /// The engine's side of one create: it runs to the end whether or not the caller still waits.
  struct landing;

  /// Consumes one planned failure, if any is left.
  static std::optional<failure_plan> take(failure_plan& plan);
  void log(std::string event);
  /// Throws provider_failure::unreachable while the engine is down.
  void answer_or_fail(std::string_view call) const;
  sandbox& running_sandbox(const std::string& id);
  boost::asio::awaitable<void> make_sandbox(sandbox_spec spec, std::chrono::milliseconds delay,
                                            std::optional<failure_plan> failure,
                                            std::shared_ptr<landing> out);
  /// One removal as the engine does it: the delay, a planned failure, then the sandbox is gone.
  boost::asio::awaitable<void> remove_one(std::string sandbox_id);

  std::string owner_;
  std::set<std::string> images_;
  std::map<std::string, std::string> image_ids_;
  std::map<std::string, sandbox> sandboxes_;
  std::vector<std::string> events_;
  std::vector<std::string> removed_;
  std::map<std::string, std::vector<std::string>> made_;  // lease id → sandbox ids, in order
  std::map<std::string, int> pulls_;
  std::chrono::milliseconds pull_delay_{0};
  std::chrono::milliseconds create_delay_{0};
  std::chrono::milliseconds remove_delay_{0};
  failure_plan pull_failures_;
  failure_plan create_failures_;
  failure_plan remove_failures_;
  exec_handler exec_;
  std::function<void(const std::string&)> on_event_;
  int next_sandbox_ = 0;
  bool down_ = false;
  std::string id_prefix_ = "sb-";
  int create_calls_ = 0;
  int creates_landed_ = 0;
  int creates_in_flight_ = 0;
  int remove_calls_ = 0;
  int list_calls_ = 0;
  int image_present_calls_ = 0;
};

}  // namespace sandlot::orchestrator::testing
