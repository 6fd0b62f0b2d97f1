// Layering probe (docs/architecture.md): the API does not know which provider runs; this must not compile.
#include "docker_provider.hpp"
