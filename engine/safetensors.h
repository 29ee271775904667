#ifndef DSV3_ENGINE_SAFETENSORS_H_
#define DSV3_ENGINE_SAFETENSORS_H_

// Memory-mapped safetensors reading: one file, or a sharded checkpoint described by
// `model.safetensors.index.json`. Validation is strict (the header must index the data
// buffer exactly: no overlaps, no holes, byte lengths equal to shape x dtype size); every
// error names the file and, where there is one, the tensor. Tensor data stays in the mapping
// (FP8 stays FP8); nothing is copied or converted here.

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/dtype.h"

namespace dsv3::engine {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  int64_t data_begin = 0;  // byte offset inside the data buffer (after the header)
  int64_t nbytes = 0;
  int64_t numel() const;
};

// Parses and validates a safetensors JSON header against a data buffer of `data_size` bytes.
// `label` (usually the file path) prefixes every error. Pure function: the fuzz target's entry.
absl::StatusOr<std::vector<TensorInfo>> ParseSafetensorsHeader(absl::string_view header_json,
                                                               uint64_t data_size,
                                                               absl::string_view label);

// A view of one tensor's bytes inside a mapped file.
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::string* file = nullptr;
  const void* data = nullptr;  // any alignment
  DType dtype() const { return info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t numel() const { return info->numel(); }
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(absl::string_view name) const;
  TensorView View(const TensorInfo& info) const;
  uint64_t size_bytes() const { return size_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  const unsigned char* data_ = nullptr;  // start of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

// All tensors of a checkpoint directory: `model.safetensors.index.json` when present (every
// shard it names is mapped, every tensor must be in the file the index says, and no shard may
// hold a tensor the index omits), else a single `model.safetensors`.
class Checkpoint {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool Has(absl::string_view name) const { return where_.count(name) > 0; }
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> Names() const;
  int64_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>, std::less<>> where_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_SAFETENSORS_H_
