// Integration-test support: looks at the container engine directly, the way a user would check
// with `docker ps` / `docker inspect`, to confirm what orchestratord says it did.
//
// Each call runs the daemon's own docker_client on a private io_context, so a probe may be used
// from any thread (the slot sampler runs beside the test's clients).
#pragma once

#include <string>
#include <vector>

namespace sandlot::itest {

class engine_probe {
 public:
  /// $DOCKER_HOST, or unix:///var/run/docker.sock.
  engine_probe();

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

 private:
  std::string spec_;
};

}  // namespace sandlot::itest
