#include "kube_config.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <yaml.h>

namespace sandlot::orchestrator {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_text(const fs::path& p, std::string_view what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read {} {}", what, p.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json yaml_node(yaml_document_t& doc, yaml_node_t* node, int depth) {
  if (node == nullptr) return nullptr;
  if (depth > 64) throw std::runtime_error("YAML nested deeper than 64 levels");
  switch (node->type) {
    case YAML_SCALAR_NODE:
      return std::string(reinterpret_cast<const char*>(node->data.scalar.value), node->data.scalar.length);
    case YAML_SEQUENCE_NODE: {
      json out = json::array();
      for (auto* item = node->data.sequence.items.start; item < node->data.sequence.items.top; ++item) {
        out.push_back(yaml_node(doc, yaml_document_get_node(&doc, *item), depth + 1));
      }
      return out;
    }
    case YAML_MAPPING_NODE: {
      json out = json::object();
      for (auto* pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; ++pair) {
        const json key = yaml_node(doc, yaml_document_get_node(&doc, pair->key), depth + 1);
        if (!key.is_string()) throw std::runtime_error("a YAML mapping key that is not a scalar");
        out[key.get<std::string>()] = yaml_node(doc, yaml_document_get_node(&doc, pair->value), depth + 1);
      }
      return out;
    }
    case YAML_NO_NODE:
      break;
  }
  return nullptr;
}

/// A kubeconfig field as a string; YAML scalars and JSON values alike.
std::string text_of(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key)) return {};
  const auto& v = obj.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

/// The inner object (`inner`) of the entry named `name` in a kubeconfig list (clusters, users, contexts).
json named(const json& cfg, const char* list, const char* inner, const std::string& name, const std::string& path) {
  if (cfg.contains(list) && cfg.at(list).is_array()) {
    for (const auto& e : cfg.at(list)) {
      if (text_of(e, "name") == name) return e.contains(inner) ? e.at(inner) : json::object();
    }
  }
  throw std::runtime_error(fmt::format("kubeconfig {}: no entry '{}' in {}", path, name, list));
}

/// Reads `<field>-data` (base64) or `<field>` (a file, relative to the kubeconfig's directory).
std::string data_or_file(const json& obj, const std::string& field, const fs::path& base) {
  if (auto d = text_of(obj, (field + "-data").c_str()); !d.empty()) return base64_decode(d);
  if (auto f = text_of(obj, field.c_str()); !f.empty()) {
    fs::path p(f);
    if (p.is_relative()) p = base / p;
    return read_text(p, field);
  }
  return {};
}

/// The host of an http(s) URL, without brackets.
std::string url_host(const std::string& url) {
  auto rest = std::string_view(url);
  const auto scheme = rest.find("://");
  if (scheme == std::string_view::npos) return {};
  rest = rest.substr(scheme + 3);
  rest = rest.substr(0, rest.find('/'));
  if (rest.starts_with('[')) return std::string(rest.substr(1, rest.find(']') - 1));
  return std::string(rest.substr(0, rest.find(':')));
}

bool loopback_host(const std::string& h) {
  return h == "localhost" || h == "::1" || h.starts_with("127.");
}

}  // namespace

std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ') continue;
    const int v = value(c);
    if (v < 0) throw std::runtime_error("not base64 (a *-data field of the kubeconfig is damaged)");
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

json yaml_to_json(std::string_view text) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) throw std::runtime_error("out of memory for the YAML parser");
  std::unique_ptr<yaml_parser_t, void (*)(yaml_parser_t*)> parser_guard(&parser, yaml_parser_delete);
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  yaml_document_t doc;
  if (!yaml_parser_load(&parser, &doc)) {
    throw std::runtime_error(fmt::format("YAML error at line {}: {}", parser.problem_mark.line + 1,
                                         parser.problem ? parser.problem : "unknown"));
  }
  std::unique_ptr<yaml_document_t, void (*)(yaml_document_t*)> doc_guard(&doc, yaml_document_delete);
  return yaml_node(doc, yaml_document_get_root_node(&doc), 0);
}

kube_target load_kubeconfig(std::string path, const std::string& context) {
  if (path.empty()) {
    if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
      path = std::string(env).substr(0, std::string_view(env).find(':'));
    } else if (const char* home = std::getenv("HOME"); home != nullptr) {
      path = std::string(home) + "/.kube/config";
    }
  }
  if (path.empty() || !fs::exists(path)) {
    throw std::runtime_error(fmt::format("no kubeconfig at '{}'; give kubeconfig=PATH in --engine, set KUBECONFIG, "
                                         "or use kubeconfig=in-cluster in a pod (docs/scale-out.md#kubernetes)",
                                         path));
  }
  const std::string text = read_text(path, "kubeconfig");
  json cfg;
  try {
    cfg = json::parse(text);
  } catch (const json::exception&) {
    try {
      cfg = yaml_to_json(text);
    } catch (const std::exception& e) {
      throw std::runtime_error(fmt::format("kubeconfig {}: {}", path, e.what()));
    }
  }
  if (!cfg.is_object()) throw std::runtime_error(fmt::format("kubeconfig {}: not a kubeconfig (no mapping)", path));
  const std::string ctx_name = context.empty() ? text_of(cfg, "current-context") : context;
  if (ctx_name.empty()) {
    throw std::runtime_error(fmt::format("kubeconfig {} has no current-context; give context=NAME in --engine", path));
  }
  const json ctx = named(cfg, "contexts", "context", ctx_name, path);
  const json cluster = named(cfg, "clusters", "cluster", text_of(ctx, "cluster"), path);
  const auto base = fs::absolute(path).parent_path();
  kube_target t;
  t.origin = fmt::format("kubeconfig {}, context {}", path, ctx_name);
  t.server = text_of(cluster, "server");
  if (!t.server.starts_with("https://") && !t.server.starts_with("http://")) {
    throw std::runtime_error(fmt::format("kubeconfig {}: cluster '{}' has no http(s):// server", path,
                                         text_of(ctx, "cluster")));
  }
  if (!loopback_host(url_host(t.server))) {
    throw std::runtime_error(fmt::format(
        "kubeconfig {}: the API server {} is not on loopback; Sandlot talks to loopback only: run `kubectl proxy "
        "--port 8001` and use a kubeconfig whose server is http://127.0.0.1:8001, or tunnel with ssh -L",
        path, t.server));
  }
  t.insecure_skip_verify = text_of(cluster, "insecure-skip-tls-verify") == "true";
  t.ca_pem = data_or_file(cluster, "certificate-authority", base);
  t.ns = text_of(ctx, "namespace");
  if (t.ns.empty()) t.ns = "default";
  if (const auto user_name = text_of(ctx, "user"); !user_name.empty()) {
    const json user = named(cfg, "users", "user", user_name, path);
    t.client_cert_pem = data_or_file(user, "client-certificate", base);
    t.client_key_pem = data_or_file(user, "client-key", base);
    t.token = text_of(user, "token");
    if (t.token.empty()) {
      if (auto f = text_of(user, "tokenFile"); !f.empty()) {
        fs::path p(f);
        if (p.is_relative()) p = base / p;
        t.token = read_text(p, "tokenFile");
      }
    }
    while (!t.token.empty() && (t.token.back() == '\n' || t.token.back() == '\r')) t.token.pop_back();
    if (user.contains("exec") || user.contains("auth-provider")) {
      if (t.token.empty() && t.client_cert_pem.empty()) {
        throw std::runtime_error(fmt::format(
            "kubeconfig {}: user '{}' authenticates through an exec or auth-provider plugin, which Sandlot does not "
            "run; give it a token or client certificate, or use `kubectl proxy`",
            path, user_name));
      }
    }
  }
  return t;
}

kube_target in_cluster_target(const std::string& account_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || !fs::exists(account_dir + "/token")) {
    throw std::runtime_error("kubeconfig=in-cluster, but this is not a pod with a service account "
                             "(KUBERNETES_SERVICE_HOST or " + account_dir + "/token is missing)");
  }
  kube_target t;
  const std::string h(host);
  t.server = fmt::format("https://{}:{}", h.find(':') != std::string::npos ? "[" + h + "]" : h, port);
  t.token_file = account_dir + "/token";
  t.token = read_text(t.token_file, "service account token");
  while (!t.token.empty() && (t.token.back() == '\n' || t.token.back() == '\r')) t.token.pop_back();
  t.ca_pem = read_text(account_dir + "/ca.crt", "service account CA");
  if (fs::exists(account_dir + "/namespace")) t.ns = read_text(account_dir + "/namespace", "service account namespace");
  if (t.ns.empty()) t.ns = "default";
  t.origin = "the pod's service account";
  return t;
}

}  // namespace sandlot::orchestrator
