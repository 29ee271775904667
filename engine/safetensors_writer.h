#ifndef DSV3_ENGINE_SAFETENSORS_WRITER_H_
#define DSV3_ENGINE_SAFETENSORS_WRITER_H_

// Writing safetensors files and sharded Hugging Face checkpoints. Tensor bytes are produced
// one tensor at a time by a callback, so a multi-GB checkpoint never sits in memory whole.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/dtype.h"

namespace dsv3::engine {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t nbytes() const;
};

// Fills `out` (exactly spec.nbytes() bytes) with the tensor's little-endian data.
using TensorFillFn = std::function<absl::Status(const TensorSpec& spec, std::span<uint8_t> out)>;

// Writes one safetensors file holding `specs` in order (data contiguous, header padded with
// spaces to a multiple of 8 bytes).
absl::Status WriteSafetensorsFile(const std::string& path, const std::vector<TensorSpec>& specs,
                                  const TensorFillFn& fill);

// Splits `specs` (in order) into shards of at most `max_shard_bytes` (a bigger tensor gets a
// shard of its own), writes `model-0000i-of-0000N.safetensors` and
// `model.safetensors.index.json` into `dir` (which must exist).
absl::Status WriteShardedCheckpoint(const std::string& dir, const std::vector<TensorSpec>& specs,
                                    int64_t max_shard_bytes, const TensorFillFn& fill);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SAFETENSORS_WRITER_H_
