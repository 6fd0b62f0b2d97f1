// A small synchronous HTTP/1.1 client for talking to orchestratord on loopback.
//
// Every call runs on its own private io_context with a deadline on the stream, so a daemon that
// stops answering can delay a test by at most the timeout, never hang it. There is no connection
// reuse: a lease makes a handful of calls, and a fresh connection per call keeps the failure modes
// (refused, reset, timed out) attributable to one request.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sandlot::client::detail {

/// An `http://host[:port][/prefix]` URL split into what a request needs.
struct http_url {
  std::string host;         // without IPv6 brackets
  std::string port;         // "80" when the URL names none
  std::string path_prefix;  // "" or "/prefix" (no trailing slash), prepended to every target
};

/// Parses `url`; throws std::invalid_argument saying what is wrong (https is rejected because
/// orchestratord only serves plain HTTP on loopback).
http_url parse_url(std::string_view url);


/// No HTTP answer arrived. `kind` tells a caller which hint to give.
class transport_error : public std::runtime_error {
 public:
  enum class kind {
    refused,    // nothing listens at host:port (or it could not be reached at all)
    timeout,    // connected, or tried to, but the deadline passed first
    failed,     // the connection broke mid-request or the answer was not HTTP
  };
  transport_error(kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
  kind which() const noexcept { return kind_; }

 private:
  kind kind_;
};

struct http_response {
  int status = 0;
  std::string body;
};

class http_client {
 public:
  /// Throws std::invalid_argument for a URL parse_url rejects.
  http_client(std::string_view url, std::string token);

  /// Sends one request and reads the whole answer within `timeout`; throws transport_error when
  /// no complete HTTP answer arrived. `target` starts with '/'; a body, when given, is sent with
  /// `content_type`.
  http_response send(std::string_view method, std::string_view target, std::string_view body,
                     std::chrono::milliseconds timeout, std::string_view content_type = "application/json") const;

 private:
  http_url url_;
  std::string token_;
};

/// One GET whose body is handed over as it arrives, for GET /v1/events. run() blocks on a private
/// io_context; cancel() may be called from any other thread and ends run() at once.
class streaming_get {
 public:
  streaming_get(std::string_view url, std::string token);
  ~streaming_get();
  streaming_get(const streaming_get&) = delete;
  streaming_get& operator=(const streaming_get&) = delete;

  /// Sends GET `target` (once per object). For a 2xx answer, calls on_body with each piece of the
  /// body until the server ends it, `idle_timeout` passes without a byte (the daemon sends a
  /// keep-alive every 15 s) or cancel(); then returns the status with an empty body. Any other
  /// answer is returned whole. Throws transport_error when no answer head arrived.
  http_response run(std::string_view target, std::chrono::milliseconds connect_timeout,
                    std::chrono::milliseconds idle_timeout, const std::function<void(std::string_view)>& on_body);
  /// Ends run() soon; safe from any thread, before or during run().
  void cancel();
  bool cancelled() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sandlot::client::detail
