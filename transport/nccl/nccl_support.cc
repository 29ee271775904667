#include "transport/nccl/nccl_support.h"

#if DSV3_NCCL_COMPILED
#include <nccl.h>
#endif

namespace dsv3::transport {

bool NcclCompiled() { return DSV3_NCCL_COMPILED != 0; }

std::string NcclDescription() {
#if DSV3_NCCL_COMPILED
  int version = 0;
  // ncclGetVersion needs no GPU: it reports the library linked in.
  if (ncclGetVersion(&version) != ncclSuccess) return "NCCL (version unknown)";
  // Since NCCL 2.9: version = major * 10000 + minor * 100 + patch.
  return "NCCL " + std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) +
         "." + std::to_string(version % 100);
#else
  return "NCCL not built";
#endif
}

}  // namespace dsv3::transport
