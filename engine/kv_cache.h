#ifndef DSV3_ENGINE_KV_CACHE_H_
#define DSV3_ENGINE_KV_CACHE_H_

// The paged latent KV cache of MLA.
//
// Layout (KvCacheLayout; what the decode worker registers with UCX and a prefill worker writes
// into remotely): one contiguous allocation of
//   num_layers x num_blocks x block_size x row_floats   float32 (little endian)
// indexed [layer][block][slot][row], where
//   row_floats = kv_lora_rank + qk_rope_head_dim
//   row        = [ c_kv (kv_lora_rank, after kv_a_layernorm) | k_pe (qk_rope_head_dim, roped) ]
// so each (layer, block) is one contiguous byte range of block_bytes() at
// BlockOffset(layer, block) = (layer * num_blocks + block) * block_bytes().
// Layers 0..num_hidden_layers-1 are the main model's; with MTP, layer num_hidden_layers + k
// holds MTP layer k's own cache. A sequence uses the same block ids in every layer (one block
// table per sequence); token at position p lives in block blocks[p / block_size], slot
// p % block_size. Two pools can exchange KV only when their layouts compare equal.
//
// The memory is either the pool's own mmap (Create) or a caller's buffer (CreateOver: e.g. one
// that a transport allocated so that peers can write into it one-sided); the pool frees only
// its own.
//
// Blocks come from a KvBlockAllocator (kv_block_allocator.h): full blocks whose KV is
// complete can be named by their content and kept after their sequence ends, so that a
// later sequence with the same prefix takes them instead of computing them again.
//
// The allocator is not thread-safe: one owner (a scheduler thread) allocates and frees.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kv_block_allocator.h"
#include "engine/model_config.h"

namespace dsv3::engine {

struct KvCacheLayout {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 64;
  int64_t kv_lora_rank = 0;
  int64_t qk_rope_head_dim = 0;

  int64_t row_floats() const { return kv_lora_rank + qk_rope_head_dim; }
  int64_t block_bytes() const { return block_size * row_floats() * 4; }
  int64_t layer_bytes() const { return num_blocks * block_bytes(); }
  int64_t total_bytes() const { return num_layers * layer_bytes(); }
  int64_t BlockOffset(int64_t layer, int64_t block) const {
    return (layer * num_blocks + block) * block_bytes();
  }
  std::string ToString() const;
  bool operator==(const KvCacheLayout&) const = default;

  // Main layers plus (with `include_mtp`) the MTP layers.
  static KvCacheLayout ForModel(const ModelConfig& config, int64_t num_blocks,
                                int64_t block_size = 64, bool include_mtp = true);
};

// One sequence's view of the pool: its block table and how many positions hold valid KV in
// the main layers and in the MTP layers.
struct KvSequence {
  std::vector<int32_t> blocks;
  int64_t num_tokens = 0;
  int64_t mtp_num_tokens = 0;
};

class KvCachePool {
 public:
  // The least alignment CreateOver accepts for a caller's buffer (a cache line).
  static constexpr size_t kMinAlignment = 64;

  // Allocates (and, on destruction, frees) its own zeroed, page-aligned memory.
  static absl::StatusOr<std::unique_ptr<KvCachePool>> Create(const KvCacheLayout& layout);
  // Over the caller's [base, base + bytes): bytes must be at least layout.total_bytes() and
  // base aligned to kMinAlignment. The memory is used as is (not cleared) and must outlive
  // the pool, which never frees it.
  static absl::StatusOr<std::unique_ptr<KvCachePool>> CreateOver(const KvCacheLayout& layout,
                                                                 void* base, size_t bytes);
  ~KvCachePool();
  KvCachePool(const KvCachePool&) = delete;
  KvCachePool& operator=(const KvCachePool&) = delete;

  const KvCacheLayout& layout() const { return layout_; }
  void* base() { return base_; }
  int64_t size_bytes() const { return layout_.total_bytes(); }
  // Blocks an allocation can use: free ones, and cached ones (evicted when needed).
  int64_t free_blocks() const { return blocks_->available_blocks(); }
  KvBlockAllocator& blocks() { return *blocks_; }
  const KvBlockAllocator& blocks() const { return *blocks_; }
  int64_t capacity_tokens() const { return layout_.num_blocks * layout_.block_size; }

  // Row of `layer` for the token at `position` of `seq` (its block must be reserved).
  float* Row(int64_t layer, const KvSequence& seq, int64_t position);
  const float* Row(int64_t layer, const KvSequence& seq, int64_t position) const;

  // Grows `seq`'s block table to cover `num_positions` positions; ResourceExhausted (and no
  // change) when the pool lacks the blocks.
  absl::Status Reserve(KvSequence& seq, int64_t num_positions);
  // Returns all of `seq`'s blocks to the pool (named ones stay cached) and resets it.
  void Release(KvSequence& seq);
  // Starts an empty `seq` with the cached blocks of the longest prefix of `names` (one per
  // full block, kv_block_hash.h); their positions count as computed in the main and MTP
  // layers. Returns the tokens matched.
  int64_t TakeCachedPrefix(std::span<const uint64_t> names, KvSequence& seq);
  // Names `seq`'s first names.size() blocks (their KV complete) so that they stay cached
  // when released.
  void NameBlocks(const KvSequence& seq, std::span<const uint64_t> names);

 private:
  explicit KvCachePool(const KvCacheLayout& layout) : layout_(layout) {}
  static absl::Status CheckLayout(const KvCacheLayout& layout);
  KvCacheLayout layout_;
  float* base_ = nullptr;
  bool owns_memory_ = false;  // base_ is this pool's mmap
  std::unique_ptr<KvBlockAllocator> blocks_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KV_CACHE_H_
