// Integration-test support: a loopback TCP port that forwards every connection to a target (a unix
// socket such as the engine's, or another loopback TCP port such as a daemon's), and that a test
// can cut and restore to simulate the far side going away.
//
//   sandlot::itest::tcp_forwarder engine(sandlot::itest::forward_target::unix_socket("/var/run/docker.sock"));
//   // --docker-host tcp://127.0.0.1:<engine.port()>
//   engine.cut();      // every open connection closed, new ones refused
//   engine.restore();  // accepting again on the same port
//
// Runs its own io_context on one thread; the calls are safe from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

namespace sandlot::itest {

struct forward_target {
  std::string unix_path;    // a unix socket, or
  unsigned short port = 0;  // 127.0.0.1:port
  static forward_target unix_socket(std::string path) { return {std::move(path), 0}; }
  static forward_target loopback(unsigned short p) { return {{}, p}; }
};

class tcp_forwarder {
 public:
  /// Listens on 127.0.0.1 on a free port at once.
  explicit tcp_forwarder(forward_target target);
  ~tcp_forwarder();
  tcp_forwarder(const tcp_forwarder&) = delete;
  tcp_forwarder& operator=(const tcp_forwarder&) = delete;

  unsigned short port() const noexcept { return port_; }
  /// Connections accepted so far.
  int connections() const noexcept { return connections_.load(); }
  /// Stops listening and closes every open connection (both sides); returns once done, so a
  /// connect after it is refused.
  void cut();
  /// Listens again on the same port; returns once accepting.
  void restore();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  unsigned short port_ = 0;
  std::atomic<int> connections_{0};
};

}  // namespace sandlot::itest
