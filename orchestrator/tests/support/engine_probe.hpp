// Integration-test support: looks at the container engine directly, the way a user would check
// with `docker ps` / `docker inspect`, to confirm what orchestratord says it did.
//
// Each call runs the daemon's own docker_client on a private io_context, so a probe may be used
// from any thread (the slot sampler runs beside the test's clients).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sandlot::itest {

class engine_probe {
 public:
  /// $DOCKER_HOST, or unix:///var/run/docker.sock.
  engine_probe();
  /// The engine at `spec` (unix:///path or tcp://127.0.0.1:PORT), e.g. a pool's second engine.
  explicit engine_probe(std::string spec);

  /// Ids of the containers (any state) labelled sandlot.daemon=<instance>.
  std::vector<std::string> containers_of(const std::string& instance) const;
  /// GET /containers/{id}/json is 200 (false on 404; throws on anything else).
  bool container_exists(const std::string& id) const;
  /// Force-removes every container of `instance`; returns how many there were. For cleanup
  /// after a failed test, so that one failure does not leak sandboxes into the next.
  int remove_containers_of(const std::string& instance) const;
  /// GET /images/{ref}/json is 200.
  bool image_exists(const std::string& ref) const;
  /// DELETE /images/{ref}?force=true; an image that is not there is fine.
  void remove_image(const std::string& ref) const;
  /// Creates and starts a container of `image` with `labels` (as another daemon would have made
  /// it, network none); returns its id.
  std::string create_labelled(const std::string& image, const std::map<std::string, std::string>& labels) const;
  /// The image id a reference names now ("sha256:...").
  std::string image_id(const std::string& ref) const;
  /// Points `ref` (REPO:TAG) at image `id`.
  void tag_image(const std::string& id, const std::string& ref) const;
  /// Commits a container as a new image tagged `ref`; returns the new image's id.
  std::string commit(const std::string& container_id, const std::string& ref) const;
  /// The image id a container was made from.
  std::string container_image(const std::string& container_id) const;

 private:
  std::string spec_;
};

}  // namespace sandlot::itest
