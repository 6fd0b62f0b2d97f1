// Several engines as one provider: the budget is the sum of their slots, each engine's own slots
// hold, and the core does not know which engine a sandbox runs on (docs/scale-out.md).
//
// Placement. A sandbox goes to an up engine with enough free slots, one that already has the image
// first (as the Kubernetes scheduler's image-locality score), then the least loaded. A run's fixture
// holds no slots of the budget, so it is placed without counting. When no engine has room (slots
// split between engines for a wide lease, or a warm sandbox still being removed) the create waits
// for room; the core's ready timeout bounds that wait. Such a create reserves the engine that
// will have room for it soonest, and smaller creates go elsewhere meanwhile, so a wide lease is not
// starved by narrow ones filling every engine as slots come free.
//
// Images. pull() pulls on every up engine that lacks the image, at once: one pull per image per
// engine (the core's gate already makes it one at a time per image). An engine that came back, or
// whose pull failed, gets the image on its first create that needs it.
//
// Health. Every engine is probed (the member's connect(), raced against a timeout). One that fails
// twice in a row is down: its sandboxes are reported lost to the core (on_capacity_change), which
// fails their leases with engine_lost, and it takes no new ones. A removal on a down engine is
// remembered and done when it answers again; then its orphans are swept and it rejoins.
//
// One thread, like the core: every member runs on the executor given here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "async_event.hpp"
#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

/// One engine of a pool. The provider is owned by whoever made the pool, and outlives it.
struct pool_member {
  std::string name;      // unique within the pool: what status, metrics and sandbox.engine show
  std::string endpoint;  // for messages: unix socket path or tcp://host:port
  std::string kind = "docker";
  int slots = 1;
  sandbox_provider* provider = nullptr;
};

class engine_pool final : public sandbox_provider {
 public:
  struct options {
    std::chrono::milliseconds probe_interval{1000};
    std::chrono::milliseconds probe_timeout{3000};
    int failures_to_lose = 2;  // probes in a row that must fail before an engine is down
  };

  /// Throws std::invalid_argument for no members, a duplicate or empty name, or slots < 1.
  engine_pool(boost::asio::any_io_executor ex, std::vector<pool_member> members, options opts);
  engine_pool(boost::asio::any_io_executor ex, std::vector<pool_member> members);
  ~engine_pool() override;

  /// Connects to every engine; throws unless at least one answers. Starts the health probes.
  boost::asio::awaitable<std::string> connect() override;
  /// Present on every up engine.
  boost::asio::awaitable<bool> image_present(std::string image) override;
  boost::asio::awaitable<std::string> image_id(std::string image) override;
  /// On every up engine that lacks it; fails only if no engine has it afterwards.
  boost::asio::awaitable<void> pull(std::string image, clock::time_point deadline, pull_progress progress) override;
  boost::asio::awaitable<protocol::sandbox_info> create(const sandbox_spec& spec) override;
  boost::asio::awaitable<exec_output> exec(std::string sandbox_id, exec_spec spec) override;
  boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string path, std::string data,
                                          unsigned mode) override;
  boost::asio::awaitable<std::optional<std::string>> read_file(std::string sandbox_id, std::string path,
                                                               std::size_t limit) override;
  boost::asio::awaitable<void> remove(std::string sandbox_id) override;
  boost::asio::awaitable<int> remove_lease(std::string lease_id) override;
  boost::asio::awaitable<std::vector<owned_sandbox>> list_own() override;
  boost::asio::awaitable<int> remove_all_own() override;
  bool may_reap(const owned_sandbox& s) override;

  std::vector<protocol::engine_status> engines() const override;
  int slots_total() const override;
  int widest_sandbox() const override;
  void on_capacity_change(std::function<void(capacity_change)> handler) override { handler_ = std::move(handler); }

  /// Ends the health probes (they also end when the executor's loop stops).
  void stop() noexcept;

 private:
  struct engine {
    pool_member m;
    bool up = false;
    int failures = 0;        // probes failed in a row
    std::uint64_t epoch = 0; // bumped when it goes down: what was under way before belongs to the past
    int in_use = 0;          // slots of the sandboxes placed here (and of creates under way)
    int reserved = 0;        // slots held back for creates waiting to be placed here
    int sandboxes = 0;
    std::uint64_t pulls = 0;
    std::string detail;  // why it is down (empty while up)
    std::string banner;  // what it said when it last answered
    std::set<std::string> images;           // known present here
    std::set<std::string> stale;            // sandbox ids to remove once it answers again
    std::map<std::string, std::shared_ptr<async_event>> pulling;  // image → its pull here, under way
  };
  struct placed {
    engine* where = nullptr;
    int slots = 0;
    std::string lease_id;
  };

  /// The engine to place on, or none with room. `mine`: the engine reserved for this create.
  engine* pick(const sandbox_spec& spec, int slots, const engine* mine);
  /// For a create that found no room: the engine it waits on, whose free slots go to it first.
  engine* reserve_for(int slots);
  /// The engine of a sandbox; throws not_found (unknown) or engine_lost (its engine is down).
  engine& engine_of(const std::string& sandbox_id);
  boost::asio::awaitable<void> pull_on(engine& e, std::string image, clock::time_point deadline,
                                       pull_progress progress);
  /// Asks the up engines not known to have `image` whether they have it.
  boost::asio::awaitable<void> learn(std::string image);
  /// Makes sure `image` is on `e` before a create there.
  boost::asio::awaitable<void> ensure_image(engine& e, std::string image, clock::time_point deadline);
  /// One probe: connect() within the probe timeout. Empty on success, else why not.
  boost::asio::awaitable<std::string> probe(engine& e);
  boost::asio::awaitable<void> watch();
  void lose(engine& e, const std::string& why);
  boost::asio::awaitable<void> rejoin(engine& e);
  void forget(const std::string& sandbox_id);
  int up_slots() const;

  boost::asio::any_io_executor ex_;
  options opts_;
  std::vector<std::unique_ptr<engine>> engines_;
  std::map<std::string, placed> placed_;  // sandbox id → where, and what it holds
  std::function<void(capacity_change)> handler_;
  async_event room_;  // slots came back on an engine, or one rejoined
  bool stopped_ = false;
  bool watching_ = false;
};

}  // namespace sandlot::orchestrator
