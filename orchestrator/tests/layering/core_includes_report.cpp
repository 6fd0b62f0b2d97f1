// Layering probe (docs/architecture.md): the core does not render; this must not compile.
#include "run_report.hpp"
