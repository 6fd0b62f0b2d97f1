#include "route_table.hpp"

#include <fmt/format.h>

#include "http_util.hpp"

namespace sandlot::orchestrator {

namespace http = boost::beast::http;
using protocol::api_error;
using protocol::errc;

void route_table::add(http::verb method, std::string pattern, route_handler handler) {
  std::vector<std::string> segments;
  for (auto s : split_target(pattern).segments) segments.emplace_back(s);
  routes_.push_back(route{method, std::move(pattern), std::move(segments), std::move(handler)});
}

bool route_table::shape_matches(const route& r, const std::vector<std::string_view>& segments,
                                std::vector<std::string>& params) {
  if (r.segments.size() != segments.size()) return false;
  params.clear();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& want = r.segments[i];
    if (!want.empty() && want.front() == '{') {
      params.emplace_back(segments[i]);
    } else if (want != segments[i]) {
      return false;
    }
  }
  return true;
}

std::pair<const route_handler*, route_call> route_table::match(const http_request& req) const {
  const auto t = split_target(req.target());
  std::vector<std::string> params;
  std::vector<std::string_view> allowed;
  for (const auto& r : routes_) {
    if (!shape_matches(r, t.segments, params)) continue;
    for (std::size_t i = 0, p = 0; i < r.segments.size(); ++i) {
      if (r.segments[i] == "{lease}") check_lease_id(params[p]);
      if (r.segments[i] == "{run}") check_run_id(params[p]);
      if (r.segments[i].front() == '{') ++p;
    }
    if (r.method == req.method()) return {&r.handler, route_call{req, std::move(params), t.query}};
    allowed.push_back(http::to_string(r.method));
  }
  if (!allowed.empty()) {
    std::string methods;
    for (auto m : allowed) methods += (methods.empty() ? "" : " or ") + std::string(m);
    throw api_error(errc::method_not_allowed, fmt::format("{} is not supported on {}; use {}",
                                                          std::string_view(req.method_string()),
                                                          std::string_view(req.target()), methods));
  }
  const bool versioned = !t.segments.empty() && t.segments[0] == "v1";
  const bool top = t.segments.size() == 1 && (t.segments[0] == "healthz" || t.segments[0] == "readyz" ||
                                               t.segments[0] == "metrics");
  throw api_error(errc::not_found,
                  fmt::format("no route {}{}", std::string_view(req.target()).substr(0, 200),
                              versioned || top ? " (see docs/api.md)" : "; the API lives under /v1 (see docs/api.md)"));
}

std::vector<std::string> route_table::list() const {
  std::vector<std::string> out;
  for (const auto& r : routes_) out.push_back(fmt::format("{} {}", std::string_view(http::to_string(r.method)), r.pattern));
  return out;
}

}  // namespace sandlot::orchestrator
