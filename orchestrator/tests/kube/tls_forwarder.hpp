// Test support: a TLS front for a plain-HTTP test server (the fake API server), so the Kubernetes
// client's TLS path (the kubeconfig's CA, the server's IP SAN, a client certificate, WebSocket over
// TLS) runs for real. Listens on 127.0.0.1, one thread of its own; each accepted connection is
// handshaken and then copied both ways to 127.0.0.1:backend_port.
#pragma once

#include <memory>
#include <string>

namespace sandlot::test {

/// A self-signed certificate and its key (PEM), made with the openssl command; `san` is e.g.
/// "IP:127.0.0.1". Throws std::runtime_error when openssl fails.
struct test_cert {
  std::string cert_pem;
  std::string key_pem;
  static test_cert make(const std::string& common_name, const std::string& san);
};

class tls_forwarder {
 public:
  /// `client_ca_pem` non-empty: a client must present a certificate it signed (or itself, self-signed).
  tls_forwarder(unsigned short backend_port, const test_cert& server, const std::string& client_ca_pem = {});
  ~tls_forwarder();
  tls_forwarder(const tls_forwarder&) = delete;
  tls_forwarder& operator=(const tls_forwarder&) = delete;

  unsigned short port() const;
  int handshakes_ok() const;
  int handshakes_failed() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sandlot::test
