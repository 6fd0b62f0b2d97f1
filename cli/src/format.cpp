#include "format.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace sandlot::cli {
namespace {

using protocol::lease_state;

std::string or_dash(std::string_view s) { return s.empty() ? std::string("-") : std::string(s); }

std::string short_id(std::string_view id) { return std::string(id.substr(0, 12)); }

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        // XML 1.0 has no place for most control characters; a test name should not carry them.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\t') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

double number_or(const nlohmann::json& j, const char* key, double fallback = 0) {
  auto it = j.find(key);
  return (it != j.end() && it->is_number()) ? it->get<double>() : fallback;
}

std::string string_or(const nlohmann::json& j, const char* key, std::string fallback = {}) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : fallback;
}

std::string lane_row_state(const protocol::lane_view& lane) {
  if (!lane.lease) return "free";
  std::string s(protocol::to_string(lane.state));
  return lane.retiring ? s + " (retiring)" : s;
}

row lane_row(const protocol::lane_view& lane) {
  if (!lane.lease) return {std::to_string(lane.lane), lane.retiring ? "free (retiring)" : "free"};
  return {std::to_string(lane.lane), lane_row_state(lane), short_id(*lane.lease), lane.name, lane.test,
          lane.run, human_duration(lane.since_s)};
}

std::string lanes_block(const protocol::status_view& st) {
  std::vector<row> rows;
  for (const auto& lane : st.lanes) rows.push_back(lane_row(lane));
  return render_table({"LANE", "STATE", "LEASE", "NAME", "TEST", "RUN", "SINCE"}, rows);
}

std::string pulls_block(const std::vector<protocol::image_status>& images) {
  std::vector<row> rows;
  for (const auto& img : images) {
    if (img.state != "pulling" && img.state != "waiting") continue;
    rows.push_back({img.image, img.state, progress_bar(img.bytes_done, img.bytes_total), pull_bytes(img),
                    img.since_s ? human_duration(*img.since_s) : "-", std::to_string(img.waiters)});
  }
  if (rows.empty()) return "no pulls in flight\n";
  return render_table({"IMAGE", "STATE", "PROGRESS", "BYTES", "SINCE", "WAITERS"}, rows, 60);
}

std::string queue_block(const std::vector<protocol::lease_view>& leases) {
  std::vector<row> rows;
  for (const auto& l : leases) {
    if (l.state != lease_state::queued && l.state != lease_state::pulling && l.state != lease_state::starting) continue;
    rows.push_back({l.position ? std::to_string(*l.position) : "-", short_id(l.id), l.name, l.test,
                    std::string(protocol::to_string(l.state)), or_dash(l.waiting_for.value_or("")),
                    l.since_s ? human_duration(*l.since_s) : "-"});
  }
  if (rows.empty()) return "nothing waits\n";
  return render_table({"POS", "LEASE", "NAME", "TEST", "STATE", "WAITING FOR", "SINCE"}, rows);
}

}  // namespace

std::size_t display_width(std::string_view text) {
  return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0u) != 0x80u;  // not a UTF-8 continuation byte
  }));
}

std::string fit_width(std::string_view text, std::size_t width) {
  if (display_width(text) <= width) return std::string(text);
  if (width == 0) return {};
  std::string out;
  std::size_t cols = 0;
  for (char c : text) {
    const bool starts_code_point = (static_cast<unsigned char>(c) & 0xC0u) != 0x80u;
    if (starts_code_point && ++cols > width - 1) break;
    out += c;
  }
  return out + "…";
}

std::string render_table(const row& header, const std::vector<row>& rows, std::size_t max_cell) {
  std::vector<std::size_t> widths(header.size(), 0);
  auto widen = [&](const row& r) {
    for (std::size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], std::min(display_width(r[i]), max_cell));
    }
  };
  widen(header);
  for (const auto& r : rows) widen(r);
  auto line = [&](const row& r) {
    std::string out;
    for (std::size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      std::string cell = fit_width(r[i], max_cell);
      out += cell;
      if (i + 1 < r.size()) out += std::string(widths[i] - display_width(cell) + 2, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header);
  for (const auto& r : rows) out += line(r);
  return out;
}

std::string human_bytes(std::int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  constexpr const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  value /= 1024.0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, units[unit]);
}

std::string human_duration(double seconds) {
  if (!(seconds >= 0)) return "-";
  if (seconds < 10) return fmt::format("{:.1f}s", seconds);
  auto whole = static_cast<long long>(seconds);
  if (whole < 60) return fmt::format("{}s", whole);
  if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
  return fmt::format("{}h{:02}m", whole / 3600, (whole % 3600) / 60);
}

std::string progress_bar(std::optional<std::int64_t> done, std::optional<std::int64_t> total, std::size_t width) {
  if (!done || !total || *total <= 0) return fmt::format("[{}]    ?", std::string(width, '?'));
  const double fraction = std::clamp(static_cast<double>(*done) / static_cast<double>(*total), 0.0, 1.0);
  const auto filled = static_cast<std::size_t>(std::floor(fraction * static_cast<double>(width)));
  return fmt::format("[{}{}] {:3}%", std::string(filled, '#'), std::string(width - filled, '-'),
                     static_cast<int>(std::floor(fraction * 100.0)));
}

std::string pull_bytes(const protocol::image_status& img) {
  if (!img.bytes_done && !img.bytes_total) return "-";
  return fmt::format("{} / {}", img.bytes_done ? human_bytes(*img.bytes_done) : "?",
                     img.bytes_total ? human_bytes(*img.bytes_total) : "?");
}

std::string format_status(const protocol::status_view& st) {
  std::string out = fmt::format("{}\n", st.instance.empty() ? "orchestratord" : st.instance);
  out += fmt::format("ready     {}\n", st.ready ? "yes" : "no (prepulling)");
  out += fmt::format("draining  {}\n", st.draining ? "yes: nothing new is admitted (sandlot resume)" : "no");
  out += fmt::format("slots     {} of {} in use\n", st.slots_in_use, st.slots_total);
  out += fmt::format("queue     {}\n", st.queue_length);
  out += "\nLANES\n" + lanes_block(st);
  out += "\nWAITING\n" + queue_block(st.leases);
  out += "\nPULLS\n" + pulls_block(st.images);
  out += "\nRUNS\n" + format_runs(st.runs);
  return out;
}

std::string format_leases(const std::vector<protocol::lease_view>& leases) {
  if (leases.empty()) return "no live leases\n";
  std::vector<row> rows;
  for (const auto& l : leases) {
    rows.push_back({l.id, l.name, l.test, l.run, std::string(protocol::to_string(l.state)), std::to_string(l.slots),
                    or_dash(l.waiting_for.value_or("")), l.position ? std::to_string(*l.position) : "-",
                    l.since_s ? human_duration(*l.since_s) : "-"});
  }
  return render_table({"ID", "NAME", "TEST", "RUN", "STATE", "SLOTS", "WAITING FOR", "POS", "SINCE"}, rows);
}

std::string format_why(const protocol::why_view& why) {
  const auto& l = why.lease;
  std::string out = fmt::format("lease     {} ({})\n", l.id, l.name);
  out += fmt::format("test      {}\nrun       {}\n", or_dash(l.test), or_dash(l.run));
  std::string where = l.position ? fmt::format(", position {} in the queue", *l.position) : std::string();
  out += fmt::format("state     {} for {}{}\n", protocol::to_string(l.state), human_duration(why.since_s), where);
  out += fmt::format("waiting   {}\n", why.waiting_for.value_or("nothing"));
  if (!why.summary.empty()) out += fmt::format("summary   {}\n", why.summary);
  if (l.error) out += fmt::format("error     {}: {}\n", l.error->code, l.error->message);
  if (!why.holders.empty()) {
    std::vector<row> rows;
    for (const auto& h : why.holders) {
      rows.push_back({h.lease, h.name, h.test, h.run, std::to_string(h.slots), human_duration(h.since_s)});
    }
    out += "\nHELD BY\n" + render_table({"LEASE", "NAME", "TEST", "RUN", "SLOTS", "HELD FOR"}, rows);
  }
  if (why.pull) {
    const auto& p = *why.pull;
    out += fmt::format("\nPULL      {} {} {} {} for {}\n", p.image, p.state, progress_bar(p.bytes_done, p.bytes_total),
                       pull_bytes(p), p.since_s ? human_duration(*p.since_s) : "-");
  }
  return out;
}

std::string format_runs(const std::vector<protocol::run_summary>& runs) {
  if (runs.empty()) return "no runs\n";
  std::vector<row> rows;
  for (const auto& r : runs) {
    rows.push_back({r.run, r.started_at, std::to_string(r.leases - std::min(r.leases, r.live_leases)),
                    std::to_string(r.live_leases), std::to_string(r.fixtures), r.ended ? "yes" : "no"});
  }
  return render_table({"RUN", "STARTED", "DONE", "LEFT", "FIXTURES", "ENDED"}, rows);
}

std::string format_report(const nlohmann::json& run) {
  const nlohmann::json empty = nlohmann::json::object();
  const auto& sum = run.contains("summary") && run["summary"].is_object() ? run["summary"] : empty;
  std::string out = fmt::format("run       {}\nstarted   {}\nended     {}\n", string_or(run, "run"),
                                string_or(run, "started_at"), run.value("ended", false) ? "yes" : "no");
  out += fmt::format("leases    {} ({} failed)\n", number_or(sum, "leases"), number_or(sum, "failed"));
  out += fmt::format("wall      {}  (ideal {}, longest test {})\n", human_duration(number_or(sum, "wall_s")),
                     human_duration(number_or(sum, "ideal_s")), human_duration(number_or(sum, "longest_s")));
  out += fmt::format("speedup   {:.2f}  efficiency {:.0f}%\n", number_or(sum, "speedup"),
                     number_or(sum, "efficiency") * 100.0);
  out += fmt::format("waited    {} in the queue, {} pulling\n", human_duration(number_or(sum, "queue_s")),
                     human_duration(number_or(sum, "pull_s")));
  std::vector<row> rows;
  if (run.contains("leases") && run["leases"].is_array()) {
    for (const auto& l : run["leases"]) {
      const double ready = number_or(l, "ready_s", -1);
      const double ended = number_or(l, "ended_s", -1);
      rows.push_back({string_or(l, "test"), string_or(l, "state"), or_dash(string_or(l, "test_outcome")),
                      ready >= 0 && ended >= ready ? human_duration(ended - ready) : "-",
                      or_dash(string_or(l, "error"))});
    }
  }
  if (!rows.empty()) out += "\n" + render_table({"TEST", "STATE", "OUTCOME", "HELD", "ERROR"}, rows, 60);
  return out;
}

std::string junit_xml(const nlohmann::json& run) {
  const std::string run_id = string_or(run, "run");
  std::string cases;
  int tests = 0;
  int failures = 0;
  if (run.contains("leases") && run["leases"].is_array()) {
    for (const auto& l : run["leases"]) {
      ++tests;
      const std::string state = string_or(l, "state");
      const std::string error = string_or(l, "error");
      const double ready = number_or(l, "ready_s", -1);
      const double ended = number_or(l, "ended_s", -1);
      const double time = ready >= 0 && ended >= ready ? ended - ready : 0;
      const std::string test = string_or(l, "test", string_or(l, "name"));
      cases += fmt::format("  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3f}\">\n", xml_escape(run_id),
                           xml_escape(test), time);
      const bool failed = string_or(l, "test_outcome") == "failed" || state == "failed" || state == "expired";
      if (failed) {
        ++failures;
        std::string message = error.empty() ? fmt::format("the test failed (lease {})", string_or(l, "name")) : error;
        cases += fmt::format("    <failure message=\"{}\">lease {} ended {}</failure>\n", xml_escape(message),
                             xml_escape(string_or(l, "name")), xml_escape(state));
      }
      cases += "  </testcase>\n";
    }
  }
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3f}\">\n{}</testsuite>\n",
      xml_escape(run_id), tests, failures,
      run.contains("summary") ? number_or(run["summary"], "wall_s") : 0.0, cases);
}

std::string format_drain(const protocol::drain_view& d) {
  return fmt::format("draining {}, drained {}: {} slots in use, {} live leases, {} queued\n", d.draining ? "yes" : "no",
                     d.drained ? "yes" : "no", d.slots_in_use, d.live, d.queue_length);
}

std::string format_lease_line(const protocol::lease_view& l) {
  std::string out = fmt::format("{} {} {}", l.id, l.name, protocol::to_string(l.state));
  if (l.error) out += fmt::format(" ({}: {})", l.error->code, l.error->message);
  return out + "\n";
}

std::vector<protocol::lease_view> match_leases(const std::vector<protocol::lease_view>& live, std::string_view key) {
  using field = std::string protocol::lease_view::*;
  for (field f : {&protocol::lease_view::id, &protocol::lease_view::name, &protocol::lease_view::test}) {
    std::vector<protocol::lease_view> found;
    std::copy_if(live.begin(), live.end(), std::back_inserter(found),
                 [&](const protocol::lease_view& l) { return l.*f == key; });
    if (!found.empty()) return found;
  }
  return {};
}

std::string format_candidates(const std::vector<protocol::lease_view>& matches) {
  std::string out;
  for (const auto& l : matches) {
    out += fmt::format("  {}  {}  {}  {}\n", l.id, l.name, protocol::to_string(l.state), l.run);
  }
  return out;
}

}  // namespace sandlot::cli
