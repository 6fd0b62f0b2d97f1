// A fake Kubernetes API server for the kube provider's tests: it speaks the real wire protocol
// (core/v1 JSON objects as the API server returns them, metav1.Status errors, chunked watch
// streams of one JSON event per line, exec over WebSocket with the channel.k8s.io framing), over
// plain HTTP on 127.0.0.1. No API server can run on these machines (docs/scale-out.md).
//
// Pods do not run images: a pod's "container" is a state machine (Pending → ContainerCreating →
// Running and Ready, or ErrImagePull → ImagePullBackOff for an image listed as unpullable), and an
// exec runs its argv as a real process on this host, so stdin, stdout, stderr and exit codes are
// real. It serves one thread of its own; every inspection call is safe from the test's thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sandlot::test {

struct fake_node {
  std::string name;
  std::string cpu = "4";          // status.allocatable.cpu (a quantity: "4", "3500m")
  std::string memory = "8Gi";     // status.allocatable.memory
  bool ready = true;              // the Ready condition
  std::vector<std::string> images;  // status.images[].names: what its kubelet has
};

class fake_apiserver {
 public:
  struct options {
    std::string ns = "sandlot";                    // the only namespace that exists
    std::vector<fake_node> nodes{fake_node{"node-a", "4", "8Gi", true, {}}, fake_node{"node-b", "4", "8Gi", true, {}}};
    std::vector<std::string> unpullable;           // images whose pulls fail (ErrImagePull, then ImagePullBackOff)
    std::chrono::milliseconds start_delay{150};    // Pending → Running and Ready (and pull failures)
    std::chrono::milliseconds delete_delay{50};    // deletionTimestamp set → object gone (DELETED)
    bool offer_v5 = true;                          // accept v5.channel.k8s.io; false: v4 only (an older server)
    std::string token;                             // required "Authorization: Bearer TOKEN"; empty: none
  };

  explicit fake_apiserver(options opts);
  fake_apiserver();
  ~fake_apiserver();  // stops serving, kills exec processes still running
  fake_apiserver(const fake_apiserver&) = delete;
  fake_apiserver& operator=(const fake_apiserver&) = delete;

  unsigned short port() const;
  std::string url() const;  // "http://127.0.0.1:PORT"

  /// The pods that exist now (deleted ones gone), as the API would return them.
  std::vector<nlohmann::json> pods() const;
  /// Every request line served so far, "METHOD TARGET" (target with its query).
  std::vector<std::string> requests() const;
  /// The subprotocol each exec WebSocket agreed on, in order.
  std::vector<std::string> exec_protocols() const;
  /// Watches opened (GET ...?watch=...), and plain GETs of one pod by name.
  int watches() const;
  int pod_gets() const;
  /// Makes a node's kubelet forget every image (a cold node).
  void forget_images(const std::string& node);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace sandlot::test
