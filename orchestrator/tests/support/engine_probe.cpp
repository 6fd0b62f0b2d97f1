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

asio::awaitable<std::string> create_started(docker_client& engine, std::string image,
                                            std::map<std::string, std::string> labels) {
  nlohmann::json spec = {{"Image", image},
                         {"Labels", labels},
                         {"OpenStdin", true},
                         {"HostConfig", {{"NetworkMode", "none"}}}};
  const std::string id = co_await engine.create_container("", spec);
  co_await engine.start_container(id);
  co_return id;
}

asio::awaitable<std::string> id_of(docker_client& engine, std::string ref) { co_return co_await engine.image_id(ref); }

/// REPO and TAG of "REPO:TAG" (the tag after the last colon past the last slash).
std::pair<std::string, std::string> split_ref(const std::string& ref) {
  const auto colon = ref.rfind(':');
  if (colon == std::string::npos || ref.find('/', colon) != std::string::npos) return {ref, "latest"};
  return {ref.substr(0, colon), ref.substr(colon + 1)};
}

asio::awaitable<std::pair<unsigned, std::string>> post_empty(docker_client& engine, std::string target) {
  auto res = co_await engine.call(http::verb::post, target);
  co_return std::pair<unsigned, std::string>{res.status, std::move(res.body)};
}

asio::awaitable<nlohmann::json> inspect(docker_client& engine, std::string id) {
  co_return co_await engine.inspect_container(id);
}

}  // namespace

void engine_probe::tag_image(const std::string& id, const std::string& ref) const {
  const auto [repo, tag] = split_ref(ref);
  const std::string target = fmt::format("/images/{}/tag?repo={}&tag={}", id, repo, tag);
  auto [status, body] = run_on_engine<std::pair<unsigned, std::string>>(
      spec_, [&target](docker_client& e) { return post_empty(e, target); });
  if (status != 201 && status != 200) throw std::runtime_error(fmt::format("engine: tagging {} answered {}: {}", ref, status, body));
}

std::string engine_probe::commit(const std::string& container_id, const std::string& ref) const {
  const auto [repo, tag] = split_ref(ref);
  const std::string target = fmt::format("/commit?container={}&repo={}&tag={}&pause=false", container_id, repo, tag);
  auto [status, body] = run_on_engine<std::pair<unsigned, std::string>>(
      spec_, [&target](docker_client& e) { return post_empty(e, target); });
  if (status != 201) throw std::runtime_error(fmt::format("engine: commit answered {}: {}", status, body));
  return nlohmann::json::parse(body).at("Id").get<std::string>();
}

std::string engine_probe::container_image(const std::string& container_id) const {
  auto info = run_on_engine<nlohmann::json>(spec_, [&container_id](docker_client& e) { return inspect(e, container_id); });
  return info.at("Image").get<std::string>();
}

std::string engine_probe::create_labelled(const std::string& image,
                                          const std::map<std::string, std::string>& labels) const {
  return run_on_engine<std::string>(spec_,
                                    [&image, &labels](docker_client& e) { return create_started(e, image, labels); });
}

std::string engine_probe::image_id(const std::string& ref) const {
  return run_on_engine<std::string>(spec_, [&ref](docker_client& e) { return id_of(e, ref); });
}

engine_probe::engine_probe() : spec_(engine_address::default_spec()) {}

engine_probe::engine_probe(std::string spec) : spec_(std::move(spec)) {}

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
