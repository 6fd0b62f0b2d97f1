#include "sandbox_provider.hpp"

namespace sandlot::orchestrator {

std::string_view to_string(provider_failure f) noexcept {
  switch (f) {
    case provider_failure::unreachable: return "unreachable";
    case provider_failure::timed_out: return "timed_out";
    case provider_failure::image_not_found: return "image_not_found";
    case provider_failure::invalid_reference: return "invalid_reference";
    case provider_failure::not_allowed: return "not_allowed";
    case provider_failure::auth: return "auth";
    case provider_failure::not_found: return "not_found";
    case provider_failure::conflict: return "conflict";
    case provider_failure::read_only: return "read_only";
    case provider_failure::too_large: return "too_large";
    case provider_failure::not_a_file: return "not_a_file";
    case provider_failure::rejected: return "rejected";
    case provider_failure::failed: return "failed";
    case provider_failure::engine_lost: return "engine_lost";
  }
  return "failed";
}

bool provider_error::permanent() const noexcept {
  switch (reason_) {
    case provider_failure::image_not_found:
    case provider_failure::invalid_reference:
    case provider_failure::not_allowed:
      return true;
    default:
      return false;
  }
}

}  // namespace sandlot::orchestrator
