#ifndef DSV3_COMMON_BUILD_INFO_H_
#define DSV3_COMMON_BUILD_INFO_H_

#include <string>

namespace dsv3 {

struct BuildInfo {
  std::string version;       // project version, e.g. "0.1.0"
  std::string git_revision;  // short commit at configure time, or "unknown"
  bool cuda_compiled;        // CUDA sources and NCCL were compiled in
};

const BuildInfo& GetBuildInfo();

}  // namespace dsv3

#endif  // DSV3_COMMON_BUILD_INFO_H_
