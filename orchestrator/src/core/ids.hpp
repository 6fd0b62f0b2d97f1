// Small things the core's parts share: fresh ids and error bodies.
#pragma once

#include <string>

#include <sandlot/protocol.hpp>

namespace sandlot::orchestrator {

/// 12 random hex digits (lease ids; fixture ids are "fx-" and these).
std::string random_id();

inline protocol::error_body error_body_of(protocol::errc code, std::string message) {
  return protocol::error_body{std::string(protocol::code_string(code)), std::move(message)};
}

}  // namespace sandlot::orchestrator
