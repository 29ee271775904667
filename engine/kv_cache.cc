#include "engine/kv_cache.h"

#include <sys/mman.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::engine {

std::string KvCacheLayout::ToString() const {
  return absl::StrCat("layers=", num_layers, " blocks=", num_blocks, " block_size=", block_size,
                      " row=[c_kv ", kv_lora_rank, " | k_pe ", qk_rope_head_dim, "] f32");
}

KvCacheLayout KvCacheLayout::ForModel(const ModelConfig& config, int64_t num_blocks,
                                      int64_t block_size, bool include_mtp) {
  KvCacheLayout l;
  l.num_layers = config.num_hidden_layers + (include_mtp ? config.num_nextn_predict_layers : 0);
  l.num_blocks = num_blocks;
  l.block_size = block_size;
  l.kv_lora_rank = config.kv_lora_rank;
  l.qk_rope_head_dim = config.qk_rope_head_dim;
  return l;
}

absl::Status KvCachePool::CheckLayout(const KvCacheLayout& layout) {
  if (layout.num_layers <= 0 || layout.num_blocks <= 0 || layout.block_size <= 0 ||
      layout.row_floats() <= 0 || layout.num_blocks > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("bad KV cache layout: ", layout.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<KvCachePool>> KvCachePool::Create(const KvCacheLayout& layout) {
  DSV3_RETURN_IF_ERROR(CheckLayout(layout));
  std::unique_ptr<KvCachePool> pool(new KvCachePool(layout));
  // Populated now: the pool is resident from the start (a worker's memory does not creep up
  // as blocks are first used, a pool the machine cannot hold fails here, and no first-touch
  // page fault lands on a request's path).
  void* p = ::mmap(nullptr, static_cast<size_t>(layout.total_bytes()), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", layout.total_bytes(), " bytes of KV cache"));
  }
  pool->base_ = static_cast<float*>(p);
  pool->owns_memory_ = true;
  pool->blocks_ = std::make_unique<KvBlockAllocator>(layout.num_blocks);
  return pool;
}

absl::StatusOr<std::unique_ptr<KvCachePool>> KvCachePool::CreateOver(const KvCacheLayout& layout,
                                                                     void* base, size_t bytes) {
  DSV3_RETURN_IF_ERROR(CheckLayout(layout));
  if (base == nullptr) {
    return absl::InvalidArgumentError("KV cache pool over a null buffer");
  }
  if (reinterpret_cast<uintptr_t>(base) % kMinAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache pool buffer at ",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(base)),
                                                   " is not aligned to ", kMinAlignment, " bytes"));
  }
  if (bytes < static_cast<uint64_t>(layout.total_bytes())) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache pool buffer of ", bytes, " bytes is smaller than the layout's ",
                     layout.total_bytes(), " (", layout.ToString(), ")"));
  }
  std::unique_ptr<KvCachePool> pool(new KvCachePool(layout));
  pool->base_ = static_cast<float*>(base);
  pool->owns_memory_ = false;
  pool->blocks_ = std::make_unique<KvBlockAllocator>(layout.num_blocks);
  return pool;
}

KvCachePool::~KvCachePool() {
  if (owns_memory_ && base_ != nullptr) {
    ::munmap(base_, static_cast<size_t>(layout_.total_bytes()));
  }
}

float* KvCachePool::Row(int64_t layer, const KvSequence& seq, int64_t position) {
  const int64_t block = seq.blocks[static_cast<size_t>(position / layout_.block_size)];
  const int64_t slot = position % layout_.block_size;
  return base_ + (layer * layout_.num_blocks + block) * layout_.block_size * layout_.row_floats() +
         slot * layout_.row_floats();
}

const float* KvCachePool::Row(int64_t layer, const KvSequence& seq, int64_t position) const {
  return const_cast<KvCachePool*>(this)->Row(layer, seq, position);
}

absl::Status KvCachePool::Reserve(KvSequence& seq, int64_t num_positions) {
  const int64_t needed = (num_positions + layout_.block_size - 1) / layout_.block_size;
  const int64_t have = static_cast<int64_t>(seq.blocks.size());
  if (needed <= have) return absl::OkStatus();
  if (needed - have > free_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache pool full: ", num_positions, " positions need ", needed - have,
                     " more blocks of ", layout_.block_size, ", ", free_blocks(), " free of ",
                     layout_.num_blocks));
  }
  return blocks_->Allocate(needed - have, seq.blocks);
}

void KvCachePool::Release(KvSequence& seq) {
  blocks_->Release(seq.blocks);
  seq = KvSequence();
}

int64_t KvCachePool::TakeCachedPrefix(std::span<const uint64_t> names, KvSequence& seq) {
  if (!seq.blocks.empty()) return 0;
  const int64_t matched = blocks_->Match(names, seq.blocks);
  seq.num_tokens = matched * layout_.block_size;
  seq.mtp_num_tokens = seq.num_tokens;
  return seq.num_tokens;
}

void KvCachePool::NameBlocks(const KvSequence& seq, std::span<const uint64_t> names) {
  const size_t n = std::min(names.size(), seq.blocks.size());
  for (size_t i = 0; i < n; ++i) blocks_->Name(seq.blocks[i], names[i]);
}

}  // namespace dsv3::engine
