// Maps HTTP API v1 requests onto the lease service, and every failure onto the error contract
// `{"error":{"code","message"}}`.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "lease_service.hpp"

namespace sandlot::orchestrator {

using http_request = boost::beast::http::request<boost::beast::http::string_body>;
using http_response = boost::beast::http::response<boost::beast::http::string_body>;

class router {
 public:
  /// With a non-empty `token`, every request but GET /healthz needs `Authorization: Bearer <token>`.
  explicit router(lease_service& service, std::string token = {})
      : service_(service), token_(std::move(token)) {}
  /// Never throws: every failure becomes an error response.
  boost::asio::awaitable<http_response> handle(const http_request& req);

 private:
  boost::asio::awaitable<http_response> dispatch(const http_request& req);
  bool authorized(const http_request& req) const;
  lease_service& service_;
  std::string token_;
};

/// An error response with the contract's body.
http_response error_response(protocol::errc code, std::string_view message, unsigned version = 11,
                             bool keep_alive = true);

}  // namespace sandlot::orchestrator
