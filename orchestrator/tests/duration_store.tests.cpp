// The duration book (what is learned) and its file (how daemons share it).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "duration_book.hpp"
#include "duration_store.hpp"

using sandlot::orchestrator::duration_book;
using sandlot::orchestrator::duration_store;

namespace {

/// A fresh directory under the build's temp folder, removed at scope exit.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    path = std::filesystem::temp_directory_path() /
           ("sandlot-durations-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::remove_all(path);
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

}  // namespace

TEST_CASE("a run's pattern is its name with the numbers taken out", "[durations]") {
  CHECK(duration_book::pattern_of("run-e2e-4711-1764849000") == "run-e2e-*-*");
  CHECK(duration_book::pattern_of("ppid-12-34") == "ppid-*-*");
  CHECK(duration_book::pattern_of("nightly") == "nightly");
  CHECK(duration_book::pattern_of("build42_7") == "build42_*");
  CHECK(duration_book::pattern_of("") == "");
}

TEST_CASE("the book keeps a moving average per test, found by later runs of the suite", "[durations]") {
  duration_book b;
  b.learn("run-1", "slow", 10, 100);
  CHECK(b.expected("run-2", "slow") == Approx(10));  // the same pattern: run-*
  b.learn("run-2", "slow", 20, 200);
  CHECK(b.expected("run-3", "slow") == Approx(10 + duration_book::weight * 10));
  CHECK_FALSE(b.expected("other-1", "slow"));
  CHECK_FALSE(b.expected("run-1", "never-seen"));
  CHECK(b.dirty());
}

TEST_CASE("an unseen test counts as its suite's average, else everyone's", "[durations]") {
  duration_book b;
  CHECK_FALSE(b.typical("run-1"));
  b.learn("run-1", "a", 2, 1);
  b.learn("run-1", "b", 4, 1);
  b.learn("nightly", "c", 30, 1);
  CHECK(*b.typical("run-9") == Approx(3));
  CHECK(*b.typical("nightly") == Approx(30));
  CHECK(*b.typical("new-suite") == Approx(12));
  b.learn("run-1", "a", 12, 2);  // a moves to 2 + 0.3 * 10 = 5
  CHECK(*b.typical("run-9") == Approx(4.5));
}

TEST_CASE("anonymous leases and nonsense durations teach nothing", "[durations]") {
  duration_book b;
  b.learn("run-1", "", 5, 1);
  b.learn("run-1", "t", -1, 1);
  CHECK(b.size() == 0);
  CHECK_FALSE(b.dirty());
}

TEST_CASE("merging takes the newer sample of each test", "[durations]") {
  duration_book mine;
  mine.learn("run-1", "a", 1, 100);
  mine.learn("run-1", "b", 2, 100);
  mine.merge({{"run-*\na", {9, 3, 50}}, {"run-*\nb", {8, 3, 150}}, {"run-*\nc", {7, 1, 10}}, {"broken", {1, 1, 1}}});
  CHECK(*mine.expected("run-1", "a") == Approx(1));
  CHECK(*mine.expected("run-1", "b") == Approx(8));
  CHECK(*mine.expected("run-1", "c") == Approx(7));
  CHECK(mine.size() == 3);
}

TEST_CASE("durations survive a restart through the state directory", "[durations][store]") {
  temp_dir dir;
  {
    duration_book b;
    b.learn("run-1", "a", 3, 100);
    duration_store store(dir.path / "nested");
    REQUIRE(store.save(b));
    CHECK_FALSE(b.dirty());
  }
  duration_book fresh;
  duration_store store(dir.path / "nested");
  CHECK(store.load(fresh) == 1);
  CHECK(*fresh.expected("run-7", "a") == Approx(3));
}

TEST_CASE("two daemons sharing a state directory keep what each learned", "[durations][store]") {
  temp_dir dir;
  duration_store one(dir.path), two(dir.path);
  duration_book first, second;
  first.learn("run-1", "a", 1, 100);
  second.learn("run-1", "b", 2, 100);
  REQUIRE(one.save(first));
  REQUIRE(two.save(second));  // merges a in before writing
  duration_book reader;
  CHECK(duration_store(dir.path).load(reader) == 2);
  CHECK(*reader.expected("run-1", "a") == Approx(1));
  CHECK(*reader.expected("run-1", "b") == Approx(2));
}

TEST_CASE("processes saving at once lose nothing and never leave half a file", "[durations][store]") {
  temp_dir dir;
  duration_store store(dir.path);
  constexpr int children = 4;
  constexpr int rounds = 25;
  std::vector<pid_t> pids;
  for (int c = 0; c < children; ++c) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      duration_book b;
      bool ok = true;
      for (int r = 0; r < rounds; ++r) {
        b.learn("run-1", "child-" + std::to_string(c) + "-" + std::to_string(r), 1.0 + c, 100.0 + r);
        ok = store.save(b) && ok;
      }
      ::_exit(ok ? 0 : 1);
    }
    pids.push_back(pid);
  }
  // Meanwhile the file, whenever it exists, is whole: every save writes at least one test, and a
  // torn or half-written file would read as none.
  int seen = 0;
  for (int i = 0; i < 200; ++i) {
    if (!std::filesystem::exists(dir.path / "durations.json")) continue;
    duration_book peek;
    CHECK(store.load(peek) >= 1);
    ++seen;
  }
  INFO("reads of the file while the children wrote it: " << seen);
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  duration_book all;
  CHECK(store.load(all) == children * rounds);
}

TEST_CASE("a damaged state file is replaced, not trusted", "[durations][store]") {
  temp_dir dir;
  duration_store store(dir.path);
  std::ofstream(dir.path / "durations.json") << "{\"format\": \"sandlot-durations/1\", \"tests\": [";  // torn
  duration_book b;
  CHECK(store.load(b) == 0);
  b.learn("run-1", "a", 5, 1);
  REQUIRE(store.save(b));
  duration_book again;
  CHECK(store.load(again) == 1);
}

TEST_CASE("a state directory that cannot be made says what to do", "[durations][store]") {
  temp_dir dir;
  std::filesystem::create_directories(dir.path);
  std::ofstream(dir.path / "file") << "x";
  CHECK_THROWS_WITH(duration_store(dir.path / "file" / "sub"), Catch::Contains("--state-dir"));
}
