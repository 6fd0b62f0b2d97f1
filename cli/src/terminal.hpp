// The terminal around `sandlot watch`: the alternate screen with a hidden cursor, raw stdin for
// `q`, and SIGINT/SIGTERM turned into a readable byte. Each is an RAII guard, so the terminal is
// restored on every way out, an exception included.
#pragma once

#include <signal.h>
#include <termios.h>

#include <optional>

namespace sandlot::cli {

/// Alternate screen and hidden cursor while alive (stdout must be a terminal).
class screen_guard {
 public:
  screen_guard();
  ~screen_guard();
  screen_guard(const screen_guard&) = delete;
  screen_guard& operator=(const screen_guard&) = delete;
};

/// stdin without line buffering or echo while alive, when stdin is a terminal.
class raw_stdin_guard {
 public:
  raw_stdin_guard();
  ~raw_stdin_guard();
  raw_stdin_guard(const raw_stdin_guard&) = delete;
  raw_stdin_guard& operator=(const raw_stdin_guard&) = delete;

 private:
  std::optional<termios> saved_;
};

/// SIGINT and SIGTERM write one byte to a pipe instead of killing the process, so a thread can
/// poll() for them next to stdin; the previous handlers come back on destruction. One at a time.
class signal_pipe {
 public:
  signal_pipe();
  ~signal_pipe();
  signal_pipe(const signal_pipe&) = delete;
  signal_pipe& operator=(const signal_pipe&) = delete;
  /// Readable once a signal came or wake() was called.
  int read_fd() const noexcept { return fds_[0]; }
  /// Makes read_fd() readable from ordinary code (e.g. the stream ended).
  void wake() const noexcept;

 private:
  int fds_[2] = {-1, -1};
  struct ::sigaction old_int_ {};
  struct ::sigaction old_term_ {};
};

/// Blocks until `q`/`Q` is typed on stdin (only when `read_stdin`) or `sig` becomes readable;
/// returns true for a key or signal, false when woken by signal_pipe::wake(). Never spins: a
/// closed stdin is dropped from the poll set.
bool wait_for_quit(const signal_pipe& sig, bool read_stdin);

}  // namespace sandlot::cli
