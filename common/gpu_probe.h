#ifndef DSV3_COMMON_GPU_PROBE_H_
#define DSV3_COMMON_GPU_PROBE_H_

// Finds out at run time whether CUDA devices are usable. A binary built with CUDA runs on
// the CPU path on a machine without a GPU or driver; it says so once in its log.

#include <string>

namespace dsv3 {

struct GpuProbe {
  bool cuda_compiled = false;  // CUDA support was built in
  int device_count = 0;        // usable devices (0 when none or no driver)
  std::string detail;          // e.g. "2 x NVIDIA H100" or the CUDA error that said no
};

// Probes once and caches the answer.
const GpuProbe& ProbeGpus();

// Logs one line describing where compute will run.
void LogComputePlacement();

}  // namespace dsv3

#endif  // DSV3_COMMON_GPU_PROBE_H_
