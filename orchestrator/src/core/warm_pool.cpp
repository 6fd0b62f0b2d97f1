#include "warm_pool.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

namespace sandlot::orchestrator {

warm_key warm_key::of(const protocol::lease_request& r) {
  return warm_key{r.image, r.network, r.memory_mb, r.cpus, r.pids_limit, r.disk_mb, r.read_only};
}

warm_key warm_key::defaults_for(std::string image) {
  protocol::lease_request r;
  r.image = std::move(image);
  return of(r);
}

protocol::lease_request warm_key::request() const {
  protocol::lease_request r;
  r.image = image;
  r.network = network;
  r.memory_mb = memory_mb;
  r.cpus = cpus;
  r.pids_limit = pids_limit;
  r.disk_mb = disk_mb;
  r.read_only = read_only;
  r.run = "warm";
  return r;
}

bool warm_eligible(const protocol::lease_request& r) noexcept { return r.slots == 1; }

void parse_warm_entry(const std::string& text, warm_options& into) {
  if (text.empty()) return;  // SANDLOT_WARM= (set but empty): no warm pools
  if (text == "auto") {
    into.auto_size = true;
    return;
  }
  const auto eq = text.rfind('=');
  std::string image = text.substr(0, eq);
  int n = 1;
  if (eq != std::string::npos) {
    const std::string count = text.substr(eq + 1);
    auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), n);
    if (ec != std::errc{} || end != count.data() + count.size() || n < 0 || n > 64) {
      throw std::invalid_argument(fmt::format("--warm '{}': the count after '=' must be a number from 0 to 64, "
                                              "e.g. --warm 127.0.0.1:5000/img:1=2", text));
    }
  }
  if (image.empty()) {
    throw std::invalid_argument(fmt::format("--warm '{}': give an image reference, IMAGE=N, or auto", text));
  }
  into.fixed[image] = n;
}

// --- demand ----------------------------------------------------------------------------------

void warm_pool::record(const warm_key& key, int delta, clock::time_point now) {
  auto& d = demand_[key];
  d.held = std::max(0, d.held + delta);
  d.history.emplace_back(now, d.held);
  // Keep one change at or before the window's start: it says what was held when the window opened.
  const auto start = now - opts_.demand_window;
  while (d.history.size() > 1 && d.history[1].first <= start) d.history.pop_front();
}

void warm_pool::lease_held(const warm_key& key, clock::time_point now) { record(key, +1, now); }
void warm_pool::lease_let_go(const warm_key& key, clock::time_point now) { record(key, -1, now); }

int warm_pool::peak(const demand& d, clock::time_point now) const {
  const auto start = now - opts_.demand_window;
  int p = d.held;
  for (std::size_t i = 0; i < d.history.size(); ++i) {
    // The value of a change counts if it was still in force when the window opened.
    const bool in_force = d.history[i].first >= start || i + 1 == d.history.size() || d.history[i + 1].first > start;
    if (in_force) p = std::max(p, d.history[i].second);
  }
  return p;
}

int warm_pool::target(const warm_key& key, clock::time_point now) const {
  int t = 0;
  if (auto it = opts_.fixed.find(key.image); it != opts_.fixed.end() && key == warm_key::defaults_for(key.image)) {
    t = it->second;
  }
  if (opts_.auto_size) {
    if (auto it = demand_.find(key); it != demand_.end()) t = std::max(t, peak(it->second, now));
  }
  return t;
}

std::vector<warm_key> warm_pool::keys(clock::time_point now) const {
  std::set<warm_key> out;
  for (const auto& [image, n] : opts_.fixed) out.insert(warm_key::defaults_for(image));
  if (opts_.auto_size) {
    for (const auto& [key, d] : demand_) {
      if (peak(d, now) > 0) out.insert(key);
    }
  }
  for (const auto& w : ready_) out.insert(w.key);
  for (const auto& [id, c] : creating_) out.insert(c.key);
  return {out.begin(), out.end()};
}

int warm_pool::have(const warm_key& key) const {
  int n = 0;
  for (const auto& w : ready_) n += w.key == key ? 1 : 0;
  for (const auto& [id, c] : creating_) n += (c.key == key && !c.evicted) ? 1 : 0;
  return n;
}

std::map<warm_key, int> warm_pool::deficits(clock::time_point now) const {
  std::map<warm_key, int> out;
  for (const auto& key : keys(now)) {
    if (auto b = backoff_until_.find(key); b != backoff_until_.end() && now < b->second) continue;
    const int missing = target(key, now) - have(key);
    if (missing > 0) out[key] = missing;
  }
  return out;
}

// --- one warm sandbox's life -----------------------------------------------------------------

bool warm_pool::made(const std::string& id, std::string image_id, protocol::sandbox_info sandbox) {
  auto it = creating_.find(id);
  if (it == creating_.end()) return false;
  const bool keep = !it->second.evicted;
  if (keep) ready_.push_back(warm_sandbox{id, it->second.key, std::move(image_id), std::move(sandbox)});
  creating_.erase(it);
  return keep;
}

void warm_pool::create_failed(const std::string& id, clock::time_point now) {
  auto it = creating_.find(id);
  if (it == creating_.end()) return;
  backoff_until_[it->second.key] = now + opts_.retry_after;
  creating_.erase(it);
}

std::optional<warm_sandbox> warm_pool::claim(const warm_key& key) {
  auto it = std::find_if(ready_.begin(), ready_.end(), [&](const warm_sandbox& w) { return w.key == key; });
  if (it == ready_.end()) return std::nullopt;
  warm_sandbox w = std::move(*it);
  ready_.erase(it);
  return w;
}

std::vector<warm_sandbox> warm_pool::trim(int capacity, const std::string& keep_image, clock::time_point now) {
  std::vector<warm_sandbox> out;
  auto evict_ready = [&](auto it) {
    out.push_back(std::move(*it));
    ready_.erase(it);
  };
  // Beyond a key's target (auto demand that has passed, or a count lowered): newest first, and
  // only ready ones (one being made is trimmed once it is ready).
  for (const auto& key : keys(now)) {
    int extra = have(key) - target(key, now);
    for (auto it = ready_.end(); extra > 0 && it != ready_.begin();) {
      --it;
      if (it->key != key) continue;
      evict_ready(it);
      --extra;
      it = ready_.end();
    }
  }
  // Beyond idle capacity: other images first; within them, one still being made before a ready one
  // (less work lost), then the newest ready one.
  capacity = std::max(capacity, 0);
  for (int pass = 0; pass < 2 && count() > capacity; ++pass) {
    const bool same_image = pass == 1;
    for (auto& [id, c] : creating_) {
      if (count() <= capacity) break;
      if (!c.evicted && (c.key.image == keep_image) == same_image) c.evicted = true;
    }
    for (auto it = ready_.end(); count() > capacity && it != ready_.begin();) {
      --it;
      if ((it->key.image == keep_image) != same_image) continue;
      evict_ready(it);
      it = ready_.end();
    }
  }
  return out;
}

std::optional<warm_sandbox> warm_pool::lose(const std::string& id) {
  auto it = std::find_if(ready_.begin(), ready_.end(), [&](const warm_sandbox& w) { return w.id == id; });
  if (it == ready_.end()) return std::nullopt;
  warm_sandbox w = std::move(*it);
  ready_.erase(it);
  return w;
}

std::optional<warm_sandbox> warm_pool::lose_sandbox(const std::string& sandbox_id) {
  auto it = std::find_if(ready_.begin(), ready_.end(), [&](const warm_sandbox& w) { return w.sandbox.id == sandbox_id; });
  if (it == ready_.end()) return std::nullopt;
  return lose(it->id);
}

std::vector<warm_sandbox> warm_pool::take_all() {
  std::vector<warm_sandbox> out = std::move(ready_);
  ready_.clear();
  for (auto& [id, c] : creating_) c.evicted = true;
  return out;
}

bool warm_pool::holds(const std::string& id) const {
  return creating_.count(id) != 0 ||
         std::any_of(ready_.begin(), ready_.end(), [&](const warm_sandbox& w) { return w.id == id; });
}

int warm_pool::count() const noexcept {
  int n = static_cast<int>(ready_.size());
  for (const auto& [id, c] : creating_) n += c.evicted ? 0 : 1;
  return n;
}

// --- figures ---------------------------------------------------------------------------------

bool warm_pool::tracks(const std::string& image, clock::time_point now) const {
  if (opts_.fixed.count(image) != 0) return true;
  for (const auto& key : keys(now)) {
    if (key.image == image) return true;
  }
  return false;
}

std::vector<warm_pool::image_figures> warm_pool::figures(clock::time_point now) const {
  std::map<std::string, image_figures> by_image;
  auto of = [&](const std::string& image) -> image_figures& {
    auto& f = by_image[image];
    f.image = image;
    return f;
  };
  for (const auto& key : keys(now)) of(key.image).target += target(key, now);
  for (const auto& w : ready_) ++of(w.key.image).ready;
  for (const auto& [id, c] : creating_) {
    if (!c.evicted) ++of(c.key.image).creating;
  }
  for (const auto& [image, c] : stats_) {
    auto& f = of(image);
    f.hits = c.hits;
    f.misses = c.misses;
  }
  std::vector<image_figures> out;
  for (auto& [image, f] : by_image) out.push_back(std::move(f));
  return out;
}

std::uint64_t warm_pool::hits() const noexcept {
  std::uint64_t n = 0;
  for (const auto& [image, c] : stats_) n += c.hits;
  return n;
}

std::uint64_t warm_pool::misses() const noexcept {
  std::uint64_t n = 0;
  for (const auto& [image, c] : stats_) n += c.misses;
  return n;
}

}  // namespace sandlot::orchestrator
