// hold: one synthetic test for the scheduling bench (scripts/bench schedule). It leases a sandbox
// like a test does, holds it for --hold seconds (the test's "work"), and releases it.
//
//   SANDLOT_URL=http://127.0.0.1:PORT SANDLOT_RUN=R
//   sandlot_bench_hold --test NAME --hold 2.5 [--image REF] [--slots 1]
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <sandlot/client.hpp>
#include <sandlot/protocol.hpp>

int main(int argc, char** argv) {
  try {
    std::string test, image;
    double hold_s = -1;
    int slots = 1;
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(fmt::format("{} needs a value", arg));
      const std::string v = argv[++i];
      if (arg == "--test") test = v;
      else if (arg == "--image") image = v;
      else if (arg == "--hold") hold_s = std::stod(v);
      else if (arg == "--slots") slots = std::stoi(v);
      else throw std::invalid_argument(fmt::format("unknown argument '{}'", arg));
    }
    if (test.empty() || hold_s < 0) throw std::invalid_argument("give --test NAME and --hold SECONDS");
    if (image.empty()) {
      const char* env = std::getenv("SANDLOT_TEST_IMAGE");
      image = env != nullptr ? env : "127.0.0.1:5000/sandlot/busybox:1";
    }
    const char* url = std::getenv("SANDLOT_URL");
    const char* run = std::getenv("SANDLOT_RUN");
    if (url == nullptr || run == nullptr) throw std::invalid_argument("set SANDLOT_URL and SANDLOT_RUN");
    sandlot::client::client c(url);
    sandlot::protocol::lease_request req;
    req.image = image;
    req.run = run;
    req.test = test;
    req.slots = slots;
    req.ttl_s = 60;
    const auto id = c.create(req).id;
    auto v = c.get(id, 120);
    while (v.state != sandlot::protocol::lease_state::ready && !sandlot::protocol::is_final(v.state)) v = c.get(id, 120);
    if (v.state != sandlot::protocol::lease_state::ready) {
      std::cerr << fmt::format("{}: lease {} ended {}\n", test, id, sandlot::protocol::to_string(v.state));
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(hold_s));
    c.release(id);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "sandlot_bench_hold: " << e.what() << "\n";
    return 2;
  }
}
