// Commands and files in a sandbox (a lease's or a fixture's): the provider's answers turned into
// the API's errors. Holds no state of its own; the caller checks the lease may run commands.
#pragma once

#include <cstddef>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <sandlot/protocol.hpp>

#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

class command_runner {
 public:
  command_runner(sandbox_provider& provider, std::size_t output_limit)
      : provider_(provider), output_limit_(output_limit) {}

  /// `what` names the sandbox's owner in messages ("lease abc", "fixture db").
  boost::asio::awaitable<protocol::exec_result> exec(std::string sandbox_id, std::string what,
                                                     protocol::exec_request req);
  /// One file; its directory must exist.
  boost::asio::awaitable<void> write_file(std::string sandbox_id, std::string what, std::string path,
                                          std::string data, unsigned mode);
  /// One regular file's bytes, at most the output limit.
  boost::asio::awaitable<std::string> read_file(std::string sandbox_id, std::string what, std::string path);

 private:
  sandbox_provider& provider_;
  std::size_t output_limit_;  // per stream and per file read (--max-output-bytes)
};

}  // namespace sandlot::orchestrator
