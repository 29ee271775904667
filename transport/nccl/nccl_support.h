#ifndef DSV3_TRANSPORT_NCCL_NCCL_SUPPORT_H_
#define DSV3_TRANSPORT_NCCL_NCCL_SUPPORT_H_

#include <string>

namespace dsv3::transport {

// Whether the NCCL backend was built in.
bool NcclCompiled();
// "NCCL 2.28.3" (the linked library's version) or "NCCL not built".
std::string NcclDescription();

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_NCCL_NCCL_SUPPORT_H_
