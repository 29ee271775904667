#ifndef DSV3_TRANSPORT_KV_TRANSFER_KV_POOL_LAYOUT_H_
#define DSV3_TRANSPORT_KV_TRANSFER_KV_POOL_LAYOUT_H_

// Where a token's latent KV row lives in a paged pool, as both ends of a KV transfer must
// agree on it (proto: dsv3.v1.KvLayout):
//
//   row(layer, block, r) = base + layer * layer_stride_bytes + block * block_stride_bytes
//                               + r * row_bytes
//
// A (layer, block) is one contiguous range of block_size * row_bytes bytes, so the rows of
// consecutive tokens in one block go in one put.

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace dsv3::transport {

struct KvPoolLayout {
  int num_layers = 0;  // main layers + MTP layers
  int block_size = 0;  // tokens per block
  int num_blocks = 0;  // blocks per layer
  int64_t row_bytes = 0;
  int64_t block_stride_bytes = 0;
  int64_t layer_stride_bytes = 0;

  int64_t RowOffset(int layer, int block, int row) const {
    return layer * layer_stride_bytes + block * block_stride_bytes + row * row_bytes;
  }
  // Bytes from the first to one past the last byte of the pool.
  int64_t SpanBytes() const;
  // Blocks must not overlap and rows must fit their block.
  absl::Status Validate() const;
  bool operator==(const KvPoolLayout& other) const = default;
  std::string DebugString() const;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_KV_TRANSFER_KV_POOL_LAYOUT_H_
