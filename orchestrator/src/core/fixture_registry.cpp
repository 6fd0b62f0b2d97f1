#include "fixture_registry.hpp"

#include <algorithm>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "ids.hpp"
#include "within.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using protocol::api_error;
using protocol::errc;

std::string_view to_string(fixture_state s) noexcept {
  switch (s) {
    case fixture_state::creating: return "creating";
    case fixture_state::ready: return "ready";
    case fixture_state::gone: return "gone";
  }
  return "gone";
}

std::string_view to_string(fixture_role r) noexcept {
  switch (r) {
    case fixture_role::creator: return "creator";
    case fixture_role::waiting: return "waiting";
    case fixture_role::user: return "user";
    case fixture_role::none: return "none";
  }
  return "none";
}

bool fixture::held_by(const std::string& lease_id) const {
  return std::find(holders.begin(), holders.end(), lease_id) != holders.end();
}

fixture_ptr fixture_registry::find(const std::string& id) const {
  auto it = fixtures_.find(id);
  if (it == fixtures_.end()) {
    throw api_error(errc::not_found, fmt::format("no fixture '{}'; get one with POST /v1/leases/{{id}}/fixtures", id));
  }
  return it->second;
}

fixture_ptr fixture_registry::live_fixture(const std::string& run, const std::string& name) const {
  for (const auto& [id, f] : fixtures_) {
    if (f->run == run && f->name == name && !f->gone()) return f;
  }
  return nullptr;
}

bool fixture_registry::alive(const std::string& id) const {
  auto it = fixtures_.find(id);
  return it != fixtures_.end() && !it->second->gone();
}

bool fixture_registry::idle() const {
  return builds_ == 0 && std::none_of(fixtures_.begin(), fixtures_.end(), [](const auto& kv) { return !kv.second->gone(); });
}

void fixture_registry::set_state(fixture& f, fixture_state s) {
  f.state = s;
  p_.events.publish(event_kind::fixture, f.id, std::string(to_string(s)), f.run);
  f.changed.notify_all();
}

protocol::fixture_view fixture_registry::view_for(const fixture& f, const std::string& lease_id) const {
  protocol::fixture_view v;
  v.id = f.id;
  v.name = f.name;
  v.run = f.run;
  v.state = std::string(to_string(f.state));
  fixture_role role = f.held_by(lease_id) ? fixture_role::user : fixture_role::none;
  if (f.state == fixture_state::creating) {
    role = (!f.making && f.creator == lease_id) ? fixture_role::creator : fixture_role::waiting;
    v.creator = f.creator;
  }
  v.role = std::string(to_string(role));
  v.port = f.port;
  v.data = f.data;
  // A fixture being set up is its creator's alone: nobody else learns of a half-made sandbox.
  if (!f.making && (f.state == fixture_state::ready || role == fixture_role::creator)) v.sandbox = f.sandbox;
  v.creations = f.creations;
  v.holders = static_cast<int>(f.holders.size());
  v.error = f.error;
  return v;
}

std::optional<int> fixture_registry::pick_port() {
  // A port no fixture holds and nothing listens on now; the cursor moves on so a port freed a
  // moment ago is not handed out again at once.
  const int span = p_.opts.fixture_port_max - p_.opts.fixture_port_min + 1;
  for (int i = 0; i < span; ++i) {
    const int port = p_.opts.fixture_port_min + (next_port_++ % span);
    if (std::find(ports_in_use_.begin(), ports_in_use_.end(), port) != ports_in_use_.end()) continue;
    asio::ip::tcp::acceptor probe(p_.ex);
    boost::system::error_code ec;
    probe.open(asio::ip::tcp::v4(), ec);
    if (!ec) probe.bind({asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port)}, ec);
    if (ec) continue;
    ports_in_use_.push_back(port);
    return port;
  }
  return std::nullopt;
}

asio::awaitable<protocol::fixture_view> fixture_registry::acquire(std::string lease_id, std::string run,
                                                                  protocol::fixture_request req) {
  if (auto f = live_fixture(run, req.name)) {
    if (!f->held_by(lease_id)) {
      f->holders.push_back(lease_id);
      ++f->acquisitions;
    }
    spdlog::info("fixture {} ({}) of run {}: lease {} holds it ({} holder(s))", f->id, f->name, f->run, lease_id,
                 f->holders.size());
    co_return view_for(*f, lease_id);
  }
  auto f = open(lease_id, run, std::move(req));
  co_await build(f);
  if (f->gone() && f->error) throw api_error(protocol::code_from_string(f->error->code), f->error->message);
  co_return view_for(*f, lease_id);
}

fixture_ptr fixture_registry::open(const std::string& lease_id, const std::string& run, protocol::fixture_request req) {
  // Fixtures live outside the slot budget (a fixture held for a whole run would cost every test a
  // slot), so they have a budget of their own.
  const auto live = std::count_if(fixtures_.begin(), fixtures_.end(), [](const auto& kv) { return !kv.second->gone(); });
  if (live >= p_.opts.max_fixtures) {
    throw api_error(errc::too_many_requests,
                    fmt::format("{} fixtures are alive, the most this daemon keeps (--max-fixtures={}); end runs "
                                "you no longer need (DELETE /v1/runs/{{id}}) or start orchestratord with a larger "
                                "--max-fixtures",
                                live, p_.opts.max_fixtures));
  }
  auto f = std::make_shared<fixture>();
  do {
    f->id = "fx-" + random_id();
  } while (fixtures_.count(f->id) != 0);
  f->name = req.name;
  f->run = run;
  f->spec = std::move(req);
  f->holders.push_back(lease_id);
  f->acquisitions = 1;
  if (f->spec.port) {
    f->port = pick_port();
    if (!f->port) {
      throw api_error(errc::conflict, fmt::format("no free loopback port in {}-{} for fixture '{}'; release fixtures "
                                                  "or widen the fixture port range",
                                                  p_.opts.fixture_port_min, p_.opts.fixture_port_max, f->name));
    }
  }
  fixtures_[f->id] = f;
  p_.runs.add_fixture(f);
  p_.events.publish(event_kind::fixture, f->id, std::string(to_string(f->state)), f->run);
  spdlog::info("fixture {} ({}) of run {}: created for lease {}", f->id, f->name, f->run, lease_id);
  return f;
}

asio::awaitable<protocol::sandbox_info> fixture_registry::pull_and_create(std::string fixture_id, std::string name,
                                                                          protocol::lease_request spec) {
  co_await p_.gate.ensure(spec.image);
  const sandbox_spec made{fixture_id, "fixture-" + name, spec, {}, true};
  co_return co_await p_.provider.create(made);
}

asio::awaitable<std::string> fixture_registry::make_sandbox(fixture_ptr f) {
  protocol::lease_request spec;
  spec.image = f->spec.image;
  spec.run = f->run;
  spec.test = "fixture:" + f->name;
  spec.network = f->spec.network;
  spec.env = f->spec.env;
  if (f->port) spec.env["SANDLOT_PORT"] = std::to_string(*f->port);
  spec.memory_mb = f->spec.memory_mb;
  spec.cpus = f->spec.cpus;
  spec.pids_limit = f->spec.pids_limit;
  std::string failure;
  try {
    auto made = co_await within(p_.opts.fixture_make_timeout, pull_and_create(f->id, f->name, std::move(spec)));
    if (made) {
      ++f->creations;
      f->sandbox = std::move(*made);
      co_return std::string();
    }
    failure = fmt::format("not made within {} s (pull and create)", p_.opts.fixture_make_timeout.count());
  } catch (const std::exception& e) {
    co_return std::string(e.what());
  }
  try {
    co_await p_.provider.remove_lease(f->id);  // a create cut short may still land
  } catch (const std::exception& e) {
    spdlog::warn("fixture {}: {}", f->id, e.what());
  }
  co_return failure;
}

asio::awaitable<void> fixture_registry::build(fixture_ptr f) {
  if (f->making || f->state != fixture_state::creating) co_return;
  f->making = true;
  ++builds_;
  struct build_guard {
    fixture_registry& r;
    ~build_guard() {
      if (--r.builds_ == 0) r.builds_done_.notify_all();
    }
  } guard{*this};
  f->changed.notify_all();
  if (f->sandbox) {
    // Its creator left before publishing it: nobody gets a half-made fixture.
    spdlog::warn("fixture {} ({}): its creator left while setting it up; making it anew", f->id, f->name);
    const std::string what = fmt::format("fixture {}: removing the half-made sandbox", f->id);
    co_await remove_or_log(f->sandbox->id, what);
    f->sandbox.reset();
  }
  if (f->holders.empty() || shutting_down_) {
    f->making = false;
    co_await teardown(f, "its creator left before it was ready and nobody else holds it");
    co_return;
  }
  f->creator = f->holders.front();
  const std::string failure = co_await make_sandbox(f);
  f->making = false;
  if (!failure.empty()) {
    f->error = error_body_of(errc::sandbox_failed, fmt::format("could not make the sandbox of fixture '{}' from "
                                                               "image '{}': {}",
                                                               f->name, f->spec.image, failure));
    co_await teardown(f, f->error->message);
  } else if (f->gone()) {  // the run ended meanwhile
    const std::string what = fmt::format("fixture {}: removing its sandbox", f->id);
    co_await remove_or_log(f->sandbox->id, what);
  } else if (f->holders.empty()) {
    co_await teardown(f, "every holder left while its sandbox was made");
  } else {
    // A creator that left while the sandbox was made never touched it: the next holder takes over.
    if (!f->held_by(f->creator)) f->creator = f->holders.front();
    spdlog::info("fixture {} ({}): sandbox {} made; lease {} sets it up", f->id, f->name, f->sandbox->name,
                 f->creator);
    f->changed.notify_all();
  }
}

void fixture_registry::drop_hold(const fixture_ptr& f, const std::string& lease_id) {
  f->holders.erase(std::remove(f->holders.begin(), f->holders.end(), lease_id), f->holders.end());
  if (f->holders.empty()) f->idle_since = clock::now();
  if (f->state == fixture_state::creating && f->creator == lease_id && !f->making) {
    f->creator.clear();
    asio::co_spawn(p_.ex, build(f), asio::detached);
  }
  f->changed.notify_all();
}

void fixture_registry::lease_ended(const std::string& lease_id) {
  for (const auto& [id, f] : fixtures_) {
    if (!f->gone() && f->held_by(lease_id)) drop_hold(f, lease_id);
  }
}

asio::awaitable<void> fixture_registry::teardown(fixture_ptr f, std::string reason) {
  if (f->gone()) co_return;
  f->ended_at = clock::now();
  if (f->port) ports_in_use_.erase(std::remove(ports_in_use_.begin(), ports_in_use_.end(), *f->port), ports_in_use_.end());
  // Holders still listed (a run ended under them) no longer hold it.
  f->holders.clear();
  if (!f->error) {
    f->error = error_body_of(errc::lease_gone, fmt::format("fixture '{}' was torn down: {}", f->name, reason));
  }
  set_state(*f, fixture_state::gone);
  spdlog::info("fixture {} ({}) of run {} torn down: {}", f->id, f->name, f->run, reason);
  if (f->sandbox && !f->making) {
    const std::string what = fmt::format("fixture {}: removing its sandbox (the orphan sweep retries)", f->id);
    co_await remove_or_log(f->sandbox->id, what);
  }
  p_.runs.touch(f->run, clock::now());
}

void fixture_registry::reap_idle(clock::time_point now) {
  for (auto& [id, f] : fixtures_) {
    if (f->state == fixture_state::ready && f->holders.empty() && !f->making &&
        now - f->idle_since >= std::chrono::seconds(f->spec.grace_s)) {
      asio::co_spawn(p_.ex,
                     teardown(f, fmt::format("no holder for grace_s={} after the last one let go", f->spec.grace_s)),
                     asio::detached);
    }
  }
}

asio::awaitable<void> fixture_registry::end_run(std::string run) {
  std::vector<fixture_ptr> live;
  for (const auto& f : p_.runs.fixtures_of(run)) {
    if (!f->gone()) live.push_back(f);
  }
  for (auto& f : live) co_await teardown(f, fmt::format("run '{}' ended", run));
}

asio::awaitable<void> fixture_registry::shutdown() {
  shutting_down_ = true;
  for (auto& [id, f] : fixtures_) {
    if (!f->gone()) co_await teardown(f, "orchestratord shut down");
  }
  // A fixture sandbox still being made is removed by its build once it lands; wait for that.
  while (builds_ > 0) co_await builds_done_.wait();
}

asio::awaitable<protocol::fixture_view> fixture_registry::wait(std::string id, std::string lease_id,
                                                               clock::time_point deadline) {
  auto f = find(id);
  auto settled = [&] {
    return f->state != fixture_state::creating || (!f->making && !lease_id.empty() && f->creator == lease_id);
  };
  while (!settled() && clock::now() < deadline) co_await f->changed.wait_until(deadline);
  co_return view_for(*f, lease_id);
}

protocol::fixture_view fixture_registry::mark_ready(const std::string& id, protocol::fixture_ready_request req) {
  auto f = find(id);
  if (f->state != fixture_state::creating || f->making || f->creator != req.lease) {
    throw api_error(errc::conflict,
                    fmt::format("fixture '{}' is {}{}; only its creator (lease {}) may mark it ready, once, after "
                                "GET /v1/fixtures/{}?lease=... gave it role \"creator\"",
                                f->name, to_string(f->state), f->making ? " (its sandbox is being made)" : "",
                                f->creator.empty() ? std::string("none") : f->creator, id));
  }
  if (req.data.dump().size() > 64 * 1024) {
    throw api_error(errc::invalid_field, "field 'data' must be at most 64 KiB of JSON; put bulk data in the sandbox");
  }
  f->data = std::move(req.data);
  f->ready_at = clock::now();
  f->creator.clear();
  set_state(*f, fixture_state::ready);
  spdlog::info("fixture {} ({}) of run {} is ready", f->id, f->name, f->run);
  return view_for(*f, req.lease);
}

asio::awaitable<protocol::fixture_view> fixture_registry::mark_failed(std::string id,
                                                                      protocol::fixture_fail_request req) {
  auto f = find(id);
  if (f->state != fixture_state::creating || f->making || f->creator != req.lease) {
    throw api_error(errc::conflict, fmt::format("fixture '{}' is {}; only its creator (lease {}) may fail it, while "
                                                "setting it up",
                                                f->name, to_string(f->state),
                                                f->creator.empty() ? std::string("none") : f->creator));
  }
  const std::string why = req.message.empty() ? std::string("its setup failed") : req.message;
  f->error = error_body_of(errc::sandbox_failed, fmt::format("fixture '{}' could not be set up by lease {}: {}",
                                                             f->name, req.lease, why));
  // Everyone waiting for it learns now, instead of when their wait runs out.
  co_await teardown(f, f->error->message);
  co_return view_for(*f, req.lease);
}

asio::awaitable<protocol::exec_result> fixture_registry::exec(std::string id, std::string lease_id,
                                                              protocol::exec_request req) {
  auto f = find(id);
  if (f->gone()) {
    throw api_error(errc::lease_gone, fmt::format("fixture '{}' is gone: {}", f->name,
                                                  f->error ? f->error->message : std::string("torn down")));
  }
  if (f->making || !f->sandbox) {
    throw api_error(errc::lease_not_ready, fmt::format("fixture '{}' has no sandbox yet; wait with GET /v1/fixtures/{}",
                                                       f->name, id));
  }
  if (f->state == fixture_state::creating && lease_id != f->creator) {
    throw api_error(errc::conflict, fmt::format("fixture '{}' is being set up by lease {}; wait until it is ready "
                                                "with GET /v1/fixtures/{}?lease=<your lease>&wait_s=30",
                                                f->name, f->creator, id));
  }
  co_return co_await p_.commands.exec(f->sandbox->id, "fixture " + f->name, std::move(req));
}

asio::awaitable<void> fixture_registry::remove_or_log(std::string sandbox_id, std::string what) {
  try {
    co_await p_.provider.remove(sandbox_id);
  } catch (const std::exception& e) {
    spdlog::error("{} failed: {}", what, e.what());
  }
}

}  // namespace sandlot::orchestrator
