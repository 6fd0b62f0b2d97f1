#include "kube_provider.hpp"

#include "instance_owner.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using http_verb = boost::beast::http::verb;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

/// A DNS-1123 label from `text`: lower case letters, digits and '-', at most 63, alphanumeric ends.
std::string dns_label(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (ok) {
      out.push_back(c);
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  if (out.size() > 63) out.resize(63);
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string pod_name_for(const std::string& lease_id) { return dns_label("sandlot-" + lease_id); }

/// A CPU quantity ("4", "3500m", "1.5") in cores.
double cpu_cores(const std::string& q) {
  try {
    if (!q.empty() && q.back() == 'm') return std::stod(q.substr(0, q.size() - 1)) / 1000.0;
    return std::stod(q);
  } catch (const std::exception&) {
    return 0;
  }
}

bool condition_true(const json& obj, std::string_view type) {
  for (const auto& c : obj.value("/status/conditions"_json_pointer, json::array())) {
    if (c.value("type", "") == type) return c.value("status", "") == "True";
  }
  return false;
}

/// Whether a kubelet's name for an image is `image` (containerd spells Docker Hub names in full).
bool same_image(const std::string& name, const std::string& image) {
  return name == image || name == "docker.io/" + image || name == "docker.io/library/" + image;
}

bool node_has(const json& node, const std::string& image) {
  for (const auto& entry : node.value("/status/images"_json_pointer, json::array())) {
    for (const auto& n : entry.value("names", json::array())) {
      if (same_image(n.get<std::string>(), image)) return true;
    }
  }
  return false;
}

/// An annotation of an object, or empty.
std::string annotation(const json& obj, const std::string& key) {
  const auto ptr = "/metadata/annotations"_json_pointer;
  if (!obj.contains(ptr) || !obj.at(ptr).is_object()) return {};
  return obj.at(ptr).value(key, std::string());
}

const json& first_container_status(const json& pod) {
  static const json none = json::object();
  const auto ptr = "/status/containerStatuses"_json_pointer;
  if (!pod.contains(ptr) || !pod.at(ptr).is_array() || pod.at(ptr).empty()) return none;
  return pod.at(ptr).at(0);
}

/// The reason a pull failed, typed by what the registry said: only a registry that does not know
/// the image is image_not_found (permanent); a rate limit, a timeout or a back-off without detail
/// is failed, which the gate retries.
provider_failure pull_failure(std::string_view waiting_reason, std::string_view message) {
  auto says = [&](std::string_view t) { return message.find(t) != std::string_view::npos; };
  if (waiting_reason == "InvalidImageName") return provider_failure::invalid_reference;
  if (says("unauthorized") || says("authentication required") || says("denied")) return provider_failure::auth;
  if (says("not found") || says("NotFound") || says("manifest unknown")) return provider_failure::image_not_found;
  return provider_failure::failed;
}

}  // namespace

pod_verdict judge_pod(const json& pod) {
  pod_verdict v;
  const auto& cs = first_container_status(pod);
  const std::string waiting = cs.value("/state/waiting/reason"_json_pointer, std::string());
  const std::string waiting_message = cs.value("/state/waiting/message"_json_pointer, std::string());
  if (waiting == "ErrImagePull" || waiting == "ImagePullBackOff" || waiting == "InvalidImageName" ||
      waiting == "ErrImageNeverPull") {
    v.what = pod_verdict::kind::failed;
    v.pull = true;
    v.failure = pull_failure(waiting, waiting_message);
    v.message = fmt::format("the node {} could not pull the image: {}: {}",
                            pod.value("/spec/nodeName"_json_pointer, std::string("?")), waiting, waiting_message);
    return v;
  }
  if (waiting == "CreateContainerConfigError" || waiting == "CreateContainerError" || waiting == "RunContainerError" ||
      waiting == "CrashLoopBackOff") {
    v.what = pod_verdict::kind::failed;
    v.message = fmt::format("the container could not start: {}: {}", waiting, waiting_message);
    return v;
  }
  const std::string phase = pod.value("/status/phase"_json_pointer, std::string());
  if (phase == "Failed" || phase == "Succeeded" || cs.contains("/state/terminated"_json_pointer)) {
    v.what = pod_verdict::kind::failed;
    v.message = fmt::format("the sandbox's command exited (pod phase {}, {}); its image must run a command that "
                            "stays up",
                            phase, cs.value("/state/terminated/reason"_json_pointer, std::string("terminated")));
    return v;
  }
  if (pod.contains("/metadata/deletionTimestamp"_json_pointer)) {
    v.what = pod_verdict::kind::failed;
    v.failure = provider_failure::not_found;
    v.message = "the pod is being deleted";
    return v;
  }
  if (phase == "Running" && condition_true(pod, "Ready")) v.what = pod_verdict::kind::ready;
  return v;
}

std::string kube_provider::instance_label(const std::string& instance) {
  return fmt::format("i-{:016x}", fnv1a(instance));
}

kube_provider::kube_provider(kube_client& api, std::string instance, options opts, std::string owner)
    : api_(api),
      instance_(std::move(instance)),
      daemon_label_(instance_label(instance_)),
      opts_(std::move(opts)),
      ns_(opts_.ns.empty() ? api_.target().ns : opts_.ns),
      owner_(owner.empty() ? self_owner() : std::move(owner)),
      slots_(opts_.slots) {
  if (ns_.empty()) ns_ = "default";
}

std::string kube_provider::pods_path() const { return fmt::format("/api/v1/namespaces/{}/pods", ns_); }

asio::awaitable<std::string> kube_provider::connect() {
  const json version = co_await api_.call_ok(http_verb::get, "/version", std::nullopt, "asking the API server's version");
  const auto res = co_await api_.call(http_verb::get, fmt::format("/api/v1/namespaces/{}", ns_));
  if (res.status == 404) {
    throw kube_error(404, "NotFound", fmt::format("the namespace '{}' does not exist; create it (kubectl create "
                                                  "namespace {}) and apply config/kubernetes/rbac.yaml",
                                                  ns_, ns_));
  }
  std::string budget;
  if (opts_.slots > 0) {
    budget = fmt::format("{} slot(s) as configured", opts_.slots);
  } else {
    // Whole cores per node: a lease of 1 cpu fits on a node only in whole (3 nodes of 1.9 cores
    // hold 3 such pods, not 5). Other pods' requests are not subtracted: give slots=N on a cluster
    // that runs more than Sandlot's pods.
    const json nodes = co_await ready_nodes();
    int total = 0;
    int widest = 0;
    for (const auto& n : nodes) {
      const int cores =
          static_cast<int>(std::floor(cpu_cores(n.value("/status/allocatable/cpu"_json_pointer, std::string("0")))));
      total += cores;
      widest = std::max(widest, cores);
    }
    slots_ = std::max(1, total);
    widest_ = std::max(1, widest);
    budget = fmt::format("{} slot(s) from the allocatable cpu of {} Ready node(s), at most {} per lease", slots_,
                         nodes.size(), widest_);
  }
  co_return fmt::format("kubernetes {} at {} ({}), namespace {}, {}", version.value("gitVersion", "?"),
                        api_.target().server, api_.target().origin, ns_, budget);
}

asio::awaitable<json> kube_provider::ready_nodes() {
  const json list = co_await api_.call_ok(http_verb::get, "/api/v1/nodes", std::nullopt,
                                          "listing the nodes (give slots=N, or grant list on nodes: "
                                          "config/kubernetes/rbac.yaml)");
  json out = json::array();
  for (const auto& n : list.value("items", json::array())) {
    if (condition_true(n, "Ready") && !n.value("/spec/unschedulable"_json_pointer, false)) out.push_back(n);
  }
  co_return out;
}

asio::awaitable<std::vector<std::string>> kube_provider::nodes_lacking(std::string image, int& all) {
  const json nodes = co_await ready_nodes();
  all = static_cast<int>(nodes.size());
  std::vector<std::string> out;
  for (const auto& n : nodes) {
    if (!node_has(n, image)) out.push_back(n.value("/metadata/name"_json_pointer, std::string()));
  }
  co_return out;
}

asio::awaitable<bool> kube_provider::image_present(std::string image) {
  int all = 0;
  const auto lacking = co_await nodes_lacking(image, all);
  co_return all > 0 && lacking.empty();
}

asio::awaitable<std::string> kube_provider::image_id(std::string image) {
  const json nodes = co_await ready_nodes();
  for (const auto& n : nodes) {
    for (const auto& entry : n.value("/status/images"_json_pointer, json::array())) {
      const auto names = entry.value("names", json::array());
      const bool names_it =
          std::any_of(names.begin(), names.end(), [&](const json& x) { return same_image(x.get<std::string>(), image); });
      if (!names_it) continue;
      for (const auto& x : names) {
        if (x.get<std::string>().find("@sha256:") != std::string::npos) co_return x.get<std::string>();
      }
    }
  }
  co_return image;
}

namespace {

json hardened_container(std::string name, std::string image, bool read_only) {
  return json{{"name", std::move(name)},
              {"image", std::move(image)},
              {"imagePullPolicy", "IfNotPresent"},
              {"securityContext",
               {{"allowPrivilegeEscalation", false},
                {"privileged", false},
                {"readOnlyRootFilesystem", read_only},
                {"capabilities", {{"drop", json::array({"ALL"})}}}}}};
}

}  // namespace

json kube_provider::pod_spec(const sandbox_spec& spec) const {
  const auto& req = spec.request;
  const bool host = req.network == protocol::network_mode::host;
  const std::string image = spec.image_id.find("@sha256:") != std::string::npos ? spec.image_id : req.image;
  json c = hardened_container(opts_.container, image, req.read_only);
  json env = json::array();
  for (const auto& [k, v] : req.env) env.push_back({{"name", k}, {"value", v}});
  if (!env.empty()) c["env"] = std::move(env);
  const json amounts = {{"cpu", fmt::format("{}m", std::llround(req.cpus * 1000))},
                        {"memory", fmt::format("{}Mi", req.memory_mb)},
                        {"ephemeral-storage", fmt::format("{}Mi", req.disk_mb)}};
  c["resources"] = {{"requests", amounts}, {"limits", amounts}};
  json pod_spec = {{"restartPolicy", "Never"},
                   {"terminationGracePeriodSeconds", 1},
                   {"automountServiceAccountToken", false},
                   {"enableServiceLinks", false}};
  if (host) {
    pod_spec["hostNetwork"] = true;
    pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet";
  } else {
    pod_spec["hostname"] = dns_label("sb-" + spec.lease_id);
  }
  if (req.read_only) {
    c["volumeMounts"] = json::array({{{"name", "tmp"}, {"mountPath", "/tmp"}}});
    pod_spec["volumes"] = json::array(
        {{{"name", "tmp"}, {"emptyDir", {{"medium", "Memory"}, {"sizeLimit", fmt::format("{}Mi", req.disk_mb)}}}}});
  }
  pod_spec["containers"] = json::array({std::move(c)});
  json labels = {{kube_keys::daemon, daemon_label_},
                 {kube_keys::role, "sandbox"},
                 {kube_keys::network, host ? "host" : "none"}};
  if (const auto l = dns_label(spec.lease_id); l == spec.lease_id) labels[kube_keys::lease] = l;
  json annotations = {{kube_keys::instance, instance_},
                      {kube_keys::owner, owner_},
                      {kube_keys::lease_name, spec.lease_name},
                      {kube_keys::lease_id, spec.lease_id}};
  if (!req.run.empty()) annotations[kube_keys::run] = req.run;
  if (!req.test.empty()) annotations[kube_keys::test] = req.test;
  return json{{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", pod_name_for(spec.lease_id)},
                {"namespace", ns_},
                {"labels", std::move(labels)},
                {"annotations", std::move(annotations)}}},
              {"spec", std::move(pod_spec)}};
}

asio::awaitable<bool> kube_provider::watch_pod(
    std::string name, std::string& rv,
    const std::function<bool(const std::string& type, const json& pod)>& on_event) {
  const std::string target =
      fmt::format("{}?watch=1&allowWatchBookmarks=true&fieldSelector={}&timeoutSeconds=60{}", pods_path(),
                  url_escape("metadata.name=" + name), rv.empty() ? "" : "&resourceVersion=" + rv);
  try {
    co_return co_await api_.watch(target, [&](const json& event) {
      const std::string type = event.value("type", "");
      const auto& obj = event.at("object");
      rv = obj.value("/metadata/resourceVersion"_json_pointer, rv);
      if (type == "BOOKMARK") return false;
      return on_event(type, obj);
    });
  } catch (const kube_error& e) {
    // 410 Expired: the version is older than the server keeps; start again from now.
    if (e.status() != 410) throw;
  }
  const auto res = co_await api_.call(http_verb::get, fmt::format("{}/{}", pods_path(), name));
  if (res.status == 404) {
    rv.clear();
    co_return on_event("DELETED", json::object());
  }
  if (res.status / 100 != 2) {
    throw kube_error(res.status, "", fmt::format("reading pod {} after its watch expired ({})", name, res.status));
  }
  const json pod = res.json();
  rv = pod.value("/metadata/resourceVersion"_json_pointer, std::string());
  co_return on_event("MODIFIED", pod);
}

asio::awaitable<pod_verdict> kube_provider::wait_ready(std::string name, std::string rv, json& last) {
  pod_verdict verdict = judge_pod(last);
  // Resumed from the last version seen whenever the server ends the stream (timeoutSeconds).
  while (verdict.what == pod_verdict::kind::waiting) {
    co_await watch_pod(name, rv, [&](const std::string& type, const json& pod) {
      if (type == "DELETED") {
        verdict = {pod_verdict::kind::failed, provider_failure::not_found, false,
                   "the pod was deleted before it was ready"};
        return true;
      }
      last = pod;
      verdict = judge_pod(pod);
      return verdict.what != pod_verdict::kind::waiting;
    });
  }
  co_return verdict;
}

asio::awaitable<protocol::sandbox_info> kube_provider::create(const sandbox_spec& spec_ref) {
  const sandbox_spec spec = spec_ref;
  const json pod = pod_spec(spec);
  const std::string name = pod.at("metadata").at("name");
  json last = co_await api_.call_ok(http_verb::post, pods_path(), pod, "creating pod " + name);
  const std::string rv = last.value("/metadata/resourceVersion"_json_pointer, std::string());
  // Readiness from a watch on this one pod, from the version the POST returned (nothing is
  // missed); the core's ready timeout bounds the wait and cancels it.
  pod_verdict verdict;
  std::exception_ptr broke;
  try {
    verdict = co_await wait_ready(name, rv, last);
  } catch (...) {
    broke = std::current_exception();
  }
  if (broke || verdict.what == pod_verdict::kind::failed) {
    // A create that fails leaves no pod (when cancelled, the caller removes it by lease).
    try {
      co_await remove(name);
    } catch (const std::exception& e) {
      spdlog::warn("could not remove pod {} after its start failed: {}", name, e.what());
    }
    if (broke) std::rethrow_exception(broke);
    throw provider_error(verdict.failure, fmt::format("pod {}: {}", name, verdict.message));
  }
  protocol::sandbox_info info;
  info.id = name;
  info.name = name;
  const bool host = spec.request.network == protocol::network_mode::host;
  info.hostname = host ? last.value("/spec/nodeName"_json_pointer, std::string()) : dns_label("sb-" + spec.lease_id);
  info.image = spec.request.image;
  info.network = host ? "host" : "none";
  co_return info;
}

asio::awaitable<exec_output> kube_provider::exec(std::string sandbox_id, exec_spec spec) {
  kube_client::exec_request r;
  r.container = opts_.container;
  r.stdin_data = spec.stdin_data;
  r.timeout = spec.timeout;
  r.output_limit = spec.output_limit;
  // The exec API takes argv alone: env and workdir go through env(1) and a shell.
  if (!spec.workdir.empty()) {
    r.argv = {"sh", "-c", "cd \"$0\" && exec env \"$@\"", spec.workdir};
  } else if (!spec.env.empty()) {
    r.argv = {"env"};
  }
  r.argv.insert(r.argv.end(), spec.env.begin(), spec.env.end());
  r.argv.insert(r.argv.end(), spec.argv.begin(), spec.argv.end());
  co_return co_await api_.exec(fmt::format("{}/{}", pods_path(), sandbox_id), std::move(r));
}

namespace {
constexpr int exit_no_dir = 66, exit_cannot_write = 67, exit_not_file = 67, exit_too_large = 68;
}

asio::awaitable<void> kube_provider::write_file(std::string sandbox_id, std::string path, std::string data,
                                                unsigned mode) {
  exec_spec s;
  s.argv = {"sh", "-c",
            fmt::format("d=$(dirname -- \"$0\"); [ -d \"$d\" ] || exit {}; cat > \"$0\" || exit {}; chmod -- \"$1\" \"$0\"",
                        exit_no_dir, exit_cannot_write),
            path, fmt::format("{:o}", mode & 07777)};
  s.stdin_data = std::move(data);
  s.output_limit = 64 * 1024;
  const auto out = co_await exec(sandbox_id, std::move(s));
  if (out.timed_out) throw provider_error(provider_failure::timed_out, "writing " + path + " timed out");
  if (out.exit_code == 0) co_return;
  if (out.exit_code == exit_no_dir) {
    throw provider_error(provider_failure::not_found, fmt::format("the directory of {} does not exist in the sandbox", path));
  }
  if (out.stderr_data.find("Read-only file system") != std::string::npos) {
    throw provider_error(provider_failure::read_only, fmt::format("{}: the sandbox's filesystem is read-only", path));
  }
  throw provider_error(provider_failure::failed, fmt::format("writing {} failed (exit {}): {}", path, out.exit_code,
                                                             out.stderr_data.substr(0, 300)));
}

asio::awaitable<std::optional<std::string>> kube_provider::read_file(std::string sandbox_id, std::string path,
                                                                     std::size_t limit) {
  exec_spec s;
  s.argv = {"sh", "-c",
            fmt::format("[ -e \"$0\" ] || exit {}; [ -f \"$0\" ] || exit {}; n=$(wc -c < \"$0\") || exit 1; "
                        "[ \"$n\" -le \"$1\" ] || exit {}; exec cat -- \"$0\"",
                        exit_no_dir, exit_not_file, exit_too_large),
            path, std::to_string(limit)};
  s.output_limit = limit + 1;
  auto out = co_await exec(sandbox_id, std::move(s));
  if (out.timed_out) throw provider_error(provider_failure::timed_out, "reading " + path + " timed out");
  if (out.exit_code == exit_no_dir) co_return std::nullopt;
  if (out.exit_code == exit_not_file) {
    throw provider_error(provider_failure::not_a_file, fmt::format("{} is not a regular file", path));
  }
  if (out.exit_code == exit_too_large || out.truncated || out.stdout_data.size() > limit) {
    throw provider_error(provider_failure::too_large, fmt::format("{} is larger than {} bytes", path, limit));
  }
  if (out.exit_code != 0) {
    throw provider_error(provider_failure::failed, fmt::format("reading {} failed (exit {}): {}", path, out.exit_code,
                                                               out.stderr_data.substr(0, 300)));
  }
  co_return std::move(out.stdout_data);
}

asio::awaitable<void> kube_provider::wait_gone(std::string name) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;
  // Read once how the pod stands (a delete may have removed it already, and the object a DELETE
  // returns may carry the deletion's own version), then watch from there for DELETED.
  auto until_gone = [this, name]() -> asio::awaitable<void> {
    std::string rv;
    bool gone = false;
    while (!gone) {
      if (rv.empty()) {
        const auto res = co_await api_.call(http_verb::get, fmt::format("{}/{}", pods_path(), name));
        if (res.status == 404) co_return;
        if (res.status / 100 != 2) {
          throw kube_error(res.status, "", fmt::format("reading pod {} while it goes ({})", name, res.status));
        }
        rv = res.json().value("/metadata/resourceVersion"_json_pointer, std::string());
      }
      co_await watch_pod(name, rv, [&](const std::string& type, const json&) {
        gone = type == "DELETED";
        return gone;
      });
    }
  };
  // The kubelet stops the containers first (terminationGracePeriodSeconds: 1), then the pod goes.
  const auto limit = std::max<std::chrono::milliseconds>(api_.call_timeout(), std::chrono::seconds(60));
  asio::steady_timer timer(ex, limit);
  auto raced = co_await (as_outcome(until_gone()) || timer.async_wait(asio::use_awaitable));
  if (raced.index() == 0) {
    if (auto failure = std::get<0>(raced)) std::rethrow_exception(failure);
  } else {
    throw kube_error(0, "", fmt::format("pod {} was not gone within {} s of its deletion", name, limit.count() / 1000),
                     true);
  }
}

asio::awaitable<void> kube_provider::remove(std::string sandbox_id) {
  // Not a force delete (gracePeriodSeconds=0 takes the pod out of the API before the kubelet has
  // stopped its containers): one second, and the DELETED event means the sandbox is gone.
  const auto res =
      co_await api_.call(http_verb::delete_, fmt::format("{}/{}?gracePeriodSeconds=1", pods_path(), sandbox_id));
  if (res.status == 404) co_return;
  if (res.status / 100 != 2) {
    throw kube_error(res.status, "", fmt::format("deleting pod {}: {} ({})", sandbox_id, res.body.substr(0, 300),
                                                 res.status));
  }
  co_await wait_gone(sandbox_id);
}

asio::awaitable<int> kube_provider::remove_lease(std::string lease_id) {
  const auto selector = fmt::format("{}={},{}={}", kube_keys::daemon, daemon_label_, kube_keys::lease, dns_label(lease_id));
  const json deleted = co_await api_.call_ok(
      http_verb::delete_, fmt::format("{}?labelSelector={}&gracePeriodSeconds=1", pods_path(), url_escape(selector)),
      std::nullopt, "deleting the pods of lease " + lease_id);
  int n = 0;
  for (const auto& p : deleted.value("items", json::array())) {
    co_await wait_gone(p.value("/metadata/name"_json_pointer, std::string()));
    ++n;
  }
  co_return n;
}

asio::awaitable<std::vector<owned_sandbox>> kube_provider::list_own() {
  const auto selector = fmt::format("{}={},{}=sandbox", kube_keys::daemon, daemon_label_, kube_keys::role);
  const json list = co_await api_.call_ok(http_verb::get, fmt::format("{}?labelSelector={}", pods_path(), url_escape(selector)),
                                          std::nullopt, "listing this instance's pods");
  std::vector<owned_sandbox> out;
  for (const auto& p : list.value("items", json::array())) {
    owned_sandbox s;
    s.id = p.value("/metadata/name"_json_pointer, std::string());
    s.lease_id = annotation(p, kube_keys::lease_id);
    s.owner = annotation(p, kube_keys::owner);
    std::string phase = p.value("/status/phase"_json_pointer, std::string("Unknown"));
    s.running = phase == "Running" && !p.contains("/metadata/deletionTimestamp"_json_pointer);
    std::transform(phase.begin(), phase.end(), phase.begin(), [](unsigned char c) { return std::tolower(c); });
    s.state = phase;
    out.push_back(std::move(s));
  }
  co_return out;
}

asio::awaitable<int> kube_provider::remove_all_own() {
  // Sandboxes and prepull pods alike, when their maker is this process or gone.
  const json list = co_await api_.call_ok(
      http_verb::get, fmt::format("{}?labelSelector={}", pods_path(), url_escape(fmt::format("{}={}", kube_keys::daemon, daemon_label_))),
      std::nullopt, "listing this instance's pods");
  int removed = 0;
  for (const auto& p : list.value("items", json::array())) {
    owned_sandbox s;
    s.id = p.value("/metadata/name"_json_pointer, std::string());
    s.owner = annotation(p, kube_keys::owner);
    if (!may_reap(s)) continue;
    try {
      co_await remove(s.id);
      ++removed;
    } catch (const std::exception& e) {
      spdlog::error("could not remove pod {}: {}", s.id, e.what());
    }
  }
  co_return removed;
}

bool kube_provider::may_reap(const owned_sandbox& s) {
  if (s.owner == owner_) return true;
  const owner_state state = classify_owner(s.owner);
  if (state == owner_state::self || state == owner_state::gone) return true;
  if (std::find(warned_owners_.begin(), warned_owners_.end(), s.owner) == warned_owners_.end()) {
    warned_owners_.push_back(s.owner);
    spdlog::warn("pods of instance '{}' made by {} are left alone: that daemon {}; give each daemon its own --instance",
                 instance_, s.owner, state == owner_state::alive ? "still runs on this host" : "runs on another host");
  }
  return false;
}

asio::awaitable<void> kube_provider::pull(std::string image, clock::time_point deadline, pull_progress progress) {
  (void)progress;  // the kubelets do not report bytes
  int all = 0;
  const auto lacking = co_await nodes_lacking(image, all);
  if (all == 0) throw provider_error(provider_failure::unreachable, "no Ready node to pull " + image + " on");
  if (lacking.empty()) co_return;
  // One prepull pod per node, all at once: each kubelet pulls for itself. Each runs to its end on
  // its own (bounded by `deadline`) and removes its pod, even when this caller gives up first.
  struct join {
    explicit join(asio::any_io_executor ex) : done(ex, clock::time_point::max()) {}
    std::size_t left = 0;
    std::exception_ptr first;
    asio::steady_timer done;
  };
  auto ex = co_await asio::this_coro::executor;
  auto j = std::make_shared<join>(ex);
  j->left = lacking.size();
  for (const auto& node : lacking) {
    asio::co_spawn(ex, prepull_on(image, node, deadline), [j](std::exception_ptr e) {
      if (e && !j->first) j->first = e;
      if (--j->left == 0) j->done.cancel();
    });
  }
  co_await j->done.async_wait(asio::as_tuple(asio::use_awaitable));
  // Woken before every node finished: the caller cancelled the pull. It did not happen.
  if (j->left > 0) throw boost::system::system_error(asio::error::operation_aborted, "pull of " + image + " cancelled");
  if (j->first) std::rethrow_exception(j->first);
}

asio::awaitable<void> kube_provider::prepull_on(std::string image, std::string node, clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  static std::mt19937_64 rng{std::random_device{}()};
  const std::string name = dns_label(fmt::format("sandlot-pull-{:08x}-{:06x}", fnv1a(instance_ + image + node) & 0xffffffff,
                                                 rng() & 0xffffff));
  json c = hardened_container("prepull", image, true);
  const json small = {{"cpu", "10m"}, {"memory", "16Mi"}};
  c["resources"] = {{"requests", small}, {"limits", small}};
  const json pod = {{"apiVersion", "v1"},
                    {"kind", "Pod"},
                    {"metadata",
                     {{"name", name},
                      {"namespace", ns_},
                      {"labels", {{kube_keys::daemon, daemon_label_}, {kube_keys::role, "prepull"}}},
                      {"annotations", {{kube_keys::instance, instance_}, {kube_keys::owner, owner_}}}}},
                    {"spec",
                     {{"nodeName", node},
                      {"restartPolicy", "Never"},
                      {"activeDeadlineSeconds", 600},
                      {"terminationGracePeriodSeconds", 1},
                      {"automountServiceAccountToken", false},
                      {"enableServiceLinks", false},
                      {"containers", json::array({c})}}}};
  const json made = co_await api_.call_ok(http_verb::post, pods_path(), pod, "creating prepull pod " + name);
  std::string rv = made.value("/metadata/resourceVersion"_json_pointer, std::string());
  std::optional<provider_error> failed;
  bool pulled = false;
  auto watch_pull = [&]() -> asio::awaitable<void> {
    while (!pulled && !failed) {
      co_await watch_pod(name, rv, [&](const std::string& type, const json& obj) {
        if (type == "DELETED") {
          failed.emplace(provider_error(provider_failure::failed, "prepull pod " + name + " was deleted"));
          return true;
        }
        const pod_verdict v = judge_pod(obj);
        if (v.pull) {
          failed.emplace(provider_error(v.failure, fmt::format("pulling {} on node {}: {}", image, node, v.message)));
          return true;
        }
        // The image is there once the container was made from it, whatever its command then does.
        const auto& cs = first_container_status(obj);
        const std::string waiting = cs.value("/state/waiting/reason"_json_pointer, std::string());
        pulled = !cs.value("imageID", std::string()).empty() || cs.contains("/state/running"_json_pointer) ||
                 cs.contains("/state/terminated"_json_pointer) || v.what != pod_verdict::kind::waiting ||
                 waiting == "CreateContainerError" || waiting == "RunContainerError" || waiting == "CrashLoopBackOff";
        return pulled;
      });
    }
  };
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  std::exception_ptr watch_error;
  try {
    auto raced = co_await (as_outcome(watch_pull()) || timer.async_wait(asio::use_awaitable));
    if (raced.index() == 0) {
      if (auto failure = std::get<0>(raced)) std::rethrow_exception(failure);
    } else {
      failed.emplace(provider_error(provider_failure::timed_out,
                                    fmt::format("pulling {} on node {} did not finish in time", image, node)));
    }
  } catch (...) {
    watch_error = std::current_exception();
  }
  try {
    co_await remove(name);
  } catch (const std::exception& e) {
    spdlog::warn("could not remove prepull pod {}: {} (its activeDeadlineSeconds ends it)", name, e.what());
  }
  if (watch_error) std::rethrow_exception(watch_error);
  if (failed) throw *failed;
  spdlog::info("node {} has {}", node, image);
}

}  // namespace sandlot::orchestrator
