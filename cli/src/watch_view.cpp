#include "watch_view.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "format.hpp"

namespace sandlot::cli {
namespace {

using protocol::lease_state;

// SGR codes; scripts/watch-screenshot maps the same ones to HTML colours.
constexpr std::string_view green = "\x1b[32m";
constexpr std::string_view yellow = "\x1b[33m";
constexpr std::string_view cyan = "\x1b[36m";
constexpr std::string_view red = "\x1b[31m";
constexpr std::string_view dim = "\x1b[2m";
constexpr std::string_view bold = "\x1b[1m";
constexpr std::string_view reset = "\x1b[0m";

struct painter {
  bool on;
  std::string operator()(std::string_view sgr, std::string_view text) const {
    return on ? fmt::format("{}{}{}", sgr, text, reset) : std::string(text);
  }
};

// Columns line up from frame to frame, so that the eye finds the same lane in the same place.
std::string pad(std::string_view text, std::size_t width) {
  std::string out = fit_width(text, width);
  return out + std::string(width - std::min(width, display_width(out)), ' ');
}

std::string_view state_colour(lease_state s) {
  switch (s) {
    case lease_state::ready: return green;
    case lease_state::starting: return cyan;
    case lease_state::queued:
    case lease_state::pulling: return yellow;
    case lease_state::failed:
    case lease_state::expired: return red;
    default: return dim;
  }
}

std::string header(const protocol::status_view& st, const painter& paint) {
  std::string out = paint(bold, fmt::format("sandlot watch  {}", st.instance));
  out += fmt::format("   slots {}/{}   queue {}", st.slots_in_use, st.slots_total, st.queue_length);
  if (st.draining) out += "   " + paint(red, "DRAINING");
  out += "   " + (st.ready ? paint(green, "ready") : paint(yellow, "not ready"));
  return out + "\n";
}

std::string lanes(const protocol::status_view& st, const frame_options& opts, const painter& paint) {
  std::string out = paint(bold, "LANES") + "\n";
  for (const auto& lane : st.lanes) {
    std::string label = fmt::format("{:>3}", lane.lane);
    if (!lane.lease) {
      out += fmt::format("{}  {}\n", label, paint(dim, lane.retiring ? "free (retiring)" : "free"));
      continue;
    }
    if (!opts.run.empty() && lane.run != opts.run) {
      out += fmt::format("{}  {}\n", label, paint(dim, fmt::format("held by run {}", lane.run)));
      continue;
    }
    std::string state = fmt::format("{:<8}", protocol::to_string(lane.state));
    out += fmt::format("{}  {}  {}  {}  {}{}\n", label, paint(state_colour(lane.state), state), pad(lane.name, 28),
                       pad(lane.test, 32), human_duration(lane.since_s), lane.retiring ? "  (retiring)" : "");
  }
  return out;
}

bool waiting(const protocol::lease_view& l) {
  return l.state == lease_state::queued || l.state == lease_state::pulling || l.state == lease_state::starting;
}

std::string queue(const protocol::status_view& st, const frame_options& opts, const painter& paint) {
  std::vector<const protocol::lease_view*> q;
  for (const auto& l : st.leases) {
    if (waiting(l) && (opts.run.empty() || l.run == opts.run)) q.push_back(&l);
  }
  // Queue order first (position), then those past the queue (pulling, starting).
  std::stable_sort(q.begin(), q.end(), [](const auto* a, const auto* b) {
    return a->position.value_or(1 << 30) < b->position.value_or(1 << 30);
  });
  std::string out = paint(bold, "QUEUE") + "\n";
  if (q.empty()) return out + paint(dim, "  nothing waits") + "\n";
  for (const auto* l : q) {
    std::string pos = l->position ? fmt::format("#{}", *l->position) : std::string("  ");
    out += fmt::format("{:>4}  {}  {}  {}  {}  {}\n", pos, pad(l->name, 28), pad(l->test, 32),
                       paint(state_colour(l->state), fmt::format("{:<8}", protocol::to_string(l->state))),
                       paint(yellow, pad(fmt::format("waiting for {}", l->waiting_for.value_or("-")), 24)),
                       l->since_s ? human_duration(*l->since_s) : "-");
  }
  return out;
}

std::string pulls(const protocol::status_view& st, const painter& paint) {
  std::string out;
  for (const auto& img : st.images) {
    if (img.state != "pulling" && img.state != "waiting") continue;
    out += fmt::format("  {}  {}  {}  {}  {} waiting\n", fit_width(img.image, 48),
                       paint(cyan, progress_bar(img.bytes_done, img.bytes_total)), pull_bytes(img),
                       img.since_s ? human_duration(*img.since_s) : "-", img.waiters);
  }
  return out.empty() ? std::string() : paint(bold, "PULLS") + "\n" + out;
}

std::string runs(const protocol::status_view& st, const frame_options& opts, const painter& paint) {
  std::string out;
  for (const auto& r : st.runs) {
    if (!opts.run.empty() && r.run != opts.run) continue;
    const std::size_t done = r.leases - std::min(r.leases, r.live_leases);
    out += fmt::format("  {}  done {}  left {}{}\n", fit_width(r.run, 40), done, r.live_leases, r.ended ? "  (ended)" : "");
  }
  return paint(bold, "RUNS") + "\n" + (out.empty() ? paint(dim, "  none") + "\n" : out);
}

}  // namespace

std::string render_frame(const protocol::status_view& st, const frame_options& opts) {
  const painter paint{opts.colour};
  std::string out = header(st, paint);
  out += lanes(st, opts, paint);
  out += queue(st, opts, paint);
  out += pulls(st, paint);
  out += runs(st, opts, paint);
  if (opts.footer) out += paint(dim, "q or Ctrl-C quits") + "\n";
  return out;
}

}  // namespace sandlot::cli
