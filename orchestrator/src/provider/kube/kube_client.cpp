#include "kube_client.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t body_limit = 64 * 1024 * 1024;

/// The message of a metav1.Status body, or the body itself.
std::pair<std::string, std::string> status_of(const std::string& body) {
  try {
    const auto j = json::parse(body);
    if (j.is_object() && j.value("kind", "") == "Status") return {j.value("reason", ""), j.value("message", "")};
  } catch (const json::exception&) {
  }
  return {"", body.substr(0, 300)};
}

bool is_ip(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

kube_error::kube_error(unsigned status, std::string status_reason, const std::string& message, bool timed_out)
    : provider_error(classify(status, status_reason, message, timed_out), message),
      status_(status),
      status_reason_(std::move(status_reason)) {}

provider_failure kube_error::classify(unsigned status, std::string_view reason, std::string_view message,
                                      bool timed_out) noexcept {
  if (timed_out) return provider_failure::timed_out;
  if (status == 0) return provider_failure::unreachable;
  if (status == 401) return provider_failure::auth;
  // RBAC says Forbidden; so does a ResourceQuota that is full, which passes as pods end.
  if (status == 403) {
    const bool quota = message.find("exceeded quota") != std::string_view::npos;
    return reason == "Forbidden" && !quota ? provider_failure::not_allowed : provider_failure::failed;
  }
  if (status == 404 || reason == "NotFound") return provider_failure::not_found;
  if (status == 409 || reason == "AlreadyExists" || reason == "Conflict") return provider_failure::conflict;
  if (status == 400 || status == 422) return provider_failure::rejected;
  return provider_failure::failed;
}

std::optional<int> exit_code_of_status(const json& status) {
  if (status.value("status", "") == "Success") return 0;
  if (status.value("reason", "") == "NonZeroExitCode" && status.contains("details")) {
    for (const auto& cause : status.at("details").value("causes", json::array())) {
      if (cause.value("reason", "") != "ExitCode") continue;
      const std::string text = cause.value("message", "");
      int code = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), code);
      if (ec == std::errc() && p == text.data() + text.size()) return code;
    }
  }
  return std::nullopt;
}

std::string url_escape(std::string_view value) {
  std::string out;
  for (char ch : value) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

asio::awaitable<std::exception_ptr> as_outcome(asio::awaitable<void> a) {
  try {
    co_await std::move(a);
  } catch (...) {
    co_return std::current_exception();
  }
  co_return nullptr;
}

json kube_client::response::json() const { return nlohmann::json::parse(body); }

struct kube_client::connection {
  explicit connection(asio::any_io_executor ex) : tcp(std::move(ex)) {}
  beast::tcp_stream tcp;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : tcp; }
};

kube_client::kube_client(asio::any_io_executor ex, kube_target target) : ex_(std::move(ex)), target_(std::move(target)) {
  std::string_view rest = target_.server;
  if (rest.starts_with("https://")) {
    tls_ = true;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    throw std::invalid_argument(fmt::format("the API server '{}' must be http:// or https://", target_.server));
  }
  const auto slash = rest.find('/');
  if (slash != std::string_view::npos) {
    prefix_ = std::string(rest.substr(slash));
    while (!prefix_.empty() && prefix_.back() == '/') prefix_.pop_back();
    rest = rest.substr(0, slash);
  }
  if (rest.starts_with('[')) {
    const auto close = rest.find(']');
    host_ = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
  } else {
    host_ = std::string(rest.substr(0, rest.find(':')));
    rest = rest.substr(std::min(rest.size(), rest.find(':')));
  }
  port_ = rest.starts_with(':') ? std::string(rest.substr(1)) : (tls_ ? "443" : "80");
  if (tls_) {
    ssl_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
    if (target_.insecure_skip_verify) {
      ssl_->set_verify_mode(asio::ssl::verify_none);
    } else {
      ssl_->set_verify_mode(asio::ssl::verify_peer);
      if (!target_.ca_pem.empty()) {
        ssl_->add_certificate_authority(asio::buffer(target_.ca_pem));
      } else {
        ssl_->set_default_verify_paths();
      }
    }
    if (!target_.client_cert_pem.empty()) {
      ssl_->use_certificate_chain(asio::buffer(target_.client_cert_pem));
      ssl_->use_private_key(asio::buffer(target_.client_key_pem), asio::ssl::context::pem);
    }
  }
}

kube_client::~kube_client() = default;

std::string kube_client::bearer() const {
  if (target_.token_file.empty()) return target_.token;
  // Read at each call: a projected service-account token is rotated in place.
  std::ifstream in(target_.token_file);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token.empty() ? target_.token : token;
}

asio::awaitable<std::unique_ptr<kube_client::connection>> kube_client::open(std::chrono::milliseconds timeout) {
  auto c = std::make_unique<connection>(ex_);
  tcp::resolver resolver(ex_);
  auto [rec, endpoints] = co_await resolver.async_resolve(host_, port_, asio::as_tuple(asio::use_awaitable));
  if (rec) throw kube_error(0, "", fmt::format("cannot resolve the API server {}: {}", target_.server, rec.message()));
  c->tcp.expires_after(timeout);
  auto [cec, ep] = co_await c->tcp.async_connect(endpoints, asio::as_tuple(asio::use_awaitable));
  (void)ep;
  if (cec) {
    throw kube_error(0, "", fmt::format("cannot reach the API server {} ({}): {}", target_.server, target_.origin,
                                        cec.message()),
                     cec == beast::error::timeout);
  }
  if (tls_) {
    c->tls.emplace(std::move(c->tcp), *ssl_);
    // SNI (SSL_set_tlsext_host_name, spelled out: the macro casts old-style).
    if (!is_ip(host_)) {
      SSL_ctrl(c->tls->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host_.c_str()));
    }
    if (!target_.insecure_skip_verify) c->tls->set_verify_callback(asio::ssl::host_name_verification(host_));
    auto [hec] = co_await c->tls->async_handshake(asio::ssl::stream_base::client, asio::as_tuple(asio::use_awaitable));
    if (hec) {
      throw kube_error(0, "", fmt::format("TLS with the API server {} failed: {} (check the kubeconfig's "
                                          "certificate-authority)",
                                          target_.server, hec.message()));
    }
  }
  co_return c;
}

namespace {

template <class Stream>
asio::awaitable<http::response<http::string_body>> round_trip(Stream& s, http::request<http::string_body> req,
                                                              const std::string& server) {
  auto [wec, wn] = co_await http::async_write(s, req, asio::as_tuple(asio::use_awaitable));
  (void)wn;
  if (wec) throw kube_error(0, "", fmt::format("sending to the API server {}: {}", server, wec.message()),
                            wec == beast::error::timeout);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(body_limit);
  auto [rec, rn] = co_await http::async_read(s, buf, parser, asio::as_tuple(asio::use_awaitable));
  (void)rn;
  if (rec) throw kube_error(0, "", fmt::format("reading from the API server {}: {}", server, rec.message()),
                            rec == beast::error::timeout);
  co_return parser.release();
}

/// Feeds complete lines of `pending` to `on_line`; true when it asked to stop.
bool take_lines(std::string& pending, const std::function<bool(const json&)>& on_event) {
  std::size_t start = 0;
  for (auto nl = pending.find('\n', start); nl != std::string::npos; nl = pending.find('\n', start)) {
    const std::string_view line(pending.data() + start, nl - start);
    start = nl + 1;
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    json event;
    try {
      event = json::parse(line);
    } catch (const json::exception& e) {
      throw kube_error(0, "", fmt::format("a watch event is not JSON: {}", e.what()));
    }
    if (event.value("type", "") == "ERROR") {
      const auto& st = event.at("object");
      throw kube_error(st.value("code", 500u), st.value("reason", ""),
                       "watch ended with an error: " + st.value("message", std::string("(no message)")));
    }
    if (on_event(event)) {
      pending.erase(0, start);
      return true;
    }
  }
  pending.erase(0, start);
  return false;
}

template <class Stream>
asio::awaitable<bool> watch_on(Stream& s, beast::tcp_stream& lowest, http::request<http::string_body> req,
                               std::chrono::milliseconds header_timeout, const std::string& server,
                               std::function<bool(const json&)> on_event) {
  auto [wec, wn] = co_await http::async_write(s, req, asio::as_tuple(asio::use_awaitable));
  (void)wn;
  if (wec) throw kube_error(0, "", fmt::format("sending a watch to the API server {}: {}", server, wec.message()));
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  auto [hec, hn] = co_await http::async_read_header(s, buf, parser, asio::as_tuple(asio::use_awaitable));
  (void)hn;
  if (hec) throw kube_error(0, "", fmt::format("a watch on the API server {}: {}", server, hec.message()),
                            hec == beast::error::timeout);
  (void)header_timeout;
  // The stream stays open as long as the server keeps it: no deadline on the body (the caller
  // races the watch against its own).
  lowest.expires_never();
  const unsigned status = parser.get().result_int();
  std::string pending;
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    auto [rec, rn] = co_await http::async_read_some(s, buf, parser, asio::as_tuple(asio::use_awaitable));
    (void)rn;
    if (rec == http::error::need_buffer) rec = {};
    if (rec == http::error::end_of_stream || rec == asio::error::eof) break;
    if (rec) throw kube_error(0, "", fmt::format("a watch on the API server {} broke: {}", server, rec.message()));
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    if (status / 100 != 2) {
      if (pending.size() > body_limit) break;
      continue;
    }
    if (take_lines(pending, on_event)) co_return true;
  }
  if (status / 100 != 2) {
    auto [reason, message] = status_of(pending);
    throw kube_error(status, reason, fmt::format("watch {}: {}", std::string(req.target()), message));
  }
  pending.push_back('\n');
  co_return take_lines(pending, on_event);
}

}  // namespace

asio::awaitable<kube_client::response> kube_client::call(http::verb method, std::string target,
                                                         std::optional<json> body) {
  using namespace asio::experimental::awaitable_operators;
  auto conn = co_await open(call_timeout_);
  http::request<http::string_body> req{method, prefix_ + target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "sandlot-orchestratord");
  req.set(http::field::accept, "application/json");
  if (const auto token = bearer(); !token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (body) {
    req.set(http::field::content_type, "application/json");
    req.body() = body->dump();
  }
  req.prepare_payload();
  conn->lowest().expires_after(call_timeout_);
  // (Not a conditional expression: GCC 12 frees a co_await's result twice inside one.)
  http::response<http::string_body> res;
  if (conn->tls) {
    res = co_await round_trip(*conn->tls, std::move(req), target_.server);
  } else {
    res = co_await round_trip(conn->tcp, std::move(req), target_.server);
  }
  co_return response{res.result_int(), std::move(res.body())};
}

asio::awaitable<json> kube_client::call_ok(http::verb method, std::string target, std::optional<json> body,
                                           std::string what) {
  const auto res = co_await call(method, target, std::move(body));
  if (res.status / 100 != 2) {
    auto [reason, message] = status_of(res.body);
    throw kube_error(res.status, reason, fmt::format("{}: {} ({})", what, message, res.status));
  }
  try {
    co_return res.json();
  } catch (const json::exception& e) {
    throw kube_error(res.status, "", fmt::format("{}: the API server's answer is not JSON: {}", what, e.what()));
  }
}

asio::awaitable<bool> kube_client::watch(std::string target, std::function<bool(const json&)> on_event) {
  auto conn = co_await open(call_timeout_);
  http::request<http::string_body> req{http::verb::get, prefix_ + target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "sandlot-orchestratord");
  req.set(http::field::accept, "application/json");
  if (const auto token = bearer(); !token.empty()) req.set(http::field::authorization, "Bearer " + token);
  conn->lowest().expires_after(call_timeout_);
  if (conn->tls) {
    co_return co_await watch_on(*conn->tls, conn->lowest(), std::move(req), call_timeout_, target_.server,
                                std::move(on_event));
  }
  co_return co_await watch_on(conn->tcp, conn->lowest(), std::move(req), call_timeout_, target_.server,
                              std::move(on_event));
}

namespace {

constexpr const char* proto_v5 = "v5.channel.k8s.io";
constexpr const char* proto_v4 = "v4.channel.k8s.io";

struct exec_io {
  exec_output out;
  std::optional<json> status;
  std::size_t limit = 0;
  void append(std::string& to, const char* data, std::size_t size) {
    const std::size_t room = limit > to.size() ? limit - to.size() : 0;
    if (size > room) out.truncated = true;
    to.append(data, std::min(size, room));
  }
};

template <class WS>
asio::awaitable<void> exec_reader(WS& ws, exec_io& io) {
  beast::flat_buffer buf;
  for (;;) {
    auto [ec, n] = co_await ws.async_read(buf, asio::as_tuple(asio::use_awaitable));
    (void)n;
    if (ec == websocket::error::closed || ec == asio::error::eof) co_return;
    if (ec) {
      // Some servers drop the connection right after the status instead of closing it.
      if (io.status) co_return;
      throw kube_error(0, "", "the exec stream broke: " + ec.message());
    }
    const auto data = buf.cdata();
    const auto* bytes = static_cast<const char*>(data.data());
    if (data.size() >= 1) {
      const int channel = static_cast<unsigned char>(bytes[0]);
      if (channel == 1) io.append(io.out.stdout_data, bytes + 1, data.size() - 1);
      if (channel == 2) io.append(io.out.stderr_data, bytes + 1, data.size() - 1);
      if (channel == 3 && data.size() > 1) {
        try {
          io.status = json::parse(std::string_view(bytes + 1, data.size() - 1));
        } catch (const json::exception&) {
          io.status = json{{"status", "Failure"}, {"message", std::string(bytes + 1, data.size() - 1)}};
        }
      }
    }
    buf.consume(buf.size());
  }
}

template <class WS>
asio::awaitable<void> exec_writer(WS& ws, std::optional<std::string> stdin_data, bool v5) {
  if (!stdin_data) co_return;
  constexpr std::size_t piece = 32 * 1024;
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(piece, stdin_data->size() - at);
    std::string frame(1, '\0');
    frame.append(*stdin_data, at, n);
    at += n;
    auto [ec, w] = co_await ws.async_write(asio::buffer(frame), asio::as_tuple(asio::use_awaitable));
    (void)w;
    if (ec) co_return;  // the reader reports what happened
  } while (at < stdin_data->size());
  if (v5) {
    const std::string close_stdin{static_cast<char>(255), '\0'};
    auto [ec, w] = co_await ws.async_write(asio::buffer(close_stdin), asio::as_tuple(asio::use_awaitable));
    (void)ec;
    (void)w;
  }
}

template <class Next>
asio::awaitable<exec_output> exec_on(Next&& next, std::string host, std::string target, std::string token,
                                     std::optional<std::string> stdin_data, std::chrono::milliseconds timeout,
                                     std::size_t limit, std::string offers, std::string& protocol) {
  using namespace asio::experimental::awaitable_operators;
  websocket::stream<std::decay_t<Next>> ws(std::move(next));
  ws.set_option(websocket::stream_base::decorator([token, offers](websocket::request_type& req) {
    req.set(http::field::user_agent, "sandlot-orchestratord");
    req.set(http::field::sec_websocket_protocol, offers);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  }));
  ws.read_message_max(limit * 2 + 65536);
  websocket::response_type res;
  auto [hec] = co_await ws.async_handshake(res, host, target, asio::as_tuple(asio::use_awaitable));
  if (hec) {
    if (res.result_int() != 0 && res.result_int() != 101) {
      auto [reason, message] = status_of(res.body());
      throw kube_error(res.result_int(), reason, fmt::format("exec: {} ({})", message, res.result_int()));
    }
    throw kube_error(0, "", "exec: the WebSocket handshake failed: " + hec.message());
  }
  protocol = std::string(res[http::field::sec_websocket_protocol]);
  if (protocol != proto_v5 && protocol != proto_v4) {
    throw kube_error(0, "", fmt::format("exec: the API server agreed on '{}', not {} or {}", protocol, proto_v5,
                                        proto_v4));
  }
  beast::get_lowest_layer(ws).expires_never();
  ws.binary(true);
  exec_io io;
  io.limit = limit;
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto raced =
      co_await (as_outcome(exec_reader(ws, io) && exec_writer(ws, std::move(stdin_data), protocol == proto_v5)) ||
                timer.async_wait(asio::use_awaitable));
  if (raced.index() == 1) {
    io.out.timed_out = true;
    co_return io.out;
  }
  if (auto failure = std::get<0>(raced)) std::rethrow_exception(failure);
  if (!io.status) throw kube_error(0, "", "exec: the stream ended without the command's status");
  if (auto code = exit_code_of_status(*io.status)) {
    io.out.exit_code = *code;
  } else {
    // It did not run (no such executable, the container is gone ...): as a shell would say it.
    const std::string message = io.status->value("message", std::string("the command did not run"));
    const bool missing = message.find("not found") != std::string::npos ||
                         message.find("no such file or directory") != std::string::npos;
    io.out.exit_code = missing ? 127 : 126;
    if (!io.out.stderr_data.empty() && io.out.stderr_data.back() != '\n') io.out.stderr_data.push_back('\n');
    io.out.stderr_data += message + "\n";
  }
  co_return io.out;
}

}  // namespace

asio::awaitable<exec_output> kube_client::exec(std::string pod_path, exec_request request) {
  std::string query = "?stdout=true&stderr=true";
  if (!request.container.empty()) query += "&container=" + url_escape(request.container);
  if (request.stdin_data) query += "&stdin=true";
  auto run = [&](std::vector<std::string> args, std::string offers) -> asio::awaitable<exec_output> {
    std::string target = prefix_ + pod_path + "/exec" + query;
    for (const auto& a : args) target += "&command=" + url_escape(a);
    auto conn = co_await open(call_timeout_);
    std::string protocol;
    exec_output out;
    if (conn->tls) {
      out = co_await exec_on(std::move(*conn->tls), host_, target, bearer(), request.stdin_data, request.timeout,
                             request.output_limit, offers, protocol);
    } else {
      out = co_await exec_on(std::move(conn->tcp), host_, target, bearer(), request.stdin_data, request.timeout,
                             request.output_limit, offers, protocol);
    }
    last_protocol_ = protocol;
    co_return out;
  };
  if (!request.stdin_data) co_return co_await run(request.argv, std::string(proto_v5) + ", " + proto_v4);
  if (last_protocol_ != proto_v4) {
    // Only v5 can end stdin, so it alone is offered; a server without it refuses the upgrade.
    try {
      co_return co_await run(request.argv, proto_v5);
    } catch (const kube_error& e) {
      // The refusal names the protocols ("requested protocol(s) are not supported"); any other
      // 400 (no such container ...) is the answer itself.
      // A Go WebSocket server refuses with a bare 403 and no Status body; the 1.30 API server with a
      // 400 Status naming the protocols. An RBAC 403 carries a Status with reason Forbidden.
      const bool no_v5 = (e.status() == 400 || e.status() == 403) &&
                         (e.status_reason().empty() ||
                          std::string_view(e.what()).find("protocol") != std::string_view::npos) &&
                         e.status_reason() != "Forbidden";
      if (!no_v5) throw;
    }
  }
  // v4 has no way to close stdin: the command reads through `head -c N`, which exits after N
  // bytes and so ends the command's stdin (the sandbox needs sh and head for this).
  std::vector<std::string> wrapped{"sh", "-c", "head -c \"$0\" | \"$@\"", std::to_string(request.stdin_data->size())};
  wrapped.insert(wrapped.end(), request.argv.begin(), request.argv.end());
  co_return co_await run(std::move(wrapped), proto_v4);
}

}  // namespace sandlot::orchestrator
