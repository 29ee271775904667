#include "common/gpu_probe.h"

#include "common/logging.h"

namespace dsv3 {

#if DSV3_CUDA_COMPILED
// Implemented in gpu_probe_cuda.cu against the CUDA runtime.
GpuProbe ProbeCudaDevices();
#endif

const GpuProbe& ProbeGpus() {
  static const GpuProbe probe = [] {
#if DSV3_CUDA_COMPILED
    return ProbeCudaDevices();
#else
    GpuProbe p;
    p.detail = "built without CUDA";
    return p;
#endif
  }();
  return probe;
}

void LogComputePlacement() {
  const GpuProbe& p = ProbeGpus();
  if (p.device_count > 0) {
    DSV3_LOG(INFO) << "CUDA devices: " << p.detail;
  } else if (p.cuda_compiled) {
    DSV3_LOG(INFO) << "built with CUDA but no usable GPU (" << p.detail << "): running on the CPU";
  } else {
    DSV3_LOG(INFO) << "running on the CPU (" << p.detail << ")";
  }
}

}  // namespace dsv3
