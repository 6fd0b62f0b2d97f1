#include "router.hpp"

#include "metrics_text.hpp"
#include "run_report.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <string_view>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/system_error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/verb.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "async_event.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using json = nlohmann::json;
using protocol::api_error;
using protocol::errc;

namespace {

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

struct target {
  std::vector<std::string_view> segments;
  std::string_view query;
};

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

template <class T>
T json_body(const http_request& req) {
  require_content_type(req, "application/json");
  return protocol::parse_body<T>(req.body());
}

[[noreturn]] void method_not_allowed(const http_request& req, std::string_view allowed) {
  throw api_error(errc::method_not_allowed, fmt::format("{} is not supported on {}; use {}",
                                                        std::string_view(req.method_string()),
                                                        std::string_view(req.target()), allowed));
}

}  // namespace

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

std::string router::refusal(const http_request& req) const {
  const std::string_view host = req[http::field::host];
  // A request without Host (HTTP/1.0) is not from a browser; browsers always send one.
  if (policy_.token.empty() && req.find(http::field::host) != req.end() &&
      !host_allowed(host, policy_.allowed_hosts)) {
    return fmt::format("Host '{}' does not name this daemon: without --token-file orchestratord only answers "
                       "requests addressed to a loopback name or address (a web page could otherwise reach it "
                       "through DNS rebinding); call it as http://127.0.0.1:PORT, or start it with --allow-host "
                       "NAME (or SANDLOT_ALLOW_HOSTS=NAME)",
                       host.substr(0, 200));
  }
  if (auto it = req.find(http::field::origin); it != req.end()) {
    const std::string origin = lowercase(it->value());
    // The daemon's own pages (the dashboard to come) are same-origin.
    const bool own = !host.empty() && origin == "http://" + lowercase(host);
    const bool listed = std::any_of(policy_.allowed_origins.begin(), policy_.allowed_origins.end(),
                                    [&](const std::string& o) { return lowercase(o) == origin; });
    if (!own && !listed) {
      return fmt::format("requests from web pages (Origin '{}') are refused: a page must not drive sandboxes; "
                         "call the API from a test or script, or start orchestratord with --allow-origin {}",
                         std::string_view(it->value()).substr(0, 200), std::string_view(it->value()).substr(0, 200));
    }
  }
  return {};
}

bool router::authorized(const http_request& req) const {
  const std::string& token_ = policy_.token;
  if (token_.empty()) return true;
  const std::string_view target = req.target();
  if (target == "/healthz" || target.rfind("/healthz?", 0) == 0) return true;
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return false;
  std::string_view got = it->value();
  constexpr std::string_view scheme = "Bearer ";
  if (got.size() < scheme.size() || !boost::beast::iequals(got.substr(0, scheme.size()), scheme)) return false;
  got.remove_prefix(scheme.size());
  // Constant time in the token: every byte of it is compared whatever the presented value is.
  unsigned diff = got.size() == token_.size() ? 0U : 1U;
  for (std::size_t i = 0; i < token_.size(); ++i) {
    const unsigned char theirs = i < got.size() ? static_cast<unsigned char>(got[i]) : 0;
    diff |= static_cast<unsigned>(static_cast<unsigned char>(token_[i]) ^ theirs);
  }
  return diff == 0;
}

void router::add_stream(std::string path, stream_handler h) { streams_[std::move(path)] = std::move(h); }

const stream_handler* router::stream_for(const http_request& req) const {
  if (streams_.empty() || req.method() != http::verb::get) return nullptr;
  const std::string_view target = req.target();
  auto it = streams_.find(target.substr(0, target.find('?')));
  if (it == streams_.end() || !refusal(req).empty() || !authorized(req)) return nullptr;
  return &it->second;
}

asio::awaitable<http_response> router::handle(const http_request& req) {
  if (auto why = refusal(req); !why.empty()) {
    co_return error_response(errc::forbidden, why, req.version(), false);
  }
  if (!authorized(req)) {
    // Says nothing about the daemon, its routes or the token beyond that one is needed.
    auto res = error_response(errc::unauthorized,
                              "this orchestratord needs Authorization: Bearer <token>; set SANDLOT_TOKEN to the "
                              "token its operator gave you",
                              req.version(), req.keep_alive());
    res.set(http::field::www_authenticate, "Bearer");
    co_return res;
  }
  try {
    co_return co_await dispatch(req);
  } catch (const api_error& e) {
    co_return error_response(e.code(), e.message(), req.version(), req.keep_alive());
  } catch (const boost::system::system_error& e) {
    // The client left and its request was abandoned (http_session): nobody reads this answer.
    if (e.code() == asio::error::operation_aborted) {
      co_return error_response(errc::internal, "abandoned: the client closed the connection", req.version(), false);
    }
    spdlog::error("{} {}: {}", std::string_view(req.method_string()), std::string_view(req.target()), e.what());
    co_return error_response(errc::internal, "internal error in orchestratord; see its log", req.version(),
                             req.keep_alive());
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", std::string_view(req.method_string()), std::string_view(req.target()), e.what());
    co_return error_response(errc::internal, "internal error in orchestratord; see its log", req.version(),
                             req.keep_alive());
  }
}

asio::awaitable<std::string> router::off_loop(std::function<std::string()> render) {
  // Shared with the worker, which may finish after this coroutine is gone (its client left).
  struct job {
    std::function<std::string()> render;
    std::string out;
    bool done = false;
    async_event finished;
  };
  auto j = std::make_shared<job>();
  j->render = std::move(render);
  auto home = co_await asio::this_coro::executor;
  asio::post(renderer_, [j, home] {
    std::string out = j->render();
    // Back on the daemon's thread, which owns everything else the job touches.
    asio::post(home, [j, out = std::move(out)]() mutable {
      j->out = std::move(out);
      j->done = true;
      j->finished.notify_all();
    });
  });
  while (!j->done) co_await j->finished.wait();
  co_return std::move(j->out);
}

asio::awaitable<http_response> router::dispatch(const http_request& req) {
  const auto t = split_target(req.target());
  const auto& seg = t.segments;
  const auto method = req.method();

  if (seg.size() == 1 && seg[0] == "healthz") {
    if (method != http::verb::get) method_not_allowed(req, "GET");
    co_return json_response(200, json{{"status", "ok"}}, req);
  }
  if (seg.size() == 1 && seg[0] == "readyz") {
    if (method != http::verb::get) method_not_allowed(req, "GET");
    if (service_.ready()) co_return json_response(200, json{{"status", "ready"}}, req);
    co_return json_response(503, json{{"status", "prepulling"}, {"message", "prepulls are still running; see GET /v1/status"}}, req);
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (method != http::verb::get) method_not_allowed(req, "GET");
    co_return make_response(200, render_metrics(service_.metrics()), "text/plain; version=0.0.4", req.version(),
                            req.keep_alive());
  }
  if (seg.empty() || seg[0] != "v1") {
    throw api_error(errc::not_found, fmt::format("no route {}; the API lives under /v1 (see docs/api.md)",
                                                 std::string_view(req.target()).substr(0, 200)));
  }
  if (seg.size() == 2 && seg[1] == "status") {
    if (method != http::verb::get) method_not_allowed(req, "GET");
    co_return json_response(200, service_.status(), req);
  }
  if (seg.size() >= 2 && seg[1] == "leases") {
    if (seg.size() == 2) {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::lease_request>(req);
      auto [view, created] = service_.create(std::move(body));
      co_return json_response(created ? 201 : 200, view, req);
    }
    const std::string id(seg[2]);
    check_lease_id(id);
    if (seg.size() == 3) {
      if (method == http::verb::get) {
        co_return json_response(200, co_await service_.get(id, query_int(t.query, "wait_s", 0)), req);
      }
      if (method == http::verb::delete_) {
        co_return json_response(200, co_await service_.release(id), req);
      }
      method_not_allowed(req, "GET or DELETE");
    }
    if (seg.size() == 4 && seg[3] == "renew") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      co_return json_response(200, service_.renew(id), req);
    }
    if (seg.size() == 4 && seg[3] == "exec") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::exec_request>(req);
      co_return json_response(200, co_await service_.exec(id, std::move(body)), req);
    }
    if (seg.size() == 4 && seg[3] == "files") {
      const std::string path = url_decode(query_string(t.query, "path"), "path");
      if (method == http::verb::put) {
        require_content_type(req, "application/octet-stream");
        co_await service_.write_file(id, path, req.body(), query_mode(t.query));
        co_return json_response(200, json{{"path", path}, {"bytes", req.body().size()}}, req);
      }
      if (method == http::verb::get) {
        auto data = co_await service_.read_file(id, path);
        co_return make_response(200, std::move(data), "application/octet-stream", req.version(), req.keep_alive());
      }
      method_not_allowed(req, "GET or PUT");
    }
    if (seg.size() == 4 && seg[3] == "outcome") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::outcome_request>(req);
      service_.set_outcome(id, body.outcome);
      co_return json_response(200, json{{"id", id}, {"outcome", body.outcome}}, req);
    }
    if (seg.size() == 4 && seg[3] == "fixtures") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::fixture_request>(req);
      co_return json_response(200, co_await service_.acquire_fixture(id, std::move(body)), req);
    }
  }
  if (seg.size() >= 3 && seg[1] == "fixtures") {
    const std::string id(seg[2]);
    if (seg.size() == 3) {
      if (method != http::verb::get) method_not_allowed(req, "GET");
      const std::string lease = query_string(t.query, "lease");
      co_return json_response(200, co_await service_.get_fixture(id, lease, query_int(t.query, "wait_s", 0)), req);
    }
    if (seg.size() == 4 && seg[3] == "ready") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::fixture_ready_request>(req);
      co_return json_response(200, service_.fixture_ready(id, std::move(body)), req);
    }
    if (seg.size() == 4 && seg[3] == "fail") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::fixture_fail_request>(req);
      co_return json_response(200, co_await service_.fixture_failed(id, std::move(body)), req);
    }
    if (seg.size() == 4 && seg[3] == "exec") {
      if (method != http::verb::post) method_not_allowed(req, "POST");
      auto body = json_body<protocol::exec_request>(req);
      const std::string lease = query_string(t.query, "lease");
      co_return json_response(200, co_await service_.fixture_exec(id, lease, std::move(body)), req);
    }
  }
  if (seg.size() == 2 && seg[1] == "runs") {
    if (method != http::verb::get) method_not_allowed(req, "GET");
    auto listing = json::array();
    for (const auto& r : service_.runs()) {
      listing.push_back({{"run", r.run},
                         {"started_at", r.started_at},
                         {"leases", r.leases},
                         {"live_leases", r.live_leases},
                         {"fixtures", r.fixtures},
                         {"ended", r.ended}});
    }
    co_return json_response(200, listing, req);
  }
  if (seg.size() >= 3 && seg[1] == "runs") {
    const std::string id(seg[2]);
    check_run_id(id);
    if (seg.size() == 3) {
      if (method == http::verb::get) {
        // Named, not a temporary in the co_await: GCC 12 destroys such temporaries twice.
        std::function<std::string()> render = [timeline = service_.run(id)] {
          return to_json(timeline).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        };
        auto body = co_await off_loop(std::move(render));
        co_return make_response(200, std::move(body), "application/json", req.version(), req.keep_alive());
      }
      if (method == http::verb::delete_) co_return json_response(200, to_json(co_await service_.end_run(id)), req);
      method_not_allowed(req, "GET or DELETE");
    }
    if (seg.size() == 4 && seg[3] == "report.html") {
      if (method != http::verb::get) method_not_allowed(req, "GET");
      std::function<std::string()> render = [timeline = service_.run(id)] { return render_html(timeline); };
      auto html = co_await off_loop(std::move(render));
      co_return make_response(200, std::move(html), "text/html; charset=utf-8", req.version(), req.keep_alive());
    }
  }
  throw api_error(errc::not_found, fmt::format("no route {} (see docs/api.md)",
                                               std::string_view(req.target()).substr(0, 200)));
}

}  // namespace sandlot::orchestrator
