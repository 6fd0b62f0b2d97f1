#include "router.hpp"

#include "http_util.hpp"

#include <string_view>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <boost/beast/http/field.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "async_event.hpp"
#include "event_stream.hpp"

namespace sandlot::orchestrator {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using protocol::api_error;
using protocol::errc;

router::router(lease_service& service, access_policy policy) : service_(service), policy_(std::move(policy)) {
  add_status_routes(routes_, service_);
  add_lease_routes(routes_, service_);
  add_fixture_routes(routes_, service_);
  add_run_routes(routes_, service_, [this](std::function<std::string()> render) { return off_loop(std::move(render)); });
  add_control_routes(routes_, service_);
  add_stream("/v1/events", make_event_stream(service_));
  add_ui_routes(routes_);
}

std::vector<std::string> router::routes() const {
  auto all = routes_.list();
  for (const auto& [path, handler] : streams_) all.push_back("GET " + path);
  return all;
}

void router::add_stream(std::string path, stream_handler h) { streams_[std::move(path)] = std::move(h); }

const stream_handler* router::stream_for(const http_request& req) const {
  if (streams_.empty() || req.method() != http::verb::get) return nullptr;
  const std::string_view target = req.target();
  auto it = streams_.find(target.substr(0, target.find('?')));
  if (it == streams_.end() || !refusal(req).empty() || !authorized(req)) return nullptr;
  return &it->second;
}

asio::awaitable<http_response> router::handle(const http_request& req) {
  if (auto why = refusal(req); !why.empty()) {
    co_return error_response(errc::forbidden, why, req.version(), false);
  }
  if (!authorized(req)) {
    // Says nothing about the daemon, its routes or the token beyond that one is needed.
    auto res = error_response(errc::unauthorized,
                              "this orchestratord needs Authorization: Bearer <token>; set SANDLOT_TOKEN to the "
                              "token its operator gave you",
                              req.version(), req.keep_alive());
    res.set(http::field::www_authenticate, "Bearer");
    co_return res;
  }
  try {
    co_return co_await dispatch(req);
  } catch (const api_error& e) {
    co_return error_response(e.code(), e.message(), req.version(), req.keep_alive());
  } catch (const boost::system::system_error& e) {
    // The client left and its request was abandoned (http_session): nobody reads this answer.
    if (e.code() == asio::error::operation_aborted) {
      co_return error_response(errc::internal, "abandoned: the client closed the connection", req.version(), false);
    }
    spdlog::error("{} {}: {}", std::string_view(req.method_string()), std::string_view(req.target()), e.what());
    co_return error_response(errc::internal, "internal error in orchestratord; see its log", req.version(),
                             req.keep_alive());
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", std::string_view(req.method_string()), std::string_view(req.target()), e.what());
    co_return error_response(errc::internal, "internal error in orchestratord; see its log", req.version(),
                             req.keep_alive());
  }
}

asio::awaitable<std::string> router::off_loop(std::function<std::string()> render) {
  // Shared with the worker, which may finish after this coroutine is gone (its client left).
  struct job {
    std::function<std::string()> render;
    std::string out;
    bool done = false;
    async_event finished;
  };
  auto j = std::make_shared<job>();
  j->render = std::move(render);
  auto home = co_await asio::this_coro::executor;
  asio::post(renderer_, [j, home] {
    std::string out = j->render();
    // Back on the daemon's thread, which owns everything else the job touches.
    asio::post(home, [j, out = std::move(out)]() mutable {
      j->out = std::move(out);
      j->done = true;
      j->finished.notify_all();
    });
  });
  while (!j->done) co_await j->finished.wait();
  co_return std::move(j->out);
}

asio::awaitable<http_response> router::dispatch(const http_request& req) {
  auto [handler, call] = routes_.match(req);
  co_return co_await (*handler)(call);
}

}  // namespace sandlot::orchestrator
