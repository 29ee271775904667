#include "transport/kv_transfer/kv_pool_layout.h"

#include "absl/strings/str_cat.h"

namespace dsv3::transport {

int64_t KvPoolLayout::SpanBytes() const {
  if (num_layers <= 0 || num_blocks <= 0) return 0;
  return RowOffset(num_layers - 1, num_blocks - 1, block_size - 1) + row_bytes;
}

absl::Status KvPoolLayout::Validate() const {
  if (num_layers <= 0 || block_size <= 0 || num_blocks <= 0 || row_bytes <= 0) {
    return absl::InvalidArgumentError("KV layout: sizes must be positive: " + DebugString());
  }
  if (block_stride_bytes < block_size * row_bytes) {
    return absl::InvalidArgumentError("KV layout: blocks overlap: " + DebugString());
  }
  if (num_layers > 1 && layer_stride_bytes < num_blocks * block_stride_bytes) {
    return absl::InvalidArgumentError("KV layout: layers overlap: " + DebugString());
  }
  return absl::OkStatus();
}

std::string KvPoolLayout::DebugString() const {
  return absl::StrCat("{layers ", num_layers, ", block_size ", block_size, ", blocks ", num_blocks,
                      ", row ", row_bytes, " B, block stride ", block_stride_bytes,
                      " B, layer stride ", layer_stride_bytes, " B}");
}

}  // namespace dsv3::transport
