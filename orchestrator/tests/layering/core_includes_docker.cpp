// Layering probe (docs/architecture.md): the core knows providers only through sandbox_provider; this must not compile.
#include "docker_client.hpp"
