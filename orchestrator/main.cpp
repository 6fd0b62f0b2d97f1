// orchestratord: the entry point. Everything else lives in the layers under src/
// (docs/architecture.md); app/daemon.cpp wires them.
#include "daemon.hpp"

int main(int argc, char** argv) { return sandlot::orchestrator::run_daemon(argc, argv); }
