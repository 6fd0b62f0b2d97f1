// What every route needs from a request and for its response: query parameters, bodies, content
// types, and responses in the contract's shape. Shared by the route files (routes_*.cpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <sandlot/protocol.hpp>

#include "router.hpp"

namespace sandlot::orchestrator {

http_response make_response(unsigned status, std::string body, std::string_view content_type, unsigned version,
                            bool keep_alive);
/// JSON with invalid UTF-8 (command output) replaced by U+FFFD instead of failing the reply.
http_response json_response(unsigned status, const nlohmann::json& body, const http_request& req);

struct target {
  std::vector<std::string_view> segments;
  std::string_view query;
};
target split_target(std::string_view t);

/// The value of the first pair for `key` in `query` (a=1&b=2); a bare `key` (no '=') counts, with
/// an empty value, only when `bare_counts`.
std::optional<std::string_view> query_value(std::string_view query, std::string_view key, bool bare_counts);
/// An integer query parameter, or `fallback` when absent; 400 when present but not a number.
int query_int(std::string_view query, std::string_view key, int fallback);
/// A string query parameter (no percent-decoding: ids are plain), or empty when absent.
std::string query_string(std::string_view query, std::string_view key);
/// Percent-decoding of a query value ('+' stays '+'); 400 for a broken escape.
std::string url_decode(std::string_view s, std::string_view key);
/// The file mode in `mode=` (octal, e.g. 0755), or 0644.
unsigned query_mode(std::string_view query);

/// 404 unless `id` can name a run / a lease.
void check_run_id(std::string_view id);
void check_lease_id(std::string_view id);

std::string lowercase(std::string_view s);
/// 415 unless the body is declared as `type`. A web page can send text/plain cross-site without
/// a preflight; it cannot send application/json.
void require_content_type(const http_request& req, std::string_view type);

template <class T>
T json_body(const http_request& req) {
  require_content_type(req, "application/json");
  return protocol::parse_body<T>(req.body());
}

}  // namespace sandlot::orchestrator
