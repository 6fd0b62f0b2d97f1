// Layering probe (docs/architecture.md): the API does not know the daemon's wiring; this must not compile.
#include "config.hpp"
