// One frame of `sandlot watch`: a pure function of the daemon's status, so that the live view,
// `--once`, the plain-line mode and the tests all print the same text.
#pragma once

#include <string>

#include <sandlot/protocol.hpp>

namespace sandlot::cli {

struct frame_options {
  std::string run;       // only this run's leases in the queue (lanes of other runs say so); empty: all
  bool colour = false;   // ANSI SGR colours (a terminal); plain text otherwise
  bool footer = false;   // the "q quits" line of the live view
};

/// Header (instance, slots, queue, draining, readiness), one row per slot lane, the queue with
/// what each lease waits for, pull progress bars, and each run's done/left.
std::string render_frame(const protocol::status_view& st, const frame_options& opts);

}  // namespace sandlot::cli
