// Integration-test support: a unix socket that stands in for the Docker engine. It forwards each
// connection to the real engine, unless a rule set by the test says to fail or stall it, so a test
// can make one engine call misbehave (a create that answers 500, a remove that never answers)
// while everything else works.
//
//   sandlot::itest::engine_fault_proxy engine;
//   // orchestratord --docker-host <engine.docker_host()>
//   const int rm = engine.add_rule("DELETE", "/containers/", engine_fault_proxy::action::stall, 1);
//   ...
//   REQUIRE(sandlot::itest::wait_until([&] { return engine.matched(rm) == 1; }, 10s));
//   engine.hang_all(true);   // from now on nothing is answered, as with a hung dockerd
//
// The decision is taken on the first request head of a connection only: the engine's client
// (orchestrator/src/docker_client.cpp) sends one request per connection, and an exec's upgraded
// connection is raw bytes after its head anyway.
//
// Runs its own io_context on one thread; the calls are safe from any thread.
#pragma once

#include <memory>
#include <string>

namespace sandlot::itest {

class engine_fault_proxy {
 public:
  enum class action {
    forward,  // pass the connection through to the engine
    stall,    // accept it and never answer, until the client or the proxy closes it
    fail,     // answer 500 with an engine-style {"message": ...} body, then close
  };

  /// Listens at once on a fresh socket in scratch_dir(); forwards to `upstream_unix_path`.
  explicit engine_fault_proxy(std::string upstream_unix_path = "/var/run/docker.sock");
  /// Closes every connection (stalled ones included), stops the thread, removes the socket file.
  ~engine_fault_proxy();
  engine_fault_proxy(const engine_fault_proxy&) = delete;
  engine_fault_proxy& operator=(const engine_fault_proxy&) = delete;

  /// The socket the proxy listens on.
  const std::string& socket_path() const noexcept;
  /// "unix://" + socket_path(), for orchestratord --docker-host or an engine_address.
  std::string docker_host() const;

  /// Requests whose method equals `method` (empty: any method) and whose request target contains
  /// `target_part` get `act`, for the next `times` matching requests (-1: all of them). Returns the
  /// rule's id. Rules are checked in the order added; the first live match wins; no match: forward.
  int add_rule(std::string method, std::string target_part, action act, int times = -1);
  /// Retires every rule: new requests are forwarded. matched() still answers for their ids.
  void clear_rules();
  /// How many requests rule `id` caught so far. Throws std::out_of_range for an id never issued.
  int matched(int id) const;

  /// While on, every request (new connections and any request head not decided yet) is stalled:
  /// accepted and never answered, as by a hung engine. Connections already stalled stay so after
  /// it is turned off; those forwarded before it was turned on keep flowing.
  void hang_all(bool on);
  /// Connections currently held stalled (a client that gave up and closed is no longer counted).
  int stalled() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sandlot::itest
