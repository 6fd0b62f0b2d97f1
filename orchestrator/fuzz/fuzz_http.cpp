// Fuzzes the daemon's HTTP request handling with raw bytes from a client (docs/fuzzing.md).
//
// The bytes are what one connection would carry. They go through a Beast request parser with the
// session's own limits (apply_limits), fed with put() as the stream delivers them; every complete
// request goes through the real router and lease service, and a request that fails to parse gets
// the session's read_error_response and ends the connection, as in http_session.cpp.
//
// The service has an engine address nobody listens on: the router and the service run for real,
// and anything that reaches the engine fails the way an unreachable engine does. Each input gets a
// fresh service, so inputs do not depend on one another.
//
// A bug is: an exception out of router::handle, a status that is not a valid HTTP status, a 4xx or
// 5xx whose body is not the `{"error":{"code","message"}}` contract with a matching status, a
// Content-Length that does not match the body, or a sanitizer report.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <spdlog/spdlog.h>

#include "docker_client.hpp"
#include "docker_provider.hpp"
#include "lease_service.hpp"
#include "listener.hpp"
#include "router.hpp"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace protocol = sandlot::protocol;
namespace so = sandlot::orchestrator;
using json = nlohmann::json;

// Requests per input: pipelining a few is interesting, hundreds only slows the fuzzer down.
constexpr int max_requests = 16;
// How long one request may take before we stop waiting (a long-poll on a lease the same input
// created). Without an engine everything else answers at once.
constexpr auto handle_bound = std::chrono::milliseconds(50);

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_http: %s\n", what.c_str());
  std::abort();
}

void check_response(const so::http_response& res) {
  const unsigned status = res.result_int();
  if (status < 100 || status > 599 || http::int_to_status(status) == http::status::unknown) {
    fail("invalid HTTP status " + std::to_string(status));
  }
  const auto length = res.find(http::field::content_length);
  if (length == res.end() || length->value() != std::to_string(res.body().size())) {
    fail("Content-Length does not match a body of " + std::to_string(res.body().size()) + " bytes");
  }
  if (status < 400) return;
  const json body = json::parse(res.body(), nullptr, /*allow_exceptions=*/false);
  // The one documented exception (docs/api.md): /readyz's probe answer before prepulls finish.
  if (status == 503 && body.is_object() && body.value("status", "") == "prepulling") return;
  const auto error = body.is_object() ? body.find("error") : body.end();
  if (!body.is_object() || error == body.end() || !error->is_object() || !error->contains("code") ||
      !error->contains("message") || !(*error)["code"].is_string() || !(*error)["message"].is_string()) {
    fail("status " + std::to_string(status) + " without the error contract: " + res.body());
  }
  const auto code = protocol::code_from_string((*error)["code"].get<std::string>());
  if (code == protocol::errc::unknown || static_cast<unsigned>(protocol::http_status(code)) != status) {
    fail("status " + std::to_string(status) + " does not go with the error code: " + res.body());
  }
}

// io_context::shutdown is protected; the world below needs it to destroy coroutine frames that
// are still suspended while the service they point into is alive.
class fuzz_context : public asio::io_context {
 public:
  fuzz_context() : asio::io_context(1) {}
  using asio::io_context::shutdown;
};

struct world {
  fuzz_context ioc;
  so::docker_client engine{ioc.get_executor(), so::engine_address::parse("unix:///nonexistent/sandlot-fuzz.sock")};
  so::docker_provider provider{engine, "sandlot-fuzz"};
  so::lease_service service{ioc.get_executor(), provider, so::service_options{}};
  so::router api{service};

  // Runs before the members go: frames of lifecycles and long-polls are destroyed first.
  ~world() { ioc.shutdown(); }

  /// The router's answer, or nothing when it takes longer than handle_bound.
  std::optional<so::http_response> handle(const so::http_request& req) {
    std::optional<so::http_response> out;
    asio::co_spawn(ioc, api.handle(req), [&](std::exception_ptr e, so::http_response res) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          fail(std::string("router::handle threw: ") + ex.what());
        } catch (...) {
          fail("router::handle threw a non-exception");
        }
      }
      out = std::move(res);
      ioc.stop();
    });
    ioc.restart();
    ioc.run_for(handle_bound);
    return out;
  }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const so::session_limits limits{};
  // Declared before the world: a request abandoned mid long-poll is referenced by its coroutine
  // frame until the world is gone.
  std::deque<so::http_request> requests;
  world w;
  asio::const_buffer rest(data, size);
  for (int i = 0; i < max_requests && rest.size() > 0; ++i) {
    so::request_parser parser;
    so::apply_limits(parser, limits);
    boost::beast::error_code ec;
    while (!parser.is_done()) {
      // The peer stopped mid-request: the session would time out, with no answer to check.
      if (rest.size() == 0) return 0;
      const std::size_t used = parser.put(rest, ec);
      rest += used;
      if (ec == http::error::need_more) {
        if (used == 0) return 0;  // an incomplete header with all the input already in view
        ec = {};
        continue;
      }
      if (ec) {
        check_response(so::read_error_response(ec, limits));
        return 0;  // the session closes after a parse error
      }
    }
    const auto& req = requests.emplace_back(parser.release());
    const auto res = w.handle(req);
    if (!res) return 0;  // still long-polling
    check_response(*res);
    if (!res->keep_alive()) return 0;
  }
  return 0;
}
