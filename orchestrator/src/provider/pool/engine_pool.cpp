#include "engine_pool.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using namespace std::chrono_literals;

engine_pool::engine_pool(asio::any_io_executor ex, std::vector<pool_member> members)
    : engine_pool(std::move(ex), std::move(members), options{}) {}

engine_pool::engine_pool(asio::any_io_executor ex, std::vector<pool_member> members, options opts)
    : ex_(std::move(ex)), opts_(opts) {
  if (members.empty()) throw std::invalid_argument("an engine pool needs at least one engine");
  for (auto& m : members) {
    if (m.name.empty()) throw std::invalid_argument("every engine of the pool needs a name (--engine NAME=URL)");
    if (m.slots < 1) {
      throw std::invalid_argument(fmt::format("engine '{}' has slots={}; give it 1 or more", m.name, m.slots));
    }
    if (m.provider == nullptr) throw std::invalid_argument(fmt::format("engine '{}' has no provider", m.name));
    for (const auto& e : engines_) {
      if (e->m.name == m.name) {
        throw std::invalid_argument(fmt::format("two engines are named '{}'; give each --engine its own name", m.name));
      }
    }
    auto e = std::make_unique<engine>();
    e->m = std::move(m);
    engines_.push_back(std::move(e));
  }
}

engine_pool::~engine_pool() { stop(); }

void engine_pool::stop() noexcept { stopped_ = true; }

int engine_pool::up_slots() const {
  int n = 0;
  for (const auto& e : engines_) n += e->up ? e->m.slots : 0;
  return n;
}

int engine_pool::slots_total() const { return up_slots(); }

int engine_pool::widest_sandbox() const {
  int widest = 0;
  for (const auto& e : engines_) widest = std::max(widest, e->m.slots);
  return widest;
}

std::vector<protocol::engine_status> engine_pool::engines() const {
  std::vector<protocol::engine_status> out;
  out.reserve(engines_.size());
  for (const auto& e : engines_) {
    protocol::engine_status s;
    s.name = e->m.name;
    s.endpoint = e->m.endpoint;
    s.kind = e->m.kind;
    s.up = e->up;
    s.slots = e->m.slots;
    s.in_use = e->in_use;
    s.sandboxes = e->sandboxes;
    s.pulls = e->pulls;
    s.detail = e->detail;
    out.push_back(std::move(s));
  }
  return out;
}

// --- health -------------------------------------------------------------------------------------

namespace {

/// connect(), its failure as a value: awaitable operator|| waits for one side to *succeed*, so a
/// refused connection must not be an exception there, or the probe would wait out its timeout.
struct attempt {
  bool answered = false;
  std::string text;  // what answered, or why not
};
asio::awaitable<attempt> try_connect(sandbox_provider* provider) {
  try {
    std::string banner = co_await provider->connect();
    co_return attempt{true, std::move(banner)};
  } catch (const std::exception& ex) {
    co_return attempt{false, ex.what()};
  }
}

}  // namespace

asio::awaitable<std::string> engine_pool::probe(engine& e) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer limit(ex_, opts_.probe_timeout);
  auto raced = co_await (try_connect(e.m.provider) || limit.async_wait(asio::use_awaitable));
  if (raced.index() == 1) co_return fmt::format("no answer within {} ms", opts_.probe_timeout.count());
  auto& a = std::get<0>(raced);
  if (!a.answered) co_return std::move(a.text);
  e.banner = std::move(a.text);
  co_return std::string();
}

asio::awaitable<std::string> engine_pool::connect() {
  std::vector<std::string> lines;
  for (auto& ep : engines_) {
    engine& e = *ep;
    auto why = co_await probe(e);
    e.up = why.empty();
    if (e.up) {
      e.detail.clear();
      lines.push_back(fmt::format("{} ({} slot(s)): {}", e.m.name, e.m.slots, e.banner));
    } else {
      e.detail = why;
      lines.push_back(fmt::format("{} at {}: DOWN ({}); it joins when it answers", e.m.name, e.m.endpoint, why));
    }
  }
  if (up_slots() == 0) {
    throw provider_error(provider_failure::unreachable,
                         fmt::format("no engine of the pool answers: {}; start one, or fix --engine",
                                     fmt::join(lines, "; ")));
  }
  if (!watching_) {
    watching_ = true;
    asio::co_spawn(ex_, watch(), asio::detached);
  }
  co_return fmt::format("pool of {} engine(s), {} slot(s) up: {}", engines_.size(), up_slots(), fmt::join(lines, "; "));
}

asio::awaitable<void> engine_pool::watch() {
  asio::steady_timer tick(ex_);
  while (!stopped_) {
    tick.expires_after(opts_.probe_interval);
    co_await tick.async_wait(asio::use_awaitable);
    for (auto& ep : engines_) {
      if (stopped_) co_return;
      engine& e = *ep;
      auto why = co_await probe(e);
      if (stopped_) co_return;
      if (why.empty()) {
        e.failures = 0;
        if (!e.up) co_await rejoin(e);
      } else if (!e.up) {
        e.detail = why;
      } else if (++e.failures >= opts_.failures_to_lose) {
        lose(e, why);
      } else {
        spdlog::warn("engine {} ({}) did not answer a probe: {}", e.m.name, e.m.endpoint, why);
      }
    }
  }
}

void engine_pool::lose(engine& e, const std::string& why) {
  e.up = false;
  e.failures = 0;
  e.detail = why;
  ++e.epoch;
  capacity_change c;
  c.engine = e.m.name;
  c.up = false;
  c.reason = why;
  for (auto it = placed_.begin(); it != placed_.end();) {
    if (it->second.where == &e) {
      c.lost_sandboxes.push_back(it->first);
      e.stale.insert(it->first);
      it = placed_.erase(it);
    } else {
      ++it;
    }
  }
  e.in_use = 0;
  e.sandboxes = 0;
  e.images.clear();  // it may come back with another cache
  c.slots_total = up_slots();
  spdlog::error("engine {} ({}) is down: {}; {} sandbox(es) on it are lost and it takes no new ones until it "
                "answers again ({} slot(s) left up)",
                e.m.name, e.m.endpoint, why, c.lost_sandboxes.size(), c.slots_total);
  if (handler_) handler_(std::move(c));
}

asio::awaitable<void> engine_pool::rejoin(engine& e) {
  // Whatever this daemon left there (the sandboxes lost with it, creates that landed late) goes
  // before it takes new ones.
  int removed = 0;
  try {
    removed = co_await e.m.provider->remove_all_own();
  } catch (const std::exception& ex) {
    e.detail = fmt::format("answers, but sweeping its sandboxes failed: {}", ex.what());
    spdlog::warn("engine {} ({}) {}; trying again", e.m.name, e.m.endpoint, e.detail);
    co_return;
  }
  e.stale.clear();
  e.up = true;
  e.detail.clear();
  room_.notify_all();
  capacity_change c;
  c.engine = e.m.name;
  c.up = true;
  c.slots_total = up_slots();
  c.reason = fmt::format("answers again ({}); {} sandbox(es) of this daemon left on it were removed", e.banner, removed);
  spdlog::info("engine {} ({}) {}; it takes leases again ({} slot(s) up)", e.m.name, e.m.endpoint, c.reason,
               c.slots_total);
  if (handler_) handler_(std::move(c));
}

// --- images -------------------------------------------------------------------------------------

asio::awaitable<bool> engine_pool::image_present(std::string image) {
  co_await learn(image);
  int up = 0;
  bool all = true;
  for (const auto& ep : engines_) {
    if (!ep->up) continue;
    ++up;
    all = all && ep->images.contains(image);
  }
  co_return up > 0 && all;
}

asio::awaitable<std::string> engine_pool::image_id(std::string image) {
  std::exception_ptr last;
  // An engine known to have it first.
  for (int pass = 0; pass < 2; ++pass) {
    for (auto& ep : engines_) {
      engine& e = *ep;
      if (!e.up || e.images.contains(image) != (pass == 0)) continue;
      try {
        co_return co_await e.m.provider->image_id(image);
      } catch (...) {
        last = std::current_exception();
      }
    }
  }
  if (last) std::rethrow_exception(last);
  throw provider_error(provider_failure::engine_lost, "no engine of the pool is up to look the image up on");
}

asio::awaitable<void> engine_pool::pull_on(engine& e, std::string image, clock::time_point deadline,
                                           pull_progress progress) {
  if (auto it = e.pulling.find(image); it != e.pulling.end()) {
    // This engine's pull of it is under way (a pool-wide pull and a create's): wait for that one.
    auto done = it->second;
    while (e.pulling.contains(image)) co_await done->wait_until(clock::now() + 1s);
    if (!e.images.contains(image)) {
      throw provider_error(provider_failure::failed,
                           fmt::format("pulling {} on engine {} failed (see the log)", image, e.m.name));
    }
    co_return;
  }
  auto done = std::make_shared<async_event>();
  e.pulling.emplace(image, done);
  const auto epoch = e.epoch;
  std::exception_ptr failure;
  try {
    ++e.pulls;
    co_await e.m.provider->pull(image, deadline, std::move(progress));
    if (e.epoch == epoch) e.images.insert(image);
  } catch (...) {
    failure = std::current_exception();
  }
  e.pulling.erase(image);
  done->notify_all();
  if (failure) std::rethrow_exception(failure);
}

asio::awaitable<void> engine_pool::pull(std::string image, clock::time_point deadline, pull_progress progress) {
  struct join {
    int left = 0;
    async_event done;
    std::vector<std::pair<std::int64_t, std::int64_t>> bytes;
    std::vector<std::pair<std::string, std::exception_ptr>> failures;
    pull_progress report;
  };
  auto j = std::make_shared<join>();
  j->report = std::move(progress);
  std::vector<engine*> targets;
  for (auto& ep : engines_) {
    if (ep->up && !ep->images.contains(image)) targets.push_back(ep.get());
  }
  if (targets.empty()) co_return;
  j->left = static_cast<int>(targets.size());
  j->bytes.resize(targets.size());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    pull_progress each = [j, i](std::int64_t done, std::int64_t total) {
      j->bytes[i] = {done, total};
      if (!j->report) return;
      std::int64_t d = 0;
      std::int64_t t = 0;
      for (const auto& [a, b] : j->bytes) {
        d += a;
        t += b;
      }
      j->report(d, t);
    };
    asio::co_spawn(ex_, pull_on(*targets[i], image, deadline, std::move(each)),
                   [j, name = targets[i]->m.name](std::exception_ptr failure) {
                     if (failure) j->failures.emplace_back(name, failure);
                     if (--j->left == 0) j->done.notify_all();
                   });
  }
  while (j->left > 0) co_await j->done.wait_until(clock::now() + 1s);
  bool somewhere = false;
  for (const auto& ep : engines_) somewhere = somewhere || (ep->up && ep->images.contains(image));
  for (const auto& [name, failure] : j->failures) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& ex) {
      if (somewhere) {
        spdlog::warn("pulling {} on engine {} failed: {}; its leases go to engines that have it, or pull it first",
                     image, name, ex.what());
      }
    }
  }
  if (!somewhere && !j->failures.empty()) std::rethrow_exception(j->failures.front().second);
}

asio::awaitable<void> engine_pool::learn(std::string image) {
  // Placement prefers an engine known to have the image; one not asked yet is asked now (an
  // image inspect), so a cache filled behind this daemon's back counts too.
  for (auto& ep : engines_) {
    engine& e = *ep;
    if (!e.up || e.images.contains(image) || e.pulling.contains(image)) continue;
    const auto epoch = e.epoch;
    bool here = false;
    try {
      here = co_await e.m.provider->image_present(image);
    } catch (const std::exception& ex) {
      // The probes decide whether it is down; until then it counts as lacking the image.
      spdlog::warn("engine {}: could not tell whether it has {}: {}", e.m.name, image, ex.what());
      continue;
    }
    if (here && e.epoch == epoch) e.images.insert(image);
  }
}

asio::awaitable<void> engine_pool::ensure_image(engine& e, std::string image, clock::time_point deadline) {
  if (e.images.contains(image)) co_return;
  if (co_await e.m.provider->image_present(image)) {
    e.images.insert(image);
    co_return;
  }
  spdlog::info("engine {} lacks {}; pulling it there before the create", e.m.name, image);
  pull_progress quiet;  // GCC 12: no braced temporaries inside a co_await
  co_await pull_on(e, image, deadline, std::move(quiet));
}

// --- sandboxes ----------------------------------------------------------------------------------

engine_pool::engine* engine_pool::pick(const sandbox_spec& spec, int slots, const engine* mine) {
  engine* best = nullptr;
  const auto load = [](const engine& e) { return static_cast<double>(e.in_use) / e.m.slots; };
  for (auto& ep : engines_) {
    engine& e = *ep;
    const int held_back = e.reserved - (&e == mine ? slots : 0);
    if (!e.up || e.m.slots - e.in_use - held_back < slots) continue;
    if (best == nullptr) {
      best = &e;
      continue;
    }
    const bool has = e.images.contains(spec.request.image);
    const bool best_has = best->images.contains(spec.request.image);
    if (has != best_has) {
      if (has) best = &e;
    } else if (load(e) != load(*best)) {
      if (load(e) < load(*best)) best = &e;
    } else if (e.sandboxes < best->sandboxes) {
      best = &e;
    }
  }
  return best;
}

engine_pool::engine* engine_pool::reserve_for(int slots) {
  // The up engine wide enough for it with the fewest slots taken or promised: it drains soonest.
  engine* best = nullptr;
  for (auto& ep : engines_) {
    engine& e = *ep;
    if (!e.up || e.m.slots < slots) continue;
    if (best == nullptr || e.in_use + e.reserved < best->in_use + best->reserved) best = &e;
  }
  return best;
}

asio::awaitable<protocol::sandbox_info> engine_pool::create(const sandbox_spec& caller_spec) {
  // A copy before the first suspension: the caller's may be a temporary (the interface takes a
  // reference, and a coroutine keeps only the reference).
  const sandbox_spec spec = caller_spec;
  const int slots = spec.fixture ? 0 : spec.request.slots;
  if (const int widest = widest_sandbox(); slots > widest) {
    throw provider_error(provider_failure::rejected,
                         fmt::format("the lease asks for {} slot(s) but the widest engine of the pool has {}; a "
                                     "sandbox runs on one engine: ask for fewer slots or give an engine more",
                                     slots, widest));
  }
  co_await learn(spec.request.image);
  // The engine this create waits on, if it must wait: held back from smaller creates until it
  // has room (released however the wait ends, the caller's timeout included).
  struct reservation {
    engine* on = nullptr;
    int slots = 0;
    void take(engine* e) {
      drop();
      on = e;
      if (on != nullptr) on->reserved += slots;
    }
    void drop() {
      if (on != nullptr) on->reserved -= slots;
      on = nullptr;
    }
    ~reservation() { drop(); }
  } waiting{nullptr, slots};
  engine* e = nullptr;
  while ((e = pick(spec, slots, waiting.on)) == nullptr) {
    if (up_slots() == 0) {
      std::vector<std::string> why;
      for (const auto& ep : engines_) why.push_back(fmt::format("{}: {}", ep->m.name, ep->detail));
      throw provider_error(provider_failure::engine_lost,
                           fmt::format("no engine of the pool is up ({})", fmt::join(why, "; ")));
    }
    if (slots > 0 && (waiting.on == nullptr || !waiting.on->up)) waiting.take(reserve_for(slots));
    // Room comes when a sandbox is removed or an engine rejoins; the ready timeout bounds this.
    co_await room_.wait_until(clock::now() + 1s);
  }
  waiting.drop();
  const auto epoch = e->epoch;
  e->in_use += slots;
  std::exception_ptr failure;
  try {
    const auto pull_by = clock::now() + std::chrono::seconds(spec.request.ready_timeout_s);
    std::string image = spec.request.image;
    co_await ensure_image(*e, std::move(image), pull_by);
    auto info = co_await e->m.provider->create(spec);
    if (e->epoch == epoch) {
      info.engine = e->m.name;
      // The orphan sweep may have listed it while the create ran (with no slots): counted once.
      auto [at, fresh] = placed_.try_emplace(info.id, placed{e, slots, spec.lease_id});
      if (fresh) {
        ++e->sandboxes;
      } else {
        at->second = placed{e, slots, spec.lease_id};
      }
      co_return info;
    }
    // The engine went down while the create ran: the sandbox went with it.
    e->stale.insert(info.id);
    throw provider_error(provider_failure::engine_lost,
                         fmt::format("engine {} went down while the sandbox was being made", e->m.name));
  } catch (...) {
    failure = std::current_exception();
  }
  if (e->epoch == epoch) {
    e->in_use -= slots;
    room_.notify_all();
  }
  try {
    std::rethrow_exception(failure);
  } catch (const provider_error& err) {
    if (err.reason() == provider_failure::unreachable || e->epoch != epoch) {
      throw provider_error(provider_failure::engine_lost,
                           fmt::format("engine {} ({}) went away while making the sandbox: {}", e->m.name,
                                       e->m.endpoint, err.what()));
    }
    throw;
  }
}

engine_pool::engine& engine_pool::engine_of(const std::string& sandbox_id) {
  if (auto it = placed_.find(sandbox_id); it != placed_.end()) return *it->second.where;
  for (auto& ep : engines_) {
    if (ep->stale.contains(sandbox_id)) {
      throw provider_error(provider_failure::engine_lost,
                           fmt::format("sandbox {} ran on engine {}, which is down: {}", sandbox_id, ep->m.name,
                                       ep->detail));
    }
  }
  throw provider_error(provider_failure::not_found,
                       fmt::format("no sandbox {} on any engine of the pool", sandbox_id));
}

asio::awaitable<exec_output> engine_pool::exec(std::string sandbox_id, exec_spec spec) {
  engine& e = engine_of(sandbox_id);
  co_return co_await e.m.provider->exec(std::move(sandbox_id), std::move(spec));
}

asio::awaitable<void> engine_pool::write_file(std::string sandbox_id, std::string path, std::string data,
                                              unsigned mode) {
  engine& e = engine_of(sandbox_id);
  co_await e.m.provider->write_file(std::move(sandbox_id), std::move(path), std::move(data), mode);
}

asio::awaitable<std::optional<std::string>> engine_pool::read_file(std::string sandbox_id, std::string path,
                                                                   std::size_t limit) {
  engine& e = engine_of(sandbox_id);
  co_return co_await e.m.provider->read_file(std::move(sandbox_id), std::move(path), limit);
}

void engine_pool::forget(const std::string& sandbox_id) {
  auto it = placed_.find(sandbox_id);
  if (it == placed_.end()) return;
  engine& e = *it->second.where;
  e.in_use -= it->second.slots;
  --e.sandboxes;
  placed_.erase(it);
  room_.notify_all();
}

asio::awaitable<void> engine_pool::remove(std::string sandbox_id) {
  auto it = placed_.find(sandbox_id);
  if (it == placed_.end()) {
    // On a down engine: removed when it answers again (its sweep), nothing to wait for here.
    for (const auto& ep : engines_) {
      if (ep->stale.contains(sandbox_id)) co_return;
    }
    // Not placed by this pool (a leftover the sweep found before list_own saw it): every up
    // engine is asked; one that does not have it counts it as gone.
    for (auto& ep : engines_) {
      if (ep->up) co_await ep->m.provider->remove(sandbox_id);
    }
    co_return;
  }
  engine* e = it->second.where;
  const auto epoch = e->epoch;
  co_await e->m.provider->remove(sandbox_id);
  if (e->epoch == epoch) forget(sandbox_id);
}

asio::awaitable<int> engine_pool::remove_lease(std::string lease_id) {
  int removed = 0;
  for (auto& ep : engines_) {
    engine& e = *ep;
    if (!e.up) continue;
    removed += co_await e.m.provider->remove_lease(lease_id);
  }
  std::vector<std::string> gone;
  for (const auto& [id, p] : placed_) {
    if (p.lease_id == lease_id) gone.push_back(id);
  }
  for (const auto& id : gone) forget(id);
  co_return removed;
}

asio::awaitable<std::vector<owned_sandbox>> engine_pool::list_own() {
  std::vector<owned_sandbox> all;
  for (auto& ep : engines_) {
    engine& e = *ep;
    if (!e.up) continue;
    std::vector<owned_sandbox> here;
    try {
      here = co_await e.m.provider->list_own();
    } catch (const std::exception& ex) {
      spdlog::warn("engine {}: could not list its sandboxes: {}", e.m.name, ex.what());
      continue;
    }
    for (auto& s : here) {
      if (!placed_.contains(s.id)) {
        placed_[s.id] = placed{&e, 0, s.lease_id};
        ++e.sandboxes;
      }
      all.push_back(std::move(s));
    }
  }
  co_return all;
}

asio::awaitable<int> engine_pool::remove_all_own() {
  int removed = 0;
  for (auto& ep : engines_) {
    engine& e = *ep;
    if (!e.up) continue;
    removed += co_await e.m.provider->remove_all_own();
    std::vector<std::string> gone;
    for (const auto& [id, p] : placed_) {
      if (p.where == &e) gone.push_back(id);
    }
    for (const auto& id : gone) forget(id);
  }
  co_return removed;
}

bool engine_pool::may_reap(const owned_sandbox& s) {
  if (auto it = placed_.find(s.id); it != placed_.end()) return it->second.where->m.provider->may_reap(s);
  return engines_.front()->m.provider->may_reap(s);
}

}  // namespace sandlot::orchestrator
