#include "common/build_info.h"

namespace dsv3 {

const BuildInfo& GetBuildInfo() {
  static const BuildInfo info{DSV3_VERSION, DSV3_GIT_REVISION, DSV3_CUDA_COMPILED != 0};
  return info;
}

}  // namespace dsv3
