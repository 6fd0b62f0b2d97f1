// Keeps the duration book (core/duration_book.hpp) in `<state-dir>/durations.json`, shared by
// every daemon that is given the same --state-dir.
//
// Safe against concurrent daemons: a save takes an exclusive flock on `durations.lock`, reads
// what the others wrote, merges it (per test, the newer sample wins) and writes the union. Safe
// against torn writes: the file is written beside itself, fsync'ed and renamed over the old one,
// so a reader sees the old file or the new one, never half of one. A file that cannot be read (or
// was damaged by hand) is said in the log and replaced at the next save; it never stops the daemon.
#pragma once

#include <filesystem>
#include <string>

#include "duration_book.hpp"

namespace sandlot::orchestrator {

class duration_store {
 public:
  /// Creates `dir` if it is missing. Throws std::runtime_error saying what to do if it cannot.
  explicit duration_store(std::filesystem::path dir);

  /// Merges the file into `book`; returns how many tests it knew. A missing file knows none.
  std::size_t load(duration_book& book) const;
  /// Merges what other daemons saved into `book`, then writes `book`. Returns false (and logs
  /// why) if the file could not be written; `book` stays dirty then, for the next try.
  bool save(duration_book& book) const;

  const std::filesystem::path& file() const noexcept { return file_; }

 private:
  std::size_t read_into(duration_book& book) const;

  std::filesystem::path dir_;
  std::filesystem::path file_;
  std::filesystem::path lock_;
};

}  // namespace sandlot::orchestrator
