#include "ids.hpp"

#include <random>

#include <fmt/format.h>

namespace sandlot::orchestrator {

std::string random_id() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:012x}", rng() & 0xffffffffffffULL);
}

}  // namespace sandlot::orchestrator
