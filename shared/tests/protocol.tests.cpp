// The wire types round-trip through JSON unchanged, and bad input is rejected with an error that
// names the field, because that message is what a test author sees in a 400.
#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <string_view>

#include <sandlot/protocol.hpp>

namespace {

using namespace sandlot::protocol;
using json = nlohmann::json;
using Catch::Matchers::Contains;

template <class T>
T round_trip(const T& v) {
  // Through text, as on the wire, not just through a json value.
  return json::parse(json(v).dump()).get<T>();
}

// The api_error a body raises when decoded as T, or nothing when it decodes.
template <class T>
std::optional<api_error> decode_error(std::string_view body) {
  try {
    (void)parse_body<T>(body);
  } catch (const api_error& e) {
    return e;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("every error code has a stable string and a fitting HTTP status", "[protocol]") {
  CHECK(code_string(errc::invalid_field) == "invalid_field");
  CHECK(code_from_string("lease_gone") == errc::lease_gone);
  CHECK(code_from_string("no_such_code") == errc::unknown);
  CHECK(http_status(errc::bad_json) == 400);
  CHECK(http_status(errc::not_found) == 404);
  CHECK(http_status(errc::lease_not_ready) == 409);
  CHECK(http_status(errc::lease_gone) == 410);
  CHECK(http_status(errc::unauthorized) == 401);
  for (errc code : {errc::bad_json, errc::invalid_field, errc::not_found, errc::method_not_allowed,
                    errc::payload_too_large, errc::lease_not_ready, errc::lease_gone, errc::image_pull_failed,
                    errc::sandbox_failed, errc::ready_timeout, errc::engine_error, errc::exec_failed,
                    errc::shutting_down, errc::unauthorized, errc::internal}) {
    CAPTURE(code_string(code));
    CHECK(code_from_string(code_string(code)) == code);
    CHECK(http_status(code) >= 400);
  }
}

TEST_CASE("an error body has the documented shape", "[protocol]") {
  json j = error_json(errc::invalid_field, "field 'slots' must be an integer");
  CHECK(j == json::parse(R"({"error":{"code":"invalid_field","message":"field 'slots' must be an integer"}})"));

  error_body b = round_trip(error_body{"lease_gone", "released"});
  CHECK(b.code == "lease_gone");
  CHECK(b.message == "released");
}

TEST_CASE("lease states and network modes map to their strings and back", "[protocol]") {
  for (lease_state s : {lease_state::queued, lease_state::pulling, lease_state::starting, lease_state::ready,
                        lease_state::released, lease_state::failed, lease_state::expired}) {
    CAPTURE(to_string(s));
    CHECK(lease_state_from_string(to_string(s)) == s);
  }
  CHECK(lease_state_from_string("sleeping") == lease_state::unknown);
  CHECK(is_final(lease_state::released));
  CHECK(is_final(lease_state::failed));
  CHECK(is_final(lease_state::expired));
  CHECK_FALSE(is_final(lease_state::ready));
  CHECK_FALSE(is_final(lease_state::queued));

  CHECK(network_mode_from_string("none") == network_mode::none);
  CHECK(network_mode_from_string("host") == network_mode::host);
  CHECK(network_mode_from_string("bridge") == network_mode::unknown);
  CHECK(to_string(network_mode::host) == "host");
}

TEST_CASE("a lease request round-trips through JSON", "[protocol]") {
  lease_request in;
  in.image = "127.0.0.1:5000/sandlot/busybox:1";
  in.run = "run-1";
  in.test = "echo prints its arguments";
  in.request_id = "req-42";
  in.slots = 2;
  in.ttl_s = 12;
  in.ready_timeout_s = 60;
  in.network = network_mode::host;
  in.env = {{"A", "1"}, {"B", "two words"}};
  in.memory_mb = 64;
  in.cpus = 0.5;
  in.pids_limit = 32;
  in.read_only = true;

  lease_request out = round_trip(in);
  CHECK(out.image == in.image);
  CHECK(out.run == in.run);
  CHECK(out.test == in.test);
  CHECK(out.request_id == in.request_id);
  CHECK(out.slots == 2);
  CHECK(out.ttl_s == 12);
  CHECK(out.ready_timeout_s == 60);
  CHECK(out.network == network_mode::host);
  CHECK(out.env == in.env);
  CHECK(out.memory_mb == 64);
  CHECK(out.cpus == Approx(0.5));
  CHECK(out.pids_limit == 32);
  CHECK(out.read_only);
}

TEST_CASE("a lease request with only an image gets the documented defaults", "[protocol]") {
  auto req = parse_body<lease_request>(R"({"image":"127.0.0.1:5000/sandlot/busybox:1"})");
  CHECK(req.slots == 1);
  CHECK(req.ttl_s == 30);
  CHECK(req.ready_timeout_s == 300);
  CHECK(req.network == network_mode::none);
  CHECK(req.env.empty());
  CHECK_FALSE(req.read_only);
  CHECK(req.run.empty());
}

TEST_CASE("sandbox details round-trip through JSON", "[protocol]") {
  sandbox_info in{"0123abcd", "sandlot-run-1-echo", "sb-echo", "127.0.0.1:5000/sandlot/busybox:1", "none", "b"};
  sandbox_info out = round_trip(in);
  CHECK(out.id == in.id);
  CHECK(out.name == in.name);
  CHECK(out.hostname == in.hostname);
  CHECK(out.image == in.image);
  CHECK(out.network == in.network);
  CHECK(out.engine == "b");
  // One engine: no "engine" field at all, as before pools.
  in.engine.clear();
  CHECK_FALSE(nlohmann::json(in).contains("engine"));
}

TEST_CASE("a pool's engines round-trip through GET /v1/status's JSON", "[protocol]") {
  status_view in;
  in.engines.push_back(engine_status{"a", "/run/a.sock", "docker", true, 2, 1, 1, 3, ""});
  in.engines.push_back(engine_status{"b", "/run/b.sock", "docker", false, 2, 0, 0, 1, "connection refused"});
  auto out = round_trip(in);
  REQUIRE(out.engines.size() == 2);
  CHECK(out.engines[0].name == "a");
  CHECK(out.engines[0].in_use == 1);
  CHECK(out.engines[0].pulls == 3);
  CHECK_FALSE(out.engines[1].up);
  CHECK(out.engines[1].detail == "connection refused");
  CHECK_FALSE(nlohmann::json(status_view{}).contains("engines"));
}

TEST_CASE("a lease view round-trips through JSON with its optional parts", "[protocol]") {
  lease_view queued;
  queued.id = "l-1";
  queued.name = "run-1-echo-1";
  queued.state = lease_state::queued;
  queued.run = "run-1";
  queued.test = "echo";
  queued.image = "img:1";
  queued.slots = 3;
  queued.ttl_s = 20;
  queued.position = 4;
  queued.waiting_for = "slots";

  lease_view q = round_trip(queued);
  CHECK(q.id == "l-1");
  CHECK(q.name == "run-1-echo-1");
  CHECK(q.state == lease_state::queued);
  CHECK(q.run == "run-1");
  CHECK(q.test == "echo");
  CHECK(q.image == "img:1");
  CHECK(q.slots == 3);
  CHECK(q.ttl_s == 20);
  CHECK(q.position == 4);
  CHECK(q.waiting_for == "slots");
  CHECK_FALSE(q.expires_in_s);
  CHECK_FALSE(q.sandbox);
  CHECK_FALSE(q.error);

  lease_view ready = queued;
  ready.state = lease_state::ready;
  ready.position.reset();
  ready.waiting_for.reset();
  ready.expires_in_s = 17.5;
  ready.sandbox = sandbox_info{"c1", "n1", "h1", "img:1", "none", ""};
  lease_view r = round_trip(ready);
  CHECK(r.state == lease_state::ready);
  CHECK_FALSE(r.position);
  REQUIRE(r.expires_in_s);
  CHECK(*r.expires_in_s == Approx(17.5));
  REQUIRE(r.sandbox);
  CHECK(r.sandbox->hostname == "h1");

  lease_view failed = queued;
  failed.state = lease_state::failed;
  failed.error = error_body{"image_pull_failed", "pull img:1: manifest unknown"};
  lease_view f = round_trip(failed);
  CHECK(f.state == lease_state::failed);
  REQUIRE(f.error);
  CHECK(f.error->code == "image_pull_failed");
  CHECK(f.error->message == "pull img:1: manifest unknown");
}

TEST_CASE("a renew response round-trips through JSON", "[protocol]") {
  renew_response out = round_trip(renew_response{"l-1", lease_state::ready, 29.5});
  CHECK(out.id == "l-1");
  CHECK(out.state == lease_state::ready);
  CHECK(out.expires_in_s == Approx(29.5));
}

TEST_CASE("an exec request round-trips through JSON", "[protocol]") {
  exec_request in;
  in.argv = {"sh", "-c", "cat; echo $X"};
  in.stdin_data = "line\n";
  in.env = {{"X", "1"}};
  in.workdir = "/tmp";
  in.timeout_s = 5;
  exec_request out = round_trip(in);
  CHECK(out.argv == in.argv);
  CHECK(out.stdin_data == "line\n");
  CHECK(out.env == in.env);
  CHECK(out.workdir == "/tmp");
  CHECK(out.timeout_s == 5);

  exec_request bare;
  bare.argv = {"true"};
  exec_request b = round_trip(bare);
  CHECK_FALSE(b.stdin_data);
  CHECK(b.workdir.empty());
  CHECK(b.timeout_s == 60);
}

TEST_CASE("an exec result round-trips through JSON", "[protocol]") {
  exec_result in;
  in.exit_code = 7;
  in.stdout_data = "out\n";
  in.stderr_data = "err\n";
  in.truncated = true;
  in.timed_out = true;
  in.duration_s = 1.25;
  exec_result out = round_trip(in);
  CHECK(out.exit_code == 7);
  CHECK(out.stdout_data == "out\n");
  CHECK(out.stderr_data == "err\n");
  CHECK(out.truncated);
  CHECK(out.timed_out);
  CHECK(out.duration_s == Approx(1.25));
}

TEST_CASE("exec streams use the plain names stdin and stdout and stderr on the wire", "[protocol]") {
  exec_request req;
  req.argv = {"cat"};
  req.stdin_data = "hello";
  json jr = req;
  CHECK(jr.at("stdin") == "hello");
  CHECK_FALSE(jr.contains("stdin_data"));

  exec_result res;
  res.stdout_data = "o";
  res.stderr_data = "e";
  json js = res;
  CHECK(js.at("stdout") == "o");
  CHECK(js.at("stderr") == "e");
  CHECK_FALSE(js.contains("stdout_data"));
  CHECK_FALSE(js.contains("stderr_data"));

  auto parsed = parse_body<exec_request>(R"({"argv":["cat"],"stdin":"from the wire"})");
  CHECK(parsed.stdin_data == "from the wire");
}

TEST_CASE("status and image states round-trip through JSON", "[protocol]") {
  status_view in;
  in.instance = "orchestratord-1";
  in.slots_total = 5;
  in.slots_in_use = 2;
  in.queue_length = 1;
  in.ready = true;
  lease_view l;
  l.id = "l-1";
  l.state = lease_state::ready;
  in.leases = {l};
  image_status pulling;
  pulling.image = "img:3";
  pulling.state = "pulling";
  pulling.bytes_done = 512;
  pulling.bytes_total = 2048;
  pulling.since_s = 1.5;
  in.images = {image_status{"img:1", "present", 0, "", {}, {}, {}},
               image_status{"img:2", "failed", 1, "manifest unknown", {}, {}, {}}, pulling};
  in.draining = true;
  in.seq = 42;
  lane_view lane;
  lane.lane = 0;
  lane.lease = "l-1";
  lane.test = "echo";
  lane.state = lease_state::ready;
  lane.since_s = 2.5;
  in.lanes = {lane, lane_view{}};
  in.lanes[1].lane = 1;

  status_view out = round_trip(in);
  REQUIRE(out.images.size() == 3);
  CHECK(out.images[2].bytes_done == 512);
  CHECK(out.images[2].bytes_total == 2048);
  CHECK_FALSE(out.images[0].bytes_total.has_value());
  CHECK(out.draining);
  CHECK(out.seq == 42);
  REQUIRE(out.lanes.size() == 2);
  CHECK(out.lanes[0].lease == "l-1");
  CHECK(out.lanes[0].test == "echo");
  CHECK(out.lanes[0].state == lease_state::ready);
  CHECK_FALSE(out.lanes[1].lease.has_value());
  CHECK(out.instance == "orchestratord-1");
  CHECK(out.slots_total == 5);
  CHECK(out.slots_in_use == 2);
  CHECK(out.queue_length == 1);
  CHECK(out.ready);
  REQUIRE(out.leases.size() == 1);
  CHECK(out.leases[0].id == "l-1");
  CHECK(out.leases[0].state == lease_state::ready);
  REQUIRE(out.images.size() == 3);
  CHECK(out.images[0].state == "present");
  CHECK(out.images[1].waiters == 1);
  CHECK(out.images[1].error == "manifest unknown");
}

TEST_CASE("a body that is not JSON is rejected as bad_json", "[protocol]") {
  auto e = decode_error<lease_request>("{\"image\": ");
  REQUIRE(e);
  CHECK(e->code() == errc::bad_json);
  CHECK(http_status(e->code()) == 400);

  auto not_object = decode_error<lease_request>(R"(["127.0.0.1:5000/sandlot/busybox:1"])");
  REQUIRE(not_object);
  CHECK(not_object->code() == errc::bad_json);
}

TEST_CASE("a lease request without an image names the image field", "[protocol]") {
  auto missing = decode_error<lease_request>(R"({"slots":1})");
  REQUIRE(missing);
  CHECK(missing->code() == errc::invalid_field);
  CHECK_THAT(missing->message(), Contains("'image'"));

  auto empty = decode_error<lease_request>(R"({"image":""})");
  REQUIRE(empty);
  CHECK(empty->code() == errc::invalid_field);
  CHECK_THAT(empty->message(), Contains("'image'"));
}

TEST_CASE("slots given as a string names the slots field", "[protocol]") {
  auto e = decode_error<lease_request>(R"({"image":"img:1","slots":"2"})");
  REQUIRE(e);
  CHECK(e->code() == errc::invalid_field);
  CHECK_THAT(e->message(), Contains("'slots'") && Contains("integer"));
}

TEST_CASE("out-of-range numbers name their field and the allowed range", "[protocol]") {
  auto zero = decode_error<lease_request>(R"({"image":"img:1","slots":0})");
  REQUIRE(zero);
  CHECK(zero->code() == errc::invalid_field);
  CHECK_THAT(zero->message(), Contains("'slots'") && Contains("between"));

  auto ttl = decode_error<lease_request>(R"({"image":"img:1","ttl_s":-5})");
  REQUIRE(ttl);
  CHECK_THAT(ttl->message(), Contains("'ttl_s'"));
}

TEST_CASE("a bridge network is rejected: only none and host exist", "[protocol]") {
  auto e = decode_error<lease_request>(R"({"image":"img:1","network":"bridge"})");
  REQUIRE(e);
  CHECK(e->code() == errc::invalid_field);
  CHECK_THAT(e->message(), Contains("'network'") && Contains("none") && Contains("host"));
}

TEST_CASE("env values must be strings and the error names the key", "[protocol]") {
  auto e = decode_error<lease_request>(R"({"image":"img:1","env":{"PORT":8080}})");
  REQUIRE(e);
  CHECK(e->code() == errc::invalid_field);
  CHECK_THAT(e->message(), Contains("'env.PORT'"));
}

TEST_CASE("an exec request needs a non-empty argv of strings", "[protocol]") {
  auto missing = decode_error<exec_request>(R"({"stdin":"x"})");
  REQUIRE(missing);
  CHECK(missing->code() == errc::invalid_field);
  CHECK_THAT(missing->message(), Contains("'argv'"));

  auto empty = decode_error<exec_request>(R"({"argv":[]})");
  REQUIRE(empty);
  CHECK(empty->code() == errc::invalid_field);
  CHECK_THAT(empty->message(), Contains("'argv'"));

  auto shell_string = decode_error<exec_request>(R"({"argv":"echo hi"})");
  REQUIRE(shell_string);
  CHECK_THAT(shell_string->message(), Contains("'argv'"));

  auto not_string = decode_error<exec_request>(R"({"argv":["echo",1]})");
  REQUIRE(not_string);
  CHECK(not_string->code() == errc::invalid_field);
  CHECK_THAT(not_string->message(), Contains("'argv[1]'"));
}

TEST_CASE("a lease request carries its locks through JSON", "[protocol][locks]") {
  lease_request req;
  req.image = "127.0.0.1:5000/x:1";
  req.locks = {{"cluster-config", lock_mode::shared}, {"db/schema", lock_mode::exclusive}};
  auto back = round_trip(req);
  REQUIRE(back.locks.size() == 2);
  CHECK(back.locks[0].name == "cluster-config");
  CHECK(back.locks[0].mode == lock_mode::shared);
  CHECK(back.locks[1].name == "db/schema");
  CHECK(back.locks[1].mode == lock_mode::exclusive);
}

TEST_CASE("bad locks are refused naming the lock and what is wrong", "[protocol][locks]") {
  auto bad = [](std::string_view locks) {
    auto e = decode_error<lease_request>(std::string(R"({"image":"x:1","locks":)") + std::string(locks) + "}");
    REQUIRE(e.has_value());
    CHECK(e->code() == errc::invalid_field);
    return e->message();
  };
  CHECK_THAT(bad(R"("config")"), Contains("'locks'"));
  CHECK_THAT(bad(R"([{"name":"a"}])"), Contains("locks[0].mode"));
  CHECK_THAT(bad(R"([{"name":"a","mode":"sometimes"}])"), Contains("\"shared\" or \"exclusive\""));
  CHECK_THAT(bad(R"([{"mode":"shared"}])"), Contains("locks[0].name"));
  CHECK_THAT(bad(R"([{"name":"has space","mode":"shared"}])"), Contains("may only contain"));
  CHECK_THAT(bad(R"([{"name":"","mode":"shared"}])"), Contains("1 to 128"));
  CHECK_THAT(bad(R"([{"name":"a","mode":"shared"},{"name":"a","mode":"exclusive"}])"), Contains("second time"));
}

TEST_CASE("a fixture request needs a name and an image and checks its fields", "[protocol][fixtures]") {
  auto ok = parse_body<fixture_request>(R"({"name":"mock-inference","image":"x:1","network":"host","port":true})");
  CHECK(ok.network == network_mode::host);
  CHECK(ok.port);
  CHECK(ok.grace_s == 15);
  auto no_name = decode_error<fixture_request>(R"({"image":"x:1"})");
  REQUIRE(no_name.has_value());
  CHECK_THAT(no_name->message(), Contains("'name'"));
  auto no_image = decode_error<fixture_request>(R"({"name":"a"})");
  REQUIRE(no_image.has_value());
  CHECK_THAT(no_image->message(), Contains("'image'"));
  auto grace = decode_error<fixture_request>(R"({"name":"a","image":"x:1","grace_s":-1})");
  REQUIRE(grace.has_value());
  CHECK_THAT(grace->message(), Contains("'grace_s'"));
}

TEST_CASE("a fixture view and an outcome round-trip through JSON", "[protocol][fixtures]") {
  fixture_view v;
  v.id = "fx-1";
  v.name = "n";
  v.run = "r";
  v.state = "ready";
  v.role = "user";
  v.port = 41000;
  v.data = json{{"url", "http://127.0.0.1:41000"}};
  v.creations = 1;
  v.holders = 2;
  auto back = round_trip(v);
  CHECK(back.port == std::optional<int>(41000));
  CHECK(back.data == v.data);
  CHECK(back.holders == 2);
  CHECK(back.role == "user");
  auto bad = decode_error<outcome_request>(R"({"outcome":"maybe"})");
  REQUIRE(bad.has_value());
  CHECK_THAT(bad->message(), Contains("'outcome'"));
}

TEST_CASE("env keys and workdirs are checked with a message that says what is allowed", "[protocol]") {
  auto bad = [](std::string_view body) {
    auto e = decode_error<exec_request>(body);
    REQUIRE(e.has_value());
    CHECK(e->code() == errc::invalid_field);
    return e->message();
  };
  CHECK_THAT(bad(R"({"argv":["true"],"env":{"A=B":"x"}})"), Contains("without '=' or control characters"));
  CHECK_THAT(bad(R"({"argv":["true"],"env":{"":"x"}})"), Contains("1 to 256 characters"));
  CHECK_THAT(bad(R"({"argv":["true"],"env":{"A":"x\u0000y"}})"), Contains("NUL"));
  CHECK_THAT(bad(R"({"argv":["true"],"workdir":"tmp"})"), Contains("absolute path"));
  CHECK_THAT(bad(R"({"argv":["true"],"workdir":"/tmp\u0000x"})"), Contains("absolute path"));
  auto ok = parse_body<exec_request>(R"({"argv":["true"],"env":{"MY_VAR":"a=b c"},"workdir":"/tmp"})");
  CHECK(ok.env.at("MY_VAR") == "a=b c");
  auto lease_env = decode_error<lease_request>(R"({"image":"x:1","env":{"BAD=KEY":"v"}})");
  REQUIRE(lease_env.has_value());
  CHECK_THAT(lease_env->message(), Contains("env key 'BAD=KEY'"));
}

TEST_CASE("control characters in names and keys are refused, so two values cannot collide", "[protocol]") {
  // run "a\nb" with test "c" and run "a" with test "b\nc" were one key in the daemon's maps.
  for (const char* body : {R"({"image":"x:1","run":"a\nb"})", R"({"image":"x:1","test":"t\u0000"})",
                           R"({"image":"x:1","request_id":"r\tq"})", R"({"image":"x:1","env":{"A\nB":"v"}})",
                           R"({"image":"x:1","test":"del\u007f"})"}) {
    INFO(body);
    auto e = decode_error<lease_request>(body);
    REQUIRE(e.has_value());
    CHECK(e->code() == errc::invalid_field);
    CHECK_THAT(e->message(), Contains("control characters"));
    CHECK_THAT(e->message(), Contains("\\x"));  // the character is shown, not printed raw
  }
  // Newlines in values are data, not names: still fine.
  auto ok = parse_body<lease_request>(R"({"image":"x:1","test":"a test: with spaces","env":{"A":"line1\nline2"}})");
  CHECK(ok.env.at("A") == "line1\nline2");
}

TEST_CASE("file paths must be plain absolute paths without traversal", "[protocol][files]") {
  for (const char* ok : {"/tmp/a", "/etc/hostname", "/a/b/c.d-e_f"}) {
    INFO(ok);
    CHECK_NOTHROW(check_file_path("path", ok));
  }
  for (const char* bad : {"", "/", "tmp/a", "/tmp/../etc/passwd", "/tmp/./a", "/tmp//a", "/tmp/a/", "/.."}) {
    INFO(bad);
    CHECK_THROWS_AS(check_file_path("path", bad), api_error);
  }
  try {
    check_file_path("path", "/tmp/../../etc/shadow");
    FAIL("traversal accepted");
  } catch (const api_error& e) {
    CHECK(e.code() == errc::invalid_field);
    CHECK_THAT(e.message(), Contains("no traversal"));
  }
}

TEST_CASE("percent_encode keeps unreserved characters and encodes every other byte", "[protocol]") {
  using sandlot::protocol::percent_encode;
  CHECK(percent_encode("AZaz09-_.~") == "AZaz09-_.~");
  CHECK(percent_encode("a b/c?d&e=f%") == "a%20b%2Fc%3Fd%26e%3Df%25");
  CHECK(percent_encode("/tmp/a b", "/") == "/tmp/a%20b");
  CHECK(percent_encode(std::string_view("\0\xff\x7f", 3)) == "%00%FF%7F");
  CHECK(percent_encode("caf\xc3\xa9") == "caf%C3%A9");
  CHECK(percent_encode(std::string_view("\0", 1), std::string_view("\0", 1)) == "%00");  // NUL never kept
  CHECK(percent_encode("").empty());
}

TEST_CASE("the warm pools' status and a warm lease round-trip through JSON", "[protocol]") {
  status_view in;
  CHECK_FALSE(json(in).contains("warm"));  // without --warm the status has no warm object
  lease_view cold;
  cold.id = "l-1";
  CHECK_FALSE(json(cold).contains("warm"));  // only a warm lease says so
  lease_view warm_lease = cold;
  warm_lease.warm = true;
  in.leases = {warm_lease, cold};
  sandlot::protocol::warm_status w;
  w.mode = "auto";
  w.hits = 7;
  w.misses = 2;
  w.evictions = 1;
  w.adoption_mean_s = 0.004;
  w.images = {sandlot::protocol::warm_image_status{"img:1", 2, 1, 3, 7, 2}};
  in.warm = w;

  status_view out = round_trip(in);
  REQUIRE(out.leases.size() == 2);
  CHECK(out.leases[0].warm);
  CHECK_FALSE(out.leases[1].warm);
  REQUIRE(out.warm);
  CHECK(out.warm->mode == "auto");
  CHECK(out.warm->hits == 7);
  CHECK(out.warm->misses == 2);
  CHECK(out.warm->evictions == 1);
  CHECK(out.warm->adoption_mean_s == 0.004);
  REQUIRE(out.warm->images.size() == 1);
  CHECK(out.warm->images[0].image == "img:1");
  CHECK(out.warm->images[0].ready == 2);
  CHECK(out.warm->images[0].creating == 1);
  CHECK(out.warm->images[0].target == 3);
  CHECK(out.warm->images[0].hits == 7);
  CHECK(out.warm->images[0].misses == 2);
}
