#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

int main(int argc, char* argv[]) {
  // The daemon's components log; unit tests assert on behaviour, so keep their output to failures.
  spdlog::set_level(spdlog::level::err);
  return Catch::Session().run(argc, argv);
}
