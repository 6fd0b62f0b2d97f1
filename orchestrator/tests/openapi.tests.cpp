// docs/openapi.yaml and the daemon describe the same API: every route the router answers has an
// operation in the document and every operation has a route, compared as "METHOD /path/{param}".
// The document names path parameters as the route table does ({lease}, {run}, {fixture}).
//
// Only the keys under `paths:` are read, by indentation, so no YAML library is needed: a path is
// a two-space-indented key starting with '/', its methods the four-space-indented keys below it.
// docs/openapi.yaml is written in that block style (scripts/check-openapi lints the rest).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <sandlot/protocol.hpp>

#include "lease_service.hpp"
#include "router.hpp"
#include "support/fake_provider.hpp"

#ifndef SANDLOT_OPENAPI_YAML
#error "SANDLOT_OPENAPI_YAML (the path of docs/openapi.yaml) is set by orchestrator/CMakeLists.txt"
#endif

namespace {

using namespace sandlot::orchestrator;
using sandlot::orchestrator::testing::fake_provider;

std::size_t indent_of(std::string_view line) {
  const auto n = line.find_first_not_of(' ');
  return n == std::string_view::npos ? line.size() : n;
}

/// The key of a "key:" or "key: value" line, unquoted; empty for anything else.
std::string key_of(std::string_view line) {
  line.remove_prefix(indent_of(line));
  if (line.empty() || line.front() == '#' || line.front() == '-') return {};
  if (line.front() == '\'' || line.front() == '"') {
    const auto close = line.find(line.front(), 1);
    if (close == std::string_view::npos || line.find(':', close) == std::string_view::npos) return {};
    return std::string(line.substr(1, close - 1));
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return {};
  return std::string(line.substr(0, colon));
}

/// "GET /v1/leases/{lease}" for every operation under `paths:`.
std::set<std::string> document_routes(std::istream& yaml) {
  static const std::set<std::string> methods{"get", "put", "post", "delete", "patch", "head", "options", "trace"};
  std::set<std::string> out;
  bool in_paths = false;
  std::string path;
  for (std::string line; std::getline(yaml, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto key = key_of(line);
    if (key.empty()) continue;
    const auto indent = indent_of(line);
    if (indent == 0) {
      in_paths = key == "paths";
      continue;
    }
    if (!in_paths) continue;
    if (indent == 2) {
      path = key.front() == '/' ? key : std::string();
    } else if (indent == 4 && !path.empty() && methods.count(key) != 0) {
      std::string method = key;
      std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::toupper(c); });
      out.insert(method + " " + path);
    }
  }
  return out;
}

/// The flow-style `enum: [...]` of the `ErrorDetail` schema's `code`: the error codes documented.
std::set<std::string> documented_error_codes(const std::string& yaml) {
  std::set<std::string> out;
  const auto schema = yaml.find("\n    ErrorDetail:\n");
  if (schema == std::string::npos) return out;
  const auto open = yaml.find("enum: [", schema);
  const auto close = yaml.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return out;
  std::string code;
  for (const char c : yaml.substr(open + 7, close - open - 7)) {
    if (c == ',') {
      out.insert(code);
      code.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      code += c;
    }
  }
  if (!code.empty()) out.insert(code);
  return out;
}

std::set<std::string> without(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::set<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

std::string lines(const std::set<std::string>& routes) {
  std::string out;
  for (const auto& r : routes) out += "  " + r + "\n";
  return out.empty() ? "  (none)\n" : out;
}

}  // namespace

TEST_CASE("the OpenAPI document's paths are read from its block-style keys", "[openapi]") {
  std::istringstream yaml(
      "openapi: 3.1.0\n"
      "info:\n  title: x\n"
      "paths:\n"
      "  /healthz:\n    get:\n      summary: ok\n      responses:\n        '200': {description: ok}\n"
      "  '/v1/leases/{lease}':\n    parameters:\n      - $ref: '#/x'\n    get: {}\n    delete:\n      x: 1\n"
      "  # a comment\n"
      "  /ui/:\n    get:\n"
      "components:\n  schemas:\n    get:\n      type: object\n");
  CHECK(document_routes(yaml) ==
        std::set<std::string>{"GET /healthz", "GET /v1/leases/{lease}", "DELETE /v1/leases/{lease}", "GET /ui/"});
}

TEST_CASE("the OpenAPI document and the router have the same routes", "[openapi][router]") {
  std::ifstream file(SANDLOT_OPENAPI_YAML);
  REQUIRE(file.good());
  const auto documented = document_routes(file);
  REQUIRE(!documented.empty());

  boost::asio::io_context ioc;
  fake_provider provider;
  lease_service service(ioc.get_executor(), provider, service_options{});
  router api(service);
  // Every route the router answers: the table's, and its streaming ones (GET /v1/events), which
  // router::routes() lists with them.
  std::set<std::string> served;
  for (const auto& r : api.routes()) served.insert(r);

  const auto undocumented = without(served, documented);
  const auto unserved = without(documented, served);
  INFO("served but not in docs/openapi.yaml:\n" << lines(undocumented)
       << "in docs/openapi.yaml but not served:\n" << lines(unserved));
  CHECK(undocumented.empty());
  CHECK(unserved.empty());
}

TEST_CASE("the OpenAPI document's error codes are the daemon's", "[openapi]") {
  std::ifstream file(SANDLOT_OPENAPI_YAML);
  REQUIRE(file.good());
  const std::string yaml{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  const auto documented = documented_error_codes(yaml);
  // Every code the daemon can send: the enum's values after `unknown`, up to the first that has
  // no entry in the table (code_string says "unknown" again).
  std::set<std::string> daemon;
  for (int i = 1;; ++i) {
    const auto code = sandlot::protocol::code_string(static_cast<sandlot::protocol::errc>(i));
    if (code == "unknown") break;
    daemon.emplace(code);
  }
  REQUIRE(daemon.size() > 20);
  INFO("sent but not in ErrorDetail.code's enum:\n" << lines(without(daemon, documented))
       << "in the enum but never sent:\n" << lines(without(documented, daemon)));
  CHECK(documented == daemon);
}
