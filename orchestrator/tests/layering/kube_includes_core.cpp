// Layering probe (docs/architecture.md): the Kubernetes provider does not know the lease core; this must not compile.
#include "lease_service.hpp"
