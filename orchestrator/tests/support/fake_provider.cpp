#include "fake_provider.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "async_event.hpp"

namespace sandlot::orchestrator::testing {

namespace asio = boost::asio;

namespace {

/// Gives the event loop a turn, as an engine's answer arriving on a socket would.
asio::awaitable<void> engine_turn() {
  auto ex = co_await asio::this_coro::executor;
  co_await asio::post(ex, asio::use_awaitable);
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds delay) {
  if (delay <= std::chrono::milliseconds::zero()) co_return;
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex, delay);
  co_await timer.async_wait(asio::use_awaitable);
}

std::string made_up_image_id(const std::string& image) {
  return fmt::format("sha256:{:016x}", std::hash<std::string>{}(image));
}

}  // namespace

struct fake_provider::landing {
  bool done = false;
  std::optional<protocol::sandbox_info> made;
  std::exception_ptr error;
  async_event finished;
};

fake_provider::fake_provider(std::string owner) : owner_(std::move(owner)) {}

void fake_provider::add_image(const std::string& image, std::string id) {
  images_.insert(image);
  image_ids_[image] = id.empty() ? made_up_image_id(image) : std::move(id);
}

void fake_provider::fail_pulls(provider_failure reason, std::string message, int times) {
  pull_failures_ = failure_plan{reason, std::move(message), times};
}

void fake_provider::fail_creates(provider_failure reason, std::string message, int times) {
  create_failures_ = failure_plan{reason, std::move(message), times};
}

void fake_provider::fail_removes(int times, std::string message) {
  remove_failures_ = failure_plan{provider_failure::failed, std::move(message), times};
}

std::string fake_provider::add_sandbox(const std::string& lease_id, std::string owner,
                                       bool running) {
  sandbox s;
  s.id = fmt::format("{}{}", id_prefix_, ++next_sandbox_);
  s.name = "sandlot-" + lease_id;
  s.lease_id = lease_id;
  s.owner = owner.empty() ? owner_ : std::move(owner);
  s.running = running;
  const std::string id = s.id;
  sandboxes_[id] = std::move(s);
  return id;
}

void fake_provider::mark_stopped(const std::string& sandbox_id) {
  auto it = sandboxes_.find(sandbox_id);
  if (it != sandboxes_.end()) it->second.running = false;
}

std::vector<fake_provider::sandbox> fake_provider::sandboxes_of(const std::string& lease_id) const {
  std::vector<sandbox> out;
  for (const auto& [id, s] : sandboxes_) {
    if (s.lease_id == lease_id) out.push_back(s);
  }
  return out;
}

std::vector<std::string> fake_provider::made_for(const std::string& lease_id) const {
  auto it = made_.find(lease_id);
  return it == made_.end() ? std::vector<std::string>{} : it->second;
}

std::ptrdiff_t fake_provider::event_index(std::string_view event) const {
  auto it = std::find(events_.begin(), events_.end(), event);
  return it == events_.end() ? -1 : it - events_.begin();
}

int fake_provider::count(std::string_view event) const {
  return static_cast<int>(std::count(events_.begin(), events_.end(), event));
}

int fake_provider::pulls(const std::string& image) const {
  auto it = pulls_.find(image);
  return it == pulls_.end() ? 0 : it->second;
}

std::optional<fake_provider::failure_plan> fake_provider::take(failure_plan& plan) {
  if (plan.times == 0) return std::nullopt;
  if (plan.times > 0) --plan.times;
  return plan;
}

void fake_provider::answer_or_fail(std::string_view call) const {
  if (down_) {
    throw provider_error(provider_failure::unreachable,
                         fmt::format("{}: cannot connect to the fake engine (it is down)", call));
  }
}

void fake_provider::log(std::string event) {
  events_.push_back(event);
  if (on_event_) on_event_(event);
}

fake_provider::sandbox& fake_provider::running_sandbox(const std::string& id) {
  auto it = sandboxes_.find(id);
  if (it == sandboxes_.end())
    throw provider_error(provider_failure::not_found, "no such sandbox: " + id);
  if (!it->second.running) {
    throw provider_error(provider_failure::conflict, fmt::format("sandbox {} is not running", id));
  }
  return it->second;
}

asio::awaitable<std::string> fake_provider::connect() {
  log("connect");
  co_await engine_turn();
  answer_or_fail("connect");
  co_return std::string("fake provider (in memory)");
}

asio::awaitable<bool> fake_provider::image_present(std::string image) {
  ++image_present_calls_;
  co_await engine_turn();
  answer_or_fail("image_present");
  co_return images_.count(image) != 0;
}

asio::awaitable<std::string> fake_provider::image_id(std::string image) {
  co_await engine_turn();
  answer_or_fail("image_id");
  auto it = image_ids_.find(image);
  if (images_.count(image) == 0 || it == image_ids_.end()) {
    throw provider_error(provider_failure::image_not_found, "No such image: " + image);
  }
  co_return it->second;
}

asio::awaitable<void> fake_provider::pull(std::string image, clock::time_point /*deadline*/, pull_progress progress) {
  ++pulls_[image];
  log("pull " + image);
  auto failure = take(pull_failures_);
  co_await engine_turn();
  answer_or_fail("pull");
  // Half the bytes, then the delay, then the rest: a pull in flight shows progress.
  if (progress) progress(fake_image_bytes / 2, fake_image_bytes);
  co_await sleep_for(pull_delay_);
  if (failure) {
    log("pull failed " + image);
    throw provider_error(failure->reason, failure->message);
  }
  if (progress) progress(fake_image_bytes, fake_image_bytes);
  images_.insert(image);
  if (image_ids_.count(image) == 0) image_ids_[image] = made_up_image_id(image);
  log("pulled " + image);
}

asio::awaitable<protocol::sandbox_info> fake_provider::create(const sandbox_spec& spec) {
  sandbox_spec copy = spec;  // before the first suspension: nothing here relies on the caller's
  ++create_calls_;
  ++creates_in_flight_;
  log("create " + copy.lease_id);
  auto failure = take(create_failures_);
  auto out = std::make_shared<landing>();
  auto ex = co_await asio::this_coro::executor;
  // Detached: a caller that stops waiting (its ready timeout won the race) does not stop the
  // engine, which makes the sandbox anyway, as dockerd does with a create already sent.
  asio::co_spawn(ex, make_sandbox(std::move(copy), create_delay_, std::move(failure), out),
                 asio::detached);
  while (!out->done) co_await out->finished.wait();
  if (out->error) std::rethrow_exception(out->error);
  co_return *out->made;
}

asio::awaitable<void> fake_provider::make_sandbox(sandbox_spec spec,
                                                  std::chrono::milliseconds delay,
                                                  std::optional<failure_plan> failure,
                                                  std::shared_ptr<landing> out) {
  co_await engine_turn();
  co_await sleep_for(delay);
  --creates_in_flight_;
  const std::string& image = spec.request.image;
  if (down_) {
    log("create failed " + spec.lease_id);
    out->error = std::make_exception_ptr(
        provider_error(provider_failure::unreachable, "create: cannot connect to the fake engine (it is down)"));
  } else if (failure) {
    log("create failed " + spec.lease_id);
    out->error = std::make_exception_ptr(provider_error(failure->reason, failure->message));
  } else if (images_.count(image) == 0) {
    log("create failed " + spec.lease_id);
    out->error = std::make_exception_ptr(
        provider_error(provider_failure::image_not_found, "No such image: " + image));
  } else {
    sandbox s;
    s.id = fmt::format("{}{}", id_prefix_, ++next_sandbox_);
    s.name = "sandlot-" + spec.lease_id;
    s.lease_id = spec.lease_id;
    s.owner = owner_;
    s.image = image;
    protocol::sandbox_info info;
    info.id = s.id;
    info.name = s.name;
    info.hostname = s.name;
    info.image = image;
    info.network = std::string(protocol::to_string(spec.request.network));
    const std::string id = s.id;
    sandboxes_[id] = std::move(s);
    made_[spec.lease_id].push_back(id);
    ++creates_landed_;
    log(fmt::format("created {} {}", spec.lease_id, id));
    out->made = std::move(info);
  }
  out->done = true;
  out->finished.notify_all();
}

asio::awaitable<exec_output> fake_provider::exec(std::string sandbox_id, exec_spec spec) {
  co_await engine_turn();
  answer_or_fail("exec");
  running_sandbox(sandbox_id);
  std::string words;
  for (const auto& a : spec.argv) words += (words.empty() ? "" : " ") + a;
  log(fmt::format("exec {} {}", sandbox_id, words));
  if (exec_) co_return exec_(sandbox_id, spec);
  exec_output out;
  out.exit_code = 0;
  out.stdout_data = words;
  co_return out;
}

asio::awaitable<void> fake_provider::write_file(std::string sandbox_id, std::string path,
                                                std::string data, unsigned /*mode*/) {
  co_await engine_turn();
  answer_or_fail("write_file");
  auto& s = running_sandbox(sandbox_id);
  log(fmt::format("write_file {} {}", sandbox_id, path));
  s.files[path] = std::move(data);
}

asio::awaitable<std::optional<std::string>> fake_provider::read_file(std::string sandbox_id,
                                                                     std::string path,
                                                                     std::size_t limit) {
  co_await engine_turn();
  answer_or_fail("read_file");
  const auto& s = running_sandbox(sandbox_id);
  log(fmt::format("read_file {} {}", sandbox_id, path));
  auto it = s.files.find(path);
  if (it == s.files.end()) co_return std::nullopt;
  if (it->second.size() > limit) {
    throw provider_error(provider_failure::too_large, fmt::format("{} is {} bytes, more than {}",
                                                                  path, it->second.size(), limit));
  }
  co_return it->second;
}

asio::awaitable<void> fake_provider::remove(std::string sandbox_id) {
  ++remove_calls_;
  log("remove " + sandbox_id);
  co_await remove_one(sandbox_id);
}

asio::awaitable<void> fake_provider::remove_one(std::string sandbox_id) {
  auto failure = take(remove_failures_);
  co_await engine_turn();
  answer_or_fail("remove");
  co_await sleep_for(remove_delay_);
  if (failure) {
    log("remove failed " + sandbox_id);
    throw provider_error(failure->reason, failure->message);
  }
  // Already gone counts as gone, as with the real engine.
  sandboxes_.erase(sandbox_id);
  removed_.push_back(sandbox_id);
  log("removed " + sandbox_id);
}

asio::awaitable<int> fake_provider::remove_lease(std::string lease_id) {
  ++remove_calls_;
  log("remove_lease " + lease_id);
  auto failure = take(remove_failures_);
  co_await engine_turn();
  answer_or_fail("remove_lease");
  co_await sleep_for(remove_delay_);
  if (failure) {
    log("remove_lease failed " + lease_id);
    throw provider_error(failure->reason, failure->message);
  }
  int removed = 0;
  for (const auto& s : sandboxes_of(lease_id)) {
    sandboxes_.erase(s.id);
    removed_.push_back(s.id);
    log("removed " + s.id);
    ++removed;
  }
  co_return removed;
}

asio::awaitable<std::vector<owned_sandbox>> fake_provider::list_own() {
  ++list_calls_;
  co_await engine_turn();
  answer_or_fail("list_own");
  std::vector<owned_sandbox> out;
  for (const auto& [id, s] : sandboxes_) {
    out.push_back(
        owned_sandbox{s.id, s.lease_id, s.owner, s.running, s.running ? "running" : "exited"});
  }
  co_return out;
}

asio::awaitable<int> fake_provider::remove_all_own() {
  log("remove_all_own");
  co_await engine_turn();
  answer_or_fail("remove_all_own");
  std::vector<std::string> mine;
  for (const auto& [id, s] : sandboxes_) {
    if (may_reap(owned_sandbox{s.id, s.lease_id, s.owner, s.running, {}})) mine.push_back(id);
  }
  for (const auto& id : mine) {
    sandboxes_.erase(id);
    removed_.push_back(id);
    log("removed " + id);
  }
  co_return static_cast<int>(mine.size());
}

bool fake_provider::may_reap(const owned_sandbox& s) { return s.owner == owner_; }

}  // namespace sandlot::orchestrator::testing
