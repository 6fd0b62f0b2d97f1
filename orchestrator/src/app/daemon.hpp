// The whole daemon behind `orchestratord`: parses flags, wires the layers together, runs until a
// signal or the idle exit, and shuts down. `orchestratord health` is served here too.
#pragma once

namespace sandlot::orchestrator {

/// The process's exit code.
int run_daemon(int argc, char** argv);

}  // namespace sandlot::orchestrator
