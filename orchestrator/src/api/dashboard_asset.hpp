// The dashboard page compiled into the binary: its bytes and the Content-Security-Policy that
// lets exactly its inline script and style run. Defined in a source that the build generates from
// orchestrator/ui/dashboard.html (cmake/embed_dashboard.cmake), so page and hashes cannot drift.
#pragma once

#include <string_view>

namespace sandlot::orchestrator::detail {

/// The page, UTF-8 HTML.
std::string_view dashboard_page();
/// The policy to send with it: self only, the inline script and style by their SHA-256.
std::string_view dashboard_csp();

}  // namespace sandlot::orchestrator::detail
