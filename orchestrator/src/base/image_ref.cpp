#include "image_ref.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/ip/address.hpp>
#include <fmt/format.h>

#include <sandlot/protocol.hpp>

namespace sandlot::orchestrator {

using protocol::api_error;
using protocol::errc;

namespace {

[[noreturn]] void bad_image(std::string_view ref, std::string_view why) {
  throw api_error(errc::invalid_field,
                  fmt::format("field 'image' ('{}') is not a valid image reference: {}; use e.g. "
                              "127.0.0.1:5000/sandlot/busybox:1",
                              ref.substr(0, 200), why));
}

bool path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/';
}

bool tag_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

image_ref parse_image_ref(std::string_view ref) {
  if (ref.empty()) bad_image(ref, "it is empty");
  if (ref.size() > 512) bad_image(ref, "it is longer than 512 characters");
  image_ref out;
  std::string_view rest = ref;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    out.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    const auto colon = out.digest.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == out.digest.size() ||
        !std::all_of(out.digest.begin() + static_cast<std::ptrdiff_t>(colon) + 1, out.digest.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
      bad_image(ref, "the digest must look like sha256:<hex>");
    }
  }
  // The first component is a registry when it has a '.' or ':' or is "localhost".
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    auto first = rest.substr(0, slash);
    if (first.find_first_of(".:") != std::string_view::npos || first == "localhost") {
      out.registry = std::string(first);
      out.registry_named = true;
      rest = rest.substr(slash + 1);
      const bool chars_ok = std::all_of(out.registry.begin(), out.registry.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' || c == ':' ||
               c == '[' || c == ']';
      });
      const char head = out.registry.front();
      const bool host_ok = chars_ok && (std::isalnum(static_cast<unsigned char>(head)) != 0 || head == '[');
      if (!host_ok) bad_image(ref, "the registry host is not a valid host[:port]");
    }
  }
  if (out.registry.empty()) out.registry = "docker.io";
  // A tag's colon comes after the last slash.
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos &&
                                    (rest.rfind('/') == std::string_view::npos || colon > rest.rfind('/'))) {
    out.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (out.tag.empty() || out.tag.size() > 128 || !std::all_of(out.tag.begin(), out.tag.end(), tag_char)) {
      bad_image(ref, "the tag must be 1-128 letters, digits, '.', '_' or '-'");
    }
  }
  if (out.tag.empty() && out.digest.empty()) out.tag = "latest";
  if (rest.empty()) bad_image(ref, "the repository name is empty");
  if (!std::all_of(rest.begin(), rest.end(), path_char) || rest.front() == '/' || rest.back() == '/' ||
      rest.find("//") != std::string_view::npos) {
    bad_image(ref, "the repository must be lowercase letters, digits and . _ - / separators");
  }
  // Each path component starts and ends with a letter or digit (so no "." or ".." components).
  for (std::size_t start = 0; start <= rest.size();) {
    auto end = rest.find('/', start);
    auto comp = rest.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (comp.empty() || !alnum(comp.front()) || !alnum(comp.back())) {
      bad_image(ref, "each part of the repository must start and end with a lowercase letter or digit");
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  out.repository = std::string(rest);
  return out;
}

bool is_loopback_registry(std::string_view registry) {
  std::string host(registry);
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    host = close == std::string::npos ? host : host.substr(1, close - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  return !ec && addr.is_loopback();
}

std::string pull_refusal(const image_ref& ref, const std::vector<std::string>& allowed) {
  if (is_loopback_registry(ref.registry)) return {};
  if (std::find(allowed.begin(), allowed.end(), ref.registry) != allowed.end()) return {};
  return fmt::format("pulling from registry '{}' is not allowed: orchestratord pulls only from loopback "
                     "registries and those named with --allow-registry; push the image to a local "
                     "registry or start the daemon with --allow-registry {}",
                     ref.registry, ref.registry);
}

}  // namespace sandlot::orchestrator
