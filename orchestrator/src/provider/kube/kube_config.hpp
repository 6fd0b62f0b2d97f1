// Where a Kubernetes API server is and how to prove who we are to it: from a kubeconfig (YAML or
// JSON, as kubectl reads it) or from the service account of the pod the daemon runs in.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sandlot::orchestrator {

struct kube_target {
  std::string server;           // https://127.0.0.1:6443, or http://127.0.0.1:8001 (kubectl proxy)
  std::string ca_pem;           // the cluster's CA; empty: the system's trust store
  bool insecure_skip_verify = false;
  std::string client_cert_pem;  // client certificate and key, when the user has them
  std::string client_key_pem;
  std::string token;            // a bearer token, when the user has one
  std::string token_file;       // a file to read it from at each call (a rotated service-account token)
  std::string ns;               // the context's namespace ("default" when it names none)
  std::string origin;           // where this came from, for messages ("kubeconfig PATH, context C")
};

/// Reads `path` (empty: the first file of $KUBECONFIG, else ~/.kube/config) and resolves
/// `context` (empty: current-context). Data fields (certificate-authority-data, ...) and file
/// fields (certificate-authority, ...: relative to the kubeconfig's directory) are both read;
/// exec and auth-provider plugins are not run. The server must be on loopback (kind, k3s,
/// `kubectl proxy`, or an ssh -L tunnel). Throws std::runtime_error saying what to fix.
kube_target load_kubeconfig(std::string path, const std::string& context);

/// The pod's service account (/var/run/secrets/kubernetes.io/serviceaccount and
/// KUBERNETES_SERVICE_HOST/PORT). Throws std::runtime_error when not in a pod.
kube_target in_cluster_target(const std::string& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

/// A YAML document as JSON: mappings become objects, sequences arrays, scalars strings (a kubeconfig
/// needs no more). Throws std::runtime_error with the line of a syntax error.
nlohmann::json yaml_to_json(std::string_view text);

/// Standard base64 (kubeconfig *-data fields). Throws std::runtime_error for bad input.
std::string base64_decode(std::string_view text);

}  // namespace sandlot::orchestrator
