#ifndef DSV3_COMMON_RESOLVE_ADDRESSES_H_
#define DSV3_COMMON_RESOLVE_ADDRESSES_H_

// DNS for worker discovery (a Kubernetes headless Service names every pod behind it).

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv3 {

// Resolves "name:port" to "ip:port" strings (IPv6 in brackets), sorted, without repeats.
absl::StatusOr<std::vector<std::string>> ResolveAddresses(const std::string& name_and_port);

}  // namespace dsv3

#endif  // DSV3_COMMON_RESOLVE_ADDRESSES_H_
