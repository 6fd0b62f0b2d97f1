// Layering probe (docs/architecture.md): the lease core does not know the Kubernetes provider; this must not compile.
#include "kube_provider.hpp"
