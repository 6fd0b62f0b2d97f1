#include "run_report.hpp"
#include "report_style.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>
#include <map>
#include <string_view>

#include <fmt/format.h>

namespace sandlot::orchestrator {

using json = nlohmann::json;

namespace {

// Where a lease's time stops counting: its end, or the moment the timeline was taken while live.
double end_or_now(const lease_record& l, double now_s) { return l.ended_s.value_or(now_s); }

// The time a lease held its slots; 0 for one that was never admitted.
double test_time(const lease_record& l, double now_s) {
  if (!l.admitted_s) return 0;
  return std::max(0.0, end_or_now(l, now_s) - *l.admitted_s);
}

bool lease_failed(const lease_record& l) { return l.state == "failed" || l.state == "expired"; }

// A failed lease, or a test that reported failure: both get the red outline and row mark.
bool lease_flagged(const lease_record& l) { return lease_failed(l) || l.test_outcome == "failed"; }

// Three decimals: milliseconds are the finest the daemon's clocks mean anything at.
double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

json optional_number(const std::optional<double>& v) {
  return v ? json(round3(*v)) : json(nullptr);
}

// The held part of an admitted lease, cut at its phase boundaries: at the gate [admitted,
// pulled), starting [pulled, ready), ready [ready, end). A phase never reached runs to the end,
// so a lease that failed at the gate is all gate. The clamps keep a filler's out-of-order stamps
// from drawing negative widths.
struct held_phases {
  double admitted = 0;
  double pulled = 0;
  double ready = 0;
  double end = 0;
};

held_phases phases_of(const lease_record& l, double now_s) {
  held_phases p;
  p.admitted = l.admitted_s.value_or(0);
  p.end = std::max(p.admitted, end_or_now(l, now_s));
  // Without a pull stamp, a lease that got ready left the gate after its pull_s; one that did not
  // is still there (or died there).
  const double pulled = l.pulled_s ? *l.pulled_s : l.ready_s ? p.admitted + l.pull_s : p.end;
  p.pulled = std::clamp(pulled, p.admitted, p.end);
  p.ready = std::clamp(l.ready_s.value_or(p.end), p.pulled, p.end);
  return p;
}

// HTML text and attribute values alike. Other C0 controls are not allowed in HTML text, so they
// become spaces rather than being passed through from a test name.
std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      case '\n':
      case '\t':
        out += c;
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == '\x7f') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// Code points in UTF-8 text (continuation bytes are not counted).
std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

// The first `n` code points, never cutting a multi-byte sequence in half.
std::string_view utf8_prefix(std::string_view s, std::size_t n) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == n) return s.substr(0, i);
      ++seen;
    }
  }
  return s;
}

std::string seconds(double s) {
  return std::abs(s) < 10 ? fmt::format("{:.2f} s", s) : fmt::format("{:.1f} s", s);
}

std::string at(const std::optional<double>& s) {
  return s ? fmt::format("+{:.2f} s", *s) : std::string("—");
}

// What a bar is called: the test when the client named one, else the lease.
const std::string& bar_label(const lease_record& l) {
  if (!l.test.empty()) return l.test;
  if (!l.name.empty()) return l.name;
  return l.id;
}

std::string locks_text(const std::vector<lock_record>& locks) {
  std::string out;
  for (const auto& lk : locks) {
    if (!out.empty()) out += ", ";
    out += lk.mode.empty() ? lk.name : fmt::format("{} ({})", lk.name, lk.mode);
  }
  return out;
}

std::string lanes_text(const std::vector<int>& lanes) {
  return fmt::format("{}", fmt::join(lanes, ", "));
}

// A tick step of 1, 2 or 5 × 10^k giving about `target` ticks over `span` seconds.
double tick_step(double span, int target) {
  const double raw = span / target;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double unit = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return unit * magnitude;
}

std::string tick_label(double t, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt::format("{:.{}f} s", t, decimals);
}

// The timeline's geometry, in viewBox units; the SVG scales to the page's width.
struct timeline_geometry {
  static constexpr double width = 1200;
  static constexpr double label_w = 76;  // "slot 12" to the left of the lanes
  static constexpr double right_pad = 20;
  static constexpr double top_pad = 12;
  static constexpr double lane_h = 30;
  static constexpr double lane_gap = 6;
  static constexpr double axis_h = 44;   // ticks, their labels and the axis caption
  static constexpr double char_w = 6.6;  // a label character at 11px, to decide what fits

  int lanes = 1;
  double t0 = 0;
  double t1 = 1;

  double plot_w() const { return width - label_w - right_pad; }
  double height() const { return top_pad + lanes * (lane_h + lane_gap) + axis_h; }
  double lanes_bottom() const { return top_pad + lanes * (lane_h + lane_gap) - lane_gap; }
  double lane_y(int lane) const { return top_pad + lane * (lane_h + lane_gap); }
  double x(double t) const { return label_w + (t - t0) / (t1 - t0) * plot_w(); }
};

void append_summary(std::string& out, const run_timeline& run, const run_summary& s) {
  const int slots = std::max(1, run.slots_total);
  auto row = [&](std::string_view figure, const std::string& value, const std::string& how) {
    fmt::format_to(
        std::back_inserter(out),
        "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"how\">{}</td></tr>\n",
        figure, value, how);
  };
  out +=
      "<table class=\"summary\">\n<thead><tr><th>Figure</th><th class=\"num\">Value</th>"
      "<th>How it is computed</th></tr></thead>\n<tbody>\n";
  row("Wall time", seconds(s.wall_s),
      run.ended ? "first lease queued → last lease ended"
                : "first lease queued → last lease ended, or now while leases live");
  row("Sum of test times", seconds(s.sum_test_s), "each admitted lease: admitted → ended (or now)");
  row("Speedup", fmt::format("{:.2f}×", s.speedup), "sum of test times ÷ wall time");
  row("Ideal", seconds(s.ideal_s),
      fmt::format("max(slot-seconds ÷ slots, longest test) = max({} ÷ {}, {})", seconds(s.slot_s),
                  slots, seconds(s.longest_s)));
  row("Efficiency", fmt::format("{:.1f}% ({:.3f})", s.efficiency * 100, s.efficiency),
      "ideal ÷ wall time");
  row("Queue time", seconds(s.queue_s), "sum over leases of queued → admitted (or now)");
  row("Pull time", seconds(s.pull_s), "sum over leases of time at the image gate");
  row("Leases", std::to_string(s.leases), "");
  row("Failed", std::to_string(s.failed), "leases that failed or expired");
  row("Slots", std::to_string(slots), "lanes in the timeline");
  out += "</tbody>\n</table>\n";
}

void append_segment(std::string& out, const timeline_geometry& g, std::string_view phase,
                    double from, double to, double y, double h) {
  if (to <= from) return;
  fmt::format_to(
      std::back_inserter(out),
      "<rect class=\"seg {}\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\"/>",
      phase, g.x(from), y, g.x(to) - g.x(from), h);
}

std::string bar_tooltip(const lease_record& l, const held_phases& p, bool live) {
  std::string t = fmt::format("{}\nlease {} ({})", l.test.empty() ? "(no test name)" : l.test,
                              l.name.empty() ? l.id : l.name, l.id);
  if (!l.sandbox.empty()) t += fmt::format("\nsandbox {}{}", l.sandbox, l.warm ? " (warm: from the pool, no create)" : "");
  if (!l.image.empty()) t += fmt::format("\nimage {}", l.image);
  t += fmt::format("\nstate {}{}", l.state,
                   l.test_outcome.empty() ? "" : ", test " + l.test_outcome);
  t += fmt::format("\nqueued {}  admitted {}  pulled {}  ready {}  ended {}", at(l.queued_s),
                   at(l.admitted_s), at(l.pulled_s), at(l.ready_s),
                   live ? std::string("(live)") : at(l.ended_s));
  t += fmt::format("\nat the gate {}  starting {}  ready {}  held {}",
                   seconds(p.pulled - p.admitted), seconds(p.ready - p.pulled),
                   seconds(p.end - p.ready), seconds(p.end - p.admitted));
  if (!l.locks.empty()) t += fmt::format("\nlocks {}", locks_text(l.locks));
  if (!l.error.empty()) t += fmt::format("\nerror {}", l.error);
  return t;
}

/// The axis's span: from the first queueing to the last end (or now), ending on a round tick.
timeline_geometry fit_geometry(const run_timeline& run, bool& any_live, double& step) {
  timeline_geometry g;
  g.lanes = std::max(1, run.slots_total);
  double last = 0;
  any_live = false;
  for (const auto& l : run.leases) {
    if (l.queued_s) g.t0 = std::min(g.t0, *l.queued_s);
    last = std::max(last, end_or_now(l, run.now_s));
    any_live = any_live || !l.ended_s;
  }
  if (any_live) last = std::max(last, run.now_s);
  g.t1 = last > g.t0 ? last : g.t0 + 1;
  step = tick_step(g.t1 - g.t0, 10);
  // The axis ends on a tick, so the last label is a round number.
  g.t1 = g.t0 + std::ceil((g.t1 - g.t0) / step - 1e-9) * step;
  return g;
}

// How the timeline's lanes are laid out: one per slot of the budget, or, when the run's leases ran
// on a pool of engines, grouped by engine.
struct lane_layout {
  std::vector<std::string> labels;      // one per lane, top to bottom
  std::vector<std::vector<int>> lanes;  // per lease of the run, in its order: the lanes of its bars
  bool by_engine = false;
};

lane_layout slot_lanes(const run_timeline& run) {
  lane_layout out;
  for (int i = 0; i < std::max(1, run.slots_total); ++i) out.labels.push_back(fmt::format("slot {}", i));
  for (const auto& l : run.leases) out.lanes.push_back(l.lanes);
  return out;
}

// With a pool the broker's slot lanes say nothing of where a lease ran, so each engine gets lanes
// of its own: its leases, by admission, each in the first lanes free at that moment (a wide lease
// in as many side by side), new lanes only when none are. Engines by name; leases admitted but
// never placed (failed at the gate, or no engine up) last, as "unplaced".
lane_layout engine_lanes(const run_timeline& run) {
  std::map<std::string, std::vector<std::size_t>> by_engine;
  std::vector<std::size_t> unplaced;
  for (std::size_t i = 0; i < run.leases.size(); ++i) {
    const auto& l = run.leases[i];
    if (!l.admitted_s) continue;
    (l.engine.empty() ? unplaced : by_engine[l.engine]).push_back(i);
  }
  lane_layout out;
  out.by_engine = true;
  out.lanes.resize(run.leases.size());
  const auto place = [&](const std::string& name, std::vector<std::size_t> group) {
    std::stable_sort(group.begin(), group.end(), [&](std::size_t a, std::size_t b) {
      return *run.leases[a].admitted_s < *run.leases[b].admitted_s;
    });
    const int base = static_cast<int>(out.labels.size());
    std::vector<double> free_at;  // per lane of this engine: when its last bar ends
    for (const std::size_t i : group) {
      const held_phases p = phases_of(run.leases[i], run.now_s);
      const std::size_t need = static_cast<std::size_t>(std::max(1, run.leases[i].slots));
      // The first run of `need` lanes free at its admission; lanes past the last one are free.
      std::size_t first = 0;
      for (std::size_t k = 0; k < first + need && k < free_at.size(); ++k) {
        if (free_at[k] > p.admitted + 1e-9) first = k + 1;
      }
      // Past the engine's slots: the lease was admitted before the engine had room and waited on
      // it (a bar starts at admission), so it goes in the lanes that freed soonest.
      const auto cap_at = run.engine_slots.find(name);
      const std::size_t cap = cap_at == run.engine_slots.end() ? 0 : static_cast<std::size_t>(std::max(0, cap_at->second));
      if (cap > 0 && need <= cap && first + need > cap) {
        double soonest = std::numeric_limits<double>::infinity();
        for (std::size_t k = 0; k + need <= cap; ++k) {
          double frees = 0;
          for (std::size_t j = k; j < k + need; ++j) frees = std::max(frees, j < free_at.size() ? free_at[j] : 0.0);
          if (frees < soonest) {
            soonest = frees;
            first = k;
          }
        }
      }
      if (first + need > free_at.size()) free_at.resize(first + need, 0);
      for (std::size_t j = first; j < first + need; ++j) {
        free_at[j] = p.end;
        out.lanes[i].push_back(base + static_cast<int>(j));
      }
    }
    // The label column holds about ten characters: a long engine name is cut.
    const std::string shown = code_points(name) <= 8 ? name : std::string(utf8_prefix(name, 7)) + "…";
    for (std::size_t k = 0; k < free_at.size(); ++k) out.labels.push_back(fmt::format("{} {}", shown, k));
  };
  for (auto& [name, group] : by_engine) place(name, std::move(group));
  if (!unplaced.empty()) place("unplaced", std::move(unplaced));
  if (out.labels.empty()) out.labels.push_back("—");
  return out;
}

lane_layout layout_of(const run_timeline& run) {
  const bool pooled = std::any_of(run.leases.begin(), run.leases.end(), [](const lease_record& l) {
    return !l.engine.empty();
  });
  return pooled ? engine_lanes(run) : slot_lanes(run);
}

/// The lanes, the time axis with its ticks and the grid.
void append_axes(std::string& out, const timeline_geometry& g, const std::vector<std::string>& labels, double step) {
  auto o = std::back_inserter(out);
  for (int lane = 0; lane < g.lanes; ++lane) {
    const double y = g.lane_y(lane);
    fmt::format_to(o, "<rect class=\"lane\" x=\"{}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{}\"/>",
                   timeline_geometry::label_w, y, g.plot_w(), timeline_geometry::lane_h);
    fmt::format_to(o, "<text class=\"lane-label\" x=\"{}\" y=\"{:.2f}\">{}</text>\n",
                   timeline_geometry::label_w - 10, y + timeline_geometry::lane_h / 2,
                   escape(labels.at(static_cast<std::size_t>(lane))));
  }
  const double axis_y = g.lanes_bottom() + 6;
  fmt::format_to(o, "<line class=\"axis\" x1=\"{}\" y1=\"{:.2f}\" x2=\"{:.2f}\" y2=\"{:.2f}\"/>\n",
                 timeline_geometry::label_w, axis_y, timeline_geometry::label_w + g.plot_w(),
                 axis_y);
  const int ticks = static_cast<int>(std::llround((g.t1 - g.t0) / step));
  for (int i = 0; i <= ticks; ++i) {
    const double t = g.t0 + i * step;
    const double x = g.x(t);
    fmt::format_to(
        o,
        "<line class=\"grid\" x1=\"{0:.2f}\" y1=\"{1}\" x2=\"{0:.2f}\" y2=\"{2:.2f}\"/>"
        "<line class=\"tick\" x1=\"{0:.2f}\" y1=\"{2:.2f}\" x2=\"{0:.2f}\" y2=\"{3:.2f}\"/>"
        "<text class=\"tick-label\" x=\"{0:.2f}\" y=\"{4:.2f}\">{5}</text>\n",
        x, timeline_geometry::top_pad - 4, axis_y, axis_y + 5, axis_y + 18, tick_label(t, step));
  }
  fmt::format_to(o,
                 "<text class=\"axis-caption\" x=\"{:.2f}\" y=\"{:.2f}\">seconds since the first "
                 "lease was queued</text>\n",
                 timeline_geometry::label_w + g.plot_w() / 2, axis_y + 36);
}

/// One admitted lease: a bar in each lane it held, its phases coloured, its label if it fits.
void append_bar(std::string& out, const timeline_geometry& g, const lease_record& l, const std::vector<int>& lanes,
                double now_s) {
  auto o = std::back_inserter(out);
  const bool live = !l.ended_s;
  const held_phases p = phases_of(l, now_s);
  const std::string tooltip = escape(bar_tooltip(l, p, live));
  const std::string& label = bar_label(l);
  for (int lane : lanes) {
    // A lane the run does not have has nowhere to be drawn.
    if (lane < 0 || lane >= g.lanes) continue;
    const double y = g.lane_y(lane) + 3;
    const double h = timeline_geometry::lane_h - 6;
    const double x0 = g.x(p.admitted);
    // A lease of a few milliseconds still shows as a sliver.
    const double w = std::max(2.0, g.x(p.end) - x0);
    fmt::format_to(o, "<g class=\"bar\"><title>{}</title>", tooltip);
    append_segment(out, g, "gate", p.admitted, p.pulled, y, h);
    append_segment(out, g, "starting", p.pulled, p.ready, y, h);
    // A lease served by a warm sandbox: its ready phase in its own colour, so a run shows at a
    // glance which tests started warm.
    append_segment(out, g, l.warm ? "ready warm" : "ready", p.ready, p.end, y, h);
    fmt::format_to(o,
                   "<rect class=\"outline{}{}\" x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" "
                   "height=\"{:.2f}\" rx=\"2\"/>",
                   lease_flagged(l) ? " failed" : "", live ? " live" : "", x0, y, w, h);
    const auto room =
        static_cast<std::size_t>(std::max(0.0, (w - 10) / timeline_geometry::char_w));
    if (room >= 4) {
      const std::string text =
          code_points(label) <= room ? label : std::string(utf8_prefix(label, room - 1)) + "…";
      fmt::format_to(o, "<text class=\"bar-label\" x=\"{:.2f}\" y=\"{:.2f}\">{}</text>", x0 + 5,
                     y + h / 2, escape(text));
    }
    out += "</g>\n";
  }
}

void append_timeline(std::string& out, const run_timeline& run) {
  bool any_live = false;
  double step = 1;
  timeline_geometry g = fit_geometry(run, any_live, step);
  const lane_layout layout = layout_of(run);
  g.lanes = static_cast<int>(layout.labels.size());
  auto o = std::back_inserter(out);
  fmt::format_to(o,
                 "<svg class=\"timeline\" viewBox=\"0 0 {} {:.0f}\" "
                 "width=\"100%\" preserveAspectRatio=\"xMinYMin meet\" role=\"img\" "
                 "aria-label=\"Timeline of the run's leases, {}\">\n",
                 timeline_geometry::width, g.height(),
                 layout.by_engine ? "lanes grouped by the engine each ran on" : "one lane per slot");
  // Lanes first, grid over them, bars on top.
  append_axes(out, g, layout.labels, step);
  for (std::size_t i = 0; i < run.leases.size(); ++i) {
    if (run.leases[i].admitted_s) append_bar(out, g, run.leases[i], layout.lanes[i], run.now_s);
  }
  const double axis_y = g.lanes_bottom() + 6;
  if (any_live && !run.ended) {
    const double x = g.x(run.now_s);
    fmt::format_to(o,
                   "<line class=\"now\" x1=\"{0:.2f}\" y1=\"{1}\" x2=\"{0:.2f}\" y2=\"{2:.2f}\"/>"
                   "<text class=\"now-label\" x=\"{3:.2f}\" y=\"{4}\">now</text>\n",
                   x, timeline_geometry::top_pad - 6, axis_y, x - 4,
                   timeline_geometry::top_pad + 4);
  }
  if (run.leases.empty()) {
    fmt::format_to(
        o, "<text class=\"empty\" x=\"{:.2f}\" y=\"{:.2f}\">No leases in this run{}</text>\n",
        timeline_geometry::label_w + g.plot_w() / 2,
        g.lanes_bottom() / 2 + timeline_geometry::top_pad / 2, run.ended ? "" : " yet");
  }
  out += "</svg>\n";
}

void append_legend(std::string& out) {
  out +=
      "<ul class=\"legend\">"
      "<li><span class=\"swatch gate\"></span>at the image gate (admitted → pulled)</li>"
      "<li><span class=\"swatch starting\"></span>starting the sandbox (pulled → ready)</li>"
      "<li><span class=\"swatch ready\"></span>ready, test running (ready → released)</li>"
      "<li><span class=\"swatch warm\"></span>ready, served by a warm sandbox (--warm)</li>"
      "<li><span class=\"swatch failed\"></span>failed or expired lease, or failed test</li>"
      "<li><span class=\"swatch live\"></span>still held when the report was taken</li>"
      "</ul>\n";
}

void append_leases(std::string& out, const run_timeline& run) {
  if (run.leases.empty()) {
    out += "<p class=\"none\">No leases.</p>\n";
    return;
  }
  out +=
      "<div class=\"scroll\"><table "
      "class=\"leases\">\n<thead><tr><th>Test</th><th>Lease</th><th>State</th>"
      "<th>Outcome</th><th class=\"num\">Queued</th><th class=\"num\">Wait</th><th "
      "class=\"num\">Gate</th>"
      "<th class=\"num\">Start</th><th class=\"num\">Run</th><th "
      "class=\"num\">Held</th><th class=\"num\" title=\"hold time the scheduler expected when it admitted "
      "the lease (learned from earlier runs, else the run's average); backfill: admitted past a wide lease's "
      "reservation\">Expected</th><th title=\"the broker's slot lanes; with a pool, and the engine it ran on\">Lanes</th>"
      "<th>Locks</th><th>Error</th></tr></thead>\n<tbody>\n";
  auto o = std::back_inserter(out);
  for (const auto& l : run.leases) {
    const double end = end_or_now(l, run.now_s);
    std::string wait = "—";
    if (l.queued_s) wait = seconds(std::max(0.0, l.admitted_s.value_or(end) - *l.queued_s));
    std::string gate = "—", start = "—", ran = "—", held = "—";
    if (l.admitted_s) {
      const held_phases p = phases_of(l, run.now_s);
      gate = seconds(p.pulled - p.admitted);
      start = seconds(p.ready - p.pulled);
      ran = seconds(p.end - p.ready);
      held = seconds(p.end - p.admitted);
    }
    const std::string outcome = l.test_outcome.empty() ? "—" : l.test_outcome;
    std::string expected = l.expected_s && *l.expected_s > 0 ? seconds(*l.expected_s) : "—";
    if (l.backfilled) expected += " backfill";
    fmt::format_to(o,
                   "<tr{}><td class=\"test\">{}</td><td class=\"nw\" title=\"{}\">{}</td><td "
                   "class=\"nw\">{}{}</td>"
                   "<td><span class=\"outcome {}\">{}</span></td><td class=\"num\">{}</td><td "
                   "class=\"num\">{}</td>"
                   "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td "
                   "class=\"num\">{}</td><td class=\"num nw\">{}</td>"
                   "<td class=\"nw\">{}</td><td>{}</td><td class=\"error\">{}</td></tr>\n",
                   lease_flagged(l) ? " class=\"failed\"" : "", escape(l.test), escape(l.id),
                   escape(l.name.empty() ? l.id : l.name), escape(l.state),
                   l.ended_s ? "" : " (live)", escape(l.test_outcome), escape(outcome),
                   at(l.queued_s), wait, gate, start, ran, held, expected,
                   l.engine.empty() ? lanes_text(l.lanes) : fmt::format("{} on {}", lanes_text(l.lanes), escape(l.engine)),
                   escape(locks_text(l.locks)), escape(l.error));
  }
  out += "</tbody>\n</table></div>\n";
}

void append_fixtures(std::string& out, const run_timeline& run) {
  if (run.fixtures.empty()) {
    out += "<p class=\"none\">No fixtures in this run.</p>\n";
    return;
  }
  out +=
      "<div class=\"scroll\"><table "
      "class=\"fixtures\">\n<thead><tr><th>Fixture</th><th>Id</th><th>State</th>"
      "<th class=\"num\">Port</th><th class=\"num\">Created</th><th class=\"num\">Ready</th>"
      "<th class=\"num\">Ended</th><th class=\"num\">Creations</th><th class=\"num\">Holders</th>"
      "<th class=\"num\">Acquisitions</th></tr></thead>\n<tbody>\n";
  auto o = std::back_inserter(out);
  for (const auto& f : run.fixtures) {
    fmt::format_to(
        o,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>"
        "<td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td "
        "class=\"num\">{}</td>"
        "<td class=\"num\">{}</td></tr>\n",
        escape(f.name), escape(f.id), escape(f.state), f.port ? std::to_string(*f.port) : "—",
        at(f.created_s), at(f.ready_s), at(f.ended_s), f.creations, f.holders, f.acquisitions);
  }
  out += "</tbody>\n</table></div>\n";
}


}  // namespace

run_summary summarize(const run_timeline& run) {
  run_summary s;
  s.leases = static_cast<int>(run.leases.size());
  if (run.leases.empty()) return s;

  double first = std::numeric_limits<double>::infinity();
  double last = -std::numeric_limits<double>::infinity();
  for (const auto& l : run.leases) {
    const double end = end_or_now(l, run.now_s);
    last = std::max(last, end);
    if (l.queued_s) {
      first = std::min(first, *l.queued_s);
      // One that was never admitted waited until it ended (cancelled) or until now.
      s.queue_s += std::max(0.0, l.admitted_s.value_or(end) - *l.queued_s);
    }
    if (lease_failed(l)) ++s.failed;
    s.pull_s += l.pull_s;
    if (l.admitted_s) {
      const double t = test_time(l, run.now_s);
      s.sum_test_s += t;
      s.slot_s += t * l.slots;
      s.longest_s = std::max(s.longest_s, t);
    }
  }
  // Times count from the first queueing, so a timeline without queue stamps starts at 0.
  if (!std::isfinite(first)) first = 0;
  s.wall_s = std::max(0.0, last - first);
  s.ideal_s = std::max(s.slot_s / std::max(1, run.slots_total), s.longest_s);
  if (s.wall_s > 0) {
    s.speedup = s.sum_test_s / s.wall_s;
    s.efficiency = s.ideal_s / s.wall_s;
  }
  return s;
}

json to_json(const run_timeline& run) {
  const run_summary s = summarize(run);
  json leases = json::array();
  for (const auto& l : run.leases) {
    json locks = json::array();
    for (const auto& lk : l.locks) locks.push_back({{"name", lk.name}, {"mode", lk.mode}});
    leases.push_back({{"id", l.id},
                      {"name", l.name},
                      {"test", l.test},
                      {"image", l.image},
                      {"state", l.state},
                      {"test_outcome", l.test_outcome},
                      {"slots", l.slots},
                      {"lanes", l.lanes},
                      {"locks", std::move(locks)},
                      {"queued_s", optional_number(l.queued_s)},
                      {"admitted_s", optional_number(l.admitted_s)},
                      {"pulled_s", optional_number(l.pulled_s)},
                      {"ready_s", optional_number(l.ready_s)},
                      {"ended_s", optional_number(l.ended_s)},
                      {"pull_s", round3(l.pull_s)},
                      {"expected_s", optional_number(l.expected_s)},
                      {"backfilled", l.backfilled},
                      {"sandbox", l.sandbox},
                      {"engine", l.engine},
                      {"warm", l.warm},
                      {"error", l.error}});
  }
  json fixtures = json::array();
  for (const auto& f : run.fixtures) {
    fixtures.push_back({{"id", f.id},
                        {"name", f.name},
                        {"state", f.state},
                        {"creations", f.creations},
                        {"holders", f.holders},
                        {"acquisitions", f.acquisitions},
                        {"port", f.port ? json(*f.port) : json(nullptr)},
                        {"created_s", optional_number(f.created_s)},
                        {"ready_s", optional_number(f.ready_s)},
                        {"ended_s", optional_number(f.ended_s)}});
  }
  return {{"run", run.run},
          {"slots_total", run.slots_total},
          {"started_at", run.started_at},
          {"started_unix_s", run.started_unix_s},
          {"now_s", round3(run.now_s)},
          {"ended", run.ended},
          {"summary",
           {{"leases", s.leases},
            {"failed", s.failed},
            {"wall_s", round3(s.wall_s)},
            {"sum_test_s", round3(s.sum_test_s)},
            {"slot_s", round3(s.slot_s)},
            {"longest_s", round3(s.longest_s)},
            {"ideal_s", round3(s.ideal_s)},
            {"speedup", round3(s.speedup)},
            {"efficiency", round3(s.efficiency)},
            {"queue_s", round3(s.queue_s)},
            {"pull_s", round3(s.pull_s)}}},
          {"leases", std::move(leases)},
          {"fixtures", std::move(fixtures)},
          {"engines", run.engine_slots.empty() ? json::object() : json(run.engine_slots)},
          {"images", run.images}};
}

std::string render_html(const run_timeline& run) {
  const run_summary s = summarize(run);
  const std::string run_name = escape(run.run);
  std::string out;
  out.reserve(16384 + run.leases.size() * 1500);
  auto o = std::back_inserter(out);
  fmt::format_to(o,
                 "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                 "<title>Sandlot run {}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n"
                 "<h1>Sandlot run {}</h1>\n",
                 run_name, report_style::style_sheet, run_name);
  fmt::format_to(o, "<p class=\"meta\">Started {} · {} slot{} · {}</p>\n",
                 run.started_at.empty() ? std::string("—") : escape(run.started_at),
                 std::max(1, run.slots_total), run.slots_total == 1 ? "" : "s",
                 run.ended
                     ? fmt::format("ended; taken {} after the start", seconds(run.now_s))
                     : fmt::format("in progress; taken {} after the start", seconds(run.now_s)));

  out += "<section>\n<h2>Summary</h2>\n";
  append_summary(out, run, s);
  out += "</section>\n<section>\n<h2>Timeline</h2>\n";
  append_timeline(out, run);
  append_legend(out);
  out += "</section>\n<section>\n<h2>Leases</h2>\n";
  append_leases(out, run);
  out += "</section>\n<section>\n<h2>Fixtures</h2>\n";
  append_fixtures(out, run);
  out += "</section>\n</main>\n</body>\n</html>\n";
  return out;
}

}  // namespace sandlot::orchestrator
