#include "terminal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <system_error>

namespace sandlot::cli {
namespace {

// The handler may only touch what is async-signal-safe: a plain int and write(2).
volatile std::sig_atomic_t g_signal_fd = -1;
// What wake() writes; a signal writes 's'. The reader tells them apart.
constexpr char wake_byte = 'w';
constexpr char signal_byte = 's';

extern "C" void on_signal(int) {
  const int saved = errno;
  if (g_signal_fd >= 0) {
    char b = signal_byte;
    [[maybe_unused]] auto n = ::write(g_signal_fd, &b, 1);
  }
  errno = saved;
}

void write_all(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

screen_guard::screen_guard() { write_all("\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J"); }

screen_guard::~screen_guard() { write_all("\x1b[?25h\x1b[?1049l"); }

raw_stdin_guard::raw_stdin_guard() {
  termios t{};
  if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &t) != 0) return;
  saved_ = t;
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  ::tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

raw_stdin_guard::~raw_stdin_guard() {
  if (saved_) ::tcsetattr(STDIN_FILENO, TCSANOW, &*saved_);
}

signal_pipe::signal_pipe() {
  if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  g_signal_fd = fds_[1];
  struct ::sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &old_int_);
  ::sigaction(SIGTERM, &sa, &old_term_);
}

signal_pipe::~signal_pipe() {
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
  g_signal_fd = -1;
  ::close(fds_[0]);
  ::close(fds_[1]);
}

void signal_pipe::wake() const noexcept {
  char b = wake_byte;
  [[maybe_unused]] auto n = ::write(fds_[1], &b, 1);
}

bool wait_for_quit(const signal_pipe& sig, bool read_stdin) {
  for (;;) {
    pollfd fds[2] = {{sig.read_fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const nfds_t n = read_stdin ? 2 : 1;
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      return true;  // cannot wait any more: quit rather than spin
    }
    if ((fds[0].revents & POLLIN) != 0) {
      char b = 0;
      [[maybe_unused]] auto got = ::read(sig.read_fd(), &b, 1);
      return b == signal_byte;
    }
    if (read_stdin && fds[1].revents != 0) {
      char c = 0;
      const auto got = ::read(STDIN_FILENO, &c, 1);
      if (got <= 0) read_stdin = false;  // stdin closed: stop watching it, keep waiting for signals
      else if (c == 'q' || c == 'Q') return true;
    }
  }
}

}  // namespace sandlot::cli
