#include "docker_client.hpp"

#include "image_ref.hpp"
#include "pull_progress.hpp"

#include <sandlot/protocol.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <iterator>
#include <sstream>
#include <charconv>
#include <cstdlib>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

namespace {

using engine_stream = beast::basic_stream<asio::generic::stream_protocol>;

/// The engine's {"message": ...} or the raw body.
std::string engine_message(const std::string& body) {
  auto j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  std::string trimmed = body.substr(0, 300);
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r')) trimmed.pop_back();
  return trimmed.empty() ? std::string("(empty response)") : trimmed;
}

/// A failed pull: Docker says "manifest unknown" or "... not found" for a reference its registry
/// does not know; that is permanent, unlike a registry that is down.
engine_error pull_error(unsigned status, const std::string& message) {
  const bool unknown = message.find("manifest unknown") != std::string::npos ||
                       message.find("not found") != std::string::npos;
  if (unknown) return engine_error(status, message, provider_failure::image_not_found);
  return engine_error(status, message);
}

/// The error for an engine that took the connection and did not answer `what` within `timeout`.
engine_error hung(const engine_address& addr, const std::string& what, std::chrono::milliseconds timeout) {
  return engine_error(0,
                      fmt::format("the Docker engine at {} did not answer {} within {} s; is dockerd hung? "
                                  "(docs/operations.md)",
                                  addr.to_string(), what,
                                  std::chrono::duration_cast<std::chrono::seconds>(timeout).count()),
                      /*timed_out=*/true);
}

std::chrono::milliseconds until(clock::time_point tp) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(tp - clock::now());
  return std::max(d, 1ms);
}

}  // namespace

// --- engine_address --------------------------------------------------------------------------

engine_address engine_address::parse(const std::string& spec) {
  engine_address a;
  if (spec.rfind("unix://", 0) == 0) {
    a.type = kind::unix_socket;
    a.path = spec.substr(7);
  } else if (!spec.empty() && spec.front() == '/') {
    a.type = kind::unix_socket;
    a.path = spec;
  } else if (spec.rfind("tcp://", 0) == 0) {
    a.type = kind::tcp;
    std::string rest = spec.substr(6);
    if (!rest.empty() && rest.back() == '/') rest.pop_back();
    auto colon = rest.rfind(':');
    if (colon == std::string::npos) {
      throw std::invalid_argument(fmt::format(
          "docker host '{}' has no port; use tcp://HOST:PORT, e.g. tcp://127.0.0.1:2375", spec));
    }
    a.host = rest.substr(0, colon);
    if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']') {
      a.host = a.host.substr(1, a.host.size() - 2);
    }
    int port = 0;
    const std::string port_text = rest.substr(colon + 1);
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (a.host.empty()) {
      throw std::invalid_argument(fmt::format("docker host '{}' has no host; use tcp://HOST:PORT", spec));
    }
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port <= 0 || port > 65535) {
      throw std::invalid_argument(fmt::format("docker host '{}' has an invalid port", spec));
    }
    a.port = static_cast<unsigned short>(port);
  } else {
    throw std::invalid_argument(fmt::format(
        "docker host '{}' is not understood; use unix:///var/run/docker.sock or tcp://HOST:PORT", spec));
  }
  if (a.type == kind::unix_socket && a.path.empty()) {
    throw std::invalid_argument("docker host 'unix://' needs a socket path");
  }
  return a;
}

std::string engine_address::default_spec() {
  const char* env = std::getenv("DOCKER_HOST");
  return (env != nullptr && *env != '\0') ? std::string(env) : std::string("unix:///var/run/docker.sock");
}

std::string engine_address::to_string() const {
  return type == kind::unix_socket ? "unix://" + path : fmt::format("tcp://{}:{}", host, port);
}

// --- docker_client ---------------------------------------------------------------------------

docker_client::docker_client(asio::any_io_executor ex, engine_address addr)
    : ex_(std::move(ex)), addr_(std::move(addr)) {}

json docker_client::response::json() const { return json::parse(body, nullptr, false); }

std::string docker_client::versioned(const std::string& target) const {
  return "/v" + api_version_ + target;
}

namespace {

asio::awaitable<engine_stream> connect(const asio::any_io_executor& ex, const engine_address& addr,
                                       std::chrono::milliseconds timeout) {
  engine_stream stream(ex);
  stream.expires_after(timeout);
  try {
    if (addr.type == engine_address::kind::unix_socket) {
      co_await stream.async_connect(
          asio::generic::stream_protocol::endpoint(asio::local::stream_protocol::endpoint(addr.path)),
          asio::use_awaitable);
    } else {
      asio::ip::tcp::resolver resolver(ex);
      auto results = co_await resolver.async_resolve(addr.host, std::to_string(addr.port), asio::use_awaitable);
      boost::system::error_code last = asio::error::host_not_found;
      bool connected = false;
      for (const auto& r : results) {
        try {
          co_await stream.async_connect(asio::generic::stream_protocol::endpoint(r.endpoint()),
                                        asio::use_awaitable);
          connected = true;
          break;
        } catch (const boost::system::system_error& e) {
          last = e.code();
          stream.socket().close();
        }
      }
      if (!connected) throw boost::system::system_error(last);
    }
  } catch (const boost::system::system_error& e) {
    throw engine_error(0, fmt::format("cannot reach the Docker engine at {}: {}; start dockerd "
                                      "(scripts/e2e-env up) or pass --docker-host",
                                      addr.to_string(), e.code().message()));
  }
  co_return stream;
}

http::request<http::string_body> make_request(http::verb method, const std::string& target, std::string body,
                                              std::string_view content_type) {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "sandlot-orchestratord");
  if (!content_type.empty()) {
    req.set(http::field::content_type, content_type);
    req.body() = std::move(body);
  }
  req.prepare_payload();
  return req;
}

}  // namespace

asio::awaitable<docker_client::response> docker_client::call(http::verb method, const std::string& target,
                                                             const std::optional<json>& body,
                                                             std::chrono::milliseconds timeout) {
  std::string bytes = body ? body->dump() : std::string();
  co_return co_await call_bytes(method, target, std::move(bytes), body ? "application/json" : "", timeout);
}

asio::awaitable<docker_client::response> docker_client::call_bytes(http::verb method, std::string target,
                                                                   std::string body, std::string content_type,
                                                                   std::chrono::milliseconds timeout) {
  // Every call has a deadline: an engine that takes connections and never answers fails the
  // call (engine_error::timed_out) instead of hanging the lease behind it.
  timeout = std::min(timeout, call_timeout_);
  auto stream = co_await connect(ex_, addr_, std::min<std::chrono::milliseconds>(timeout, 10s));
  stream.expires_after(timeout);
  try {
    auto req = make_request(method, versioned(target), std::move(body), content_type);
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    if (method == http::verb::head) parser.skip(true);  // its Content-Length describes a body never sent
    co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
    beast::error_code ignored;
    stream.socket().shutdown(asio::socket_base::shutdown_both, ignored);
    auto res = parser.release();
    co_return response{res.result_int(), std::move(res.body())};
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout) {
      throw hung(addr_, fmt::format("{} {}", std::string_view(http::to_string(method)),
                                    target.substr(0, target.find('?'))),
                 timeout);
    }
    throw engine_error(0, fmt::format("{} {} on the Docker engine failed: {}", http::to_string(method),
                                      target, e.code().message()));
  }
}

asio::awaitable<std::string> docker_client::negotiate() {
  const auto timeout = std::min<std::chrono::milliseconds>(call_timeout_, 10s);
  auto stream = co_await connect(ex_, addr_, timeout);
  stream.expires_after(timeout);
  try {
    auto req = make_request(http::verb::get, "/_ping", {}, {});
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    co_await http::async_read(stream, buffer, res, asio::use_awaitable);
    if (res.result_int() != 200) {
      throw engine_error(res.result_int(), fmt::format("the engine at {} answered /_ping with {}",
                                                       addr_.to_string(), res.result_int()));
    }
    const std::string v(res["Api-Version"]);
    if (!v.empty()) {
      // Use the engine's version, but never one newer than this client was written against.
      auto num = [](const std::string& s) {
        auto dot = s.find('.');
        return std::atoi(s.c_str()) * 1000 + (dot == std::string::npos ? 0 : std::atoi(s.c_str() + dot + 1));
      };
      api_version_ = num(v) < num("1.41") ? v : std::string("1.41");
    }
  } catch (const boost::system::system_error& e) {
    throw engine_error(0, fmt::format("/_ping on {} failed: {}", addr_.to_string(), e.code().message()));
  }
  co_return api_version_;
}

asio::awaitable<bool> docker_client::image_exists(const std::string& ref) {
  auto res = co_await call(http::verb::get, "/images/" + ref + "/json", std::nullopt, 30s);
  if (res.status == 200) co_return true;
  if (res.status == 404) co_return false;
  throw engine_error(res.status, fmt::format("inspecting image {}: {}", ref, engine_message(res.body)));
}

asio::awaitable<std::string> docker_client::image_id(const std::string& ref) {
  auto res = co_await call(http::verb::get, "/images/" + ref + "/json", std::nullopt, 30s);
  if (res.status != 200) throw engine_error(res.status, fmt::format("inspecting image {}: {}", ref, engine_message(res.body)));
  auto j = res.json();
  if (!j.is_object() || !j.contains("Id") || !j["Id"].is_string()) {
    throw engine_error(res.status, fmt::format("inspecting image {}: the answer has no Id", ref));
  }
  co_return j["Id"].get<std::string>();
}

asio::awaitable<void> docker_client::pull(const std::string& ref, clock::time_point deadline,
                                          std::chrono::milliseconds stall_timeout,
                                          std::function<void(std::int64_t, std::int64_t)> progress) {
  pull_progress_reader reader(std::move(progress));
  const image_ref parsed = parse_image_ref(ref);
  const std::string repo = parsed.name();
  const std::string tag = parsed.digest.empty() ? parsed.tag : parsed.digest;
  const std::string target =
      fmt::format("/images/create?fromImage={}&tag={}", protocol::percent_encode(repo), protocol::percent_encode(tag));

  auto stream = co_await connect(ex_, addr_, std::min<std::chrono::milliseconds>(until(deadline), 10s));
  std::string body;
  unsigned status = 0;
  try {
    // Until the engine answers at all, this is a call like any other (--engine-timeout); then the
    // progress stream has its own stall timeout.
    stream.expires_after(std::min({until(deadline), stall_timeout, call_timeout_}));
    auto req = make_request(http::verb::post, versioned(target), {}, {});
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    try {
      co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      if (e.code() != beast::error::timeout) throw;
      throw hung(addr_, "the pull of " + ref, call_timeout_);
    }
    // The progress stream: each read must make progress within stall_timeout, the whole pull
    // must end by the deadline.
    while (!parser.is_done()) {
      if (clock::now() >= deadline) throw boost::system::system_error(beast::error::timeout);
      stream.expires_after(std::min(until(deadline), stall_timeout));
      co_await http::async_read_some(stream, buffer, parser, asio::use_awaitable);
      if (parser.is_header_done() && parser.get().result_int() == 200) reader.read(parser.get().body());
    }
    status = parser.get().result_int();
    body = std::move(parser.get().body());
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout) {
      throw engine_error(0, clock::now() >= deadline ? "the pull deadline passed"
                                                     : "the pull made no progress within the stall timeout");
    }
    throw engine_error(0, fmt::format("the pull stream broke: {}", e.code().message()));
  }
  if (status != 200) throw pull_error(status, engine_message(body));
  // A 200 can still carry a failure as a JSON line with "error"; read every line.
  std::size_t pos = 0;
  while (pos < body.size()) {
    auto nl = body.find('\n', pos);
    auto line = body.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? body.size() : nl + 1;
    auto j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("error")) {
      throw pull_error(200, j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump());
    }
  }
}

asio::awaitable<std::string> docker_client::create_container(const std::string& name, const json& spec) {
  auto res = co_await call(http::verb::post, "/containers/create?name=" + protocol::percent_encode(name), spec, 60s);
  if (res.status != 201) throw engine_error(res.status, engine_message(res.body));
  auto j = res.json();
  if (!j.is_object() || !j.contains("Id")) throw engine_error(res.status, "create answered without an Id");
  co_return j["Id"].get<std::string>();
}

asio::awaitable<void> docker_client::start_container(const std::string& id) {
  auto res = co_await call(http::verb::post, "/containers/" + id + "/start", std::nullopt, 60s);
  if (res.status != 204 && res.status != 304) throw engine_error(res.status, engine_message(res.body));
}

asio::awaitable<json> docker_client::inspect_container(const std::string& id) {
  auto res = co_await call(http::verb::get, "/containers/" + id + "/json", std::nullopt, 30s);
  if (res.status != 200) throw engine_error(res.status, engine_message(res.body));
  co_return res.json();
}

asio::awaitable<void> docker_client::put_archive(const std::string& id, const std::string& dir, std::string tar) {
  // Docker answers 404 for a directory that does not exist; podman's compat API creates it. Asking
  // first gives both the same answer.
  auto stat = co_await call(http::verb::head, "/containers/" + id + "/archive?path=" + protocol::percent_encode(dir),
                            std::nullopt, 30s);
  if (stat.status == 404) {
    throw engine_error(404, fmt::format("writing into {}: no such directory in container {}", dir, id.substr(0, 12)));
  }
  auto res = co_await call_bytes(http::verb::put, "/containers/" + id + "/archive?path=" + protocol::percent_encode(dir),
                                 std::move(tar), "application/x-tar", 60s);
  if (res.status != 200) throw engine_error(res.status, fmt::format("writing into {}: {}", dir, engine_message(res.body)));
}

asio::awaitable<std::optional<std::string>> docker_client::get_archive(const std::string& id, const std::string& path) {
  auto res = co_await call_bytes(http::verb::get, "/containers/" + id + "/archive?path=" + protocol::percent_encode(path), {}, {},
                                 60s);
  if (res.status == 404) co_return std::nullopt;
  if (res.status != 200) throw engine_error(res.status, fmt::format("reading {}: {}", path, engine_message(res.body)));
  co_return std::move(res.body);
}

asio::awaitable<void> docker_client::remove_container(const std::string& id) {
  const auto deadline = clock::now() + 60s;
  for (;;) {
    auto res = co_await call(http::verb::delete_, "/containers/" + id + "?force=true&v=true", std::nullopt, 60s);
    if (res.status == 204 || res.status == 404) co_return;
    // 409: a removal is already in progress; wait for the engine to finish it.
    if (res.status != 409 || clock::now() > deadline) {
      throw engine_error(res.status, fmt::format("removing container {}: {}", id, engine_message(res.body)));
    }
    asio::steady_timer t(ex_, 200ms);
    co_await t.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<std::vector<docker_client::container_summary>> docker_client::list_containers(
    const std::vector<std::string>& labels) {
  json filters = {{"label", labels}};
  auto res = co_await call(http::verb::get, "/containers/json?all=true&filters=" + protocol::percent_encode(filters.dump()),
                           std::nullopt, 30s);
  if (res.status != 200) throw engine_error(res.status, engine_message(res.body));
  std::vector<container_summary> out;
  for (const auto& c : res.json()) {
    container_summary s{c.at("Id").get<std::string>(), {}, c.value("State", std::string())};
    if (c.contains("Labels") && c["Labels"].is_object()) {
      for (const auto& [k, v] : c["Labels"].items()) {
        if (v.is_string()) s.labels[k] = v.get<std::string>();
      }
    }
    out.push_back(std::move(s));
  }
  co_return out;
}

asio::awaitable<std::string> docker_client::create_exec(std::string container_id, const exec_spec& spec) {
  json create = {{"AttachStdin", spec.stdin_data.has_value()}, {"AttachStdout", true}, {"AttachStderr", true},
                 {"Tty", false}, {"Cmd", spec.argv}, {"Env", spec.env}};
  if (!spec.workdir.empty()) create["WorkingDir"] = spec.workdir;
  auto created = co_await call(http::verb::post, "/containers/" + container_id + "/exec", create, 30s);
  if (created.status != 201) throw engine_error(created.status, engine_message(created.body));
  co_return created.json().at("Id").get<std::string>();
}

asio::awaitable<bool> docker_client::run_exec_stream(std::string exec_id, const exec_spec& spec,
                                                     stream_demuxer& demux, exec_output& out) {
  using namespace asio::experimental::awaitable_operators;
  const bool with_stdin = spec.stdin_data.has_value();
  bool cancelled = false;
  auto stream = co_await connect(ex_, addr_, std::min<std::chrono::milliseconds>(call_timeout_, 10s));
  const auto deadline = clock::now() + spec.timeout;
  // Starting it is an engine call like any other; the command then runs for its own timeout.
  stream.expires_after(std::min<std::chrono::milliseconds>(call_timeout_, spec.timeout));
  try {
    // Ask for an upgraded connection, as the docker CLI does: after 101 the socket is raw.
    auto req = make_request(http::verb::post, versioned("/exec/" + exec_id + "/start"),
                            json{{"Detach", false}, {"Tty", false}}.dump(), "application/json");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::upgrade, "tcp");
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
    const unsigned status = parser.get().result_int();
    if (status != 101 && status != 200) {
      throw engine_error(status, fmt::format("starting exec failed with HTTP {}", status));
    }
    stream.expires_at(deadline);
    // Bytes read past the header already belong to the raw stream.
    auto leftover = buffer.data();
    demux.feed(static_cast<const char*>(leftover.data()), leftover.size());

    auto write_stdin = [&]() -> asio::awaitable<void> {
      if (!with_stdin) co_return;
      if (!spec.stdin_data->empty()) {
        co_await asio::async_write(stream, asio::buffer(*spec.stdin_data), asio::use_awaitable);
      }
      // Half-close: the process sees EOF on stdin while we keep reading its output.
      stream.socket().shutdown(asio::socket_base::shutdown_send);
    };
    auto read_output = [&]() -> asio::awaitable<void> {
      std::array<char, 16384> chunk{};
      for (;;) {
        auto [ec, n] = co_await stream.async_read_some(asio::buffer(chunk),
                                                       asio::as_tuple(asio::use_awaitable));
        if (n > 0) demux.feed(chunk.data(), n);
        if (ec == asio::error::eof) co_return;
        if (ec) throw boost::system::system_error(ec);
      }
    };
    co_await (write_stdin() && read_output());
  } catch (const boost::system::system_error& e) {
    if (e.code() == beast::error::timeout) {
      out.timed_out = true;
    } else if (e.code() == asio::error::operation_aborted) {
      cancelled = true;
    } else if (e.code() != asio::error::connection_reset && e.code() != asio::error::broken_pipe) {
      throw engine_error(0, fmt::format("the exec stream broke: {}", e.code().message()));
    }
  }
  co_return cancelled;
}

asio::awaitable<int> docker_client::exec_exit_code(std::string exec_id) {
  // The stream has ended; the engine records the exit code a moment later.
  const auto deadline = clock::now() + 5s;
  for (;;) {
    auto res = co_await call(http::verb::get, "/exec/" + exec_id + "/json", std::nullopt, 10s);
    if (res.status != 200) throw engine_error(res.status, engine_message(res.body));
    auto j = res.json();
    if (!j.value("Running", false) && j.contains("ExitCode") && j["ExitCode"].is_number_integer()) {
      co_return j["ExitCode"].get<int>();
    }
    if (clock::now() > deadline) throw engine_error(0, "the engine did not report the exit code");
    asio::steady_timer t(ex_, 10ms);
    co_await t.async_wait(asio::use_awaitable);
  }
}

asio::awaitable<exec_output> docker_client::exec(const std::string& container_id, const exec_spec& spec) {
  const std::string exec_id = co_await create_exec(container_id, spec);
  exec_output out;
  stream_demuxer demux(spec.output_limit);
  const bool cancelled = co_await run_exec_stream(exec_id, spec, demux, out);
  if (cancelled) {
    // Whoever asked is gone (the client closed its connection): the command must not run on for
    // up to its timeout. This coroutine is cancelled and can await nothing more, so the kill runs
    // as a task of its own.
    asio::co_spawn(
        ex_,
        [this, exec_id, container_id]() -> asio::awaitable<void> {
          try {
            co_await kill_exec(exec_id, container_id);
          } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): best effort; the lease's end removes all
          }
        },
        asio::detached);
    throw boost::system::system_error(asio::error::operation_aborted);
  }
  out.stdout_data = std::move(demux.out());
  out.stderr_data = std::move(demux.err());
  out.truncated = demux.truncated();
  if (out.timed_out) {
    co_await kill_exec(exec_id, container_id);
    co_return out;
  }

  out.exit_code = co_await exec_exit_code(exec_id);
  // dockerd 20.10 writes the runtime's own failure (e.g. "executable file not found") into the
  // stdout frame; it is an error about the command, so the caller finds it on stderr.
  if (out.stderr_data.empty() && out.stdout_data.rfind("OCI runtime exec failed", 0) == 0) {
    std::swap(out.stdout_data, out.stderr_data);
  }
  co_return out;
}

asio::awaitable<void> docker_client::kill_exec(const std::string& exec_id, const std::string& container_id) {
  // The Engine API cannot signal an exec. On a local engine its process is visible here by the
  // host pid the engine reports; it is killed only if /proc shows it inside this very container,
  // so a pid from another namespace (the daemon itself in a container) can never hit a stranger.
  if (addr_.type != engine_address::kind::unix_socket) co_return;
  auto res = co_await call(http::verb::get, "/exec/" + exec_id + "/json", std::nullopt, 10s);
  if (res.status != 200) co_return;
  auto j = res.json();
  if (!j.value("Running", false)) co_return;
  const int pid = j.value("Pid", 0);
  if (pid <= 1) co_return;
  auto read_file = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto in_container = [&](int p) {
    return container_id.size() >= 12 &&
           read_file(fmt::format("/proc/{}/cgroup", p)).find(container_id) != std::string::npos;
  };
  if (!in_container(pid)) {
    if (!warned_pid_namespace_) {
      warned_pid_namespace_ = true;
      spdlog::warn("cannot stop the timed-out command of exec {}: the engine's pid {} for it is not visible here, so "
                   "this daemon runs in another pid namespace than the engine (in a container: run it with --pid "
                   "host, docs/ci.md); such commands run on until their sandbox is removed",
                   exec_id.substr(0, 12), pid);
    }
    co_return;
  }
  // The command and everything it started (sh -c "sleep 30" leaves a sleep behind otherwise).
  std::vector<int> tree{pid};
  for (std::size_t i = 0; i < tree.size() && tree.size() < 4096; ++i) {
    std::istringstream children(read_file(fmt::format("/proc/{}/task/{}/children", tree[i], tree[i])));
    for (int child = 0; children >> child;) tree.push_back(child);
  }
  for (int p : tree) {
    if (in_container(p)) ::kill(p, SIGKILL);
  }
}

// --- stream_demuxer --------------------------------------------------------------------------

void stream_demuxer::feed(const char* data, std::size_t size) {
  while (size > 0) {
    if (remaining_ == 0) {
      // Collect an 8-byte header: [stream, 0, 0, 0, size (big-endian u32)].
      const std::size_t need = 8 - pending_.size();
      const std::size_t take = std::min(need, size);
      pending_.append(data, take);
      data += take;
      size -= take;
      if (pending_.size() < 8) return;
      const auto* h = reinterpret_cast<const unsigned char*>(pending_.data());
      stream_ = h[0];
      remaining_ = (std::size_t{h[4]} << 24) | (std::size_t{h[5]} << 16) | (std::size_t{h[6]} << 8) | h[7];
      pending_.clear();
      continue;
    }
    const std::size_t take = std::min(remaining_, size);
    append(stream_, data, take);
    data += take;
    size -= take;
    remaining_ -= take;
  }
}

void stream_demuxer::append(int stream, const char* data, std::size_t size) {
  std::string& target = stream == 2 ? err_ : out_;
  const std::size_t room = target.size() < limit_ ? limit_ - target.size() : 0;
  if (size > room) truncated_ = true;
  target.append(data, std::min(size, room));
}

provider_failure engine_error::classify(unsigned status, std::string_view message, bool timed_out) noexcept {
  auto says = [&](std::string_view text) { return message.find(text) != std::string_view::npos; };
  if (timed_out) return provider_failure::timed_out;
  if (status == 0) return provider_failure::unreachable;
  if (says("invalid reference format")) return provider_failure::invalid_reference;
  if (says("read-only")) return provider_failure::read_only;
  if (status == 401 || says("unauthorized") || says("authentication required")) return provider_failure::auth;
  if (status == 404) return says("No such image") ? provider_failure::image_not_found : provider_failure::not_found;
  if (status == 409) return provider_failure::conflict;
  if (status == 400) return provider_failure::rejected;
  return provider_failure::failed;
}

}  // namespace sandlot::orchestrator
