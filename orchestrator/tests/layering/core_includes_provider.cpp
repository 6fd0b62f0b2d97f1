// Layering probe (docs/architecture.md): the positive control: a downward include compiles.
#include "sandbox_provider.hpp"
