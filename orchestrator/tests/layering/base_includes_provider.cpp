// Layering probe (docs/architecture.md): base sees nothing above it; this must not compile.
#include "sandbox_provider.hpp"
