// The body of GET /metrics: the core's figures in the Prometheus text format (0.0.4).
#pragma once

#include <string>

#include "telemetry.hpp"

namespace sandlot::orchestrator {

std::string render_metrics(const core_metrics& m);

}  // namespace sandlot::orchestrator
