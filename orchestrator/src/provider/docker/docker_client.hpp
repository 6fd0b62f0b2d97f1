// A small Docker Engine API client over Beast: unix socket or tcp://, one connection per call,
// API version negotiated via /_ping. Everything is a coroutine on the caller's executor.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

/// Where the engine listens: "unix:///var/run/docker.sock", "/path.sock" or "tcp://127.0.0.1:2375".
struct engine_address {
  enum class kind { unix_socket, tcp } type = kind::unix_socket;
  std::string path;  // unix
  std::string host;  // tcp
  unsigned short port = 0;

  /// Throws std::invalid_argument with a message that says what is accepted.
  static engine_address parse(const std::string& spec);
  /// DOCKER_HOST, or the local socket.
  static std::string default_spec();
  std::string to_string() const;
};

/// An engine call that failed: HTTP status (0 when the engine could not be reached) and its
/// message, classified into a provider_failure from Docker's status codes and wording (the only
/// place that wording is read: docs/architecture.md).
class engine_error : public provider_error {
 public:
  engine_error(unsigned status, const std::string& message, bool timed_out = false)
      : provider_error(classify(status, message, timed_out), message), status_(status), timed_out_(timed_out) {}
  engine_error(unsigned status, const std::string& message, provider_failure reason)
      : provider_error(reason, message), status_(status), timed_out_(reason == provider_failure::timed_out) {}
  unsigned status() const noexcept { return status_; }
  /// The engine took the connection but did not answer within the call's deadline (hung).
  bool timed_out() const noexcept { return timed_out_; }

  /// Docker's answer (status and message) as a typed reason.
  static provider_failure classify(unsigned status, std::string_view message, bool timed_out) noexcept;

 private:
  unsigned status_;
  bool timed_out_;
};

class stream_demuxer;

class docker_client {
 public:
  docker_client(boost::asio::any_io_executor ex, engine_address addr);

  /// GET /_ping; remembers the engine's API version for later calls. Throws engine_error.
  boost::asio::awaitable<std::string> negotiate();
  const std::string& api_version() const noexcept { return api_version_; }
  /// The most any one call may take (--engine-timeout); an exec's stream runs for its own timeout.
  void set_call_timeout(std::chrono::milliseconds t) noexcept { call_timeout_ = t; }
  std::chrono::milliseconds call_timeout() const noexcept { return call_timeout_; }
  const engine_address& address() const noexcept { return addr_; }

  struct response {
    unsigned status = 0;
    std::string body;
    nlohmann::json json() const;
  };
  /// One versioned API call (target without the /vX.Y prefix). Throws engine_error when the
  /// engine cannot be reached; HTTP errors are returned, not thrown.
  boost::asio::awaitable<response> call(boost::beast::http::verb method, const std::string& target,
                                        const std::optional<nlohmann::json>& body = std::nullopt,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(60));

  /// As call(), with a body of any content type (empty content_type: no body).
  boost::asio::awaitable<response> call_bytes(boost::beast::http::verb method, std::string target, std::string body,
                                              std::string content_type,
                                              std::chrono::milliseconds timeout = std::chrono::seconds(60));
  /// PUT /containers/{id}/archive?path=DIR: unpacks `tar` into DIR. Throws engine_error.
  boost::asio::awaitable<void> put_archive(const std::string& id, const std::string& dir, std::string tar);
  /// GET /containers/{id}/archive?path=PATH: PATH as a tar archive; nullopt when it does not exist.
  boost::asio::awaitable<std::optional<std::string>> get_archive(const std::string& id, const std::string& path);

  /// GET /images/{ref}/json is 200.
  boost::asio::awaitable<bool> image_exists(const std::string& ref);
  /// The image id ("sha256:...") `ref` names in the engine now. Throws engine_error (404 if absent).
  boost::asio::awaitable<std::string> image_id(const std::string& ref);
  /// Pulls `ref`, reading the whole progress stream; throws engine_error with the engine's reason.
  /// Gives up at `deadline`, or when the stream shows no progress for `stall_timeout`. `progress`
  /// (may be empty) gets the layers' bytes fetched and in all as the stream reports them.
  boost::asio::awaitable<void> pull(const std::string& ref,
                                    std::chrono::steady_clock::time_point deadline,
                                    std::chrono::milliseconds stall_timeout = std::chrono::seconds(60),
                                    std::function<void(std::int64_t, std::int64_t)> progress = {});

  /// Creates and starts a container; returns its id. Throws engine_error.
  boost::asio::awaitable<std::string> create_container(const std::string& name,
                                                       const nlohmann::json& spec);
  boost::asio::awaitable<void> start_container(const std::string& id);
  /// GET /containers/{id}/json.
  boost::asio::awaitable<nlohmann::json> inspect_container(const std::string& id);
  /// Removes with force; returns once the engine confirms the container is gone (404 counts).
  boost::asio::awaitable<void> remove_container(const std::string& id);
  struct container_summary {
    std::string id;
    std::map<std::string, std::string> labels;
    std::string state;  // "running", "exited", "created", ...
  };
  /// Containers (any state) carrying every label in `labels` ("key=value" or "key").
  boost::asio::awaitable<std::vector<container_summary>> list_containers(
      const std::vector<std::string>& labels);

  /// Runs argv via the exec endpoints, demultiplexing stdout/stderr; stdin through an upgraded
  /// (hijacked) connection with a half-close for EOF. Cancelled (the caller went away), it kills
  /// the command in the sandbox before it throws.
  boost::asio::awaitable<exec_output> exec(const std::string& container_id, const exec_spec& spec);

 private:
  std::string versioned(const std::string& target) const;
  boost::asio::awaitable<std::string> create_exec(std::string container_id, const exec_spec& spec);
  /// The started exec's stream: stdin in, output demultiplexed into `demux`; sets out.timed_out.
  /// True when the caller went away (the coroutine was cancelled).
  boost::asio::awaitable<bool> run_exec_stream(std::string exec_id, const exec_spec& spec, stream_demuxer& demux,
                                               exec_output& out);
  /// The finished exec's exit code, once the engine has recorded it.
  boost::asio::awaitable<int> exec_exit_code(std::string exec_id);
  boost::asio::awaitable<void> kill_exec(const std::string& exec_id, const std::string& container_id);
  bool warned_pid_namespace_ = false;  // said once that exec pids are not visible from here

  boost::asio::any_io_executor ex_;
  engine_address addr_;
  std::string api_version_ = "1.41";
  std::chrono::milliseconds call_timeout_{std::chrono::seconds(60)};
};

/// Splits a Docker multiplexed stream (8-byte frame headers) into stdout and stderr, keeping at
/// most `limit` bytes per stream. Feed bytes as they arrive.
class stream_demuxer {
 public:
  explicit stream_demuxer(std::size_t limit) : limit_(limit) {}
  void feed(const char* data, std::size_t size);
  /// True when the input ended on a frame boundary.
  bool complete() const noexcept { return pending_.empty() && remaining_ == 0; }
  std::string& out() noexcept { return out_; }
  std::string& err() noexcept { return err_; }
  bool truncated() const noexcept { return truncated_; }

 private:
  void append(int stream, const char* data, std::size_t size);
  std::size_t limit_;
  std::string pending_;  // a partial header
  int stream_ = 0;
  std::size_t remaining_ = 0;
  std::string out_, err_;
  bool truncated_ = false;
};

}  // namespace sandlot::orchestrator
