// Pure text for the operator: tables, sizes, durations, progress bars and the views of status,
// leases, why and runs. No I/O, so every line the CLI prints is unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <sandlot/protocol.hpp>

namespace sandlot::cli {

using row = std::vector<std::string>;

/// Columns padded to their widest cell (cells over `max_cell` columns are cut with "…"), two
/// spaces apart, trailing spaces dropped; one line per row, the header first.
std::string render_table(const row& header, const std::vector<row>& rows, std::size_t max_cell = 40);

/// Columns a UTF-8 string takes on a terminal (one per code point: no wide glyphs are printed).
std::size_t display_width(std::string_view text);
/// `text` cut to `width` columns, "…" marking a cut.
std::string fit_width(std::string_view text, std::size_t width);

/// "512 B", "1.5 KiB", "2.0 MiB", "1.2 GiB".
std::string human_bytes(std::int64_t bytes);
/// "0.4s", "12s", "3m05s", "2h04m".
std::string human_duration(double seconds);
/// "[#####-----]  50%" for `width` inner columns; "[?????]" style when the total is unknown.
std::string progress_bar(std::optional<std::int64_t> done, std::optional<std::int64_t> total, std::size_t width = 20);
/// "1.0 MiB / 2.0 MiB", or what is known of it.
std::string pull_bytes(const protocol::image_status& img);

/// `sandlot status`: budget, readiness, lanes, queue, pulls and runs.
std::string format_status(const protocol::status_view& st);
/// `sandlot leases`.
std::string format_leases(const std::vector<protocol::lease_view>& leases);
/// `sandlot why`.
std::string format_why(const protocol::why_view& why);
/// `sandlot runs`.
std::string format_runs(const std::vector<protocol::run_summary>& runs);
/// `sandlot report RUN`: the summary figures and one row per lease of the run JSON (docs/reports.md).
std::string format_report(const nlohmann::json& run);
/// A JUnit XML file of the run JSON: one testcase per lease, failed when its test failed or the
/// lease itself failed or expired.
std::string junit_xml(const nlohmann::json& run);
/// One line for a drain or resume answer.
std::string format_drain(const protocol::drain_view& d);
/// One line for a lease, e.g. after `release`.
std::string format_lease_line(const protocol::lease_view& l);

/// What a LEASE|TEST argument names among the live leases: an exact id, else an exact name, else
/// an exact test name (several leases may run the same test: all are returned).
std::vector<protocol::lease_view> match_leases(const std::vector<protocol::lease_view>& live, std::string_view key);
/// The candidates of an ambiguous key, one per line, for the error message.
std::string format_candidates(const std::vector<protocol::lease_view>& matches);

}  // namespace sandlot::cli
