// Warm pools: ready, never-used sandboxes kept in the budget's idle capacity, so that a lease whose
// request matches one is ready as soon as it is admitted. Pure bookkeeping, no I/O, unit-tested
// without an engine; lease_lifecycle.cpp and housekeeping.cpp do the creating and removing.
//
// What matches. A warm sandbox is made from a `warm_key`: the image reference and everything the
// engine fixes at create (network, memory, CPUs, pids, disk, read-only root). A lease matches when
// its key is equal and it weighs one slot; its run's pinned image id must also equal the id the
// sandbox was made from (checked by the caller, which knows the pin). The rest of a request is
// applied after adoption: the lease's env goes to every exec, its name and test to the lease
// record. Anything else takes the cold path unchanged.
//
// Capacity. Warm sandboxes use idle slots only: count() + slots in use <= slots total, always.
// When a lease is admitted and that no longer holds, trim() evicts warm sandboxes, other images
// first, so a warm sandbox never delays a lease. Sandboxes still being created count too; evicting
// one marks it, and made() says to remove it once the engine answers.
//
// Single use. claim() hands a ready sandbox to one lease and forgets it: the pool never sees it
// again, and a fresh one is made in its place by the next fill.
//
// How many. `--warm IMAGE=N` keeps N of IMAGE with a default lease's limits. `--warm auto` keeps,
// per key, the peak number of leases of that key held at once within the last `demand_window`
// (5 minutes): what the run asked for recently, so the next wave of its tests starts warm. Both
// are capped by idle capacity; where they disagree the larger target wins.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sandlot/protocol.hpp>

namespace sandlot::orchestrator {

/// What a warm sandbox is made with, and what a lease must ask for to adopt it.
struct warm_key {
  std::string image;
  protocol::network_mode network = protocol::network_mode::none;
  std::int64_t memory_mb = 256;
  double cpus = 1.0;
  int pids_limit = 256;
  std::int64_t disk_mb = 512;
  bool read_only = false;

  auto operator<=>(const warm_key&) const = default;
  /// The key of a lease's request (its image reference and fixed-at-create limits).
  static warm_key of(const protocol::lease_request& r);
  /// The key a `--warm IMAGE=N` entry keeps: IMAGE with a default lease's limits.
  static warm_key defaults_for(std::string image);
  /// The request a warm sandbox of this key is created from: no env, run or test.
  protocol::lease_request request() const;
};

/// A lease that could adopt a warm sandbox at all: one slot (a warm sandbox fills one).
bool warm_eligible(const protocol::lease_request& r) noexcept;

/// One ready warm sandbox.
struct warm_sandbox {
  std::string id;        // the pool's own id: what the sandbox is labelled with in place of a lease
  warm_key key;
  std::string image_id;  // the image it was made from
  protocol::sandbox_info sandbox;
};

/// `--warm` as parsed: IMAGE[=N] entries and `auto`.
struct warm_options {
  bool auto_size = false;
  std::map<std::string, int> fixed;  // image reference → how many to keep
  std::chrono::seconds demand_window{300};
  std::chrono::seconds retry_after{10};  // after a failed create of a key
  bool enabled() const noexcept { return auto_size || !fixed.empty(); }
};

/// Parses one `--warm` value: "auto", "IMAGE" (one) or "IMAGE=N" (0 <= N <= 64). Throws
/// std::invalid_argument saying what is accepted.
void parse_warm_entry(const std::string& text, warm_options& into);

class warm_pool {
 public:
  using clock = std::chrono::steady_clock;

  explicit warm_pool(warm_options opts) : opts_(std::move(opts)) {}

  bool enabled() const noexcept { return opts_.enabled(); }
  const warm_options& options() const noexcept { return opts_; }

  // --- demand (for --warm auto)
  /// A lease of `key` was admitted / gave its slots back.
  void lease_held(const warm_key& key, clock::time_point now);
  void lease_let_go(const warm_key& key, clock::time_point now);
  /// How many of `key` to keep: the fixed count, or the recent peak of held leases, whichever is larger.
  int target(const warm_key& key, clock::time_point now) const;

  // --- one warm sandbox's life
  struct to_create {
    std::string id;
    warm_key key;
  };
  /// Registers up to `idle` new sandboxes to create (ids from `next_id`), for keys below their
  /// target and not backing off, round-robin between keys. The caller creates each and reports
  /// with made() or create_failed().
  template <typename IdFn>
  std::vector<to_create> plan_fill(int idle, clock::time_point now, IdFn&& next_id) {
    std::vector<to_create> out;
    auto wanted = deficits(now);
    bool progress = true;
    while (idle > 0 && progress) {
      progress = false;
      for (auto& [key, missing] : wanted) {
        if (idle == 0) break;
        if (missing <= 0) continue;
        --missing;
        --idle;
        progress = true;
        to_create c{next_id(), key};
        creating_[c.id] = creating{c.key, false};
        out.push_back(std::move(c));
      }
    }
    return out;
  }
  /// The engine made `id`. False if it was evicted while being made: the caller removes it.
  bool made(const std::string& id, std::string image_id, protocol::sandbox_info sandbox);
  /// Creating `id` failed: its key is not tried again for options().retry_after.
  void create_failed(const std::string& id, clock::time_point now);
  /// A ready sandbox of `key` for one lease, oldest first; the pool forgets it.
  std::optional<warm_sandbox> claim(const warm_key& key);
  /// Evicts until count() <= `capacity` and no key keeps more than its target: ready sandboxes are
  /// returned for the caller to remove; ones still being made are marked (made() returns false).
  /// Sandboxes of images other than `keep_image` go first.
  std::vector<warm_sandbox> trim(int capacity, const std::string& keep_image, clock::time_point now);
  /// A ready sandbox found stopped or gone: forgotten (the caller removes it).
  std::optional<warm_sandbox> lose(const std::string& id);
  /// A ready sandbox whose engine went away, by the engine's sandbox id: forgotten.
  std::optional<warm_sandbox> lose_sandbox(const std::string& sandbox_id);
  /// Everything ready, forgotten at once (shutdown).
  std::vector<warm_sandbox> take_all();

  /// The pool made it and still keeps it (ready or being made): the orphan sweep leaves it alone.
  bool holds(const std::string& id) const;
  /// Ready and being made, not counting those evicted while being made.
  int count() const noexcept;
  int ready_count() const noexcept { return static_cast<int>(ready_.size()); }

  // --- figures
  void hit(const std::string& image) { ++stats_[image].hits; }
  void miss(const std::string& image) { ++stats_[image].misses; }
  /// True when a lease of this image would count as a miss: the pool keeps (or kept) its image.
  bool tracks(const std::string& image, clock::time_point now) const;
  struct image_figures {
    std::string image;
    int ready = 0;
    int creating = 0;
    int target = 0;
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
  };
  /// Per image reference, in name order: every image with a target, a sandbox or a hit or miss.
  std::vector<image_figures> figures(clock::time_point now) const;
  std::uint64_t hits() const noexcept;
  std::uint64_t misses() const noexcept;

 private:
  struct creating {
    warm_key key;
    bool evicted = false;
  };
  struct demand {
    int held = 0;
    std::deque<std::pair<clock::time_point, int>> history;  // (when, held after the change)
  };
  struct counters {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
  };
  void record(const warm_key& key, int delta, clock::time_point now);
  int peak(const demand& d, clock::time_point now) const;
  int have(const warm_key& key) const;
  std::map<warm_key, int> deficits(clock::time_point now) const;
  std::vector<warm_key> keys(clock::time_point now) const;

  warm_options opts_;
  std::vector<warm_sandbox> ready_;             // oldest first
  std::map<std::string, creating> creating_;    // id → what it is for
  std::map<warm_key, demand> demand_;
  std::map<warm_key, clock::time_point> backoff_until_;
  std::map<std::string, counters> stats_;       // by image reference
};

}  // namespace sandlot::orchestrator
