#include "instance_owner.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>


namespace sandlot::orchestrator {

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf.data();
}

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Field 22 of /proc/<pid>/stat (after the parenthesised command, which may hold spaces).
std::string proc_start_time(int pid) {
  const std::string stat = read_all(fmt::format("/proc/{}/stat", pid));
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int n = 3; n <= 22 && (fields >> field); ++n) {
    if (n == 22) return field;
  }
  return {};
}

std::string boot_id() {
  std::string id = read_all("/proc/sys/kernel/random/boot_id");
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id.empty() ? std::string("unknown-boot") : id.substr(0, 8);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (;;) {
    const auto at = s.find(sep);
    out.emplace_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

}  // namespace

std::string self_owner() {
  const int pid = static_cast<int>(::getpid());
  return fmt::format("{}/{}/{}/{}", host_name(), boot_id(), pid, proc_start_time(pid));
}

owner_state classify_owner(std::string_view owner, std::string_view self,
                           const std::function<std::string(int pid)>& start_time_of) {
  if (owner == self) return owner_state::self;
  const auto theirs = split(owner, '/');
  const auto mine = split(self, '/');
  // Sandboxes from before owners were labelled, or a label nobody here wrote: their maker is gone.
  if (theirs.size() != 4 || mine.size() != 4) return owner_state::gone;
  if (theirs[0] != mine[0]) return owner_state::foreign;
  if (theirs[1] != mine[1]) return owner_state::gone;  // made before this host rebooted
  int pid = 0;
  try {
    pid = std::stoi(theirs[2]);
  } catch (const std::exception&) {
    return owner_state::gone;
  }
  const std::string start = start_time_of(pid);
  return !start.empty() && start == theirs[3] ? owner_state::alive : owner_state::gone;
}

owner_state classify_owner(std::string_view owner) {
  static const std::string self = self_owner();
  return classify_owner(owner, self, proc_start_time);
}

instance_lock::instance_lock(const std::string& instance) {
  const char* runtime = std::getenv("XDG_RUNTIME_DIR");
  const std::string dir = (runtime != nullptr && *runtime != '\0') ? runtime : "/tmp";
  path_ = fmt::format("{}/sandlot-instance-{:016x}.lock", dir, fnv1a(instance));
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw std::runtime_error(fmt::format("cannot open the instance lock {}: {}; set XDG_RUNTIME_DIR to a "
                                         "writable directory",
                                         path_, std::strerror(errno)));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    std::string holder = read_all(path_);
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error(fmt::format(
        "instance '{}' is in use by a running orchestratord ({}); two daemons with one instance would remove "
        "each other's sandboxes: stop that one, or give this one another --instance",
        instance, holder.empty() ? std::string("pid unknown") : holder));
  }
  const std::string me = fmt::format("pid {}, lock {}\n", ::getpid(), path_);
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] auto n = ::pwrite(fd_, me.data(), me.size(), 0);
  }
}

instance_lock::~instance_lock() {
  if (fd_ >= 0) {
    [[maybe_unused]] auto r = ::ftruncate(fd_, 0);
    ::close(fd_);  // releases the flock; the file stays, harmlessly, for the next daemon
  }
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace sandlot::orchestrator
