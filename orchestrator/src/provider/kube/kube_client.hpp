// A small Kubernetes API client over Beast: plain HTTP (kubectl proxy, the tests' fake server) or
// TLS with the kubeconfig's CA, client certificate or bearer token. One connection per call, like
// the Docker client: the failure of a call is the failure of that call alone.
//
// Three kinds of call: a request with a JSON answer; a watch, whose chunked answer is one JSON
// event per line, handed over as it arrives; and an exec over WebSocket (channel.k8s.io framing:
// one byte of channel, then the bytes; v5 closes stdin with a CLOSE frame, v4 cannot).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "kube_config.hpp"
#include "sandbox_provider.hpp"

namespace boost::asio::ssl {
class context;
}

namespace sandlot::orchestrator {

/// An API call that failed: the HTTP status (0: no answer) and the Status object's reason
/// ("NotFound", "AlreadyExists", "Forbidden" ...), classified by status code and reason alone.
class kube_error : public provider_error {
 public:
  kube_error(unsigned status, std::string status_reason, const std::string& message, bool timed_out = false);
  unsigned status() const noexcept { return status_; }
  const std::string& status_reason() const noexcept { return status_reason_; }
  static provider_failure classify(unsigned status, std::string_view reason, std::string_view message,
                                   bool timed_out) noexcept;

 private:
  unsigned status_;
  std::string status_reason_;
};

/// The exit code an exec's closing Status gives (channel 3): 0 for Success, the ExitCode cause
/// for NonZeroExitCode; nullopt when the command did not run at all (then the message says why).
std::optional<int> exit_code_of_status(const nlohmann::json& status);

class kube_client {
 public:
  kube_client(boost::asio::any_io_executor ex, kube_target target);
  ~kube_client();

  const kube_target& target() const noexcept { return target_; }
  void set_call_timeout(std::chrono::milliseconds t) noexcept { call_timeout_ = t; }
  std::chrono::milliseconds call_timeout() const noexcept { return call_timeout_; }

  struct response {
    unsigned status = 0;
    std::string body;
    nlohmann::json json() const;
  };
  /// One request; HTTP errors are returned, not thrown. Throws kube_error(0, ...) when the server
  /// cannot be reached or does not answer within the call timeout.
  boost::asio::awaitable<response> call(boost::beast::http::verb method, std::string target,
                                        std::optional<nlohmann::json> body = std::nullopt);
  /// As call(), but a non-2xx answer throws kube_error with the Status's message; `what` names
  /// the call for that message.
  boost::asio::awaitable<nlohmann::json> call_ok(boost::beast::http::verb method, std::string target,
                                                 std::optional<nlohmann::json> body, std::string what);

  /// GETs `target` (a list URL with watch=1) and hands each event ({"type","object"}) to
  /// `on_event` as it arrives, until it returns true (then: true) or the server ends the stream
  /// (then: false). An ERROR event (an expired resourceVersion: 410) throws kube_error.
  boost::asio::awaitable<bool> watch(std::string target, std::function<bool(const nlohmann::json&)> on_event);

  struct exec_request {
    std::vector<std::string> argv;
    std::string container;
    std::optional<std::string> stdin_data;
    std::chrono::milliseconds timeout{60000};
    std::size_t output_limit = 8 * 1024 * 1024;
  };
  /// Runs argv in the pod at `pod_path` (/api/v1/namespaces/NS/pods/NAME) over WebSocket,
  /// offering v5.channel.k8s.io then v4.channel.k8s.io. With v4, which has no way to close stdin,
  /// a command given stdin gets exactly those bytes through `head -c` (the sandbox needs sh and head).
  boost::asio::awaitable<exec_output> exec(std::string pod_path, exec_request request);
  /// The subprotocol the last exec agreed on.
  const std::string& last_exec_protocol() const noexcept { return last_protocol_; }

 private:
  struct connection;
  /// The bearer token now: the token file's content when there is one (read at each call).
  std::string bearer() const;
  boost::asio::awaitable<std::unique_ptr<connection>> open(std::chrono::milliseconds timeout);

  boost::asio::any_io_executor ex_;
  kube_target target_;
  bool tls_ = false;
  std::string host_, port_, prefix_;
  std::unique_ptr<boost::asio::ssl::context> ssl_;
  std::chrono::milliseconds call_timeout_{std::chrono::seconds(30)};
  std::string last_protocol_;
};

/// `a`'s failure as a value: Asio's `||` ends a race early only when a side succeeds, so a side
/// that may throw is wrapped in this to end the race at once with its exception.
boost::asio::awaitable<std::exception_ptr> as_outcome(boost::asio::awaitable<void> a);

/// `value` escaped for a URL query.
std::string url_escape(std::string_view value);

}  // namespace sandlot::orchestrator
