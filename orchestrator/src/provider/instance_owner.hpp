// Who owns an instance's sandboxes. Every sandbox is labelled with its daemon instance and with
// the process that made it (host, boot, pid and the pid's start time), so that a daemon removes
// only what it made itself or what a process that is gone left behind, never the sandboxes of a
// live daemon that happens to use the same instance name (another host sharing the engine).
//
// On one host, a lock file per instance keeps a second daemon with the same instance from
// starting at all.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sandlot::orchestrator {

/// FNV-1a, 64 bits: a short stable name for an instance (its lock file, its Kubernetes label).
std::uint64_t fnv1a(std::string_view s);

/// This machine's (or container's) host name.
std::string host_name();

/// This process as a sandbox owner: "HOST/BOOT/PID/START" (START is the pid's start time in clock
/// ticks since boot, so a recycled pid is a different owner).
std::string self_owner();

enum class owner_state {
  self,     // this process
  gone,     // a process of this host and boot that no longer runs, a past boot, or no owner label
  alive,    // a process of this host and boot that still runs
  foreign,  // another host: it cannot be checked from here, so it is left alone
};

/// How `owner` stands relative to `self` (both as self_owner() spells them). `start_time_of(pid)`
/// gives a running pid's start time, or empty when the pid does not run (tests pass a fake).
owner_state classify_owner(std::string_view owner, std::string_view self,
                           const std::function<std::string(int pid)>& start_time_of);
/// classify_owner() with this host's /proc.
owner_state classify_owner(std::string_view owner);

/// Holds an exclusive lock on the instance name for this process's life (flock on a file under
/// $XDG_RUNTIME_DIR or /tmp). Throws std::runtime_error saying which pid holds it.
class instance_lock {
 public:
  explicit instance_lock(const std::string& instance);
  ~instance_lock();
  instance_lock(const instance_lock&) = delete;
  instance_lock& operator=(const instance_lock&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace sandlot::orchestrator
