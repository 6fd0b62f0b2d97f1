// Layering probe (docs/architecture.md): the report renders records, not routes; this must not compile.
#include "router.hpp"
