#include <sandlot/protocol.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

namespace sandlot::protocol {
namespace {

struct errc_entry {
  errc code;
  std::string_view name;
  int status;
};

constexpr std::array errc_table{
    errc_entry{errc::unknown, "unknown", 500},
    errc_entry{errc::bad_request, "bad_request", 400},
    errc_entry{errc::bad_json, "bad_json", 400},
    errc_entry{errc::invalid_field, "invalid_field", 400},
    errc_entry{errc::not_found, "not_found", 404},
    errc_entry{errc::method_not_allowed, "method_not_allowed", 405},
    errc_entry{errc::payload_too_large, "payload_too_large", 413},
    errc_entry{errc::too_many_requests, "too_many_requests", 429},
    errc_entry{errc::lease_not_ready, "lease_not_ready", 409},
    errc_entry{errc::lease_gone, "lease_gone", 410},
    errc_entry{errc::image_pull_failed, "image_pull_failed", 502},
    errc_entry{errc::sandbox_failed, "sandbox_failed", 502},
    errc_entry{errc::ready_timeout, "ready_timeout", 504},
    errc_entry{errc::engine_error, "engine_error", 502},
    errc_entry{errc::exec_failed, "exec_failed", 502},
    errc_entry{errc::shutting_down, "shutting_down", 503},
    errc_entry{errc::unauthorized, "unauthorized", 401},
    errc_entry{errc::conflict, "conflict", 409},
    errc_entry{errc::internal, "internal", 500},
    errc_entry{errc::forbidden, "forbidden", 403},
    errc_entry{errc::unsupported_media_type, "unsupported_media_type", 415},
    errc_entry{errc::engine_unavailable, "engine_unavailable", 503},
    errc_entry{errc::overloaded, "overloaded", 503},
    errc_entry{errc::evicted, "evicted", 410},
    errc_entry{errc::engine_lost, "engine_lost", 410},
};

constexpr std::array<std::pair<lease_state, std::string_view>, 8> state_names{{
    {lease_state::unknown, "unknown"},
    {lease_state::queued, "queued"},
    {lease_state::pulling, "pulling"},
    {lease_state::starting, "starting"},
    {lease_state::ready, "ready"},
    {lease_state::released, "released"},
    {lease_state::failed, "failed"},
    {lease_state::expired, "expired"},
}};

constexpr std::array<std::pair<network_mode, std::string_view>, 3> network_names{{
    {network_mode::unknown, "unknown"},
    {network_mode::none, "none"},
    {network_mode::host, "host"},
}};

constexpr std::array<std::pair<lock_mode, std::string_view>, 3> lock_mode_names{{
    {lock_mode::unknown, "unknown"},
    {lock_mode::shared, "shared"},
    {lock_mode::exclusive, "exclusive"},
}};

using json = nlohmann::json;

[[noreturn]] void bad_field(std::string_view field, std::string_view what) {
  throw api_error(errc::invalid_field, fmt::format("field '{}' {}", field, what));
}

const json* find(const json& j, std::string_view field) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

void read(const json& j, std::string_view field, std::string& out, bool required = false) {
  const json* v = find(j, field);
  if (v == nullptr) {
    if (required) bad_field(field, "is required and must be a string");
    return;
  }
  if (!v->is_string()) bad_field(field, "must be a string");
  out = v->get<std::string>();
}

void read(const json& j, std::string_view field, std::optional<std::string>& out) {
  const json* v = find(j, field);
  if (v == nullptr) return;
  if (!v->is_string()) bad_field(field, "must be a string");
  out = v->get<std::string>();
}

template <class Int>
void read_int(const json& j, std::string_view field, Int& out, Int lo, Int hi) {
  const json* v = find(j, field);
  if (v == nullptr) return;
  if (!v->is_number_integer()) bad_field(field, "must be an integer");
  if (v->is_number_unsigned()) {
    auto u = v->get<std::uint64_t>();
    // nlohmann stores non-negative literals (0 included) as unsigned: check both bounds here too.
    if (u > static_cast<std::uint64_t>(hi) || (lo > 0 && u < static_cast<std::uint64_t>(lo))) {
      bad_field(field, fmt::format("must be between {} and {}", lo, hi));
    }
    out = static_cast<Int>(u);
  } else {
    auto s = v->get<std::int64_t>();
    if (s < static_cast<std::int64_t>(lo) || s > static_cast<std::int64_t>(hi)) {
      bad_field(field, fmt::format("must be between {} and {}", lo, hi));
    }
    out = static_cast<Int>(s);
  }
}

void read_double(const json& j, std::string_view field, double& out, double lo, double hi) {
  const json* v = find(j, field);
  if (v == nullptr) return;
  if (!v->is_number()) bad_field(field, "must be a number");
  double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) bad_field(field, fmt::format("must be between {} and {}", lo, hi));
  out = d;
}

void read_bool(const json& j, std::string_view field, bool& out) {
  const json* v = find(j, field);
  if (v == nullptr) return;
  if (!v->is_boolean()) bad_field(field, "must be true or false");
  out = v->get<bool>();
}

/// `text` with control characters shown as \xNN, for messages that quote what a client sent.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void read_env(const json& j, std::string_view field, std::map<std::string, std::string>& out) {
  const json* v = find(j, field);
  if (v == nullptr) return;
  if (!v->is_object()) bad_field(field, "must be an object of string values, e.g. {\"KEY\": \"value\"}");
  if (v->size() > 256) bad_field(field, "may hold at most 256 variables");
  for (const auto& [key, value] : v->items()) {
    // What execve and the engine accept: a name without '=' or NUL; a value without NUL.
    const bool control = std::any_of(key.begin(), key.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
    if (key.empty() || key.size() > 256 || key.find('=') != std::string::npos || control) {
      bad_field(fmt::format("{} key '{}'", field, printable(key.substr(0, 64))),
                "must be 1 to 256 characters without '=' or control characters, e.g. MY_VAR");
    }
    if (!value.is_string()) bad_field(fmt::format("{}.{}", field, key), "must be a string");
    auto s = value.get<std::string>();
    if (s.find('\0') != std::string::npos) bad_field(fmt::format("{}.{}", field, key), "must not contain NUL");
    if (s.size() > 64 * 1024) bad_field(fmt::format("{}.{}", field, key), "must be at most 64 KiB");
    out[key] = std::move(s);
  }
}

template <class T>
void put_optional(json& j, std::string_view field, const std::optional<T>& v) {
  if (v) j[std::string(field)] = *v;
}

}  // namespace

std::string_view code_string(errc code) noexcept {
  for (const auto& e : errc_table) {
    if (e.code == code) return e.name;
  }
  return "unknown";
}

errc code_from_string(std::string_view code) noexcept {
  for (const auto& e : errc_table) {
    if (e.name == code) return e.code;
  }
  return errc::unknown;
}

int http_status(errc code) noexcept {
  for (const auto& e : errc_table) {
    if (e.code == code) return e.status;
  }
  return 500;
}

json error_json(errc code, std::string_view message) {
  return json{{"error", {{"code", code_string(code)}, {"message", message}}}};
}

std::string_view to_string(lease_state s) noexcept {
  for (const auto& [v, n] : state_names) {
    if (v == s) return n;
  }
  return "unknown";
}

lease_state lease_state_from_string(std::string_view s) noexcept {
  for (const auto& [v, n] : state_names) {
    if (n == s) return v;
  }
  return lease_state::unknown;
}

bool is_final(lease_state s) noexcept {
  return s == lease_state::released || s == lease_state::failed || s == lease_state::expired;
}

std::string_view to_string(network_mode m) noexcept {
  for (const auto& [v, n] : network_names) {
    if (v == m) return n;
  }
  return "unknown";
}

network_mode network_mode_from_string(std::string_view s) noexcept {
  for (const auto& [v, n] : network_names) {
    if (n == s) return v;
  }
  return network_mode::unknown;
}

std::string_view to_string(lock_mode m) noexcept {
  for (const auto& [v, n] : lock_mode_names) {
    if (v == m) return n;
  }
  return "unknown";
}

lock_mode lock_mode_from_string(std::string_view s) noexcept {
  for (const auto& [v, n] : lock_mode_names) {
    if (n == s && v != lock_mode::unknown) return v;
  }
  return lock_mode::unknown;
}

void check_file_path(std::string_view field, std::string_view path) {
  if (path.size() < 2 || path.front() != '/' || path.size() > 4096) {
    bad_field(field, "must be an absolute path to a file inside the sandbox, e.g. /tmp/input.json");
  }
  if (path.find('\0') != std::string_view::npos) bad_field(field, "must not contain NUL");
  std::string_view rest = path.substr(1);
  while (true) {
    const auto slash = rest.find('/');
    const auto part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == "..") {
      bad_field(field, fmt::format("'{}' has an empty, '.' or '..' component; give the plain absolute path "
                                   "(no traversal)", path.substr(0, 200)));
    }
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
}

void check_no_control(std::string_view field, std::string_view text) {
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      bad_field(field, fmt::format("must not contain control characters such as newlines or tabs (found \\x{:02x} "
                                   "in '{}')",
                                   u, printable(text.substr(0, 64))));
    }
  }
}

void check_name(std::string_view field, std::string_view name) {
  if (name.empty() || name.size() > 128) bad_field(field, "must be 1 to 128 characters long");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '/' || c == '-';
    if (!ok) bad_field(field, "may only contain letters, digits and . _ : / -");
  }
}

// --- error_body -------------------------------------------------------------------------------

void to_json(json& j, const error_body& v) { j = json{{"code", v.code}, {"message", v.message}}; }
void from_json(const json& j, error_body& v) {
  read(j, "code", v.code);
  read(j, "message", v.message);
}

// --- lease_request ----------------------------------------------------------------------------

void to_json(json& j, const lease_request& v) {
  j = json{{"image", v.image},        {"slots", v.slots},         {"ttl_s", v.ttl_s},
           {"ready_timeout_s", v.ready_timeout_s},                {"network", to_string(v.network)},
           {"env", v.env},            {"memory_mb", v.memory_mb}, {"cpus", v.cpus},
           {"pids_limit", v.pids_limit},                          {"read_only", v.read_only},
           {"disk_mb", v.disk_mb}};
  if (!v.run.empty()) j["run"] = v.run;
  if (!v.test.empty()) j["test"] = v.test;
  if (!v.request_id.empty()) j["request_id"] = v.request_id;
  if (!v.locks.empty()) j["locks"] = v.locks;
}

namespace {

void read_network(const json& j, network_mode& out) {
  if (const json* n = find(j, "network")) {
    if (!n->is_string()) bad_field("network", "must be \"none\" or \"host\"");
    out = network_mode_from_string(n->get<std::string>());
    if (out == network_mode::unknown) bad_field("network", "must be \"none\" or \"host\"");
  }
}

void read_locks(const json& j, std::vector<lock_spec>& out) {
  const json* v = find(j, "locks");
  if (v == nullptr) return;
  if (!v->is_array()) bad_field("locks", "must be an array like [{\"name\": \"config\", \"mode\": \"shared\"}]");
  if (v->size() > 16) bad_field("locks", "may name at most 16 locks");
  out.clear();
  for (std::size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    const std::string field = fmt::format("locks[{}]", i);
    if (!e.is_object()) bad_field(field, "must be an object with \"name\" and \"mode\"");
    lock_spec l;
    const json* name = find(e, "name");
    if (name == nullptr || !name->is_string()) bad_field(field + ".name", "is required and must be a string");
    l.name = name->get<std::string>();
    check_name(field + ".name", l.name);
    const json* mode = find(e, "mode");
    if (mode == nullptr || !mode->is_string()) bad_field(field + ".mode", "is required: \"shared\" or \"exclusive\"");
    l.mode = lock_mode_from_string(mode->get<std::string>());
    if (l.mode == lock_mode::unknown) bad_field(field + ".mode", "must be \"shared\" or \"exclusive\"");
    for (const auto& seen : out) {
      if (seen.name == l.name) bad_field(field + ".name", fmt::format("names lock '{}' a second time", l.name));
    }
    out.push_back(std::move(l));
  }
}

}  // namespace

void from_json(const json& j, lease_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "a lease request must be a JSON object");
  read(j, "image", v.image, /*required=*/true);
  if (v.image.empty()) bad_field("image", "must not be empty; name an image such as 127.0.0.1:5000/sandlot/busybox:1");
  read(j, "run", v.run);
  check_no_control("run", v.run);
  read(j, "test", v.test);
  check_no_control("test", v.test);
  read(j, "request_id", v.request_id);
  check_no_control("request_id", v.request_id);
  read_int(j, "slots", v.slots, 1, 1024);
  read_int(j, "ttl_s", v.ttl_s, 1, 86400);
  read_int(j, "ready_timeout_s", v.ready_timeout_s, 1, 86400);
  read_network(j, v.network);
  read_env(j, "env", v.env);
  read_int<std::int64_t>(j, "memory_mb", v.memory_mb, 6, 1 << 20);
  read_double(j, "cpus", v.cpus, 0.01, 1024);
  read_int(j, "pids_limit", v.pids_limit, 8, 1 << 22);
  read_bool(j, "read_only", v.read_only);
  read_locks(j, v.locks);
  read_int<std::int64_t>(j, "disk_mb", v.disk_mb, 1, std::int64_t{1} << 24);
}

// --- sandbox_info -----------------------------------------------------------------------------

void to_json(json& j, const sandbox_info& v) {
  j = json{{"id", v.id},       {"name", v.name},         {"hostname", v.hostname},
           {"image", v.image}, {"network", v.network}};
  if (!v.engine.empty()) j["engine"] = v.engine;
}
void from_json(const json& j, sandbox_info& v) {
  read(j, "id", v.id);
  read(j, "name", v.name);
  read(j, "hostname", v.hostname);
  read(j, "image", v.image);
  read(j, "network", v.network);
  read(j, "engine", v.engine);
}

// --- lease_view -------------------------------------------------------------------------------

void to_json(json& j, const lease_view& v) {
  j = json{{"id", v.id},       {"name", v.name},   {"state", to_string(v.state)}, {"run", v.run},
           {"test", v.test},   {"image", v.image}, {"slots", v.slots},            {"ttl_s", v.ttl_s}};
  if (!v.locks.empty()) j["locks"] = v.locks;
  put_optional(j, "position", v.position);
  put_optional(j, "waiting_for", v.waiting_for);
  put_optional(j, "expires_in_s", v.expires_in_s);
  put_optional(j, "sandbox", v.sandbox);
  put_optional(j, "error", v.error);
  put_optional(j, "since_s", v.since_s);
  if (v.warm) j["warm"] = true;
}

void from_json(const json& j, lease_view& v) {
  read(j, "id", v.id);
  read(j, "name", v.name);
  std::string state;
  read(j, "state", state);
  v.state = lease_state_from_string(state);
  read(j, "run", v.run);
  read(j, "test", v.test);
  read(j, "image", v.image);
  read_int(j, "slots", v.slots, 0, 1 << 20);
  read_int(j, "ttl_s", v.ttl_s, 0, 1 << 30);
  if (const json* l = find(j, "locks")) v.locks = l->get<std::vector<lock_spec>>();
  if (const json* p = find(j, "position")) v.position = p->get<int>();
  read(j, "waiting_for", v.waiting_for);
  if (const json* e = find(j, "expires_in_s")) v.expires_in_s = e->get<double>();
  if (const json* s = find(j, "sandbox")) v.sandbox = s->get<sandbox_info>();
  read_bool(j, "warm", v.warm);
  if (const json* e = find(j, "error")) v.error = e->get<error_body>();
  if (const json* t = find(j, "since_s")) v.since_s = t->get<double>();
}

// --- renew_response ---------------------------------------------------------------------------

void to_json(json& j, const renew_response& v) {
  j = json{{"id", v.id}, {"state", to_string(v.state)}, {"expires_in_s", v.expires_in_s}};
}
void from_json(const json& j, renew_response& v) {
  read(j, "id", v.id);
  std::string state;
  read(j, "state", state);
  v.state = lease_state_from_string(state);
  read_double(j, "expires_in_s", v.expires_in_s, 0, std::numeric_limits<double>::max());
}

// --- exec -------------------------------------------------------------------------------------

void to_json(json& j, const exec_request& v) {
  j = json{{"argv", v.argv}, {"env", v.env}, {"timeout_s", v.timeout_s}};
  if (v.stdin_data) j["stdin"] = *v.stdin_data;
  if (!v.workdir.empty()) j["workdir"] = v.workdir;
}

void from_json(const json& j, exec_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "an exec request must be a JSON object");
  const json* argv = find(j, "argv");
  if (argv == nullptr) bad_field("argv", "is required: a non-empty array of strings, e.g. [\"echo\", \"hi\"]");
  if (!argv->is_array() || argv->empty()) bad_field("argv", "must be a non-empty array of strings");
  v.argv.clear();
  for (std::size_t i = 0; i < argv->size(); ++i) {
    if (!(*argv)[i].is_string()) bad_field(fmt::format("argv[{}]", i), "must be a string");
    v.argv.push_back((*argv)[i].get<std::string>());
  }
  read(j, "stdin", v.stdin_data);
  read_env(j, "env", v.env);
  read(j, "workdir", v.workdir);
  if (!v.workdir.empty()) {
    if (v.workdir.front() != '/' || v.workdir.find('\0') != std::string::npos || v.workdir.size() > 4096) {
      bad_field("workdir", "must be an absolute path inside the sandbox, e.g. /tmp");
    }
  }
  read_int(j, "timeout_s", v.timeout_s, 1, 86400);
}

void to_json(json& j, const exec_result& v) {
  j = json{{"exit_code", v.exit_code},   {"stdout", v.stdout_data},     {"stderr", v.stderr_data},
           {"truncated", v.truncated},   {"timed_out", v.timed_out},    {"duration_s", v.duration_s}};
}

void from_json(const json& j, exec_result& v) {
  read_int(j, "exit_code", v.exit_code, std::numeric_limits<int>::min(), std::numeric_limits<int>::max());
  read(j, "stdout", v.stdout_data);
  read(j, "stderr", v.stderr_data);
  read_bool(j, "truncated", v.truncated);
  read_bool(j, "timed_out", v.timed_out);
  read_double(j, "duration_s", v.duration_s, 0, std::numeric_limits<double>::max());
}

// --- status -----------------------------------------------------------------------------------

void to_json(json& j, const image_status& v) {
  j = json{{"image", v.image}, {"state", v.state}, {"waiters", v.waiters}};
  if (!v.error.empty()) j["error"] = v.error;
  put_optional(j, "bytes_done", v.bytes_done);
  put_optional(j, "bytes_total", v.bytes_total);
  put_optional(j, "since_s", v.since_s);
}
void from_json(const json& j, image_status& v) {
  read(j, "image", v.image);
  read(j, "state", v.state);
  read_int(j, "waiters", v.waiters, 0, 1 << 30);
  read(j, "error", v.error);
  if (const json* b = find(j, "bytes_done")) v.bytes_done = b->get<std::int64_t>();
  if (const json* b = find(j, "bytes_total")) v.bytes_total = b->get<std::int64_t>();
  if (const json* t = find(j, "since_s")) v.since_s = t->get<double>();
}

// --- operator ---------------------------------------------------------------------------------

void to_json(json& j, const drain_view& v) {
  j = json{{"draining", v.draining},   {"drained", v.drained}, {"slots_in_use", v.slots_in_use},
           {"live", v.live},           {"queue_length", v.queue_length}};
}
void from_json(const json& j, drain_view& v) {
  read_bool(j, "draining", v.draining);
  read_bool(j, "drained", v.drained);
  read_int(j, "slots_in_use", v.slots_in_use, 0, 1 << 30);
  read_int(j, "live", v.live, 0, 1 << 30);
  read_int(j, "queue_length", v.queue_length, 0, 1 << 30);
}

void to_json(json& j, const slots_request& v) { j = json{{"slots", v.slots}}; }
void from_json(const json& j, slots_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "the body must be a JSON object, e.g. {\"slots\": 8}");
  if (find(j, "slots") == nullptr) bad_field("slots", "is required: the new budget, 1 to 4096");
  read_int(j, "slots", v.slots, 1, 4096);
}

void to_json(json& j, const slots_view& v) {
  j = json{{"slots_total", v.slots_total}, {"previous", v.previous}, {"slots_in_use", v.slots_in_use},
           {"queue_length", v.queue_length}};
}
void from_json(const json& j, slots_view& v) {
  read_int(j, "slots_total", v.slots_total, 0, 1 << 30);
  read_int(j, "previous", v.previous, 0, 1 << 30);
  read_int(j, "slots_in_use", v.slots_in_use, 0, 1 << 30);
  read_int(j, "queue_length", v.queue_length, 0, 1 << 30);
}

void to_json(json& j, const evict_request& v) { j = json{{"reason", v.reason}}; }
void from_json(const json& j, evict_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "the body must be a JSON object, e.g. {\"reason\": \"stuck\"}");
  read(j, "reason", v.reason);
  if (v.reason.size() > 1024) bad_field("reason", "must be at most 1024 characters");
}

void to_json(json& j, const holder_view& v) {
  j = json{{"lease", v.lease}, {"name", v.name},   {"test", v.test},
           {"run", v.run},     {"slots", v.slots}, {"since_s", v.since_s}};
}
void from_json(const json& j, holder_view& v) {
  read(j, "lease", v.lease);
  read(j, "name", v.name);
  read(j, "test", v.test);
  read(j, "run", v.run);
  read_int(j, "slots", v.slots, 0, 1 << 30);
  read_double(j, "since_s", v.since_s, 0, std::numeric_limits<double>::max());
}

void to_json(json& j, const why_view& v) {
  j = json{{"lease", v.lease}, {"since_s", v.since_s}, {"summary", v.summary}, {"holders", v.holders}};
  j["waiting_for"] = v.waiting_for ? json(*v.waiting_for) : json(nullptr);
  j["pull"] = v.pull ? json(*v.pull) : json(nullptr);
}
void from_json(const json& j, why_view& v) {
  if (const json* l = find(j, "lease")) v.lease = l->get<lease_view>();
  read_double(j, "since_s", v.since_s, 0, std::numeric_limits<double>::max());
  read(j, "summary", v.summary);
  if (const json* h = find(j, "holders")) v.holders = h->get<std::vector<holder_view>>();
  if (const json* w = find(j, "waiting_for"); w != nullptr && !w->is_null()) v.waiting_for = w->get<std::string>();
  if (const json* p = find(j, "pull"); p != nullptr && !p->is_null()) v.pull = p->get<image_status>();
}

void to_json(json& j, const lane_view& v) {
  j = json{{"lane", v.lane}, {"retiring", v.retiring}};
  if (!v.lease) {
    j["lease"] = nullptr;
    return;
  }
  j.update(json{{"lease", *v.lease}, {"name", v.name}, {"test", v.test}, {"run", v.run},
                {"state", to_string(v.state)}, {"since_s", v.since_s}});
}
void from_json(const json& j, lane_view& v) {
  read_int(j, "lane", v.lane, 0, 1 << 20);
  read_bool(j, "retiring", v.retiring);
  const json* l = find(j, "lease");
  if (l == nullptr || l->is_null()) return;
  v.lease = l->get<std::string>();
  read(j, "name", v.name);
  read(j, "test", v.test);
  read(j, "run", v.run);
  std::string state;
  read(j, "state", state);
  v.state = lease_state_from_string(state);
  read_double(j, "since_s", v.since_s, 0, std::numeric_limits<double>::max());
}

void to_json(json& j, const run_summary& v) {
  j = json{{"run", v.run},     {"started_at", v.started_at}, {"leases", v.leases}, {"live_leases", v.live_leases},
           {"fixtures", v.fixtures}, {"ended", v.ended},
           {"report", "/v1/runs/" + percent_encode(v.run) + "/report.html"}};
  put_optional(j, "efficiency", v.efficiency);
}
void from_json(const json& j, run_summary& v) {
  read(j, "run", v.run);
  read(j, "started_at", v.started_at);
  if (const json* n = find(j, "leases")) v.leases = n->get<std::size_t>();
  if (const json* n = find(j, "live_leases")) v.live_leases = n->get<std::size_t>();
  if (const json* n = find(j, "fixtures")) v.fixtures = n->get<std::size_t>();
  read_bool(j, "ended", v.ended);
  if (const json* e = find(j, "efficiency")) v.efficiency = e->get<double>();
}

void to_json(json& j, const warm_image_status& v) {
  j = json{{"image", v.image}, {"ready", v.ready},  {"creating", v.creating},
           {"target", v.target}, {"hits", v.hits}, {"misses", v.misses}};
}
void from_json(const json& j, warm_image_status& v) {
  read(j, "image", v.image);
  read_int(j, "ready", v.ready, 0, 1 << 30);
  read_int(j, "creating", v.creating, 0, 1 << 30);
  read_int(j, "target", v.target, 0, 1 << 30);
  if (const json* n = find(j, "hits")) v.hits = n->get<std::uint64_t>();
  if (const json* n = find(j, "misses")) v.misses = n->get<std::uint64_t>();
}

void to_json(json& j, const warm_status& v) {
  j = json{{"mode", v.mode}, {"hits", v.hits}, {"misses", v.misses}, {"evictions", v.evictions}, {"images", v.images}};
  put_optional(j, "adoption_mean_s", v.adoption_mean_s);
}
void from_json(const json& j, warm_status& v) {
  read(j, "mode", v.mode);
  if (const json* n = find(j, "hits")) v.hits = n->get<std::uint64_t>();
  if (const json* n = find(j, "misses")) v.misses = n->get<std::uint64_t>();
  if (const json* n = find(j, "evictions")) v.evictions = n->get<std::uint64_t>();
  if (const json* a = find(j, "adoption_mean_s")) v.adoption_mean_s = a->get<double>();
  if (const json* i = find(j, "images")) v.images = i->get<std::vector<warm_image_status>>();
}

void to_json(json& j, const engine_status& v) {
  j = json{{"name", v.name}, {"endpoint", v.endpoint}, {"kind", v.kind},   {"up", v.up},
           {"slots", v.slots}, {"in_use", v.in_use},   {"sandboxes", v.sandboxes}, {"pulls", v.pulls}};
  if (!v.detail.empty()) j["detail"] = v.detail;
}
void from_json(const json& j, engine_status& v) {
  read(j, "name", v.name);
  read(j, "endpoint", v.endpoint);
  read(j, "kind", v.kind);
  read_bool(j, "up", v.up);
  read_int(j, "slots", v.slots, 0, 1 << 30);
  read_int(j, "in_use", v.in_use, 0, 1 << 30);
  read_int(j, "sandboxes", v.sandboxes, 0, 1 << 30);
  if (const json* n = find(j, "pulls")) v.pulls = n->get<std::uint64_t>();
  read(j, "detail", v.detail);
}

void to_json(json& j, const status_view& v) {
  j = json{{"instance", v.instance},         {"slots_total", v.slots_total},
           {"slots_in_use", v.slots_in_use}, {"queue_length", v.queue_length},
           {"ready", v.ready},               {"leases", v.leases},
           {"images", v.images},             {"draining", v.draining},
           {"seq", v.seq},                   {"lanes", v.lanes},
           {"runs", v.runs}};
  put_optional(j, "warm", v.warm);
  if (!v.engines.empty()) j["engines"] = v.engines;
}
void from_json(const json& j, status_view& v) {
  read(j, "instance", v.instance);
  read_int(j, "slots_total", v.slots_total, 0, 1 << 30);
  read_int(j, "slots_in_use", v.slots_in_use, 0, 1 << 30);
  read_int(j, "queue_length", v.queue_length, 0, 1 << 30);
  read_bool(j, "ready", v.ready);
  if (const json* l = find(j, "leases")) v.leases = l->get<std::vector<lease_view>>();
  if (const json* i = find(j, "images")) v.images = i->get<std::vector<image_status>>();
  read_bool(j, "draining", v.draining);
  if (const json* q = find(j, "seq")) v.seq = q->get<std::uint64_t>();
  if (const json* l = find(j, "lanes")) v.lanes = l->get<std::vector<lane_view>>();
  if (const json* r = find(j, "runs")) v.runs = r->get<std::vector<run_summary>>();
  if (const json* w = find(j, "warm"); w != nullptr && !w->is_null()) v.warm = w->get<warm_status>();
  if (const json* e = find(j, "engines")) v.engines = e->get<std::vector<engine_status>>();
}

// --- locks, outcomes, fixtures -----------------------------------------------------------------

void to_json(json& j, const lock_spec& v) { j = json{{"name", v.name}, {"mode", to_string(v.mode)}}; }
void from_json(const json& j, lock_spec& v) {
  read(j, "name", v.name);
  std::string mode;
  read(j, "mode", mode);
  v.mode = lock_mode_from_string(mode);
}

void to_json(json& j, const outcome_request& v) { j = json{{"outcome", v.outcome}}; }
void from_json(const json& j, outcome_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "an outcome must be a JSON object");
  read(j, "outcome", v.outcome, /*required=*/true);
  if (v.outcome != "passed" && v.outcome != "failed") bad_field("outcome", "must be \"passed\" or \"failed\"");
}

void to_json(json& j, const fixture_request& v) {
  j = json{{"name", v.name},        {"image", v.image},         {"network", to_string(v.network)},
           {"env", v.env},          {"port", v.port},           {"grace_s", v.grace_s},
           {"memory_mb", v.memory_mb}, {"cpus", v.cpus},        {"pids_limit", v.pids_limit},
           {"disk_mb", v.disk_mb}};
}
void from_json(const json& j, fixture_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "a fixture request must be a JSON object");
  read(j, "name", v.name, /*required=*/true);
  check_name("name", v.name);
  read(j, "image", v.image, /*required=*/true);
  if (v.image.empty()) bad_field("image", "must not be empty; name an image such as 127.0.0.1:5000/sandlot/busybox:1");
  read_network(j, v.network);
  read_env(j, "env", v.env);
  read_bool(j, "port", v.port);
  read_int(j, "grace_s", v.grace_s, 0, 3600);
  read_int<std::int64_t>(j, "memory_mb", v.memory_mb, 6, 1 << 20);
  read_double(j, "cpus", v.cpus, 0.01, 1024);
  read_int(j, "pids_limit", v.pids_limit, 8, 1 << 22);
  read_int<std::int64_t>(j, "disk_mb", v.disk_mb, 1, std::int64_t{1} << 24);
}

void to_json(json& j, const fixture_view& v) {
  j = json{{"id", v.id},       {"name", v.name}, {"run", v.run},           {"state", v.state},
           {"role", v.role},   {"data", v.data}, {"creations", v.creations}, {"holders", v.holders}};
  if (!v.creator.empty()) j["creator"] = v.creator;
  put_optional(j, "port", v.port);
  put_optional(j, "sandbox", v.sandbox);
  put_optional(j, "error", v.error);
}
void from_json(const json& j, fixture_view& v) {
  read(j, "id", v.id);
  read(j, "name", v.name);
  read(j, "run", v.run);
  read(j, "state", v.state);
  read(j, "role", v.role);
  read(j, "creator", v.creator);
  if (const json* p = find(j, "port")) v.port = p->get<int>();
  if (const json* d = find(j, "data")) v.data = *d;
  if (const json* s = find(j, "sandbox")) v.sandbox = s->get<sandbox_info>();
  read_int(j, "creations", v.creations, 0, 1 << 30);
  read_int(j, "holders", v.holders, 0, 1 << 30);
  if (const json* e = find(j, "error")) v.error = e->get<error_body>();
}

void to_json(json& j, const fixture_ready_request& v) { j = json{{"lease", v.lease}, {"data", v.data}}; }
void from_json(const json& j, fixture_ready_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "a ready request must be a JSON object");
  read(j, "lease", v.lease, /*required=*/true);
  if (const json* d = find(j, "data")) {
    if (!d->is_object()) bad_field("data", "must be a JSON object");
    v.data = *d;
  }
}

void to_json(json& j, const fixture_fail_request& v) { j = json{{"lease", v.lease}, {"message", v.message}}; }
void from_json(const json& j, fixture_fail_request& v) {
  if (!j.is_object()) throw api_error(errc::bad_json, "a fail request must be a JSON object");
  read(j, "lease", v.lease, /*required=*/true);
  read(j, "message", v.message);
  if (v.message.size() > 4096) bad_field("message", "must be at most 4096 bytes");
}

std::string percent_encode(std::string_view text, std::string_view keep) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '_' || c == '.' || c == '~';
    if (unreserved || (c != 0 && keep.find(ch) != std::string_view::npos)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0f]);
    }
  }
  return out;
}

}  // namespace sandlot::protocol
