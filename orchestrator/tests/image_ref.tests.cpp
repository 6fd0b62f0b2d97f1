#include <catch2/catch.hpp>

#include <sandlot/protocol.hpp>

#include "image_ref.hpp"

using namespace sandlot::orchestrator;
using sandlot::protocol::api_error;
using sandlot::protocol::errc;

TEST_CASE("a loopback reference splits into registry repository and tag", "[image_ref]") {
  auto r = parse_image_ref("127.0.0.1:5000/sandlot/busybox:1");
  CHECK(r.registry == "127.0.0.1:5000");
  CHECK(r.repository == "sandlot/busybox");
  CHECK(r.tag == "1");
  CHECK(r.digest.empty());
}

TEST_CASE("a reference without a registry means Docker Hub and latest", "[image_ref]") {
  auto r = parse_image_ref("busybox");
  CHECK(r.registry == "docker.io");
  CHECK(r.repository == "busybox");
  CHECK(r.tag == "latest");
}

TEST_CASE("localhost and a digest are understood", "[image_ref]") {
  auto r = parse_image_ref("localhost:5000/app@sha256:0123abcd");
  CHECK(r.registry == "localhost:5000");
  CHECK(r.repository == "app");
  CHECK(r.tag.empty());
  CHECK(r.digest == "sha256:0123abcd");
}

TEST_CASE("malformed references are rejected naming the image field", "[image_ref]") {
  for (const char* bad : {"", "UPPER/case:1", "127.0.0.1:5000/", "a//b:1", "a:b:c d", "app@sha256:xyz",
                          "127.0.0.1:5000/app:", "../../etc/passwd"}) {
    INFO("reference: '" << bad << "'");
    try {
      parse_image_ref(bad);
      FAIL("accepted");
    } catch (const api_error& e) {
      CHECK(e.code() == errc::invalid_field);
      CHECK_THAT(e.message(), Catch::Contains("'image'"));
    }
  }
}

TEST_CASE("only loopback registries and allowed ones may be pulled from", "[image_ref]") {
  CHECK(is_loopback_registry("127.0.0.1:5000"));
  CHECK(is_loopback_registry("127.3.2.1"));
  CHECK(is_loopback_registry("localhost:5000"));
  CHECK(is_loopback_registry("[::1]:5000"));
  CHECK_FALSE(is_loopback_registry("docker.io"));
  CHECK_FALSE(is_loopback_registry("10.0.0.1:5000"));

  CHECK(pull_refusal(parse_image_ref("127.0.0.1:5000/a:1"), {}).empty());
  const auto refusal = pull_refusal(parse_image_ref("busybox"), {});
  CHECK_THAT(refusal, Catch::Contains("docker.io") && Catch::Contains("--allow-registry"));
  CHECK(pull_refusal(parse_image_ref("registry.example:5000/a:1"), {"registry.example:5000"}).empty());
}
