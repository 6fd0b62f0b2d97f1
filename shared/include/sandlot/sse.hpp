// Server-sent events (text/event-stream), as GET /v1/events sends them: a pure, incremental parser
// with no I/O, so the stream reader and its tests share it.
//
//   sandlot::client::sse_parser p;
//   for (auto& ev : p.feed(bytes)) { if (ev.event == "status") ...; }
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sandlot::client {

/// One dispatched event: its type (`event:`, "message" when none), the last `id:` seen on the
/// stream, and its `data:` lines joined with '\n'.
struct sse_event {
  std::string event = "message";
  std::string id;
  std::string data;
};

/// Splits a byte stream into events following the WHATWG rules that matter here: lines end in
/// LF, CRLF or CR (even split across two feeds); `:` starts a comment (the daemon's keep-alive);
/// one space after the colon is dropped; a blank line dispatches an event that has data.
class sse_parser {
 public:
  /// Feeds the next bytes; returns the events they completed, oldest first.
  std::vector<sse_event> feed(std::string_view bytes);

 private:
  void take_line(std::string_view line, std::vector<sse_event>& out);

  std::string line_;        // a line not yet ended
  bool after_cr_ = false;   // the last byte was CR: a following LF belongs to it
  std::string event_;       // the event being built
  std::string data_;
  bool has_data_ = false;
  std::string last_id_;     // persists across events, as EventSource's lastEventId does
};

}  // namespace sandlot::client
