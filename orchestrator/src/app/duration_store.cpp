#include "duration_store.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace {

constexpr const char* format_name = "sandlot-durations/1";

/// An open file descriptor, closed on scope exit.
class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

/// Takes an exclusive flock, trying for up to two seconds (a daemon holds it for a few
/// milliseconds; one that died released it with its descriptors).
bool lock_exclusive(int fd) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

duration_store::duration_store(std::filesystem::path dir)
    : dir_(std::move(dir)), file_(dir_ / "durations.json"), lock_(dir_ / "durations.lock") {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_)) {
    throw std::runtime_error(fmt::format("--state-dir {}: cannot create it ({}); give a writable directory, or "
                                         "leave --state-dir out to keep durations in memory only",
                                         dir_.string(), ec ? ec.message() : "not a directory"));
  }
}

std::size_t duration_store::read_into(duration_book& book) const {
  std::ifstream in(file_, std::ios::binary);
  if (!in) return 0;
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::pair<std::string, duration_book::entry>> found;
  try {
    const auto doc = nlohmann::json::parse(text.str());
    if (doc.value("format", "") != format_name) {
      spdlog::warn("{}: not a {} file; it is replaced at the next save", file_.string(), format_name);
      return 0;
    }
    for (const auto& t : doc.at("tests")) {
      duration_book::entry e{t.at("seconds").get<double>(), t.value("samples", 1), t.value("updated", 0.0)};
      found.emplace_back(t.at("run_pattern").get<std::string>() + "\n" + t.at("test").get<std::string>(), e);
    }
  } catch (const nlohmann::json::exception& e) {
    spdlog::warn("{}: unreadable ({}); durations start from what this daemon learns, and the file is replaced at "
                 "the next save", file_.string(), e.what());
    return 0;
  }
  book.merge(found);
  return found.size();
}

std::size_t duration_store::load(duration_book& book) const { return read_into(book); }

bool duration_store::save(duration_book& book) const {
  fd_guard lock(::open(lock_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock.get() < 0 || !lock_exclusive(lock.get())) {
    spdlog::warn("durations: cannot lock {} ({}); trying again later", lock_.string(), std::strerror(errno));
    return false;
  }
  read_into(book);  // what the other daemons saved since
  nlohmann::json tests = nlohmann::json::array();
  for (const auto& [key, e] : book.entries()) {
    const auto cut = key.find('\n');
    tests.push_back({{"run_pattern", key.substr(0, cut)},
                     {"test", key.substr(cut + 1)},
                     {"seconds", e.seconds},
                     {"samples", e.samples},
                     {"updated", e.updated_unix}});
  }
  const std::string text = nlohmann::json{{"format", format_name}, {"tests", std::move(tests)}}.dump(1) + "\n";
  const auto tmp = dir_ / fmt::format("durations.json.{}.tmp", ::getpid());
  bool ok = false;
  {
    fd_guard out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ok = out.get() >= 0 && write_all(out.get(), text) && ::fsync(out.get()) == 0;
  }
  ok = ok && ::rename(tmp.c_str(), file_.c_str()) == 0;
  if (!ok) {
    spdlog::warn("durations: cannot write {} ({}); trying again later", file_.string(), std::strerror(errno));
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    return false;
  }
  fd_guard dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());  // the rename itself survives a crash
  book.mark_clean();
  return true;
}

}  // namespace sandlot::orchestrator
