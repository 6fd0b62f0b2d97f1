// Who may talk to the daemon: the Host and Origin rules and the bearer token (access_policy).
#include <algorithm>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>

#include "http_util.hpp"
#include "router.hpp"

namespace sandlot::orchestrator {

namespace http = boost::beast::http;

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
    // The daemon's own page (the dashboard, GET /) is same-origin.
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
  // The dashboard page holds no data and every request it makes carries the token, which a
  // browser can only give it through the URL's fragment: the page itself is served without one.
  // Host and Origin were checked before (refusal), so a foreign page still cannot frame or read it.
  const std::string_view path = target.substr(0, target.find('?'));
  if (req.method() == http::verb::get && (path == "/" || path == "/ui/")) return true;
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

}  // namespace sandlot::orchestrator
