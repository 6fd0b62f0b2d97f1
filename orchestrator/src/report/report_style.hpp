// The run report's style sheet: inline in every report page (no external resources), kept apart
// from the code that writes the page.
#pragma once

#include <string_view>

namespace sandlot::orchestrator::report_style {

// System fonts only: the page is opened from a daemon on a machine that may have no network.
inline constexpr std::string_view style_sheet = R"css(
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --paper: #ffffff; --back: #f3f5f7;
  --gate: #f2a93b; --starting: #5b8ed8; --ready: #48a868; --failed: #d1242f; --warm: #1f9e9a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--back); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1400px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; word-break: break-all; }
h2 { font-size: 16px; margin: 0 0 10px; }
.meta { color: var(--muted); margin: 0 0 14px; }
section { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px;
  margin: 0 0 16px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: var(--muted);
  border-bottom: 2px solid var(--line); }
.num { text-align: right; white-space: nowrap; }
.nw { white-space: nowrap; }
table.summary th[scope=row] { font-weight: 600; white-space: nowrap; }
table.summary td.num { font-size: 15px; font-weight: 600; }
td.how { color: var(--muted); }
.scroll { overflow-x: auto; }
table.leases, table.fixtures { width: 100%; font-size: 13px; }
td.test { word-break: break-word; max-width: 360px; }
td.error { color: var(--failed); word-break: break-word; max-width: 320px; }
tr.failed td:first-child { box-shadow: inset 3px 0 0 var(--failed); }
.outcome.passed { color: var(--ready); font-weight: 600; }
.outcome.failed { color: var(--failed); font-weight: 600; }
.none { color: var(--muted); margin: 0; }
svg.timeline { display: block; height: auto; }
svg text { font-family: inherit; }
.lane { fill: #eef1f4; }
.lane-label { font-size: 12px; fill: var(--muted); text-anchor: end; dominant-baseline: central; }
.grid { stroke: #d5dbe1; stroke-width: 1; stroke-dasharray: 2 3; }
.axis, .tick { stroke: #8c959f; stroke-width: 1; }
.tick-label { font-size: 11px; fill: var(--muted); text-anchor: middle; }
.axis-caption { font-size: 12px; fill: var(--muted); text-anchor: middle; }
.seg.gate, .swatch.gate { fill: var(--gate); background: var(--gate); }
.seg.starting, .swatch.starting { fill: var(--starting); background: var(--starting); }
.seg.ready, .swatch.ready { fill: var(--ready); background: var(--ready); }
.seg.ready.warm, .swatch.warm { fill: var(--warm); background: repeating-linear-gradient(135deg, var(--warm) 0 4px, #5cc4bf 4px 7px); }
.outline { fill: none; stroke: rgba(31, 35, 40, .35); stroke-width: 1; }
.outline.failed { stroke: var(--failed); stroke-width: 2.5; }
.outline.live { stroke-dasharray: 5 3; }
.bar-label { font-size: 11px; fill: #10161c; dominant-baseline: central; pointer-events: none; }
.bar:hover .outline { stroke: var(--ink); stroke-width: 2; }
.now { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 4 3; }
.now-label { font-size: 11px; fill: var(--ink); text-anchor: end; }
.empty { font-size: 14px; fill: var(--muted); text-anchor: middle; dominant-baseline: central; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 6px 22px; padding: 0; margin: 12px 0 0;
  color: var(--muted); font-size: 13px; }
.legend li { display: flex; align-items: center; gap: 7px; }
.swatch { display: inline-block; width: 26px; height: 14px; border-radius: 2px;
  border: 1px solid rgba(31, 35, 40, .35); }
.swatch.failed { background: var(--paper); border: 2.5px solid var(--failed); }
.swatch.live { background: var(--paper); border: 1.5px dashed var(--ink); }
)css";

}  // namespace sandlot::orchestrator::report_style
