#include "engine_probe.hpp"

#include <future>
#include <stdexcept>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <fmt/format.h>

#include "docker_client.hpp"

namespace sandlot::itest {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using orchestrator::docker_client;
using orchestrator::engine_address;

namespace {

// Runs one engine coroutine to completion on a private io_context and returns its result.
template <class T, class Fn>
T run_on_engine(const std::string& spec, Fn fn) {
  asio::io_context ioc{1};
  docker_client engine(ioc.get_executor(), engine_address::parse(spec));
  std::future<T> result = asio::co_spawn(ioc, fn(engine), asio::use_future);
  ioc.run();
  return result.get();
}

asio::awaitable<std::vector<std::string>> list_ids(docker_client& engine, std::string instance) {
  // The documented label (design.md), spelled out as a user would filter on it.
  std::vector<std::string> filter{"sandlot.daemon=" + instance};
  auto found = co_await engine.list_containers(filter);
  std::vector<std::string> ids;
  for (auto& c : found) ids.push_back(std::move(c.id));
  co_return ids;
}

asio::awaitable<unsigned> get_status(docker_client& engine, std::string target) {
  auto res = co_await engine.call(http::verb::get, target);
  co_return res.status;
}

asio::awaitable<int> remove_all(docker_client& engine, std::string instance) {
  auto ids = co_await list_ids(engine, instance);
  for (const auto& id : ids) co_await engine.remove_container(id);
  co_return static_cast<int>(ids.size());
}

asio::awaitable<std::pair<unsigned, std::string>> delete_image(docker_client& engine, std::string ref) {
  auto res = co_await engine.call(http::verb::delete_, "/images/" + ref + "?force=true");
  co_return std::pair<unsigned, std::string>{res.status, std::move(res.body)};
}

}  // namespace

engine_probe::engine_probe() : spec_(engine_address::default_spec()) {}

std::vector<std::string> engine_probe::containers_of(const std::string& instance) const {
  return run_on_engine<std::vector<std::string>>(
      spec_, [&instance](docker_client& e) { return list_ids(e, instance); });
}

bool engine_probe::container_exists(const std::string& id) const {
  const auto status = run_on_engine<unsigned>(
      spec_, [&id](docker_client& e) { return get_status(e, "/containers/" + id + "/json"); });
  if (status == 200) return true;
  if (status == 404) return false;
  throw std::runtime_error(fmt::format("engine: inspecting container {} answered {}", id, status));
}

int engine_probe::remove_containers_of(const std::string& instance) const {
  return run_on_engine<int>(spec_, [&instance](docker_client& e) { return remove_all(e, instance); });
}

bool engine_probe::image_exists(const std::string& ref) const {
  const auto status = run_on_engine<unsigned>(
      spec_, [&ref](docker_client& e) { return get_status(e, "/images/" + ref + "/json"); });
  if (status == 200) return true;
  if (status == 404) return false;
  throw std::runtime_error(fmt::format("engine: inspecting image {} answered {}", ref, status));
}

void engine_probe::remove_image(const std::string& ref) const {
  auto [status, body] = run_on_engine<std::pair<unsigned, std::string>>(
      spec_, [&ref](docker_client& e) { return delete_image(e, ref); });
  if (status != 200 && status != 404) {
    throw std::runtime_error(fmt::format("engine: removing image {} answered {}: {}", ref, status, body));
  }
}

}  // namespace sandlot::itest
