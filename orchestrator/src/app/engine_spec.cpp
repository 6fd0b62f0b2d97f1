#include "engine_spec.hpp"

#include <charconv>
#include <stdexcept>
#include <string_view>

#include <fmt/format.h>

#include "config.hpp"  // is_loopback

namespace sandlot::orchestrator {

namespace {

[[noreturn]] void bad(const std::string& text, std::string_view why) {
  throw std::runtime_error(fmt::format("--engine '{}': {}; write NAME=unix:///path.sock, NAME=tcp://127.0.0.1:PORT or "
                                       "NAME=kubernetes://NAMESPACE, optionally followed by ;slots=N (and for Kubernetes "
                                       ";kubeconfig=PATH;context=NAME) (docs/scale-out.md)",
                                       text, why));
}

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

/// The host of tcp://HOST:PORT (brackets of an IPv6 address removed), or empty when malformed.
std::string tcp_host(std::string_view rest) {
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') return {};
    return std::string(rest.substr(1, close - 1));
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  return std::string(rest.substr(0, colon));
}

}  // namespace

engine_spec parse_engine_spec(const std::string& text) {
  engine_spec s;
  const auto eq = text.find('=');
  if (eq == std::string::npos) bad(text, "no NAME= before the address");
  s.name = text.substr(0, eq);
  if (s.name.empty() || s.name.size() > 32) bad(text, "the name must have 1 to 32 characters");
  for (char c : s.name) {
    if (!name_char(c)) bad(text, "the name may hold only letters, digits, '_', '-' and '.'");
  }
  std::string_view rest = std::string_view(text).substr(eq + 1);
  const auto semi = rest.find(';');
  s.url = std::string(rest.substr(0, semi));
  if (s.url.starts_with("unix://")) {
    if (s.url.size() <= 7 || s.url[7] != '/') bad(text, "a unix socket needs an absolute path (unix:///run/x.sock)");
  } else if (s.url.starts_with("tcp://")) {
    const auto host = tcp_host(std::string_view(s.url).substr(6));
    if (host.empty()) bad(text, "a tcp address needs HOST:PORT");
    if (!is_loopback(host)) {
      bad(text, fmt::format("{} is not a loopback address; Sandlot reaches engines on this host only (forward a "
                            "remote engine's socket with ssh -L to a loopback port)",
                            host));
    }
  } else if (s.kubernetes()) {
    for (char c : s.kube_namespace()) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
        bad(text, "a namespace holds only lower-case letters, digits and '-'");
      }
    }
  } else {
    bad(text, "the address must start with unix://, tcp:// or kubernetes://");
  }
  while (semi != std::string_view::npos && !rest.empty()) {
    rest = rest.substr(rest.find(';') + 1);
    const auto next = rest.find(';');
    const std::string_view opt = rest.substr(0, next);
    if (s.kubernetes() && opt.starts_with("kubeconfig=")) {
      s.kubeconfig = std::string(opt.substr(11));
      if (next == std::string_view::npos) break;
      continue;
    }
    if (s.kubernetes() && opt.starts_with("context=")) {
      s.context = std::string(opt.substr(8));
      if (next == std::string_view::npos) break;
      continue;
    }
    if (!opt.starts_with("slots=")) {
      bad(text, fmt::format("unknown option '{}' (slots=N{})", opt, s.kubernetes() ? ", kubeconfig=PATH, context=NAME" : ""));
    }
    const std::string_view n = opt.substr(6);
    int v = 0;
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
    if (ec != std::errc() || p != n.data() + n.size() || v < 1 || v > 4096) {
      bad(text, "slots= must be a number from 1 to 4096");
    }
    s.slots = v;
    s.slots_given = true;
    if (next == std::string_view::npos) break;
  }
  return s;
}

std::vector<engine_spec> resolve_engines(const std::vector<std::string>& entries, int default_slots) {
  std::vector<engine_spec> out;
  for (const auto& entry : entries) {
    auto s = parse_engine_spec(entry);
    for (const auto& o : out) {
      if (o.name == s.name) {
        throw std::runtime_error(fmt::format("--engine: the name '{}' is given twice; give each engine its own", s.name));
      }
      if (o.url == s.url) {
        throw std::runtime_error(fmt::format("--engine: {} is given twice ({} and {}); one engine, one entry", s.url,
                                             o.name, s.name));
      }
    }
    if (s.slots == 0) s.slots = default_slots;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace sandlot::orchestrator
