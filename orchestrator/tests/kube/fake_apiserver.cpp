// The fake API server: one io_context on a thread of its own, one coroutine per connection.
//
// Wire formats follow the real server, read from kubernetes/kubernetes:
//  - errors: metav1.Status as k8s.io/apimachinery/pkg/api/errors builds them (NewNotFound,
//    NewAlreadyExists, NewInvalid with field.Error bodies, NewBadRequest, NewInternalError);
//  - validation messages: k8s.io/apimachinery/pkg/util/validation (v1.30 wording);
//  - exec: the channel.k8s.io framing (apimachinery/pkg/util/remotecommand/constants.go), the
//    status on channel 3 as pkg/kubelet/cri/streaming/remotecommand/exec.go and
//    apiserver/pkg/util/proxy/streamtranslator.go write it, the runtime's exit error wording from
//    containerd's streamRuntime.Exec ("error executing command %v, exit code %d").
// State is guarded by one mutex so that the inspection calls work from the test's thread; it is
// changed only on the io thread, and the lock is never held across a co_await.
#include "kube/fake_apiserver.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <deque>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>

namespace sandlot::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// A watch without timeoutSeconds; the real server picks 30-60 min, which no test waits for.
constexpr std::chrono::seconds default_watch_timeout{300};
// Output queued for an exec client beyond this stops reading the command's pipes until it drains.
constexpr std::size_t exec_backlog_limit = 1 << 20;
// After the command exits, output still in its pipes is delivered; a background child that keeps
// them open is not waited for longer than this.
constexpr auto exec_drain_grace = 250ms;
constexpr auto reap_poll = 5ms;

// A connection's coroutine that throws ends that connection, not the server.
void report_exception(const std::exception_ptr& e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    fmt::print(stderr, "fake_apiserver: a connection failed: {}\n", ex.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Text

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 32> out{};
  const auto n = std::strftime(out.data(), out.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(out.data(), n);
}

std::string now_rfc3339() { return rfc3339(std::chrono::system_clock::now()); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's url.QueryUnescape for query parts ('+' is a space), PathUnescape for path segments.
std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && s[i] == '+' ? ' ' : s[i]);
  }
  return out;
}

using query_params = std::vector<std::pair<std::string, std::string>>;

query_params parse_query(std::string_view q) {
  query_params out;
  while (!q.empty()) {
    const auto amp = q.find('&');
    const auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(url_decode(part, true), std::string());
    } else {
      out.emplace_back(url_decode(part.substr(0, eq), true), url_decode(part.substr(eq + 1), true));
    }
  }
  return out;
}

std::optional<std::string> param(const query_params& q, std::string_view key) {
  for (const auto& [k, v] : q) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::vector<std::string> params(const query_params& q, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : q) {
    if (k == key) out.push_back(v);
  }
  return out;
}

// Go's strconv.ParseBool, which the API server's query decoding uses.
bool truthy(const std::optional<std::string>& v) {
  return v && (*v == "1" || *v == "t" || *v == "T" || *v == "true" || *v == "TRUE" || *v == "True");
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::int64_t> to_i64(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

// Go's %v of a []string: "[a b c]".
std::string go_list(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out += ' ';
    out += v[i];
  }
  return out + "]";
}

// Every JSON this server writes: bytes from a query (a selector, an exec argv) need not be UTF-8,
// and an exception there must not end the server.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Go's %q, close enough for what validation messages quote.
std::string go_quote(const std::string& s) { return dump(json(s)); }

// ---------------------------------------------------------------------------------------------
// Validation (k8s.io/apimachinery/pkg/util/validation, v1.30)

// validation.RegexError: the examples are joined by ", " and " or ", hence the double space.
std::string regex_error(const std::string& msg, const std::string& fmt_text, const std::vector<std::string>& examples) {
  std::string out = msg + " (e.g. ";
  for (std::size_t i = 0; i < examples.size(); ++i) {
    if (i > 0) out += " or ";
    out += "'" + examples[i] + "', ";
  }
  return out + "regex used for validation is '" + fmt_text + "')";
}

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool alnum(char c) { return lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

bool matches_dns1123_label(std::string_view s) {
  if (s.empty() || !lower_alnum(s.front()) || !lower_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; });
}

bool matches_dns1123_subdomain(std::string_view s) {
  while (true) {
    const auto dot = s.find('.');
    if (!matches_dns1123_label(s.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    s = s.substr(dot + 1);
  }
}

const std::string dns1123_label_fmt = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const std::string dns1123_subdomain_fmt = dns1123_label_fmt + "(\\." + dns1123_label_fmt + ")*";
const std::string qualified_name_fmt = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const std::string qualified_name_msg =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

std::vector<std::string> dns1123_subdomain_errors(std::string_view s) {
  std::vector<std::string> errs;
  if (s.size() > 253) errs.emplace_back("must be no more than 253 characters");
  if (!matches_dns1123_subdomain(s)) {
    errs.push_back(regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                               "'-' or '.', and must start and end with an alphanumeric character",
                               dns1123_subdomain_fmt, {"example.com"}));
  }
  return errs;
}

std::vector<std::string> dns1123_label_errors(std::string_view s) {
  std::vector<std::string> errs;
  if (s.size() > 63) errs.emplace_back("must be no more than 63 characters");
  if (!matches_dns1123_label(s)) {
    if (matches_dns1123_subdomain(s)) {
      errs.emplace_back("must not contain dots");
    } else {
      errs.push_back(regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
                                 "'-', and must start and end with an alphanumeric character",
                                 dns1123_label_fmt, {"my-name", "123-abc"}));
    }
  }
  return errs;
}

bool matches_qualified_name(std::string_view s) {
  if (s.empty() || !alnum(s.front()) || !alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

// validation.IsQualifiedName: a label key.
std::vector<std::string> label_key_errors(std::string_view key) {
  std::vector<std::string> errs;
  std::string_view name = key;
  const auto slash = key.find('/');
  if (slash != std::string_view::npos) {
    if (key.find('/', slash + 1) != std::string_view::npos) {
      errs.push_back("a qualified name " + regex_error(qualified_name_msg, qualified_name_fmt, {"MyName", "my.name", "123-abc"}) +
                     " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')");
      return errs;
    }
    const auto prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (prefix.empty()) {
      errs.emplace_back("prefix part must be non-empty");
    } else {
      for (const auto& m : dns1123_subdomain_errors(prefix)) errs.push_back("prefix part " + m);
    }
  }
  if (name.empty()) {
    errs.emplace_back("name part must be non-empty");
  } else if (name.size() > 63) {
    errs.emplace_back("name part must be no more than 63 characters");
  }
  if (!matches_qualified_name(name)) {
    errs.push_back("name part " + regex_error(qualified_name_msg, qualified_name_fmt, {"MyName", "my.name", "123-abc"}));
  }
  return errs;
}

// validation.IsValidLabelValue.
std::vector<std::string> label_value_errors(std::string_view v) {
  std::vector<std::string> errs;
  if (v.size() > 63) errs.emplace_back("must be no more than 63 characters");
  if (!v.empty() && !matches_qualified_name(v)) {
    errs.push_back(regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                               "or '.', and must start and end with an alphanumeric character",
                               "(" + qualified_name_fmt + ")?", {"MyValue", "my_value", "12345"}));
  }
  return errs;
}

// One field.Error: its type ("FieldValueInvalid"), path and ErrorBody().
struct field_error {
  std::string type;
  std::string field;
  std::string body;
};

field_error invalid(std::string field, const std::string& value, const std::string& detail) {
  return {"FieldValueInvalid", std::move(field), "Invalid value: " + go_quote(value) + ": " + detail};
}

field_error required(std::string field, const std::string& detail = "") {
  return {"FieldValueRequired", std::move(field), detail.empty() ? "Required value" : "Required value: " + detail};
}

// ---------------------------------------------------------------------------------------------
// metav1.Status

json status_object(int code, const std::string& reason, const std::string& message, json details = nullptr) {
  json s = {{"kind", "Status"},
            {"apiVersion", "v1"},
            {"metadata", json::object()},
            {"status", "Failure"},
            {"message", message},
            {"code", code}};
  if (!reason.empty()) s["reason"] = reason;
  if (!details.is_null()) s["details"] = std::move(details);
  return s;
}

json not_found(const std::string& resource, const std::string& name) {
  return status_object(404, "NotFound", fmt::format("{} {} not found", resource, go_quote(name)),
                       {{"name", name}, {"kind", resource}});
}

json bad_request(const std::string& message) { return status_object(400, "BadRequest", message); }

// errors.NewInvalid: "Pod "x" is invalid: <one error>" or "[<e1>, <e2>]".
json invalid_object(const std::string& kind, const std::string& name, const std::vector<field_error>& errs) {
  std::string joined;
  json causes = json::array();
  for (std::size_t i = 0; i < errs.size(); ++i) {
    if (i > 0) joined += ", ";
    joined += errs[i].field + ": " + errs[i].body;
    causes.push_back({{"reason", errs[i].type}, {"message", errs[i].body}, {"field", errs[i].field}});
  }
  if (errs.size() > 1) joined = "[" + joined + "]";
  return status_object(422, "Invalid", fmt::format("{} {} is invalid: {}", kind, go_quote(name), joined),
                       {{"name", name}, {"kind", kind}, {"causes", causes}});
}

json unknown_path() {
  return status_object(404, "NotFound", "the server could not find the requested resource", json::object());
}

json method_not_allowed() {
  return status_object(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                       json::object());
}

// ---------------------------------------------------------------------------------------------
// Selectors

struct label_requirement {
  enum class op { eq, ne, exists, not_exists, in, not_in };
  std::string key;
  op how = op::eq;
  std::vector<std::string> values;
};

struct field_requirement {
  std::string field;
  bool equal = true;
  std::string value;
};

struct selector {
  std::vector<label_requirement> labels;
  std::vector<field_requirement> fields;
  bool nothing = false;  // a namespace that does not exist
};

// Splits on commas outside parentheses ("a in (x,y),b" is two terms).
std::vector<std::string> split_terms(std::string_view s) {
  std::vector<std::string> out;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || (s[i] == ',' && depth == 0)) {
      auto t = trim(s.substr(start, i - start));
      if (!t.empty()) out.push_back(std::move(t));
      start = i + 1;
    } else if (s[i] == '(') {
      ++depth;
    } else if (s[i] == ')') {
      --depth;
    }
  }
  return out;
}

// labels.Parse, for the forms a client sends: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b).
std::optional<std::string> parse_label_selector(std::string_view text, std::vector<label_requirement>& out) {
  for (const auto& term : split_terms(text)) {
    label_requirement r;
    std::string value;
    if (term.front() == '!') {
      r.key = trim(std::string_view(term).substr(1));
      r.how = label_requirement::op::not_exists;
    } else if (const auto sp = term.find(' '); sp != std::string::npos && term.find('(') != std::string::npos) {
      r.key = term.substr(0, sp);
      const auto rest = trim(std::string_view(term).substr(sp + 1));
      if (rest.starts_with("notin")) {
        r.how = label_requirement::op::not_in;
      } else if (rest.starts_with("in")) {
        r.how = label_requirement::op::in;
      } else {
        return fmt::format("unable to parse requirement: found '{}', expected: in, notin, =, ==, !=, gt, lt", rest);
      }
      const auto open = rest.find('(');
      const auto close = rest.rfind(')');
      if (open == std::string::npos || close == std::string::npos || close < open) {
        return fmt::format("unable to parse requirement: found '{}', expected: ')'", rest);
      }
      for (const auto& v : split_terms(std::string_view(rest).substr(open + 1, close - open - 1))) r.values.push_back(v);
    } else if (const auto ne = term.find("!="); ne != std::string::npos) {
      r.key = trim(std::string_view(term).substr(0, ne));
      r.how = label_requirement::op::ne;
      r.values.push_back(trim(std::string_view(term).substr(ne + 2)));
    } else if (const auto eq2 = term.find("=="); eq2 != std::string::npos) {
      r.key = trim(std::string_view(term).substr(0, eq2));
      r.values.push_back(trim(std::string_view(term).substr(eq2 + 2)));
    } else if (const auto eq = term.find('='); eq != std::string::npos) {
      r.key = trim(std::string_view(term).substr(0, eq));
      r.values.push_back(trim(std::string_view(term).substr(eq + 1)));
    } else {
      r.key = term;
      r.how = label_requirement::op::exists;
    }
    if (const auto errs = label_key_errors(r.key); !errs.empty()) {
      return fmt::format("unable to parse requirement: key: Invalid value: {}: {}", go_quote(r.key), errs.front());
    }
    for (const auto& v : r.values) {
      if (const auto errs = label_value_errors(v); !errs.empty()) {
        return fmt::format("unable to parse requirement: values[0][{}]: Invalid value: {}: {}", r.key, go_quote(v),
                           errs.front());
      }
    }
    out.push_back(std::move(r));
  }
  return std::nullopt;
}

// The field selectors the API server supports for pods (pkg/registry/core/pod/strategy.go,
// ToSelectableFields), mapped to their JSON pointers.
std::optional<json::json_pointer> pod_field(const std::string& name) {
  static const std::map<std::string, std::string> fields{
      {"metadata.name", "/metadata/name"},
      {"metadata.namespace", "/metadata/namespace"},
      {"spec.nodeName", "/spec/nodeName"},
      {"spec.restartPolicy", "/spec/restartPolicy"},
      {"spec.schedulerName", "/spec/schedulerName"},
      {"spec.serviceAccountName", "/spec/serviceAccountName"},
      {"status.phase", "/status/phase"},
      {"status.podIP", "/status/podIP"},
      {"status.nominatedNodeName", "/status/nominatedNodeName"},
  };
  const auto it = fields.find(name);
  if (it == fields.end()) return std::nullopt;
  return json::json_pointer(it->second);
}

std::optional<std::string> parse_field_selector(std::string_view text, std::vector<field_requirement>& out) {
  for (const auto& term : split_terms(text)) {
    field_requirement r;
    if (const auto ne = term.find("!="); ne != std::string::npos) {
      r.field = term.substr(0, ne);
      r.equal = false;
      r.value = term.substr(ne + 2);
    } else if (const auto eq2 = term.find("=="); eq2 != std::string::npos) {
      r.field = term.substr(0, eq2);
      r.value = term.substr(eq2 + 2);
    } else if (const auto eq = term.find('='); eq != std::string::npos) {
      r.field = term.substr(0, eq);
      r.value = term.substr(eq + 1);
    } else {
      return fmt::format("invalid selector: '{}'; can't understand '{}'", std::string(text), term);
    }
    if (!pod_field(r.field)) return "field label not supported: " + r.field;
    out.push_back(std::move(r));
  }
  return std::nullopt;
}

std::optional<std::string> parse_selector(const query_params& q, selector& out) {
  if (const auto l = param(q, "labelSelector")) {
    if (auto err = parse_label_selector(*l, out.labels)) return err;
  }
  if (const auto f = param(q, "fieldSelector")) {
    if (auto err = parse_field_selector(*f, out.fields)) return err;
  }
  return std::nullopt;
}

bool matches(const selector& sel, const json& pod) {
  if (sel.nothing) return false;
  const json& labels = pod["metadata"].value("labels", json::object());
  for (const auto& r : sel.labels) {
    const auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const std::string value = has && it->is_string() ? it->get<std::string>() : std::string();
    const bool in = std::find(r.values.begin(), r.values.end(), value) != r.values.end();
    switch (r.how) {
      case label_requirement::op::eq:
        if (!has || value != r.values.front()) return false;
        break;
      case label_requirement::op::ne:
        if (has && value == r.values.front()) return false;
        break;
      case label_requirement::op::exists:
        if (!has) return false;
        break;
      case label_requirement::op::not_exists:
        if (has) return false;
        break;
      case label_requirement::op::in:
        if (!has || !in) return false;
        break;
      case label_requirement::op::not_in:
        if (has && in) return false;
        break;
    }
  }
  for (const auto& f : sel.fields) {
    const auto ptr = pod_field(f.field);
    const std::string value = ptr && pod.contains(*ptr) && pod.at(*ptr).is_string() ? pod.at(*ptr).get<std::string>() : "";
    if ((value == f.value) != f.equal) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Images

// A stable 64-hex "digest" per image: what a registry would answer is not known here, only that
// the same image always gets the same one.
std::string fake_digest(std::string_view text) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : text) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  std::string out;
  for (int i = 0; i < 4; ++i) {
    h += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = h;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    out += fmt::format("{:016x}", z ^ (z >> 31));
  }
  return out;
}

// "host/repo:tag" → "host/repo" (a digest reference loses its digest).
std::string image_repository(const std::string& image) {
  std::string repo = image.substr(0, image.find('@'));
  const auto colon = repo.rfind(':');
  const auto slash = repo.rfind('/');
  if (colon != std::string::npos && (slash == std::string::npos || colon > slash)) repo.resize(colon);
  return repo;
}

bool has_tag_or_digest(const std::string& image) {
  if (image.find('@') != std::string::npos) return true;
  const auto colon = image.rfind(':');
  const auto slash = image.rfind('/');
  return colon != std::string::npos && (slash == std::string::npos || colon > slash);
}

// What containerd names in its pull errors: "busybox" is "docker.io/library/busybox:latest".
std::string normalized_image(const std::string& image) {
  std::string out = image;
  const auto slash = out.find('/');
  const std::string first = out.substr(0, slash);
  const bool has_host = slash != std::string::npos &&
                        (first.find('.') != std::string::npos || first.find(':') != std::string::npos || first == "localhost");
  if (!has_host) out = (slash == std::string::npos ? "docker.io/library/" : "docker.io/") + out;
  if (!has_tag_or_digest(out)) out += ":latest";
  return out;
}

std::string image_id(const std::string& image) {
  if (image.find('@') != std::string::npos) return image;
  return image_repository(image) + "@sha256:" + fake_digest(image);
}

json node_image(const std::string& image) {
  json names = json::array();
  if (image.find('@') == std::string::npos) names.push_back(image_id(image));
  names.push_back(image);
  const auto size = 1'000'000 + std::stoull(fake_digest(image).substr(0, 6), nullptr, 16) * 16;
  return {{"names", names}, {"sizeBytes", size}};
}

// ---------------------------------------------------------------------------------------------
// Pods

// The order the kubelet reports conditions in.
int condition_rank(const std::string& type) {
  static const std::array<std::string_view, 5> order{"PodReadyToStartContainers", "Initialized", "Ready",
                                                     "ContainersReady", "PodScheduled"};
  const auto it = std::find(order.begin(), order.end(), type);
  return static_cast<int>(it - order.begin());
}

void set_condition(json& pod, const std::string& type, bool ok, const std::string& reason = "",
                   const std::string& message = "") {
  json& conditions = pod["status"]["conditions"];
  if (!conditions.is_array()) conditions = json::array();
  const std::string status = ok ? "True" : "False";
  auto it = std::find_if(conditions.begin(), conditions.end(), [&](const json& c) { return c.value("type", "") == type; });
  if (it == conditions.end()) {
    conditions.push_back({{"type", type}, {"status", status}, {"lastProbeTime", nullptr}, {"lastTransitionTime", now_rfc3339()}});
    it = std::prev(conditions.end());
  } else if (it->value("status", "") != status) {
    (*it)["status"] = status;
    (*it)["lastTransitionTime"] = now_rfc3339();
  }
  it->erase("reason");
  it->erase("message");
  if (!reason.empty()) (*it)["reason"] = reason;
  if (!message.empty()) (*it)["message"] = message;
  std::stable_sort(conditions.begin(), conditions.end(), [](const json& a, const json& b) {
    return condition_rank(a.value("type", "")) < condition_rank(b.value("type", ""));
  });
}

std::vector<std::string> container_names(const json& pod) {
  std::vector<std::string> names;
  for (const auto& c : pod["spec"]["containers"]) names.push_back(c.value("name", ""));
  return names;
}

// The defaults the API server fills in on create (pkg/apis/core/v1/defaults.go) and the
// admission plugins' tolerations, so a stored pod reads as a real one does.
void apply_defaults(json& pod) {
  json& spec = pod["spec"];
  if (!spec.contains("restartPolicy")) spec["restartPolicy"] = "Always";
  if (!spec.contains("terminationGracePeriodSeconds")) spec["terminationGracePeriodSeconds"] = 30;
  if (!spec.contains("dnsPolicy")) spec["dnsPolicy"] = "ClusterFirst";
  if (!spec.contains("securityContext")) spec["securityContext"] = json::object();
  if (!spec.contains("schedulerName")) spec["schedulerName"] = "default-scheduler";
  if (!spec.contains("serviceAccountName")) spec["serviceAccountName"] = "default";
  spec["serviceAccount"] = spec["serviceAccountName"];
  if (!spec.contains("enableServiceLinks")) spec["enableServiceLinks"] = true;
  if (!spec.contains("priority")) spec["priority"] = 0;
  if (!spec.contains("preemptionPolicy")) spec["preemptionPolicy"] = "PreemptLowerPriority";
  if (!spec.contains("tolerations")) {
    spec["tolerations"] = json::array();
    for (const char* key : {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}) {
      spec["tolerations"].push_back(
          {{"key", key}, {"operator", "Exists"}, {"effect", "NoExecute"}, {"tolerationSeconds", 300}});
    }
  }
  bool any_resources = false;
  bool guaranteed = true;
  for (auto& c : spec["containers"]) {
    if (!c.contains("terminationMessagePath")) c["terminationMessagePath"] = "/dev/termination-log";
    if (!c.contains("terminationMessagePolicy")) c["terminationMessagePolicy"] = "File";
    if (!c.contains("imagePullPolicy")) {
      const std::string image = c.value("image", "");
      const bool latest = !has_tag_or_digest(image) || image.ends_with(":latest");
      c["imagePullPolicy"] = latest ? "Always" : "IfNotPresent";
    }
    json& res = c["resources"];
    if (!res.is_object()) res = json::object();
    // Requests default to the limits.
    if (res.contains("limits") && res["limits"].is_object()) {
      for (const auto& [k, v] : res["limits"].items()) {
        if (!res["requests"].contains(k)) res["requests"][k] = v;
      }
    }
    const json limits = res.value("limits", json::object());
    const json requests = res.value("requests", json::object());
    for (const char* r : {"cpu", "memory"}) {
      if (limits.contains(r) || requests.contains(r)) any_resources = true;
      if (!limits.contains(r) || requests.value(r, json()) != limits[r]) guaranteed = false;
    }
  }
  pod["status"]["qosClass"] = !any_resources ? "BestEffort" : guaranteed ? "Guaranteed" : "Burstable";
}

std::vector<field_error> validate_pod(const json& pod) {
  std::vector<field_error> errs;
  const json& meta = pod["metadata"];
  const std::string name = meta.value("name", "");
  if (name.empty()) {
    errs.push_back(required("metadata.name", "name or generateName is required"));
  } else {
    for (const auto& m : dns1123_subdomain_errors(name)) errs.push_back(invalid("metadata.name", name, m));
  }
  if (meta.contains("labels")) {
    if (!meta["labels"].is_object()) {
      errs.push_back({"FieldValueInvalid", "metadata.labels", "Invalid value: " + meta["labels"].dump() + ": must be an object"});
    } else {
      for (const auto& [k, v] : meta["labels"].items()) {
        for (const auto& m : label_key_errors(k)) errs.push_back(invalid("metadata.labels", k, m));
        const std::string value = v.is_string() ? v.get<std::string>() : v.dump();
        for (const auto& m : label_value_errors(value)) errs.push_back(invalid("metadata.labels", value, m));
      }
    }
  }
  const json& containers = pod["spec"].value("containers", json::array());
  if (!containers.is_array() || containers.empty()) {
    errs.push_back(required("spec.containers"));
    return errs;
  }
  std::vector<std::string> seen;
  for (std::size_t i = 0; i < containers.size(); ++i) {
    const json& c = containers[i];
    const std::string path = fmt::format("spec.containers[{}]", i);
    const std::string cname = c.is_object() ? c.value("name", "") : "";
    if (cname.empty()) {
      errs.push_back(required(path + ".name"));
    } else {
      for (const auto& m : dns1123_label_errors(cname)) errs.push_back(invalid(path + ".name", cname, m));
      if (std::find(seen.begin(), seen.end(), cname) != seen.end()) {
        errs.push_back({"FieldValueDuplicate", path + ".name", "Duplicate value: " + go_quote(cname)});
      }
      seen.push_back(cname);
    }
    if (!c.is_object() || c.value("image", "").empty()) errs.push_back(required(path + ".image"));
  }
  return errs;
}

std::string random_hex(std::mt19937_64& rng, std::size_t digits) {
  std::string out;
  while (out.size() < digits) out += fmt::format("{:016x}", rng());
  out.resize(digits);
  return out;
}

std::string random_uid(std::mt19937_64& rng) {
  const std::string h = random_hex(rng, 32);
  return fmt::format("{}-{}-4{}-a{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(13, 3), h.substr(17, 3), h.substr(20, 12));
}

// names.SimpleNameGenerator: five of these after generateName.
std::string random_suffix(std::mt19937_64& rng) {
  static constexpr std::string_view alphabet = "bcdfghjklmnpqrstvwxz2456789";
  std::string out;
  for (int i = 0; i < 5; ++i) out.push_back(alphabet[rng() % alphabet.size()]);
  return out;
}

json without_type_meta(json object) {
  object.erase("kind");
  object.erase("apiVersion");
  return object;
}

// ---------------------------------------------------------------------------------------------
// Exec processes

struct spawned {
  pid_t pid = -1;
  int in = -1;
  int out = -1;
  int err = -1;
  int error = 0;  // errno of a failed start
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Starts argv in a process group of its own, with pipes for the streams asked for and /dev/null
// for the others. posix_spawnp rather than fork: the test process has other threads, and
// glibc's posix_spawn reports an exec failure (ENOENT, EACCES) as its result.
spawned spawn_process(const std::vector<std::string>& argv, bool want_in, bool want_out, bool want_err) {
  spawned s;
  std::array<int, 2> in_pipe{-1, -1};
  std::array<int, 2> out_pipe{-1, -1};
  std::array<int, 2> err_pipe{-1, -1};
  auto fail = [&](int e) {
    for (auto* p : {&in_pipe, &out_pipe, &err_pipe}) {
      close_fd((*p)[0]);
      close_fd((*p)[1]);
    }
    s.error = e;
    return s;
  };
  if ((want_in && ::pipe2(in_pipe.data(), O_CLOEXEC) != 0) || (want_out && ::pipe2(out_pipe.data(), O_CLOEXEC) != 0) ||
      (want_err && ::pipe2(err_pipe.data(), O_CLOEXEC) != 0)) {
    return fail(errno);
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  // dup2 onto 0, 1 and 2 clears close-on-exec there.
  if (want_in) {
    ::posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  } else {
    ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  if (want_out) {
    ::posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  } else {
    ::posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  }
  if (want_err) {
    ::posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  } else {
    ::posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  // Nothing else goes along: Asio opens sockets without close-on-exec, and a command holding a
  // copy of some client's socket (the tests' clients live in this process) would keep that
  // connection open after the client closed it.
  ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // Its own group, so that a kill reaches what it started too; the io thread blocks SIGPIPE and
  // a test runner may ignore signals, neither of which the command should inherit.
  sigset_t none;
  sigset_t all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  ::sigdelset(&all, SIGKILL);
  ::sigdelset(&all, SIGSTOP);
  ::posix_spawnattr_setpgroup(&attr, 0);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int rc = ::posix_spawnp(&s.pid, args[0], &actions, &attr, args.data(), environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    s.pid = -1;
    return fail(rc);
  }
  close_fd(in_pipe[0]);
  close_fd(out_pipe[1]);
  close_fd(err_pipe[1]);
  s.in = in_pipe[1];
  s.out = out_pipe[0];
  s.err = err_pipe[0];
  return s;
}

// What runc says when the executable cannot be started (Go's exec.LookPath errors, then runc's
// and containerd's wrapping), for a client that looks at the message.
std::string start_failure(const std::string& program, int error, std::mt19937_64& rng) {
  std::string why;
  const bool has_slash = program.find('/') != std::string::npos;
  if (error == ENOENT && has_slash) {
    why = fmt::format("exec: {}: stat {}: no such file or directory", go_quote(program), program);
  } else if (error == ENOENT || (error == EACCES && !has_slash)) {
    why = fmt::format("exec: {}: executable file not found in $PATH", go_quote(program));
  } else if (error == EACCES) {
    why = fmt::format("exec: {}: permission denied", go_quote(program));
  } else {
    std::string text = std::strerror(error);
    if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    why = fmt::format("exec: {}: {}", go_quote(program), text);
  }
  return fmt::format("error executing command in container: failed to exec in container: failed to start exec {}: "
                     "OCI runtime exec failed: exec failed: unable to start container process: {}: unknown",
                     go_quote(random_hex(rng, 64)), why);
}

}  // namespace

// =============================================================================================

struct fake_apiserver::impl {
  struct node_state {
    fake_node spec;
    std::string uid;
    std::string created;
    std::string ip;
    std::string boot_id;
    std::uint64_t rv = 0;
  };

  struct pod_event {
    std::uint64_t rv = 0;
    std::string type;
    json object;
  };

  // One open watch: events matching its selector queue here until its coroutine writes them.
  struct watcher {
    explicit watcher(asio::io_context& ioc) : wake(ioc) {}
    selector sel;
    std::deque<std::string> lines;
    asio::steady_timer wake;  // cancelled to wake the watch; expires at its deadline
  };

  struct connection {
    explicit connection(tcp::socket s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    bool taken_over = false;          // a WebSocket owns the socket now; `stream` is moved from
    tcp::socket* upgraded = nullptr;  // that WebSocket's socket, while it lives
    bool watching = false;            // a watch ends itself, with its final chunk, on shutdown
    void close() {
      boost::system::error_code ignored;
      if (taken_over) {
        if (upgraded != nullptr) {
          upgraded->shutdown(tcp::socket::shutdown_both, ignored);
          upgraded->close(ignored);
        }
      } else {
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        stream.close();
      }
    }
  };

  struct exec_session;

  explicit impl(options o) : opts(std::move(o)), rng(std::random_device{}()) {}

  // ---- state, guarded by mutex -----------------------------------------------------------------
  options opts;
  mutable std::mutex mutex;
  std::mt19937_64 rng;
  std::uint64_t rv = 1000;
  std::string ns_uid;
  std::string ns_created;
  std::uint64_t ns_rv = 0;
  std::vector<node_state> nodes;
  std::size_t next_node = 0;
  std::uint32_t next_pod_ip = 2;
  std::map<std::string, json> pods;  // by name; one namespace
  std::vector<pod_event> history;    // every pod change, for watches that resume from a version
  std::map<std::string, std::vector<std::string>> node_images;  // by node name
  std::vector<std::string> request_log;
  std::vector<std::string> protocols;
  int watch_count = 0;
  int pod_get_count = 0;
  std::map<pid_t, std::string> exec_pids;  // running exec commands (not reaped yet) → their pod

  // ---- io thread only ----------------------------------------------------------------------------
  bool stopping = false;
  std::list<std::weak_ptr<connection>> connections;
  std::list<watcher*> watchers;
  unsigned short bound_port = 0;
  std::promise<void> ran_out;
  // Frames suspended in the io_context reference everything above: it goes first.
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> busy = asio::make_work_guard(ioc);
  tcp::acceptor acceptor{ioc};
  std::list<std::shared_ptr<asio::steady_timer>> timers;  // pending pod state changes
  std::thread thread;

  // ---- helpers -----------------------------------------------------------------------------------

  std::uint64_t bump() { return ++rv; }

  json node_json(const node_state& n) const {
    json images = json::array();
    if (const auto it = node_images.find(n.spec.name); it != node_images.end()) {
      for (const auto& i : it->second) images.push_back(node_image(i));
    }
    json conditions = json::array();
    const std::string heartbeat = now_rfc3339();
    for (const auto& [type, reason, message] :
         std::array<std::array<const char*, 3>, 3>{{{"MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"},
                                                    {"DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"},
                                                    {"PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"}}}) {
      conditions.push_back({{"type", type}, {"status", "False"}, {"lastHeartbeatTime", heartbeat},
                            {"lastTransitionTime", n.created}, {"reason", reason}, {"message", message}});
    }
    if (n.spec.ready) {
      conditions.push_back({{"type", "Ready"}, {"status", "True"}, {"lastHeartbeatTime", heartbeat},
                            {"lastTransitionTime", n.created}, {"reason", "KubeletReady"},
                            {"message", "kubelet is posting ready status"}});
    } else {
      conditions.push_back({{"type", "Ready"}, {"status", "False"}, {"lastHeartbeatTime", heartbeat},
                            {"lastTransitionTime", n.created}, {"reason", "KubeletNotReady"},
                            {"message", "container runtime network not ready: NetworkReady=false"}});
    }
    const json resources = {{"cpu", n.spec.cpu}, {"memory", n.spec.memory}, {"pods", "110"},
                            {"ephemeral-storage", "100Gi"}, {"hugepages-2Mi", "0"}};
    json spec = json::object();
    if (!n.spec.ready) {
      spec["taints"] = json::array({{{"key", "node.kubernetes.io/not-ready"}, {"effect", "NoSchedule"}}});
    }
    return {{"kind", "Node"},
            {"apiVersion", "v1"},
            {"metadata",
             {{"name", n.spec.name},
              {"uid", n.uid},
              {"resourceVersion", std::to_string(n.rv)},
              {"creationTimestamp", n.created},
              {"labels",
               {{"kubernetes.io/hostname", n.spec.name},
                {"kubernetes.io/os", "linux"},
                {"kubernetes.io/arch", "amd64"},
                {"beta.kubernetes.io/os", "linux"},
                {"beta.kubernetes.io/arch", "amd64"}}},
              {"annotations", {{"node.alpha.kubernetes.io/ttl", "0"}}}}},
            {"spec", spec},
            {"status",
             {{"capacity", resources},
              {"allocatable", resources},
              {"conditions", conditions},
              {"addresses", json::array({{{"type", "InternalIP"}, {"address", n.ip}}, {{"type", "Hostname"}, {"address", n.spec.name}}})},
              {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", 10250}}}}},
              {"nodeInfo",
               {{"machineID", fake_digest(n.uid).substr(0, 32)},
                {"systemUUID", n.uid},
                {"bootID", n.boot_id},
                {"kernelVersion", "6.1.0-sandlot"},
                {"osImage", "Debian GNU/Linux 12 (bookworm)"},
                {"containerRuntimeVersion", "containerd://1.7.13"},
                {"kubeletVersion", "v1.30.0"},
                {"kubeProxyVersion", "v1.30.0"},
                {"operatingSystem", "linux"},
                {"architecture", "amd64"}}},
              {"images", images}}}};
  }

  // Stores a change to a pod (mutex held), numbers it and tells the watches.
  void record(const std::string& type, json& pod) {
    const auto v = bump();
    pod["metadata"]["resourceVersion"] = std::to_string(v);
    history.push_back({v, type, pod});
    const std::string line = dump(json{{"type", type}, {"object", pod}}) + "\n";
    for (auto* w : watchers) {
      if (!matches(w->sel, pod)) continue;
      w->lines.push_back(line);
      w->wake.cancel();
    }
  }

  // Runs `change` on the io thread after `delay`, unless the server is stopping by then.
  void schedule(std::chrono::milliseconds delay, std::function<void()> change) {
    auto t = std::make_shared<asio::steady_timer>(ioc, delay);
    timers.push_back(t);
    auto it = std::prev(timers.end());
    t->async_wait([this, t, it, change = std::move(change)](boost::system::error_code ec) {
      timers.erase(it);
      if (ec || stopping) return;
      change();
    });
  }

  // Changes the pod `name` if it is still the one with `uid` and not being deleted.
  template <class F>
  bool modify(const std::string& name, const std::string& uid, F change) {
    std::lock_guard lock(mutex);
    const auto it = pods.find(name);
    if (it == pods.end() || it->second["metadata"].value("uid", "") != uid) return false;
    if (it->second["metadata"].contains("deletionTimestamp")) return false;
    change(it->second);
    record("MODIFIED", it->second);
    return true;
  }

  const node_state* node_named(const std::string& name) const {
    for (const auto& n : nodes) {
      if (n.spec.name == name) return &n;
    }
    return nullptr;
  }

  // ---- the pod lifecycle: scheduler, then kubelet ------------------------------------------------

  void bind(const std::string& name, const std::string& uid) {
    bool bound = false;
    modify(name, uid, [&](json& pod) {
      std::string node = pod["spec"].value("nodeName", "");
      if (node.empty()) {
        std::vector<std::size_t> ready;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
          if (nodes[i].spec.ready) ready.push_back(i);
        }
        if (ready.empty()) {
          const auto n = nodes.size();
          set_condition(pod, "PodScheduled", false, "Unschedulable",
                        fmt::format("0/{} nodes are available: {} node(s) had untolerated taint "
                                    "{{node.kubernetes.io/not-ready: }}. preemption: 0/{} nodes are available: {} "
                                    "Preemption is not helpful for scheduling.",
                                    n, n, n, n));
          return;
        }
        node = nodes[ready[next_node++ % ready.size()]].spec.name;
        pod["spec"]["nodeName"] = node;
      }
      set_condition(pod, "PodScheduled", true);
      bound = true;
    });
    if (!bound) return;
    const auto half = opts.start_delay / 2;
    schedule(half, [this, name, uid] { start_creating(name, uid); });
  }

  void start_creating(const std::string& name, const std::string& uid) {
    const bool ok = modify(name, uid, [&](json& pod) {
      const auto* n = node_named(pod["spec"].value("nodeName", ""));
      const std::string host_ip = n != nullptr ? n->ip : "127.0.1.250";
      pod["status"]["hostIP"] = host_ip;
      pod["status"]["hostIPs"] = json::array({{{"ip", host_ip}}});
      pod["status"]["startTime"] = now_rfc3339();
      const std::string unready = "containers with unready status: " + go_list(container_names(pod));
      set_condition(pod, "PodReadyToStartContainers", false);
      set_condition(pod, "Initialized", true);
      set_condition(pod, "Ready", false, "ContainersNotReady", unready);
      set_condition(pod, "ContainersReady", false, "ContainersNotReady", unready);
      json statuses = json::array();
      for (const auto& c : pod["spec"]["containers"]) {
        statuses.push_back({{"name", c.value("name", "")},
                            {"state", {{"waiting", {{"reason", "ContainerCreating"}}}}},
                            {"lastState", json::object()},
                            {"ready", false},
                            {"restartCount", 0},
                            {"image", c.value("image", "")},
                            {"imageID", ""},
                            {"started", false}});
      }
      pod["status"]["containerStatuses"] = statuses;
    });
    if (!ok) return;
    schedule(opts.start_delay - opts.start_delay / 2, [this, name, uid] { start_containers(name, uid); });
  }

  bool unpullable(const std::string& image) const {
    return std::find(opts.unpullable.begin(), opts.unpullable.end(), image) != opts.unpullable.end();
  }

  void start_containers(const std::string& name, const std::string& uid) {
    bool pull_failed = false;
    const bool ok = modify(name, uid, [&](json& pod) {
      const std::string node = pod["spec"].value("nodeName", "");
      const std::string started = now_rfc3339();
      std::vector<std::string> unready;
      json statuses = json::array();
      for (const auto& c : pod["spec"]["containers"]) {
        const std::string image = c.value("image", "");
        json s = {{"name", c.value("name", "")}, {"lastState", json::object()}, {"restartCount", 0}, {"image", image}};
        if (unpullable(image)) {
          pull_failed = true;
          unready.push_back(c.value("name", ""));
          const std::string ref = normalized_image(image);
          s["state"] = {{"waiting",
                         {{"reason", "ErrImagePull"},
                          {"message", fmt::format("rpc error: code = NotFound desc = failed to pull and unpack image {}: "
                                                  "failed to resolve reference {}: {}: not found",
                                                  go_quote(ref), go_quote(ref), ref)}}}};
          s["ready"] = false;
          s["imageID"] = "";
          s["started"] = false;
        } else {
          s["state"] = {{"running", {{"startedAt", started}}}};
          s["ready"] = true;
          s["imageID"] = image_id(image);
          s["containerID"] = "containerd://" + random_hex(rng, 64);
          s["started"] = true;
          auto& images = node_images[node];
          if (std::find(images.begin(), images.end(), image) == images.end()) images.push_back(image);
        }
        statuses.push_back(std::move(s));
      }
      pod["status"]["containerStatuses"] = statuses;
      set_condition(pod, "PodReadyToStartContainers", true);
      if (unready.empty()) {
        pod["status"]["phase"] = "Running";
        const std::uint32_t n = next_pod_ip++;
        const std::string pod_ip = fmt::format("127.1.{}.{}", (n >> 8) & 255U, n & 255U);
        pod["status"]["podIP"] = pod_ip;
        pod["status"]["podIPs"] = json::array({{{"ip", pod_ip}}});
        set_condition(pod, "Ready", true);
        set_condition(pod, "ContainersReady", true);
      } else {
        const std::string why = "containers with unready status: " + go_list(unready);
        set_condition(pod, "Ready", false, "ContainersNotReady", why);
        set_condition(pod, "ContainersReady", false, "ContainersNotReady", why);
      }
    });
    if (ok && pull_failed) schedule(opts.start_delay, [this, name, uid] { back_off(name, uid); });
  }

  void back_off(const std::string& name, const std::string& uid) {
    modify(name, uid, [&](json& pod) {
      for (auto& s : pod["status"]["containerStatuses"]) {
        if (s["state"].contains("waiting")) {
          s["state"]["waiting"] = {{"reason", "ImagePullBackOff"},
                                   {"message", fmt::format("Back-off pulling image {}", go_quote(s.value("image", "")))}};
        }
      }
    });
  }

  // Sets the deletion timestamp (mutex held) and schedules the pod's end.
  void begin_delete(json& pod, std::int64_t grace) {
    if (pod["metadata"].contains("deletionTimestamp")) return;  // already on its way out
    pod["metadata"]["deletionTimestamp"] = rfc3339(std::chrono::system_clock::now() + std::chrono::seconds(grace));
    pod["metadata"]["deletionGracePeriodSeconds"] = grace;
    record("MODIFIED", pod);
    const std::string name = pod["metadata"].value("name", "");
    const std::string uid = pod["metadata"].value("uid", "");
    schedule(opts.delete_delay, [this, name, uid] { finish_delete(name, uid); });
  }

  void finish_delete(const std::string& name, const std::string& uid) {
    std::lock_guard lock(mutex);
    const auto it = pods.find(name);
    if (it == pods.end() || it->second["metadata"].value("uid", "") != uid) return;
    json pod = std::move(it->second);
    pods.erase(it);
    record("DELETED", pod);
    // Its container is gone, and with it whatever ran in it.
    for (const auto& [pid, owner] : exec_pids) {
      if (owner == name) ::kill(-pid, SIGKILL);
    }
  }

  // Kills an exec command's process group, unless it has been reaped (its pid may be reused then).
  void kill_exec(pid_t pid) {
    std::lock_guard lock(mutex);
    if (pid > 0 && exec_pids.count(pid) != 0) ::kill(-pid, SIGKILL);
  }

  // ---- HTTP ---------------------------------------------------------------------------------------

  using response = http::response<http::string_body>;

  static response json_response(int code, const json& body) {
    response res{static_cast<http::status>(code), 11};
    res.set(http::field::content_type, "application/json");
    res.set(http::field::cache_control, "no-cache, private");
    res.body() = dump(body);
    return res;
  }

  static response status_response(const json& status) { return json_response(status.value("code", 500), status); }

  json list_object(const selector& sel) const {
    json items = json::array();
    for (const auto& [name, pod] : pods) {
      if (matches(sel, pod)) items.push_back(without_type_meta(pod));
    }
    return {{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", {{"resourceVersion", std::to_string(rv)}}}, {"items", items}};
  }

  response create_pod(const std::string& ns, const std::string& body) {
    json pod;
    try {
      pod = json::parse(body);
    } catch (const json::exception& e) {
      return status_response(bad_request(std::string("the object provided is unrecognized: ") + e.what()));
    }
    if (!pod.is_object()) return status_response(bad_request("the object provided is unrecognized: not a JSON object"));
    if (pod.contains("kind") && pod["kind"] != "Pod") {
      return status_response(bad_request(fmt::format("the API version in the data (v1) does not match the expected API "
                                                     "version (v1), or the kind {} is not Pod",
                                                     pod["kind"].dump())));
    }
    if (!pod["metadata"].is_object()) pod["metadata"] = json::object();
    if (!pod["spec"].is_object()) pod["spec"] = json::object();
    json& meta = pod["metadata"];
    if (meta.contains("namespace") && meta["namespace"] != ns) {
      return status_response(
          bad_request("the namespace of the provided object does not match the namespace sent on the request"));
    }
    std::lock_guard lock(mutex);
    if (ns != opts.ns) return status_response(not_found("namespaces", ns));
    if (meta.value("name", "").empty() && !meta.value("generateName", "").empty()) {
      meta["name"] = meta.value("generateName", "") + random_suffix(rng);
    }
    const std::string name = meta.value("name", "");
    if (const auto errs = validate_pod(pod); !errs.empty()) return status_response(invalid_object("Pod", name, errs));
    if (pods.count(name) != 0) {
      return status_response(status_object(409, "AlreadyExists", fmt::format("pods {} already exists", go_quote(name)),
                                           {{"name", name}, {"kind", "pods"}}));
    }
    pod["kind"] = "Pod";
    pod["apiVersion"] = "v1";
    meta["namespace"] = ns;
    meta["uid"] = random_uid(rng);
    meta["creationTimestamp"] = now_rfc3339();
    meta.erase("deletionTimestamp");
    meta.erase("deletionGracePeriodSeconds");
    pod["status"] = {{"phase", "Pending"}};
    apply_defaults(pod);
    json& stored = pods[name] = std::move(pod);
    record("ADDED", stored);
    const std::string uid = stored["metadata"].value("uid", "");
    // The scheduler binds it a moment later, as its own change.
    schedule(0ms, [this, name, uid] { bind(name, uid); });
    return json_response(201, stored);
  }

  // gracePeriodSeconds from the query, else from a DeleteOptions body, else the pod's own.
  static std::int64_t grace_period(const query_params& q, const std::string& body, const json& pod) {
    if (const auto g = param(q, "gracePeriodSeconds")) {
      if (const auto v = to_i64(*g); v && *v >= 0) return *v;
    }
    if (!body.empty()) {
      const json opts_body = json::parse(body, nullptr, false);
      if (opts_body.is_object() && opts_body.contains("gracePeriodSeconds") && opts_body["gracePeriodSeconds"].is_number_integer()) {
        return std::max<std::int64_t>(0, opts_body["gracePeriodSeconds"].get<std::int64_t>());
      }
    }
    return pod["spec"].value("terminationGracePeriodSeconds", std::int64_t{30});
  }

  response handle_pods(http::verb method, const std::string& ns, const query_params& q, const std::string& body) {
    if (method == http::verb::post) return create_pod(ns, body);
    if (method != http::verb::get && method != http::verb::delete_) return status_response(method_not_allowed());
    selector sel;
    if (auto err = parse_selector(q, sel)) return status_response(bad_request(*err));
    std::lock_guard lock(mutex);
    // A list in a namespace that does not exist is empty, as on the real server.
    if (ns != opts.ns) sel.nothing = true;
    if (method == http::verb::get || sel.nothing) return json_response(200, list_object(sel));
    json items = json::array();
    for (auto& [name, pod] : pods) {
      if (!matches(sel, pod)) continue;
      begin_delete(pod, grace_period(q, body, pod));
      items.push_back(without_type_meta(pod));
    }
    return json_response(200, {{"kind", "PodList"},
                               {"apiVersion", "v1"},
                               {"metadata", {{"resourceVersion", std::to_string(rv)}}},
                               {"items", items}});
  }

  response handle_pod(http::verb method, const std::string& ns, const std::string& name, const query_params& q,
                      const std::string& body) {
    if (method != http::verb::get && method != http::verb::delete_) return status_response(method_not_allowed());
    std::lock_guard lock(mutex);
    if (method == http::verb::get) ++pod_get_count;
    const auto it = ns == opts.ns ? pods.find(name) : pods.end();
    if (it == pods.end()) return status_response(not_found("pods", name));
    if (method == http::verb::get) return json_response(200, it->second);
    begin_delete(it->second, grace_period(q, body, it->second));
    return json_response(200, it->second);
  }

  response handle_plain(http::verb method, const std::vector<std::string>& seg, const query_params& q,
                        const std::string& body) {
    const auto n = seg.size();
    if (n == 1 && seg[0] == "version") {
      if (method != http::verb::get) return status_response(method_not_allowed());
      return json_response(200, {{"major", "1"},
                                 {"minor", "30"},
                                 {"gitVersion", "v1.30.0-sandlot-fake"},
                                 {"gitCommit", "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a"},
                                 {"gitTreeState", "clean"},
                                 {"buildDate", "2024-04-17T17:27:45Z"},
                                 {"goVersion", "go1.22.2"},
                                 {"compiler", "gc"},
                                 {"platform", "linux/amd64"}});
    }
    if (n < 2 || seg[0] != "api") return status_response(unknown_path());
    if (seg[1] != "v1") return status_response(unknown_path());
    if (n == 3 && seg[2] == "nodes") {
      if (method != http::verb::get) return status_response(method_not_allowed());
      std::lock_guard lock(mutex);
      json items = json::array();
      for (const auto& node : nodes) items.push_back(without_type_meta(node_json(node)));
      return json_response(200, {{"kind", "NodeList"},
                                 {"apiVersion", "v1"},
                                 {"metadata", {{"resourceVersion", std::to_string(rv)}}},
                                 {"items", items}});
    }
    if (n == 4 && seg[2] == "nodes") {
      if (method != http::verb::get) return status_response(method_not_allowed());
      std::lock_guard lock(mutex);
      const auto* node = node_named(seg[3]);
      if (node == nullptr) return status_response(not_found("nodes", seg[3]));
      return json_response(200, node_json(*node));
    }
    if (n < 4 || seg[2] != "namespaces") return status_response(unknown_path());
    const std::string& ns = seg[3];
    if (n == 4) {
      if (method != http::verb::get) return status_response(method_not_allowed());
      std::lock_guard lock(mutex);
      if (ns != opts.ns) return status_response(not_found("namespaces", ns));
      return json_response(200, {{"kind", "Namespace"},
                                 {"apiVersion", "v1"},
                                 {"metadata",
                                  {{"name", ns},
                                   {"uid", ns_uid},
                                   {"resourceVersion", std::to_string(ns_rv)},
                                   {"creationTimestamp", ns_created},
                                   {"labels", {{"kubernetes.io/metadata.name", ns}}}}},
                                 {"spec", {{"finalizers", json::array({"kubernetes"})}}},
                                 {"status", {{"phase", "Active"}}}});
    }
    if (seg[4] != "pods") return status_response(unknown_path());
    if (n == 5) return handle_pods(method, ns, q, body);
    if (n == 6) return handle_pod(method, ns, seg[5], q, body);
    if (n == 7 && seg[6] == "exec") return status_response(bad_request("Upgrade request required"));
    return status_response(unknown_path());
  }

  // ---- connections --------------------------------------------------------------------------------

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, s] = co_await acceptor.async_accept(tuple_awaitable);
      if (stopping || !acceptor.is_open()) co_return;
      if (ec) continue;
      auto c = std::make_shared<connection>(std::move(s));
      connections.remove_if([](const std::weak_ptr<connection>& w) { return w.expired(); });
      connections.push_back(c);
      asio::co_spawn(ioc, serve(std::move(c)), report_exception);
    }
  }

  // `c` by value: this frame owns the connection while it is served.
  asio::awaitable<void> serve(std::shared_ptr<connection> c) {
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(64 * 1024);
      parser.body_limit(8 * 1024 * 1024);
      c->stream.expires_after(60s);
      auto [ec, n] = co_await http::async_read(c->stream, buffer, parser, tuple_awaitable);
      (void)n;
      if (ec) {
        const bool malformed = ec.category() == make_error_code(http::error::bad_target).category() &&
                               ec != http::error::end_of_stream && ec != http::error::partial_message;
        if (malformed && !stopping && c->stream.socket().is_open()) {
          response res = status_response(bad_request("malformed HTTP request: " + ec.message()));
          res.keep_alive(false);
          res.prepare_payload();
          co_await http::async_write(c->stream, res, tuple_awaitable);
        }
        co_return;
      }
      c->stream.expires_never();
      http::request<http::string_body> req = parser.release();
      const std::string target(req.target());
      {
        std::lock_guard lock(mutex);
        request_log.push_back(std::string(req.method_string()) + " " + target);
      }
      const auto qmark = target.find('?');
      const std::string path = target.substr(0, qmark);
      const query_params q = qmark == std::string::npos ? query_params{} : parse_query(std::string_view(target).substr(qmark + 1));
      std::vector<std::string> seg;
      for (const auto& s : split_path(path)) seg.push_back(url_decode(s, false));

      const bool keep_alive = req.keep_alive();
      if (!opts.token.empty() && req[http::field::authorization] != "Bearer " + opts.token) {
        response res = status_response(status_object(401, "Unauthorized", "Unauthorized"));
        if (!co_await respond(*c, std::move(res), keep_alive)) co_return;
        continue;
      }
      const bool pods_path = seg.size() == 5 && seg[0] == "api" && seg[1] == "v1" && seg[2] == "namespaces" && seg[4] == "pods";
      if (pods_path && req.method() == http::verb::get && truthy(param(q, "watch"))) {
        co_await serve_watch(c, seg[3], q, req.version());
        co_return;
      }
      const bool exec_path = seg.size() == 7 && seg[0] == "api" && seg[1] == "v1" && seg[2] == "namespaces" &&
                             seg[4] == "pods" && seg[6] == "exec";
      if (exec_path && (req.method() == http::verb::get || req.method() == http::verb::post) &&
          websocket::is_upgrade(req)) {
        auto refusal = exec_refusal(seg[3], seg[5], q, req);
        if (refusal) {
          response res = status_response(*refusal);
          co_await respond(*c, std::move(res), false);
          co_return;
        }
        co_await serve_exec(c, seg[5], q, std::move(req));
        co_return;
      }
      if (exec_path && req.method() != http::verb::get && req.method() != http::verb::post) {
        response res = status_response(method_not_allowed());
        if (!co_await respond(*c, std::move(res), keep_alive)) co_return;
        continue;
      }
      response res;
      try {
        res = handle_plain(req.method(), seg, q, req.body());
      } catch (const json::exception& e) {
        // A field of the wrong JSON type, as the real server's decoder would refuse it.
        res = status_response(bad_request(std::string("the object provided is unrecognized: ") + e.what()));
      }
      if (!co_await respond(*c, std::move(res), keep_alive)) co_return;
    }
  }

  static std::vector<std::string> split_path(const std::string& path) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= path.size()) {
      const auto slash = path.find('/', start);
      const auto part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      if (!part.empty()) out.push_back(part);
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    return out;
  }

  // Writes `res`; true when the connection goes on to its next request.
  asio::awaitable<bool> respond(connection& c, response res, bool keep_alive) {
    res.set(http::field::date, http_date());
    res.keep_alive(keep_alive && !stopping);
    res.prepare_payload();
    c.stream.expires_after(30s);
    auto [ec, n] = co_await http::async_write(c.stream, res, tuple_awaitable);
    (void)n;
    if (ec || !res.keep_alive()) {
      boost::system::error_code ignored;
      c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return false;
    }
    co_return true;
  }

  static std::string http_date() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::array<char, 64> out{};
    const auto n = std::strftime(out.data(), out.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    return std::string(out.data(), n);
  }

  // ---- watch --------------------------------------------------------------------------------------

  static std::string chunk(const std::string& data) { return fmt::format("{:x}\r\n{}\r\n", data.size(), data); }

  asio::awaitable<void> serve_watch(std::shared_ptr<connection> c, std::string ns, query_params q, unsigned version) {
    selector sel;
    if (auto err = parse_selector(q, sel)) {
      response res = status_response(bad_request(*err));
      co_await respond(*c, std::move(res), false);
      co_return;
    }
    auto timeout = default_watch_timeout;
    if (const auto t = param(q, "timeoutSeconds")) {
      if (const auto v = to_i64(*t); v && *v > 0) timeout = std::chrono::seconds(*v);
    }
    watcher w(ioc);
    w.sel = std::move(sel);
    if (ns != opts.ns) w.sel.nothing = true;  // an empty stream, as on the real server
    {
      std::lock_guard lock(mutex);
      ++watch_count;
      const auto since = param(q, "resourceVersion");
      const auto from = since ? to_u64(*since) : std::nullopt;
      if (from && *from != 0) {
        // Resume: every change after that version, as the real server replays from its cache.
        for (const auto& e : history) {
          if (e.rv > *from && matches(w.sel, e.object)) {
            w.lines.push_back(dump(json{{"type", e.type}, {"object", e.object}}) + "\n");
          }
        }
      } else {
        for (const auto& [name, pod] : pods) {
          if (matches(w.sel, pod)) w.lines.push_back(dump(json{{"type", "ADDED"}, {"object", pod}}) + "\n");
        }
      }
      watchers.push_back(&w);
    }
    struct unregister {
      impl& self;
      watcher* w;
      ~unregister() { self.watchers.remove(w); }
    } guard{*this, &w};
    c->watching = true;
    const std::string head = fmt::format(
        "HTTP/1.{} 200 OK\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\n"
        "Date: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        version == 10 ? 0 : 1, http_date());
    auto [ec, n] = co_await asio::async_write(c->stream.socket(), asio::buffer(head), tuple_awaitable);
    (void)n;
    if (ec) co_return;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    using namespace asio::experimental::awaitable_operators;
    co_await (pump_watch(*c, w, deadline) || until_peer_gone(*c));
  }

  // Writes each event as one chunk as it happens; ends with the final chunk at the deadline or
  // when the server stops.
  asio::awaitable<void> pump_watch(connection& c, watcher& w, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      while (!w.lines.empty()) {
        const std::string bytes = chunk(w.lines.front());
        w.lines.pop_front();
        auto [ec, n] = co_await asio::async_write(c.stream.socket(), asio::buffer(bytes), tuple_awaitable);
        (void)n;
        if (ec) co_return;
      }
      if (stopping || std::chrono::steady_clock::now() >= deadline) break;
      w.wake.expires_at(deadline);
      co_await w.wake.async_wait(tuple_awaitable);
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) co_return;
    }
    const std::string last = "0\r\n\r\n";
    co_await asio::async_write(c.stream.socket(), asio::buffer(last), tuple_awaitable);
    boost::system::error_code ignored;
    c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // A watch client sends nothing; a read ends only when it goes away.
  static asio::awaitable<void> until_peer_gone(connection& c) {
    std::array<char, 256> sink{};
    for (;;) {
      auto [ec, n] = co_await c.stream.socket().async_read_some(asio::buffer(sink), tuple_awaitable);
      (void)n;
      if (ec) co_return;
    }
  }

  // ---- exec ---------------------------------------------------------------------------------------

  // Why an exec request is refused before the upgrade, as a Status; nothing when it may go on.
  std::optional<json> exec_refusal(const std::string& ns, const std::string& name, const query_params& q,
                                   const http::request<http::string_body>& req) {
    std::lock_guard lock(mutex);
    const auto it = ns == opts.ns ? pods.find(name) : pods.end();
    if (it == pods.end()) return not_found("pods", name);
    const json& pod = it->second;
    if (params(q, "command").empty()) return bad_request("you must specify at least one command for the container");
    if (!truthy(param(q, "stdin")) && !truthy(param(q, "stdout")) && !truthy(param(q, "stderr"))) {
      return bad_request("you must specify at least 1 of stdin, stdout, stderr");
    }
    const auto names = container_names(pod);
    std::string container = param(q, "container").value_or("");
    if (container.empty()) {
      if (names.size() != 1) {
        return bad_request(fmt::format("a container name must be specified for pod {}, choose one of: {}", name, go_list(names)));
      }
      container = names.front();
    } else if (std::find(names.begin(), names.end(), container) == names.end()) {
      return bad_request(fmt::format("container {} is not valid for pod {}", container, name));
    }
    if (pod["spec"].value("nodeName", "").empty()) return bad_request(fmt::format("pod {} does not have a host assigned", name));
    bool running = false;
    for (const auto& s : pod["status"].value("containerStatuses", json::array())) {
      if (s.value("name", "") == container && s["state"].contains("running")) running = true;
    }
    if (!running) return bad_request(fmt::format("container not found ({})", go_quote(container)));
    if (pick_protocol(req).empty()) {
      std::vector<std::string> offered;
      for (const auto& p : offered_protocols(req)) offered.push_back(p);
      std::vector<std::string> supported;
      if (opts.offer_v5) supported.emplace_back("v5.channel.k8s.io");
      supported.emplace_back("v4.channel.k8s.io");
      return bad_request(fmt::format("requested protocol(s) are not supported: {}; supports {}", go_list(offered),
                                     go_list(supported)));
    }
    return std::nullopt;
  }

  static std::vector<std::string> offered_protocols(const http::request<http::string_body>& req) {
    std::vector<std::string> out;
    const auto [first, last] = req.equal_range(http::field::sec_websocket_protocol);
    for (auto it = first; it != last; ++it) {
      for (const auto& p : split_terms(std::string(it->value()))) out.push_back(p);
    }
    return out;
  }

  // v5 when the client offers it anywhere (the 1.30 server's stream translator takes every such
  // request), else v4; nothing else is spoken here.
  std::string pick_protocol(const http::request<http::string_body>& req) const {
    const auto offered = offered_protocols(req);
    const auto has = [&](std::string_view p) { return std::find(offered.begin(), offered.end(), p) != offered.end(); };
    if (opts.offer_v5 && has("v5.channel.k8s.io")) return "v5.channel.k8s.io";
    if (has("v4.channel.k8s.io")) return "v4.channel.k8s.io";
    return {};
  }

  asio::awaitable<void> serve_exec(std::shared_ptr<connection> c, std::string pod_name, query_params q,
                                   http::request<http::string_body> req);

  // ---- lifetime -----------------------------------------------------------------------------------

  void start() {
    {
      std::lock_guard lock(mutex);
      ns_uid = random_uid(rng);
      ns_created = now_rfc3339();
      ns_rv = bump();
      for (std::size_t i = 0; i < opts.nodes.size(); ++i) {
        node_state n;
        n.spec = opts.nodes[i];
        n.uid = random_uid(rng);
        n.created = ns_created;
        n.ip = fmt::format("127.0.1.{}", i + 1);
        n.boot_id = random_uid(rng);
        n.rv = bump();
        node_images[n.spec.name] = n.spec.images;
        nodes.push_back(std::move(n));
      }
    }
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    bound_port = acceptor.local_endpoint().port();
    asio::co_spawn(ioc, accept_loop(), report_exception);
    thread = std::thread([this] {
      // A write to the stdin of a command that has exited must fail with EPIPE, not kill the test.
      sigset_t pipe;
      ::sigemptyset(&pipe);
      ::sigaddset(&pipe, SIGPIPE);
      ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      try {
        ioc.run();
      } catch (...) {
      }
      ran_out.set_value();
    });
  }

  void stop() {
    auto done = std::make_shared<std::promise<void>>();
    asio::post(ioc, [this, done] {
      stopping = true;
      boost::system::error_code ignored;
      acceptor.close(ignored);
      for (auto& t : timers) t->cancel();
      for (auto* w : watchers) w->wake.cancel();  // each writes its final chunk and ends
      for (auto& weak : connections) {
        if (auto c = weak.lock(); c && !c->watching) c->close();
      }
      done->set_value();
    });
    done->get_future().wait_for(10s);
    busy.reset();
    // Every coroutine ends on its own now; stop() is for one that does not, so that a test cannot hang here.
    if (ran_out.get_future().wait_for(5s) != std::future_status::ready) ioc.stop();
    if (thread.joinable()) thread.join();
    // Commands the loop did not get to reap: killed and reaped here, so none outlives the server.
    std::lock_guard lock(mutex);
    for (const auto& [pid, pod] : exec_pids) {
      ::kill(-pid, SIGKILL);
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    exec_pids.clear();
  }
};

// One exec: a command whose streams are carried over the WebSocket in channel.k8s.io frames.
struct fake_apiserver::impl::exec_session {
  exec_session(impl& server, websocket::stream<beast::tcp_stream>& ws, bool v5, std::vector<std::string> argv,
               bool want_in, bool want_out, bool want_err)
      : server_(server),
        ws_(ws),
        v5_(v5),
        argv_(std::move(argv)),
        want_in_(want_in),
        want_out_(want_out),
        want_err_(want_err),
        in_(server.ioc),
        out_(server.ioc),
        err_(server.ioc),
        frames_ready_(server.ioc),
        room_(server.ioc),
        stdin_ready_(server.ioc) {}

  asio::awaitable<void> run(std::string pod_name) {
    using namespace asio::experimental::awaitable_operators;
    // The real server first sends an empty frame on the lowest channel it writes, to say the
    // streams are up.
    send(want_out_ ? 1 : want_err_ ? 2 : 3, "");
    const spawned p = spawn_process(argv_, want_in_, want_out_, want_err_);
    if (p.pid < 0) {
      std::string message;
      {
        std::lock_guard lock(server_.mutex);
        message = start_failure(argv_.front(), p.error, server_.rng);
      }
      send(3, dump(failure_status(message)));
      output_done_ = true;
      stdin_eof_ = true;
      co_await (read_client() && write_client());
      co_return;
    }
    pid_ = p.pid;
    {
      std::lock_guard lock(server_.mutex);
      server_.exec_pids[pid_] = pod_name;
    }
    if (p.in >= 0) in_.assign(p.in);
    if (p.out >= 0) out_.assign(p.out);
    if (p.err >= 0) err_.assign(p.err);
    co_await (read_client() && write_stdin() && produce() && write_client());
  }

 private:
  // A command that did not start: the runtime's error as the kubelet's streaming server reports
  // it (errors.NewInternalError). Over v5 the 1.30 API server's stream translator decodes that
  // Status into a plain error and wraps it in NewInternalError again, so the prefix doubles.
  json failure_status(const std::string& runtime_error) const {
    const std::string once = "Internal error occurred: " + runtime_error;
    const std::string cause = v5_ ? once : runtime_error;
    const std::string message = v5_ ? "Internal error occurred: " + once : once;
    return {{"metadata", json::object()},
            {"status", "Failure"},
            {"message", message},
            {"reason", "InternalError"},
            {"details", {{"causes", json::array({{{"message", cause}}})}}},
            {"code", 500}};
  }

  json exit_status() const {
    int code = 0;
    if (WIFEXITED(wait_status_)) {
      code = WEXITSTATUS(wait_status_);
    } else if (WIFSIGNALED(wait_status_)) {
      code = 128 + WTERMSIG(wait_status_);
    }
    if (code == 0) return {{"metadata", json::object()}, {"status", "Success"}};
    return {{"metadata", json::object()},
            {"status", "Failure"},
            {"message", fmt::format("command terminated with non-zero exit code: error executing command {}, exit code {}",
                                    go_list(argv_), code)},
            {"reason", "NonZeroExitCode"},
            {"details", {{"causes", json::array({{{"reason", "ExitCode"}, {"message", std::to_string(code)}}})}}}};
  }

  void send(int channel, const std::string& data) {
    if (ws_broken_) return;
    std::string frame(1, static_cast<char>(channel));
    frame += data;
    queued_ += frame.size();
    frames_.push_back(std::move(frame));
    frames_ready_.cancel();
  }

  // Frames from the client: stdin data, v5's CLOSE of stdin; anything else is ignored (resize).
  asio::awaitable<void> read_client() {
    beast::flat_buffer buf;
    for (;;) {
      auto [ec, n] = co_await ws_.async_read(buf, tuple_awaitable);
      (void)n;
      if (ec) break;
      const auto data = buf.cdata();
      const auto* bytes = static_cast<const unsigned char*>(data.data());
      const std::size_t size = data.size();
      if (size >= 1 && bytes[0] == 0 && want_in_ && !stdin_eof_) {
        if (size > 1) stdin_.emplace_back(reinterpret_cast<const char*>(bytes) + 1, size - 1);
        stdin_ready_.cancel();
      } else if (size >= 2 && bytes[0] == 255 && v5_ && bytes[1] == 0) {
        stdin_eof_ = true;
        stdin_ready_.cancel();
      }
      buf.consume(buf.size());
    }
    // The client closed or went away: stdin ends, and a command still running has nobody to
    // report to.
    stdin_eof_ = true;
    stdin_ready_.cancel();
    if (!output_done_) server_.kill_exec(pid_);
    ws_broken_ = true;
    frames_.clear();
    queued_ = 0;
    frames_ready_.cancel();
    room_.cancel();
  }

  asio::awaitable<void> write_stdin() {
    for (;;) {
      if (!stdin_.empty()) {
        const std::string piece = std::move(stdin_.front());
        stdin_.pop_front();
        if (!in_.is_open()) continue;
        auto [ec, n] = co_await asio::async_write(in_, asio::buffer(piece), tuple_awaitable);
        (void)n;
        if (ec) {
          stdin_.clear();
          break;
        }
        continue;
      }
      if (stdin_eof_ || exited_) break;
      stdin_ready_.expires_at(asio::steady_timer::time_point::max());
      co_await stdin_ready_.async_wait(tuple_awaitable);
    }
    boost::system::error_code ignored;
    in_.close(ignored);
  }

  asio::awaitable<void> read_pipe(asio::posix::stream_descriptor& pipe, int channel, bool& eof) {
    std::array<char, 32 * 1024> buf{};
    while (pipe.is_open()) {
      auto [ec, n] = co_await pipe.async_read_some(asio::buffer(buf), tuple_awaitable);
      if (n > 0) send(channel, std::string(buf.data(), n));
      if (ec) break;
      while (queued_ > exec_backlog_limit && !ws_broken_) {
        room_.expires_at(asio::steady_timer::time_point::max());
        co_await room_.async_wait(tuple_awaitable);
      }
    }
    eof = true;
  }

  asio::awaitable<void> reap() {
    asio::steady_timer tick(server_.ioc);
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno != EINTR)) {
        wait_status_ = r == pid_ ? status : 0;
        break;
      }
      tick.expires_after(reap_poll);
      co_await tick.async_wait(tuple_awaitable);
    }
    {
      std::lock_guard lock(server_.mutex);
      server_.exec_pids.erase(pid_);
    }
    exited_ = true;
    stdin_ready_.cancel();
    const auto until = std::chrono::steady_clock::now() + exec_drain_grace;
    while (!(out_eof_ && err_eof_) && std::chrono::steady_clock::now() < until) {
      tick.expires_after(reap_poll);
      co_await tick.async_wait(tuple_awaitable);
    }
    boost::system::error_code ignored;
    out_.close(ignored);
    err_.close(ignored);
    in_.close(ignored);  // a background child holding stdin must not keep write_stdin waiting
  }

  asio::awaitable<void> produce() {
    using namespace asio::experimental::awaitable_operators;
    co_await (read_pipe(out_, 1, out_eof_) && read_pipe(err_, 2, err_eof_) && reap());
    send(3, dump(exit_status()));
    output_done_ = true;
    frames_ready_.cancel();
  }

  // The only writer of the WebSocket: frames in order, then the close.
  asio::awaitable<void> write_client() {
    for (;;) {
      if (!frames_.empty()) {
        const std::string frame = std::move(frames_.front());
        frames_.pop_front();
        queued_ -= frame.size();
        if (!ws_broken_) {
          auto [ec, n] = co_await ws_.async_write(asio::buffer(frame), tuple_awaitable);
          (void)n;
          if (ec) {
            ws_broken_ = true;
            frames_.clear();
            queued_ = 0;
          }
        }
        room_.cancel();
        continue;
      }
      if (output_done_ || ws_broken_) break;
      frames_ready_.expires_at(asio::steady_timer::time_point::max());
      co_await frames_ready_.async_wait(tuple_awaitable);
    }
    // Wait for output_done_ even when the client is gone: produce() still needs the frames' room.
    while (!output_done_) {
      frames_ready_.expires_at(asio::steady_timer::time_point::max());
      co_await frames_ready_.async_wait(tuple_awaitable);
    }
    if (!ws_broken_) {
      const websocket::close_reason normal(websocket::close_code::normal);
      co_await ws_.async_close(normal, tuple_awaitable);
    }
  }

  impl& server_;
  websocket::stream<beast::tcp_stream>& ws_;
  bool v5_;
  std::vector<std::string> argv_;
  bool want_in_;
  bool want_out_;
  bool want_err_;
  pid_t pid_ = -1;
  int wait_status_ = 0;
  asio::posix::stream_descriptor in_;
  asio::posix::stream_descriptor out_;
  asio::posix::stream_descriptor err_;
  std::deque<std::string> frames_;  // to the client, in order
  std::size_t queued_ = 0;
  bool output_done_ = false;  // the status frame is queued; nothing follows it
  bool ws_broken_ = false;
  asio::steady_timer frames_ready_;
  asio::steady_timer room_;
  std::deque<std::string> stdin_;
  bool stdin_eof_ = false;
  asio::steady_timer stdin_ready_;
  bool exited_ = false;
  bool out_eof_ = false;
  bool err_eof_ = false;
};

asio::awaitable<void> fake_apiserver::impl::serve_exec(std::shared_ptr<connection> c, std::string pod_name,
                                                   query_params q, http::request<http::string_body> req) {
  const std::string protocol = pick_protocol(req);
  websocket::stream<beast::tcp_stream> ws(std::move(c->stream));
  c->taken_over = true;
  c->upgraded = &beast::get_lowest_layer(ws).socket();
  struct detach {
    connection& c;
    ~detach() { c.upgraded = nullptr; }
  } guard{*c};
  ws.set_option(websocket::stream_base::timeout{5s, websocket::stream_base::none(), false});
  ws.set_option(websocket::stream_base::decorator([protocol](websocket::response_type& res) {
    res.set(http::field::sec_websocket_protocol, protocol);
  }));
  auto [aec] = co_await ws.async_accept(req, tuple_awaitable);
  if (aec) co_return;
  ws.binary(true);
  {
    std::lock_guard lock(mutex);
    protocols.push_back(protocol);
  }
  exec_session session(*this, ws, protocol == "v5.channel.k8s.io", params(q, "command"), truthy(param(q, "stdin")),
                       truthy(param(q, "stdout")), truthy(param(q, "stderr")));
  co_await session.run(pod_name);
}

// =============================================================================================

fake_apiserver::fake_apiserver(options opts) : impl_(std::make_unique<impl>(std::move(opts))) { impl_->start(); }

fake_apiserver::fake_apiserver() : fake_apiserver(options{}) {}

fake_apiserver::~fake_apiserver() { impl_->stop(); }

unsigned short fake_apiserver::port() const { return impl_->bound_port; }

std::string fake_apiserver::url() const { return fmt::format("http://127.0.0.1:{}", impl_->bound_port); }

std::vector<nlohmann::json> fake_apiserver::pods() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<json> out;
  for (const auto& [name, pod] : impl_->pods) out.push_back(pod);
  return out;
}

std::vector<std::string> fake_apiserver::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->request_log;
}

std::vector<std::string> fake_apiserver::exec_protocols() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->protocols;
}

int fake_apiserver::watches() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->watch_count;
}

int fake_apiserver::pod_gets() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->pod_get_count;
}

void fake_apiserver::forget_images(const std::string& node) {
  std::lock_guard lock(impl_->mutex);
  impl_->node_images[node].clear();
}

}  // namespace sandlot::test
