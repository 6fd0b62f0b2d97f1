// The engine-free parts of the Docker client: the exec stream demuxer, engine address parsing and
// the container body docker_provider sends. No engine is contacted.
#include <catch2/catch.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <sandlot/protocol.hpp>

#include "docker_client.hpp"
#include "docker_provider.hpp"

namespace {

using sandlot::orchestrator::docker_client;
using sandlot::orchestrator::docker_provider;
using sandlot::orchestrator::engine_address;
using sandlot::orchestrator::sandbox_spec;
using sandlot::orchestrator::stream_demuxer;
using json = nlohmann::json;

constexpr unsigned char stdout_stream = 1;
constexpr unsigned char stderr_stream = 2;

/// One frame of Docker's multiplexed stream: [stream, 0, 0, 0, size as big-endian u32], payload.
std::string frame(unsigned char stream, std::string_view payload) {
  const auto size = static_cast<std::uint32_t>(payload.size());
  std::string f;
  f.push_back(static_cast<char>(stream));
  f.append(3, '\0');
  for (int shift = 24; shift >= 0; shift -= 8) {
    f.push_back(static_cast<char>((size >> shift) & 0xFFU));
  }
  f.append(payload);
  return f;
}

void feed(stream_demuxer& d, std::string_view bytes) { d.feed(bytes.data(), bytes.size()); }

}  // namespace

// --- stream_demuxer --------------------------------------------------------------------------

TEST_CASE("the demuxer separates stdout from stderr", "[docker]") {
  stream_demuxer d(1024);
  feed(d, frame(stdout_stream, "building...\n") + frame(stderr_stream, "warning: x\n") +
              frame(stdout_stream, "done\n"));

  CHECK(d.out() == "building...\ndone\n");
  CHECK(d.err() == "warning: x\n");
  CHECK(d.complete());
  CHECK_FALSE(d.truncated());
}

TEST_CASE("the demuxer reassembles frames split at any byte", "[docker]") {
  // An empty frame and a stdin-numbered (0) frame too: the engine sends both on occasion.
  const std::string stream = frame(stdout_stream, "hello ") + frame(stderr_stream, "oops") +
                             frame(stdout_stream, "") + frame(0, "raw ") +
                             frame(stdout_stream, "world");

  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    CAPTURE(cut);
    stream_demuxer d(1024);
    feed(d, std::string_view(stream).substr(0, cut));
    feed(d, std::string_view(stream).substr(cut));
    CHECK(d.out() == "hello raw world");
    CHECK(d.err() == "oops");
    CHECK(d.complete());
  }
}

TEST_CASE("the demuxer accepts its input one byte at a time", "[docker]") {
  const std::string stream = frame(stderr_stream, "e1") + frame(stdout_stream, "o1") +
                             frame(stderr_stream, "e2");
  constexpr std::size_t frame_size = 8 + 2;
  stream_demuxer d(1024);
  for (std::size_t i = 0; i < stream.size(); ++i) {
    CAPTURE(i);
    CHECK(d.complete() == (i % frame_size == 0));  // complete only between frames
    d.feed(stream.data() + i, 1);
  }
  CHECK(d.complete());
  CHECK(d.out() == "o1");
  CHECK(d.err() == "e1e2");
}

TEST_CASE("the demuxer reads all four bytes of a frame's size", "[docker]") {
  // 0x01'11'70 bytes: the size spans three of the four length bytes.
  const std::string big(70000, 'x');
  stream_demuxer d(1024 * 1024);
  feed(d, frame(stdout_stream, big) + frame(stderr_stream, "tail"));

  CHECK(d.out() == big);
  CHECK(d.err() == "tail");
  CHECK(d.complete());
}

TEST_CASE("the demuxer reports input that stops inside a frame", "[docker]") {
  const std::string f = frame(stdout_stream, "partial");
  stream_demuxer header_only(1024);
  feed(header_only, std::string_view(f).substr(0, 5));
  CHECK_FALSE(header_only.complete());

  stream_demuxer mid_payload(1024);
  feed(mid_payload, std::string_view(f).substr(0, f.size() - 1));
  CHECK_FALSE(mid_payload.complete());
  CHECK(mid_payload.out() == "partia");
}

TEST_CASE("output past the limit is dropped and flagged, per stream", "[docker]") {
  stream_demuxer d(5);
  feed(d, frame(stdout_stream, "01234"));
  CHECK(d.out() == "01234");
  CHECK_FALSE(d.truncated());  // exactly at the limit keeps everything

  feed(d, frame(stdout_stream, "56789") + frame(stderr_stream, "abc"));
  CHECK(d.out() == "01234");
  CHECK(d.err() == "abc");  // stderr has a budget of its own
  CHECK(d.truncated());
  CHECK(d.complete());  // dropped bytes are still consumed

  feed(d, frame(stderr_stream, "defgh"));
  CHECK(d.err() == "abcde");
}

// --- engine_address --------------------------------------------------------------------------

TEST_CASE("an engine address can be a unix:// URL", "[docker]") {
  const auto a = engine_address::parse("unix:///x");
  CHECK(a.type == engine_address::kind::unix_socket);
  CHECK(a.path == "/x");
  CHECK(a.to_string() == "unix:///x");
}

TEST_CASE("an engine address can be a bare socket path", "[docker]") {
  const auto a = engine_address::parse("/x");
  CHECK(a.type == engine_address::kind::unix_socket);
  CHECK(a.path == "/x");
}

TEST_CASE("an engine address can be a tcp:// URL", "[docker]") {
  const auto a = engine_address::parse("tcp://127.0.0.1:2375");
  CHECK(a.type == engine_address::kind::tcp);
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 2375);
  CHECK(a.to_string() == "tcp://127.0.0.1:2375");

  const auto v6 = engine_address::parse("tcp://[::1]:2376/");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 2376);
}

TEST_CASE("a tcp engine address without a valid port is rejected", "[docker]") {
  CHECK_THROWS_WITH(engine_address::parse("tcp://127.0.0.1"), Catch::Contains("no port"));
  CHECK_THROWS_AS(engine_address::parse("tcp://127.0.0.1:0"), std::invalid_argument);
  CHECK_THROWS_AS(engine_address::parse("tcp://127.0.0.1:65536"), std::invalid_argument);
  CHECK_THROWS_WITH(engine_address::parse("tcp://127.0.0.1:docker"), Catch::Contains("invalid port"));
}

TEST_CASE("an engine address with an unknown scheme is rejected", "[docker]") {
  CHECK_THROWS_AS(engine_address::parse("ssh://user@host"), std::invalid_argument);
  CHECK_THROWS_WITH(engine_address::parse("http://127.0.0.1:2375"),
                    Catch::Contains("unix:///var/run/docker.sock") && Catch::Contains("tcp://"));
  CHECK_THROWS_AS(engine_address::parse(""), std::invalid_argument);
  CHECK_THROWS_AS(engine_address::parse("unix://"), std::invalid_argument);
}

// --- docker_provider::container_spec ---------------------------------------------------------

namespace {

/// A provider over a client that is never used to connect: container_spec is pure.
struct provider_fixture {
  boost::asio::io_context io;
  docker_client engine{io.get_executor(), engine_address::parse("unix:///nonexistent/docker.sock")};
  docker_provider provider{engine, "orchestratord@127.0.0.1:7345"};

  static sandbox_spec spec() {
    sandbox_spec s;
    s.lease_id = "l-42";
    s.lease_name = "sandlot-l-42";
    s.request.image = "busybox:1.36";
    s.request.run = "run-7";
    s.request.test = "a lease waits while all slots are taken";
    return s;
  }
};

}  // namespace

TEST_CASE("a sandbox drops every capability and cannot gain privileges", "[docker]") {
  provider_fixture f;
  const json body = f.provider.container_spec(provider_fixture::spec());
  const json& host = body.at("HostConfig");

  CHECK(host.at("CapDrop") == json::array({"ALL"}));
  CHECK(host.at("SecurityOpt") == json::array({"no-new-privileges"}));
  CHECK(host.at("Init") == true);
  CHECK(body.at("Image") == "busybox:1.36");
}

TEST_CASE("a sandbox has no network unless the lease asks for the host's", "[docker]") {
  provider_fixture f;
  auto spec = provider_fixture::spec();
  const json isolated = f.provider.container_spec(spec);
  CHECK(isolated.at("HostConfig").at("NetworkMode") == "none");
  CHECK(isolated.at("Hostname") == "sb-l-42");

  spec.request.network = sandlot::protocol::network_mode::host;
  const json shared = f.provider.container_spec(spec);
  CHECK(shared.at("HostConfig").at("NetworkMode") == "host");
  CHECK_FALSE(shared.contains("Hostname"));  // the engine refuses one with the host network
}

TEST_CASE("a sandbox's memory, cpu and pids limits come from the lease", "[docker]") {
  provider_fixture f;
  auto spec = provider_fixture::spec();
  spec.request.memory_mb = 8192;  // 8 GiB: past what a 32-bit byte count holds
  spec.request.cpus = 1.5;
  spec.request.pids_limit = 64;
  const json host = f.provider.container_spec(spec).at("HostConfig");

  CHECK(host.at("Memory").get<std::int64_t>() == std::int64_t{8192} * 1024 * 1024);
  CHECK(host.at("MemorySwap") == host.at("Memory"));
  CHECK(host.at("NanoCpus").get<std::int64_t>() == 1'500'000'000);
  CHECK(host.at("PidsLimit") == 64);
}

TEST_CASE("a sandbox is labelled with its daemon, run, lease and test", "[docker]") {
  provider_fixture f;
  const json labels = f.provider.container_spec(provider_fixture::spec()).at("Labels");

  CHECK(labels.at("sandlot.daemon") == "orchestratord@127.0.0.1:7345");
  CHECK(labels.at("sandlot.run") == "run-7");
  CHECK(labels.at("sandlot.lease") == "l-42");
  CHECK(labels.at("sandlot.test") == "a lease waits while all slots are taken");
}

TEST_CASE("a sandbox's environment is passed as KEY=VALUE", "[docker]") {
  provider_fixture f;
  auto spec = provider_fixture::spec();
  spec.request.env = {{"POSTGRES_PASSWORD", "secret"}, {"EMPTY", ""}, {"URL", "a=b"}};
  const json env = f.provider.container_spec(spec).at("Env");

  CHECK(env == json::array({"EMPTY=", "POSTGRES_PASSWORD=secret", "URL=a=b"}));
}

TEST_CASE("a read-only sandbox gets a writable tmpfs at /tmp", "[docker]") {
  provider_fixture f;
  auto spec = provider_fixture::spec();
  const json writable = f.provider.container_spec(spec).at("HostConfig");
  CHECK(writable.at("ReadonlyRootfs") == false);
  CHECK_FALSE(writable.at("Tmpfs").contains("/tmp"));

  spec.request.read_only = true;
  const json read_only = f.provider.container_spec(spec).at("HostConfig");
  CHECK(read_only.at("ReadonlyRootfs") == true);
  CHECK(read_only.at("Tmpfs").contains("/tmp"));
}

TEST_CASE("disk_mb bounds the writable layer where the driver can, a /scratch tmpfs otherwise", "[docker]") {
  provider_fixture f;
  auto spec = provider_fixture::spec();
  spec.request.disk_mb = 300;
  const json sized = f.provider.container_spec(spec, /*size_the_layer=*/true).at("HostConfig");
  CHECK(sized.at("StorageOpt").at("size") == "300M");
  CHECK_FALSE(sized.contains("Tmpfs"));
  const json scratch = f.provider.container_spec(spec, /*size_the_layer=*/false).at("HostConfig");
  CHECK_FALSE(scratch.contains("StorageOpt"));
  CHECK(scratch.at("Tmpfs").at("/scratch") == "rw,nosuid,nodev,size=300m");
}

TEST_CASE("every sandbox names the process that made it", "[docker]") {
  provider_fixture f;
  const json labels = f.provider.container_spec(provider_fixture::spec()).at("Labels");
  CHECK(labels.at("sandlot.owner") == f.provider.owner());
  CHECK_THAT(f.provider.owner(), Catch::Matchers::Contains("/"));
}

// Docker's answers, as typed reasons: the only place the engine's wording is read. Messages are
// the ones dockerd 20.10/24 and registry 2.8 give on these machines.
TEST_CASE("engine failures are classified into typed reasons", "[docker]") {
  using sandlot::orchestrator::engine_error;
  using sandlot::orchestrator::provider_failure;
  auto reason = [](unsigned status, const char* message, bool hung = false) {
    return engine_error(status, message, hung).reason();
  };
  CHECK(reason(0, "cannot reach the Docker engine at unix:///nope.sock") == provider_failure::unreachable);
  CHECK(reason(0, "the engine did not answer", true) == provider_failure::timed_out);
  CHECK(reason(404, "No such image: 127.0.0.1:5000/x:1") == provider_failure::image_not_found);
  CHECK(reason(404, "No such container: 3f2a") == provider_failure::not_found);
  CHECK(reason(404, "Could not find the file /nope in container x") == provider_failure::not_found);
  CHECK(reason(409, "Conflict. The container name \"/sandlot-x\" is already in use") == provider_failure::conflict);
  CHECK(reason(403, "container rootfs is marked read-only") == provider_failure::read_only);
  CHECK(reason(400, "invalid reference format: repository name must be lowercase") ==
        provider_failure::invalid_reference);
  CHECK(reason(401, "unauthorized: authentication required") == provider_failure::auth);
  CHECK(reason(400, "invalid CpuShares value") == provider_failure::rejected);
  CHECK(reason(500, "OCI runtime create failed") == provider_failure::failed);
  // Only the unknown image, the bad reference and the refused registry are worth no retry.
  CHECK(engine_error(404, "No such image: x").permanent());
  CHECK_FALSE(engine_error(500, "registry unavailable").permanent());
  CHECK(engine_error(200, "manifest unknown", provider_failure::image_not_found).permanent());
}
