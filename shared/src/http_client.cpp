#include "http_client.hpp"

#include <array>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <exception>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <fmt/format.h>

namespace sandlot::client::detail {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Expected failures (refused, timed out) come back as values, not exceptions, so each one can be
// classified where it happens. (experimental::as_tuple is only an alias for this one, and is
// hidden by BOOST_ASIO_NO_DEPRECATED.)
constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// exec answers carry the command's output; the daemon caps it well below this.
// Above the daemon's worst answer: two output streams of at most 8 MiB (--max-output-bytes), each
// byte JSON-escaped to at most 6 ("\u0000").
constexpr std::uint64_t body_limit = 128u * 1024u * 1024u;

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10u + static_cast<unsigned>(c - '0');
  }
  return value >= 1 && value <= 65535;
}

std::string host_header(const http_url& url) {
  bool v6 = url.host.find(':') != std::string::npos;
  return v6 ? fmt::format("[{}]:{}", url.host, url.port) : fmt::format("{}:{}", url.host, url.port);
}

transport_error io_failure(const beast::error_code& ec, std::string_view during, const http_url& url) {
  if (ec == beast::error::timeout) {
    return transport_error(transport_error::kind::timeout,
                           fmt::format("timed out while {} {}", during, host_header(url)));
  }
  return transport_error(transport_error::kind::failed,
                         fmt::format("{} {} failed: {}", during, host_header(url), ec.message()));
}

asio::awaitable<http_response> exchange(const http_url& url, http::request<http::string_body> req,
                                        std::chrono::steady_clock::time_point deadline) {
  auto executor = co_await asio::this_coro::executor;

  // Names resolve through /etc/hosts for the loopback URLs Sandlot uses; numeric hosts skip it.
  tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(url.host, url.port, as_tuple_awaitable);
  if (resolve_ec) {
    throw transport_error(transport_error::kind::refused,
                          fmt::format("cannot resolve '{}': {}", url.host, resolve_ec.message()));
  }

  // One deadline for the whole exchange: the caller's timeout is per call, not per step.
  beast::tcp_stream stream(executor);
  stream.expires_at(deadline);
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, as_tuple_awaitable);
  if (connect_ec) {
    if (connect_ec == beast::error::timeout) throw io_failure(connect_ec, "connecting to", url);
    throw transport_error(transport_error::kind::refused, connect_ec.message());
  }

  stream.expires_at(deadline);
  auto [write_ec, bytes_written] = co_await http::async_write(stream, req, as_tuple_awaitable);
  if (write_ec) throw io_failure(write_ec, "sending to", url);

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;  // fresh per request, with a body limit
  parser.body_limit(body_limit);
  stream.expires_at(deadline);
  auto [read_ec, bytes_read] = co_await http::async_read(stream, buffer, parser, as_tuple_awaitable);
  if (read_ec) throw io_failure(read_ec, "reading the answer from", url);

  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  auto& res = parser.get();
  co_return http_response{static_cast<int>(res.result_int()), std::move(res.body())};
}

http::request<http::string_body> make_request(const http_url& url, const std::string& token, std::string_view method,
                                              std::string_view target, std::string_view body,
                                              std::string_view content_type) {
  http::request<http::string_body> req;
  req.version(11);
  req.method_string(method);  // known verbs map to their enum; anything else is sent as spelled
  req.target(url.path_prefix + std::string(target));
  req.set(http::field::host, host_header(url));
  req.set(http::field::user_agent, "sandlot-client");
  req.set(http::field::accept, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  // PUT of an empty file still says what it is.
  if (!body.empty() || method == "PUT") req.set(http::field::content_type, content_type);
  req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();
  return req;
}

asio::awaitable<beast::tcp_stream> connect_to(const http_url& url, std::chrono::steady_clock::time_point deadline) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(url.host, url.port, as_tuple_awaitable);
  if (resolve_ec) {
    throw transport_error(transport_error::kind::refused,
                          fmt::format("cannot resolve '{}': {}", url.host, resolve_ec.message()));
  }
  beast::tcp_stream stream(executor);
  stream.expires_at(deadline);
  auto [connect_ec, endpoint] = co_await stream.async_connect(endpoints, as_tuple_awaitable);
  if (connect_ec) {
    if (connect_ec == beast::error::timeout) throw io_failure(connect_ec, "connecting to", url);
    throw transport_error(transport_error::kind::refused, connect_ec.message());
  }
  co_return stream;
}

}  // namespace

http_url parse_url(std::string_view url) {
  constexpr std::string_view http_scheme = "http://";
  if (starts_with_nocase(url, "https://")) {
    throw std::invalid_argument(fmt::format(
        "'{}': https is not supported; orchestratord serves plain HTTP on loopback, use http://", url));
  }
  if (!starts_with_nocase(url, http_scheme)) {
    throw std::invalid_argument(
        fmt::format("'{}' is not an http:// URL; expected e.g. http://127.0.0.1:7345", url));
  }
  std::string_view rest = url.substr(http_scheme.size());
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  if (path.find_first_of("?#") != std::string_view::npos) {
    throw std::invalid_argument(fmt::format("'{}': the URL must not carry a query or fragment", url));
  }
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    throw std::invalid_argument(fmt::format("'{}': expected http://host:port", url));
  }

  http_url out;
  std::string_view port;
  if (authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("'{}': unterminated IPv6 address", url));
    }
    out.host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') throw std::invalid_argument(fmt::format("'{}': expected http://[addr]:port", url));
      port = after.substr(1);
    }
  } else {
    std::size_t colon = authority.rfind(':');
    out.host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (out.host.empty()) throw std::invalid_argument(fmt::format("'{}': the host is empty", url));
  if (port.empty()) {
    out.port = "80";
  } else if (is_port(port)) {
    out.port = port;
  } else {
    throw std::invalid_argument(fmt::format("'{}': '{}' is not a port number (1-65535)", url, port));
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  out.path_prefix = path;
  return out;
}

http_client::http_client(std::string_view url, std::string token)
    : url_(parse_url(url)), token_(std::move(token)) {}

http_response http_client::send(std::string_view method, std::string_view target, std::string_view body,
                                std::chrono::milliseconds timeout, std::string_view content_type) const {
  auto req = make_request(url_, token_, method, target, body, content_type);

  // A private io_context per call: nothing outlives the call, and run() returns as soon as the
  // exchange completes or the stream's deadline fires.
  asio::io_context ioc(1);
  std::exception_ptr failure;
  http_response out;
  asio::co_spawn(ioc, exchange(url_, std::move(req), std::chrono::steady_clock::now() + timeout),
                 [&](std::exception_ptr e, http_response r) {
                   failure = e;
                   out = std::move(r);
                 });
  ioc.run();
  if (failure) std::rethrow_exception(failure);
  return out;
}


// --- streaming_get ----------------------------------------------------------------------------

struct streaming_get::impl {
  http_url url;
  std::string token;
  asio::io_context ioc{1};
  std::atomic<bool> cancelled{false};
  beast::tcp_stream* active = nullptr;  // touched only on ioc's thread

  asio::awaitable<http_response> exchange(std::string target, std::chrono::milliseconds connect_timeout,
                                          std::chrono::milliseconds idle_timeout,
                                          const std::function<void(std::string_view)>& on_body);
};

asio::awaitable<http_response> streaming_get::impl::exchange(std::string target,
                                                             std::chrono::milliseconds connect_timeout,
                                                             std::chrono::milliseconds idle_timeout,
                                                             const std::function<void(std::string_view)>& on_body) {
  const auto deadline = std::chrono::steady_clock::now() + connect_timeout;
  beast::tcp_stream stream = co_await connect_to(url, deadline);
  active = &stream;
  // cancel() posts a close that finds `active`; clear it on every way out of this frame.
  struct unset {
    beast::tcp_stream*& p;
    ~unset() { p = nullptr; }
  } guard{active};
  if (cancelled) co_return http_response{};

  auto req = make_request(url, token, "GET", target, {}, {});
  req.set(http::field::accept, "text/event-stream");
  stream.expires_at(deadline);
  auto [write_ec, bytes_written] = co_await http::async_write(stream, req, as_tuple_awaitable);
  if (write_ec) throw io_failure(write_ec, "sending to", url);

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;  // fresh per request; the body is never stored
  parser.body_limit(boost::none);                    // a stream has no end to limit
  stream.expires_at(deadline);
  auto [head_ec, head_bytes] = co_await http::async_read_header(stream, buffer, parser, as_tuple_awaitable);
  if (head_ec) throw io_failure(head_ec, "reading the answer from", url);
  http_response out{static_cast<int>(parser.get().result_int()), {}};
  const bool ok = out.status / 100 == 2;

  constexpr std::size_t error_body_limit = 64u * 1024u;
  std::array<char, 8192> chunk{};
  while (!parser.is_done() && !cancelled) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    stream.expires_after(idle_timeout);
    // read_some, not read: read would wait until the chunk is full, holding back small events.
    auto [read_ec, n] = co_await http::async_read_some(stream, buffer, parser, as_tuple_awaitable);
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got > 0) {
      if (ok) {
        on_body(std::string_view(chunk.data(), got));
      } else if (out.body.size() < error_body_limit) {
        out.body.append(chunk.data(), got);
      }
    }
    // need_buffer only says the chunk is full; anything else (end, reset, idle, cancel) ends it.
    if (read_ec && read_ec != http::error::need_buffer) break;
  }
  co_return out;
}

streaming_get::streaming_get(std::string_view url, std::string token) : impl_(std::make_unique<impl>()) {
  impl_->url = parse_url(url);
  impl_->token = std::move(token);
}

streaming_get::~streaming_get() = default;

http_response streaming_get::run(std::string_view target, std::chrono::milliseconds connect_timeout,
                                 std::chrono::milliseconds idle_timeout,
                                 const std::function<void(std::string_view)>& on_body) {
  std::exception_ptr failure;
  http_response out;
  asio::co_spawn(impl_->ioc, impl_->exchange(std::string(target), connect_timeout, idle_timeout, on_body),
                 [&](std::exception_ptr e, http_response r) {
                   failure = e;
                   out = std::move(r);
                 });
  impl_->ioc.run();
  if (failure) std::rethrow_exception(failure);
  return out;
}

void streaming_get::cancel() {
  impl_->cancelled = true;
  // The close runs on the io_context's thread, where the stream lives; a read in flight ends.
  asio::post(impl_->ioc, [p = impl_.get()] {
    if (p->active != nullptr) p->active->close();
  });
}

bool streaming_get::cancelled() const noexcept { return impl_->cancelled; }

}  // namespace sandlot::client::detail
