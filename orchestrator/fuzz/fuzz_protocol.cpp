// Fuzzes the JSON decoding of every request body the daemon accepts (docs/fuzzing.md).
//
// Input: the first byte picks the request type (modulo their count), the rest is the body handed to
// protocol::parse_body<T>, exactly as the router does. An api_error is the expected answer to a bad
// body; any other exception would reach a client as a 500, so it aborts. A body that decodes must
// survive a round trip: encoded again with to_json, it decodes to the same JSON.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include <sandlot/protocol.hpp>

namespace {

namespace protocol = sandlot::protocol;
using json = nlohmann::json;

[[noreturn]] void fail(const char* type, const char* what, std::string_view body) {
  std::fprintf(stderr, "fuzz_protocol: %s: %s\nbody: %.*s\n", type, what, static_cast<int>(body.size()),
               body.data());
  std::abort();
}

template <class T>
void check(const char* type, std::string_view body) {
  T decoded;
  try {
    decoded = protocol::parse_body<T>(body);
  } catch (const protocol::api_error& e) {
    // The router sends e.message() as JSON; it has to be encodable.
    (void)protocol::error_json(e.code(), e.message()).dump();
    return;
  } catch (const std::exception& e) {
    fail(type, e.what(), body);
  }
  try {
    const json once = decoded;
    const std::string text = once.dump();
    const json twice = protocol::parse_body<T>(text);
    if (once != twice) {
      fail(type, ("round trip changed the value: " + text + " became " + twice.dump()).c_str(), body);
    }
  } catch (const std::exception& e) {
    fail(type, (std::string("round trip threw: ") + e.what()).c_str(), body);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // libFuzzer hands raw bytes; a body is a string_view over them.
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);  // NOLINT
  switch (data[0] % 5) {
    case 0: check<protocol::lease_request>("lease_request", body); break;
    case 1: check<protocol::exec_request>("exec_request", body); break;
    case 2: check<protocol::outcome_request>("outcome_request", body); break;
    case 3: check<protocol::fixture_request>("fixture_request", body); break;
    default: check<protocol::fixture_ready_request>("fixture_ready_request", body); break;
  }
  return 0;
}
