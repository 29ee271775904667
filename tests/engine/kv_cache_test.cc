// KvCachePool over a caller's buffer (CreateOver): size and alignment checks, rows at the
// layout's offsets inside the buffer, block accounting like Create, and the buffer left alone
// (contents and ownership) when the pool goes.

#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace dsv3::engine {
namespace {

KvCacheLayout SmallLayout() {
  KvCacheLayout l;
  l.num_layers = 3;
  l.num_blocks = 5;
  l.block_size = 4;
  l.kv_lora_rank = 8;
  l.qk_rope_head_dim = 4;
  return l;
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};

// A 4096-aligned buffer of at least `bytes`, filled with 0x5a.
std::unique_ptr<unsigned char, AlignedFree> Buffer(size_t bytes) {
  const size_t rounded = (bytes + 4095) / 4096 * 4096;
  auto* p = static_cast<unsigned char*>(std::aligned_alloc(4096, rounded));
  std::memset(p, 0x5a, rounded);
  return std::unique_ptr<unsigned char, AlignedFree>(p);
}

TEST(KvCachePoolTest, CreateOverUsesTheCallersBuffer) {
  const KvCacheLayout layout = SmallLayout();
  const size_t bytes = static_cast<size_t>(layout.total_bytes());
  auto buffer = Buffer(bytes + 256);
  {
    auto pool = KvCachePool::CreateOver(layout, buffer.get(), bytes);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ((*pool)->base(), buffer.get());
    EXPECT_EQ((*pool)->size_bytes(), layout.total_bytes());
    EXPECT_EQ((*pool)->layout(), layout);
    EXPECT_EQ((*pool)->free_blocks(), layout.num_blocks);
    EXPECT_EQ((*pool)->capacity_tokens(), layout.num_blocks * layout.block_size);

    // Rows land at BlockOffset(layer, block) + slot * row inside the buffer; the memory is
    // used as is (not cleared).
    KvSequence seq;
    ASSERT_TRUE((*pool)->Reserve(seq, 6).ok());  // 2 blocks of 4
    ASSERT_EQ(seq.blocks.size(), 2u);
    EXPECT_EQ((*pool)->free_blocks(), layout.num_blocks - 2);
    for (int64_t layer = 0; layer < layout.num_layers; ++layer) {
      for (int64_t pos = 0; pos < 6; ++pos) {
        float* row = (*pool)->Row(layer, seq, pos);
        const int64_t block = seq.blocks[static_cast<size_t>(pos / layout.block_size)];
        const int64_t offset =
            layout.BlockOffset(layer, block) + (pos % layout.block_size) * layout.row_floats() * 4;
        EXPECT_EQ(reinterpret_cast<unsigned char*>(row), buffer.get() + offset);
        unsigned char first;
        std::memcpy(&first, row, 1);
        EXPECT_EQ(first, 0x5a);
        for (int64_t i = 0; i < layout.row_floats(); ++i) {
          row[i] = static_cast<float>(layer * 1000 + pos * 10 + i);
        }
      }
    }
    // The whole pool fits, then no more.
    KvSequence big;
    EXPECT_TRUE((*pool)->Reserve(big, 12).ok());
    KvSequence none;
    EXPECT_EQ((*pool)->Reserve(none, 1).code(), absl::StatusCode::kResourceExhausted);
    (*pool)->Release(seq);
    (*pool)->Release(big);
    EXPECT_EQ((*pool)->free_blocks(), layout.num_blocks);
  }
  // The pool is gone; the buffer is still the caller's, with what the pool wrote, and the
  // bytes past the layout untouched.
  const float* rows = reinterpret_cast<const float*>(buffer.get());
  bool found = false;
  for (size_t i = 0; i < bytes / 4; ++i) {
    if (rows[i] == 2000.0f + 50.0f + 3.0f) found = true;  // layer 2, position 5, float 3
  }
  EXPECT_TRUE(found);
  for (size_t i = bytes; i < bytes + 256; ++i) ASSERT_EQ(buffer.get()[i], 0x5a) << i;
}

TEST(KvCachePoolTest, CreateOverAcceptsALargerBuffer) {
  const KvCacheLayout layout = SmallLayout();
  const size_t bytes = static_cast<size_t>(layout.total_bytes()) + 4096;
  auto buffer = Buffer(bytes);
  auto pool = KvCachePool::CreateOver(layout, buffer.get(), bytes);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ((*pool)->size_bytes(), layout.total_bytes());
}

TEST(KvCachePoolTest, CreateOverRejectsBadBuffers) {
  const KvCacheLayout layout = SmallLayout();
  const size_t bytes = static_cast<size_t>(layout.total_bytes());
  auto buffer = Buffer(bytes + 4096);

  auto small = KvCachePool::CreateOver(layout, buffer.get(), bytes - 1);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);

  auto null = KvCachePool::CreateOver(layout, nullptr, bytes);
  EXPECT_EQ(null.status().code(), absl::StatusCode::kInvalidArgument);

  for (size_t misalign : {size_t{4}, size_t{32}, KvCachePool::kMinAlignment / 2}) {
    auto misaligned = KvCachePool::CreateOver(layout, buffer.get() + misalign, bytes);
    EXPECT_EQ(misaligned.status().code(), absl::StatusCode::kInvalidArgument) << misalign;
  }
  auto aligned = KvCachePool::CreateOver(layout, buffer.get() + KvCachePool::kMinAlignment, bytes);
  EXPECT_TRUE(aligned.ok()) << aligned.status();

  KvCacheLayout bad = layout;
  bad.num_blocks = 0;
  auto bad_layout = KvCachePool::CreateOver(bad, buffer.get(), bytes);
  EXPECT_EQ(bad_layout.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCachePoolTest, CreateStillOwnsZeroedMemory) {
  const KvCacheLayout layout = SmallLayout();
  auto pool = KvCachePool::Create(layout);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const auto* p = static_cast<const unsigned char*>((*pool)->base());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
  for (int64_t i = 0; i < layout.total_bytes(); ++i) ASSERT_EQ(p[i], 0) << i;
}

}  // namespace
}  // namespace dsv3::engine
