// The CUDA half of gpu_probe: asks the CUDA runtime for devices. Any error (no driver:
// cudaErrorInsufficientDriver, no device: cudaErrorNoDevice, ...) means "use the CPU".

#include <cuda_runtime.h>

#include <string>

#include "common/gpu_probe.h"

namespace dsv3 {

GpuProbe ProbeCudaDevices() {
  GpuProbe p;
  p.cuda_compiled = true;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.detail = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" +
               std::to_string(static_cast<int>(err)) + ")";
    (void)cudaGetLastError();  // clear the sticky error for later callers
    return p;
  }
  p.device_count = count;
  if (count == 0) {
    p.detail = "no CUDA devices";
    return p;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    p.detail = std::to_string(count) + " x " + prop.name;
  } else {
    p.detail = std::to_string(count) + " devices";
  }
  return p;
}

}  // namespace dsv3
