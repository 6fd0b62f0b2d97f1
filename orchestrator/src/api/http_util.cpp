#include "http_util.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using json = nlohmann::json;
using protocol::api_error;
using protocol::errc;

http_response make_response(unsigned status, std::string body, std::string_view content_type,
                            unsigned version, bool keep_alive) {
  http_response res{static_cast<http::status>(status), version};
  res.set(http::field::server, "orchestratord");
  res.set(http::field::content_type, content_type);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

http_response json_response(unsigned status, const json& body, const http_request& req) {
  // Command output need not be UTF-8: invalid bytes become U+FFFD instead of failing the reply.
  return make_response(status, body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", "application/json",
                       req.version(), req.keep_alive());
}

target split_target(std::string_view t) {
  target out;
  if (auto q = t.find('?'); q != std::string_view::npos) {
    out.query = t.substr(q + 1);
    t = t.substr(0, q);
  }
  while (!t.empty()) {
    if (t.front() == '/') {
      t.remove_prefix(1);
      continue;
    }
    auto slash = t.find('/');
    out.segments.push_back(t.substr(0, slash));
    t = slash == std::string_view::npos ? std::string_view{} : t.substr(slash);
  }
  return out;
}

/// The value of the first pair for `key` in `query` (a=1&b=2); a bare `key` (no '=') counts, with
/// an empty value, only when `bare_counts`.
std::optional<std::string_view> query_value(std::string_view query, std::string_view key, bool bare_counts) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) != key) continue;
    if (eq != std::string_view::npos) return pair.substr(eq + 1);
    if (bare_counts) return std::string_view{};
  }
  return std::nullopt;
}

/// An integer query parameter, or `fallback` when absent; 400 when present but not a number.
int query_int(std::string_view query, std::string_view key, int fallback) {
  const auto value = query_value(query, key, /*bare_counts=*/true);
  if (!value) return fallback;
  int v = 0;
  auto [p, ec] = std::from_chars(value->data(), value->data() + value->size(), v);
  if (ec != std::errc{} || p != value->data() + value->size() || v < 0) {
    throw api_error(errc::invalid_field,
                    fmt::format("query parameter '{}' must be a non-negative integer of seconds", key));
  }
  return v;
}

/// A string query parameter (no percent-decoding: ids are plain), or empty when absent.
std::string query_string(std::string_view query, std::string_view key) {
  return std::string(query_value(query, key, /*bare_counts=*/false).value_or(std::string_view{}));
}

/// Percent-decoding of a query value ('+' stays '+'); 400 for a broken escape.
std::string url_decode(std::string_view s, std::string_view key) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    unsigned v = 0;
    if (i + 2 >= s.size() || std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr != s.data() + i + 3) {
      throw api_error(errc::invalid_field, fmt::format("query parameter '{}' has a broken %-escape", key));
    }
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

/// The file mode in `mode=` (octal, e.g. 0755), or 0644.
unsigned query_mode(std::string_view query) {
  const std::string text = query_string(query, "mode");
  if (text.empty()) return 0644;
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 8);
  if (ec != std::errc{} || p != text.data() + text.size() || v > 07777) {
    throw api_error(errc::invalid_field, "query parameter 'mode' must be octal permissions such as 0644 or 0755");
  }
  return v;
}

void check_run_id(std::string_view id) {
  const bool ok = !id.empty() && id.size() <= 200 && id.find_first_of("?#%") == std::string_view::npos;
  if (!ok) throw api_error(errc::not_found, "no such run: run ids are the leases' \"run\" field, up to 200 characters");
}

void check_lease_id(std::string_view id) {
  const bool ok = !id.empty() && id.size() <= 64 &&
                  id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz-") == std::string_view::npos;
  if (!ok) throw api_error(errc::not_found, fmt::format("no lease '{}': lease ids are lowercase hex", id.substr(0, 64)));
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// 415 unless the body is declared as `type`. A web page can send text/plain cross-site without
/// a preflight; it cannot send application/json.
void require_content_type(const http_request& req, std::string_view type) {
  const std::string got = media_type(req[http::field::content_type]);
  if (got == type) return;
  throw api_error(errc::unsupported_media_type,
                  fmt::format("{} {} takes a body with Content-Type: {}{}", std::string_view(req.method_string()),
                              std::string_view(req.target()).substr(0, 200), type,
                              got.empty() ? std::string(" (none was sent)") : fmt::format(", not {}", got.substr(0, 100))));
}

http_response error_response(errc code, std::string_view message, unsigned version, bool keep_alive) {
  // Messages quote the request target and query, which are raw bytes from the client: invalid
  // UTF-8 becomes U+FFFD. A strict dump would throw from inside router::handle's catch, and the
  // client would lose its connection instead of getting the 404 (found by orchestrator/fuzz).
  return make_response(static_cast<unsigned>(protocol::http_status(code)),
                       protocol::error_json(code, message).dump(-1, ' ', false, json::error_handler_t::replace) +
                           "\n",
                       "application/json", version, keep_alive);
}

bool host_allowed(std::string_view host_header, const std::vector<std::string>& allowed) {
  std::string_view host = host_header;
  if (!host.empty() && host.front() == '[') {
    const auto close = host.find(']');
    if (close == std::string_view::npos) return false;
    host = host.substr(1, close - 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string name = lowercase(host);
  if (!name.empty() && name.back() == '.') name.pop_back();  // "localhost." is localhost
  if (name.empty()) return false;
  if (name == "localhost") return true;
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(name, ec);
  if (!ec && addr.is_loopback()) return true;
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) { return lowercase(a) == name; });
}

std::string media_type(std::string_view content_type) {
  auto v = content_type.substr(0, content_type.find(';'));
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return lowercase(v);
}

}  // namespace sandlot::orchestrator
