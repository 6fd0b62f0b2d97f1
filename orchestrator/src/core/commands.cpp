#include "commands.hpp"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include <fmt/format.h>

namespace sandlot::orchestrator {

namespace asio = boost::asio;
using protocol::api_error;
using protocol::errc;

asio::awaitable<protocol::exec_result> command_runner::exec(std::string sandbox_id, std::string what,
                                                            protocol::exec_request req) {
  exec_spec spec;
  spec.argv = std::move(req.argv);
  for (const auto& [k, v] : req.env) spec.env.push_back(k + "=" + v);
  spec.workdir = std::move(req.workdir);
  spec.stdin_data = std::move(req.stdin_data);
  spec.timeout = std::chrono::seconds(req.timeout_s);
  spec.output_limit = output_limit_;
  const auto first = spec.argv.empty() ? std::string() : spec.argv.front();
  const auto started = std::chrono::steady_clock::now();
  exec_output out;
  try {
    out = co_await provider_.exec(sandbox_id, std::move(spec));
  } catch (const provider_error& e) {
    throw api_error(e.reason() == provider_failure::timed_out     ? errc::engine_unavailable
                    : e.reason() == provider_failure::engine_lost ? errc::engine_lost
                                                                  : errc::exec_failed,
                    fmt::format("could not run '{}' in {}: {}", first, what, e.what()));
  }
  protocol::exec_result r;
  r.exit_code = out.exit_code;
  r.stdout_data = std::move(out.stdout_data);
  r.stderr_data = std::move(out.stderr_data);
  r.truncated = out.truncated;
  r.timed_out = out.timed_out;
  r.duration_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  co_return r;
}

asio::awaitable<void> command_runner::write_file(std::string sandbox_id, std::string what, std::string path,
                                                 std::string data, unsigned mode) {
  try {
    co_await provider_.write_file(sandbox_id, path, std::move(data), mode);
  } catch (const provider_error& e) {
    const std::string dir = path.substr(0, std::max<std::size_t>(path.rfind('/'), 1));
    switch (e.reason()) {
      case provider_failure::engine_lost:
        throw api_error(errc::engine_lost, fmt::format("could not write {} in {}: {}", path, what, e.what()));
      case provider_failure::not_found:
        throw api_error(errc::not_found, fmt::format("directory {} does not exist in {}'s sandbox; create it "
                                                     "first (exec mkdir -p {})", dir, what, dir));
      case provider_failure::read_only:
        // The engine refuses uploads into a read-only container anywhere, its tmpfs /tmp included.
        throw api_error(errc::conflict, fmt::format("{}'s sandbox has a read-only root filesystem and the engine "
                                                    "takes no file uploads into it; write under /tmp with exec "
                                                    "(sh -c 'cat > /tmp/file' with stdin) instead", what));
      default:
        throw api_error(errc::engine_error, fmt::format("could not write {} in {}: {}", path, what, e.what()));
    }
  }
}

asio::awaitable<std::string> command_runner::read_file(std::string sandbox_id, std::string what, std::string path) {
  std::optional<std::string> data;
  try {
    data = co_await provider_.read_file(sandbox_id, path, output_limit_);
  } catch (const provider_error& e) {
    switch (e.reason()) {
      case provider_failure::too_large:
        throw api_error(errc::payload_too_large,
                        fmt::format("{} in {}: {}; read it in parts with exec", path, what, e.what()));
      case provider_failure::not_a_file:
        throw api_error(errc::invalid_field, fmt::format("{} in {}'s sandbox is not a regular file", path, what));
      case provider_failure::engine_lost:
        throw api_error(errc::engine_lost, fmt::format("could not read {} in {}: {}", path, what, e.what()));
      default:
        throw api_error(errc::engine_error, fmt::format("could not read {} in {}: {}", path, what, e.what()));
    }
  }
  if (!data) throw api_error(errc::not_found, fmt::format("no file {} in {}'s sandbox", path, what));
  co_return std::move(*data);
}

}  // namespace sandlot::orchestrator
