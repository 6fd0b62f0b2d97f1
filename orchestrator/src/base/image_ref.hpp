// Image references: validated before a lease is queued, and checked against the registries the
// daemon may pull from (loopback ones, plus --allow-registry), so a typo such as "busybox" cannot
// make the engine reach out to Docker Hub.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sandlot::orchestrator {

struct image_ref {
  std::string registry;    // "127.0.0.1:5000"; "docker.io" when the reference names none
  std::string repository;  // "sandlot/busybox"
  std::string tag;         // "1" ("latest" when neither tag nor digest is given)
  std::string digest;      // "sha256:..." or empty
  bool registry_named = false;  // the reference spelled the registry out

  /// The repository as the reference named it, e.g. "127.0.0.1:5000/sandlot/busybox" or "busybox".
  std::string name() const { return registry_named ? registry + "/" + repository : repository; }
};

/// Parses a reference; throws protocol::api_error(invalid_field) saying what is wrong.
image_ref parse_image_ref(std::string_view ref);

/// True for a registry on loopback: 127.0.0.0/8, [::1] or localhost, any port.
bool is_loopback_registry(std::string_view registry);

/// Empty when `ref` may be pulled; otherwise the reason, naming --allow-registry.
std::string pull_refusal(const image_ref& ref, const std::vector<std::string>& allowed);

}  // namespace sandlot::orchestrator
