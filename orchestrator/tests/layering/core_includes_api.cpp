// Layering probe (docs/architecture.md): the core does not know HTTP; this must not compile.
#include "router.hpp"
