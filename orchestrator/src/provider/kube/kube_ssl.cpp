// Asio's TLS support, compiled once for the Kubernetes client (the rest of Sandlot speaks plain
// HTTP on loopback and does not link OpenSSL).
#include <boost/asio/ssl/impl/src.hpp>
