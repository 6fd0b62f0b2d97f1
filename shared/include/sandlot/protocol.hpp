// The Sandlot HTTP API v1 wire types, shared by orchestratord and the client library so the two
// cannot drift. docs/api.md describes each endpoint; this header is its source of truth.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace sandlot::protocol {

inline constexpr std::string_view api_prefix = "/v1";
inline constexpr int default_port = 7345;
inline constexpr std::string_view default_url = "http://127.0.0.1:7345";

/// `text` for a URL's path segment or query value: RFC 3986's unreserved characters, and those in
/// `keep` (e.g. "/" for a file path in a query), as they are; every other byte as %XX.
std::string percent_encode(std::string_view text, std::string_view keep = {});

// ---------------------------------------------------------------------------------------------
// Errors: one stable code and one HTTP status per value.

enum class errc {
  unknown,
  bad_request,          // malformed HTTP
  bad_json,             // body is not JSON, or not an object
  invalid_field,        // a field is missing, of the wrong type or out of range
  not_found,            // no such route or lease
  method_not_allowed,   // route exists, method does not
  payload_too_large,    // body over the limit
  too_many_requests,    // a run has too many leases queued
  lease_not_ready,      // exec on a lease that has no sandbox yet
  lease_gone,           // lease already released, failed or expired
  image_pull_failed,    // the image gate could not pull the image
  sandbox_failed,       // the engine could not create or start the sandbox
  ready_timeout,        // the sandbox did not become ready within ready_timeout_s
  engine_error,         // the container engine answered with an error
  exec_failed,          // the engine could not run the command
  shutting_down,        // the daemon is stopping
  unauthorized,         // token missing or wrong
  conflict,             // the request does not fit the resource's state (e.g. a fixture not yours to make)
  internal,             // a bug: please report
  forbidden,            // refused by the daemon's policy: a foreign Host or Origin, host network not allowed
  unsupported_media_type,  // a body without the Content-Type its route takes
  engine_unavailable,   // the container engine did not answer within its deadline
  overloaded,           // too many connections; retry shortly
  evicted,              // the operator ended the lease (POST /v1/leases/{id}/evict): the lease's error
  engine_lost,          // the engine that ran the lease's sandbox went away: the lease's error
};

/// The stable string for a code, e.g. "invalid_field".
std::string_view code_string(errc code) noexcept;
/// Parses a code string; unknown strings map to errc::unknown.
errc code_from_string(std::string_view code) noexcept;
/// The HTTP status that goes with a code.
int http_status(errc code) noexcept;

/// An error the API reports as `{"error":{"code","message"}}`.
class api_error : public std::runtime_error {
 public:
  api_error(errc code, std::string message)
      : std::runtime_error(message), code_(code), message_(std::move(message)) {}
  errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  errc code_;
  std::string message_;
};

struct error_body {
  std::string code;
  std::string message;
};
nlohmann::json error_json(errc code, std::string_view message);

// ---------------------------------------------------------------------------------------------
// Enumerations with an explicit `unknown`.

enum class lease_state { unknown, queued, pulling, starting, ready, released, failed, expired };
std::string_view to_string(lease_state s) noexcept;
lease_state lease_state_from_string(std::string_view s) noexcept;
/// released, failed and expired are final: a lease never leaves them.
bool is_final(lease_state s) noexcept;

enum class network_mode { unknown, none, host };
std::string_view to_string(network_mode m) noexcept;
network_mode network_mode_from_string(std::string_view s) noexcept;

enum class lock_mode { unknown, shared, exclusive };
std::string_view to_string(lock_mode m) noexcept;
lock_mode lock_mode_from_string(std::string_view s) noexcept;

// ---------------------------------------------------------------------------------------------
// Requests and responses.

/// A named lock a lease holds while admitted: many shared holders, or one exclusive.
struct lock_spec {
  std::string name;  // [A-Za-z0-9._:/-], 1 to 128 characters
  lock_mode mode = lock_mode::shared;
};

/// POST /v1/leases
struct lease_request {
  std::string image;                      // required: a registry reference, e.g. 127.0.0.1:5000/x:1
  std::string run;                        // groups the leases of one test run
  std::string test;                       // the test case name, for status and reports
  std::string request_id;                 // optional client token; a repeat returns the same lease
  int slots = 1;                          // weight against the daemon's --slots budget
  int ttl_s = 30;                         // heartbeat deadline; missed → expired
  int ready_timeout_s = 300;              // from `starting` until ready
  network_mode network = network_mode::none;
  std::map<std::string, std::string> env; // container environment
  std::int64_t memory_mb = 256;           // memory limit
  double cpus = 1.0;                      // CPU limit (NanoCpus)
  int pids_limit = 256;                   // pids cgroup limit
  bool read_only = false;                 // read-only root filesystem (with a tmpfs /tmp)
  std::vector<lock_spec> locks;           // granted with the slots, all or nothing
  std::int64_t disk_mb = 512;             // writable space (docs/api.md: the writable layer or /scratch)
};

struct sandbox_info {
  std::string id;        // engine container id
  std::string name;      // engine container name
  std::string hostname;  // hostname inside the sandbox
  std::string image;     // the reference it was created from
  std::string network;   // "none" or "host"
  std::string engine;    // the engine it runs on, by its --engine name (JSON only when set)
};

struct lease_view {
  std::string id;
  std::string name;  // readable and unique: for anything the test creates outside the sandbox
  lease_state state = lease_state::unknown;
  std::string run;
  std::string test;
  std::string image;
  int slots = 1;
  int ttl_s = 30;
  std::vector<lock_spec> locks;
  std::optional<int> position;       // 0-based place in the queue while queued
  // Why it is not ready yet: "slots", "lock:<name>" (queued), "image" (at the gate), "sandbox".
  std::optional<std::string> waiting_for;
  std::optional<double> expires_in_s;      // seconds to expiry while it holds resources
  std::optional<sandbox_info> sandbox;     // once ready
  std::optional<error_body> error;         // once failed or expired
  std::optional<double> since_s;           // seconds in its current state
  bool warm = false;                       // its sandbox came from the warm pool (JSON only when true)
};

/// POST /v1/leases/{id}/outcome: what became of the test that held the lease, for the report.
struct outcome_request {
  std::string outcome;  // "passed" | "failed"
};

/// POST /v1/leases/{id}/fixtures: hold the run's fixture `name`, creating it if nobody has.
/// The first holder gets role "creator": the daemon made the fixture's sandbox from this spec,
/// the holder sets it up (exec) and marks it ready. Later holders wait until it is ready.
struct fixture_request {
  std::string name;                        // unique within the run
  std::string image;                       // required
  network_mode network = network_mode::none;
  std::map<std::string, std::string> env;
  bool port = false;                       // reserve a free loopback TCP port: SANDLOT_PORT in env
  int grace_s = 15;                        // kept this long after the last holder let go
  std::int64_t memory_mb = 256;
  double cpus = 1.0;
  int pids_limit = 256;
  std::int64_t disk_mb = 512;
};

struct fixture_view {
  std::string id;
  std::string name;
  std::string run;
  std::string state;  // "creating" | "ready" | "gone"
  std::string role;   // for the asking lease: "creator" (set it up now), "waiting", "user"
  std::string creator;  // lease id of the holder making it, while creating
  std::optional<int> port;
  nlohmann::json data = nlohmann::json::object();  // what the creator published when ready
  std::optional<sandbox_info> sandbox;
  int creations = 0;  // sandboxes made for it; more than 1 only after a creator died
  int holders = 0;
  std::optional<error_body> error;
};

/// POST /v1/fixtures/{id}/ready
struct fixture_ready_request {
  std::string lease;  // the creator's lease id
  nlohmann::json data = nlohmann::json::object();
};

/// POST /v1/fixtures/{id}/fail: the creator could not set it up; every holder learns at once.
struct fixture_fail_request {
  std::string lease;    // the creator's lease id
  std::string message;  // what went wrong, shown to the other holders
};

/// POST /v1/leases/{id}/renew
struct renew_response {
  std::string id;
  lease_state state = lease_state::unknown;
  double expires_in_s = 0;
};

/// POST /v1/leases/{id}/exec
struct exec_request {
  std::vector<std::string> argv;          // required, non-empty; never run through a shell
  std::optional<std::string> stdin_data;  // JSON field "stdin"
  std::map<std::string, std::string> env;
  std::string workdir;
  int timeout_s = 60;
};

struct exec_result {
  int exit_code = -1;
  std::string stdout_data;  // JSON field "stdout"
  std::string stderr_data;  // JSON field "stderr"
  bool truncated = false;   // output exceeded the daemon's cap and was cut
  bool timed_out = false;   // killed after timeout_s
  double duration_s = 0;
};

struct image_status {
  std::string image;
  std::string state;  // "pulling", "present", "failed", "waiting"
  int waiters = 0;
  std::string error;
  std::optional<std::int64_t> bytes_done;   // while pulling, once the engine reports sizes
  std::optional<std::int64_t> bytes_total;
  std::optional<double> since_s;            // while pulling: seconds since the pull started
};

/// One slot lane of the budget: free (no lease) or held by one lease.
struct lane_view {
  int lane = 0;
  std::optional<std::string> lease;
  std::string name;
  std::string test;
  std::string run;
  lease_state state = lease_state::unknown;
  double since_s = 0;
  bool retiring = false;  // at or beyond slots_total: the budget shrank under its lease
};

/// A run as GET /v1/runs and the status list it.
struct run_summary {
  std::string run;
  std::string started_at;
  std::size_t leases = 0;
  std::size_t live_leases = 0;
  std::size_t fixtures = 0;
  bool ended = false;
  std::optional<double> efficiency;  // ideal ÷ wall time so far, as the run report defines it
};

/// Warm pools in GET /v1/status: one image reference's ready sandboxes and how leases fared.
struct warm_image_status {
  std::string image;
  int ready = 0;     // ready, never used
  int creating = 0;  // being made
  int target = 0;    // how many the pool keeps (before the idle-capacity cap)
  std::uint64_t hits = 0;    // leases served by a warm sandbox
  std::uint64_t misses = 0;  // leases of this image created cold
};

/// The `warm` object of GET /v1/status (only with --warm).
struct warm_status {
  std::string mode;  // "auto" | "fixed"
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t evictions = 0;                 // warm sandboxes removed unused (a lease needed the slot, demand passed)
  std::optional<double> adoption_mean_s;       // admitted → ready, leases served warm
  std::vector<warm_image_status> images;
};

/// One engine of the daemon's pool, as GET /v1/status shows it.
struct engine_status {
  std::string name;
  std::string endpoint;  // where it is reached (unix socket path or tcp://host:port)
  std::string kind;      // "docker" or "kubernetes"
  bool up = true;
  int slots = 0;         // its share of the budget
  int in_use = 0;        // slots of the sandboxes placed on it
  int sandboxes = 0;     // sandboxes it runs for this daemon (warm ones included)
  std::uint64_t pulls = 0;  // pulls this daemon made on it
  std::string detail;    // why it is down, or what answered
};

/// GET /v1/status
struct status_view {
  std::string instance;
  int slots_total = 0;
  int slots_in_use = 0;
  int queue_length = 0;
  bool ready = false;
  std::vector<lease_view> leases;
  std::vector<image_status> images;
  bool draining = false;
  std::uint64_t seq = 0;              // the last state change published
  std::vector<lane_view> lanes;
  std::vector<run_summary> runs;
  std::optional<warm_status> warm;  // only with --warm
  std::vector<engine_status> engines;  // only with a pool of engines (--engine)
};

/// POST /v1/drain, POST /v1/resume.
struct drain_view {
  bool draining = false;
  bool drained = false;  // no lease holds slots
  int slots_in_use = 0;
  int live = 0;          // leases not yet ended: queued, starting, ready, ending
  int queue_length = 0;
};

/// PUT /v1/slots: the request and the answer.
struct slots_request {
  int slots = 0;
};
struct slots_view {
  int slots_total = 0;
  int previous = 0;
  int slots_in_use = 0;
  int queue_length = 0;
};

/// POST /v1/leases/{id}/evict.
struct evict_request {
  std::string reason;
};

/// A lease holding what another waits for.
struct holder_view {
  std::string lease;
  std::string name;
  std::string test;
  std::string run;
  int slots = 0;
  double since_s = 0;  // since it was admitted
};

/// GET /v1/leases/{id}/why.
struct why_view {
  lease_view lease;
  double since_s = 0;                      // in its current state
  std::optional<std::string> waiting_for;  // slots, lock:NAME, image, sandbox, draining; null once ready or over
  std::string summary;
  std::vector<holder_view> holders;
  std::optional<image_status> pull;
};

// JSON mapping. Decoding is strict and names the field on failure (api_error invalid_field), so
// a client sees "field 'slots' must be an integer" rather than a library exception.
void to_json(nlohmann::json& j, const error_body& v);
void from_json(const nlohmann::json& j, error_body& v);
void to_json(nlohmann::json& j, const lease_request& v);
void from_json(const nlohmann::json& j, lease_request& v);
void to_json(nlohmann::json& j, const sandbox_info& v);
void from_json(const nlohmann::json& j, sandbox_info& v);
void to_json(nlohmann::json& j, const lease_view& v);
void from_json(const nlohmann::json& j, lease_view& v);
void to_json(nlohmann::json& j, const renew_response& v);
void from_json(const nlohmann::json& j, renew_response& v);
void to_json(nlohmann::json& j, const exec_request& v);
void from_json(const nlohmann::json& j, exec_request& v);
void to_json(nlohmann::json& j, const exec_result& v);
void from_json(const nlohmann::json& j, exec_result& v);
void to_json(nlohmann::json& j, const image_status& v);
void from_json(const nlohmann::json& j, image_status& v);
void to_json(nlohmann::json& j, const drain_view& v);
void from_json(const nlohmann::json& j, drain_view& v);
void to_json(nlohmann::json& j, const slots_request& v);
void from_json(const nlohmann::json& j, slots_request& v);
void to_json(nlohmann::json& j, const slots_view& v);
void from_json(const nlohmann::json& j, slots_view& v);
void to_json(nlohmann::json& j, const evict_request& v);
void from_json(const nlohmann::json& j, evict_request& v);
void to_json(nlohmann::json& j, const holder_view& v);
void from_json(const nlohmann::json& j, holder_view& v);
void to_json(nlohmann::json& j, const why_view& v);
void from_json(const nlohmann::json& j, why_view& v);
void to_json(nlohmann::json& j, const lane_view& v);
void from_json(const nlohmann::json& j, lane_view& v);
void to_json(nlohmann::json& j, const run_summary& v);
void from_json(const nlohmann::json& j, run_summary& v);
void to_json(nlohmann::json& j, const warm_image_status& v);
void from_json(const nlohmann::json& j, warm_image_status& v);
void to_json(nlohmann::json& j, const warm_status& v);
void from_json(const nlohmann::json& j, warm_status& v);
void to_json(nlohmann::json& j, const engine_status& v);
void from_json(const nlohmann::json& j, engine_status& v);
void to_json(nlohmann::json& j, const status_view& v);
void from_json(const nlohmann::json& j, status_view& v);
void to_json(nlohmann::json& j, const lock_spec& v);
void from_json(const nlohmann::json& j, lock_spec& v);
void to_json(nlohmann::json& j, const outcome_request& v);
void from_json(const nlohmann::json& j, outcome_request& v);
void to_json(nlohmann::json& j, const fixture_request& v);
void from_json(const nlohmann::json& j, fixture_request& v);
void to_json(nlohmann::json& j, const fixture_view& v);
void from_json(const nlohmann::json& j, fixture_view& v);
void to_json(nlohmann::json& j, const fixture_ready_request& v);
void from_json(const nlohmann::json& j, fixture_ready_request& v);
void to_json(nlohmann::json& j, const fixture_fail_request& v);
void from_json(const nlohmann::json& j, fixture_fail_request& v);

/// Checks a file path inside a sandbox: absolute, at most 4096 bytes, no NUL, and no empty, "."
/// or ".." component (no traversal, one spelling per file). Throws invalid_field naming `field`.
void check_file_path(std::string_view field, std::string_view path);

/// Checks a lock or fixture name: 1 to 128 of [A-Za-z0-9._:/-]. Throws invalid_field naming `field`.
void check_name(std::string_view field, std::string_view name);

/// Checks free text that becomes part of a key or a label (run, test, request_id, env keys): no
/// control characters (U+0000-U+001F, U+007F), which would let two different values collide or
/// forge a log line. Throws invalid_field naming `field`.
void check_no_control(std::string_view field, std::string_view text);

/// Parses a request body into T; throws api_error (bad_json / invalid_field) with a message that
/// says what to fix.
template <class T>
T parse_body(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    throw api_error(errc::bad_json, "request body is not valid JSON; send a JSON object");
  }
  if (!j.is_object()) {
    throw api_error(errc::bad_json, "request body must be a JSON object");
  }
  return j.get<T>();
}

}  // namespace sandlot::protocol
