// `sandlot watch`: frames from GET /v1/events, drawn in place on a terminal or as plain blocks
// elsewhere. The stream blocks this thread; a second thread waits for `q` or a signal and stops it.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "terminal.hpp"
#include "watch_view.hpp"

namespace sandlot::cli {
namespace {

void put(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// Home, each line cleared to its end, then the rest of the screen: no flicker, no scrolling.
std::string in_place(const std::string& frame) {
  std::string out = "\x1b[H";
  for (char c : frame) {
    if (c == '\n') out += "\x1b[K";
    out += c;
  }
  return out + "\x1b[J";
}

using renderer = std::function<std::string(const protocol::status_view&)>;

int watch_once(client::event_stream& events, const renderer& render) {
  bool drawn = false;
  events.run([&](const protocol::status_view& st) {
    std::string frame = render(st);
    if (frame.empty() || frame.back() != '\n') frame += '\n';
    put(frame);
    drawn = true;
    return false;
  });
  if (!drawn) throw daemon_lost("the daemon closed the event stream before its first status");
  return exit_code::ok;
}

int watch_live(client::event_stream& events, const renderer& render, bool tty) {
  signal_pipe sig;
  std::optional<screen_guard> screen;
  std::optional<raw_stdin_guard> raw;
  if (tty) {
    screen.emplace();
    raw.emplace();
  }
  const bool keys = tty && ::isatty(STDIN_FILENO) != 0;
  std::thread input([&] {
    if (wait_for_quit(sig, keys)) events.stop();
  });
  // The input thread must be joined on every way out, before the guards restore the terminal.
  struct joiner {
    const signal_pipe& sig;
    std::thread& t;
    ~joiner() {
      sig.wake();
      t.join();
    }
  } join{sig, input};

  auto end = events.run([&](const protocol::status_view& st) {
    std::string frame = render(st);
    put(tty ? in_place(frame) : frame + "\n");
    return true;
  });
  if (end == client::event_stream::end::closed) {
    throw daemon_lost("the daemon closed the event stream (it stopped, or fell silent for 45 s)");
  }
  return exit_code::ok;
}

}  // namespace

int cmd_watch(const global_options& g, const watch_options& o) {
  auto c = make_client(g);
  // --json: one status object per line, for scripts; never drawn in place.
  const bool tty = ::isatty(STDOUT_FILENO) != 0 && !g.json;
  client::event_stream events(c);
  frame_options fo{.run = o.run, .colour = tty, .footer = tty && !o.once};
  renderer render = [&](const protocol::status_view& st) {
    return g.json ? nlohmann::json(st).dump() : render_frame(st, fo);
  };
  if (o.once) return watch_once(events, render);
  return watch_live(events, render, tty);
}

}  // namespace sandlot::cli
