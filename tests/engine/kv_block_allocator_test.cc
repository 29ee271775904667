// KvBlockAllocator: references, the content-addressed cache (Match, Name), LRU eviction
// that trims chains from their ends, the cached-block bound, events, and the invariant
// free + cached + referenced == num_blocks under a random mix of operations.

#include "engine/kv_block_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace dsv3::engine {
namespace {

void ExpectBalanced(const KvBlockAllocator& a) {
  EXPECT_EQ(a.free_blocks() + a.cached_blocks() + a.referenced_blocks(), a.num_blocks());
  EXPECT_GE(a.referenced_blocks(), 0);
}

TEST(KvBlockAllocatorTest, UnnamedBlocksGoBackToTheFreeList) {
  KvBlockAllocator a(4);
  std::vector<int32_t> seq;
  ASSERT_TRUE(a.Allocate(3, seq).ok());
  EXPECT_EQ(a.free_blocks(), 1);
  EXPECT_EQ(a.referenced_blocks(), 3);
  EXPECT_EQ(a.Allocate(2, seq).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.size(), 3u) << "a failed allocation changes nothing";
  a.Release(seq);
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_EQ(a.cached_blocks(), 0);
  ExpectBalanced(a);
}

TEST(KvBlockAllocatorTest, NamedBlocksStayCachedAndMatchByPrefix) {
  KvBlockAllocator a(8);
  std::vector<int32_t> first;
  ASSERT_TRUE(a.Allocate(3, first).ok());
  a.Name(first[0], 100);
  a.Name(first[1], 101);  // first[2] is the partial tail: never named
  a.Release(first);
  EXPECT_EQ(a.cached_blocks(), 2);
  EXPECT_EQ(a.free_blocks(), 6);

  const std::vector<uint64_t> names = {100, 101, 102};
  EXPECT_EQ(a.CountMatching(names), 2);
  EXPECT_EQ(a.CountMatching(std::vector<uint64_t>{101}), 1);
  EXPECT_EQ(a.CountMatching(std::vector<uint64_t>{999, 100}), 0) << "a prefix, from the root";
  std::vector<int32_t> second;
  EXPECT_EQ(a.Match(names, second), 2);
  EXPECT_EQ(second, (std::vector<int32_t>{first[0], first[1]}));
  EXPECT_EQ(a.cached_blocks(), 0);
  EXPECT_EQ(a.referenced_blocks(), 2);
  // Two sequences share the blocks; they are cached again only when both let go.
  std::vector<int32_t> third;
  EXPECT_EQ(a.Match(names, third), 2);
  a.Release(second);
  EXPECT_EQ(a.cached_blocks(), 0);
  a.Release(third);
  EXPECT_EQ(a.cached_blocks(), 2);
  ExpectBalanced(a);
}

TEST(KvBlockAllocatorTest, ANameHeldByAnotherBlockIsNotTakenTwice) {
  KvBlockAllocator a(4);
  std::vector<int32_t> x, y;
  ASSERT_TRUE(a.Allocate(1, x).ok());
  ASSERT_TRUE(a.Allocate(1, y).ok());
  a.Name(x[0], 7);
  a.Name(y[0], 7);  // computed twice concurrently: the second copy stays unnamed
  a.Release(y);
  EXPECT_EQ(a.free_blocks(), 3);
  a.Release(x);
  EXPECT_EQ(a.cached_blocks(), 1);
  ExpectBalanced(a);
}

TEST(KvBlockAllocatorTest, EvictionTakesTheLeastRecentlyUsedChainEndFirst) {
  KvBlockAllocator a(4);
  std::vector<int32_t> chain;
  ASSERT_TRUE(a.Allocate(3, chain).ok());
  for (int i = 0; i < 3; ++i) a.Name(chain[i], 10 + i);
  a.Release(chain);  // tail first: 12 is the least recently used
  (void)a.TakeEvents();
  std::vector<int32_t> fresh;
  ASSERT_TRUE(a.Allocate(2, fresh).ok());  // 1 free + 1 evicted
  EXPECT_EQ(a.evictions(), 1);
  const std::vector<uint64_t> names = {10, 11, 12};
  EXPECT_EQ(a.CountMatching(names), 2) << "the chain lost its end, not its root";
  KvBlockEvents events = a.TakeEvents();
  EXPECT_EQ(events.removed, (std::vector<uint64_t>{12}));
  EXPECT_TRUE(events.stored.empty());
  // Everything held is used: nothing more can be allocated than the cache holds.
  EXPECT_EQ(a.available_blocks(), 2);
  EXPECT_EQ(a.Allocate(3, fresh).code(), absl::StatusCode::kResourceExhausted);
  ExpectBalanced(a);
}

TEST(KvBlockAllocatorTest, ReferencedBlocksAreNeverEvicted) {
  KvBlockAllocator a(3);
  std::vector<int32_t> held;
  ASSERT_TRUE(a.Allocate(2, held).ok());
  a.Name(held[0], 1);
  a.Name(held[1], 2);
  std::vector<int32_t> more;
  ASSERT_TRUE(a.Allocate(1, more).ok());
  EXPECT_EQ(a.Allocate(1, more).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.evictions(), 0);
  EXPECT_EQ(a.CountMatching(std::vector<uint64_t>{1, 2}), 2);
}

TEST(KvBlockAllocatorTest, TheCachedBoundEvictsBeyondIt) {
  KvBlockAllocator a(8);
  a.set_max_cached(2);
  std::vector<int32_t> seq;
  ASSERT_TRUE(a.Allocate(4, seq).ok());
  for (int i = 0; i < 4; ++i) a.Name(seq[i], 50 + i);
  a.Release(seq);
  EXPECT_EQ(a.cached_blocks(), 2);
  EXPECT_EQ(a.CountMatching(std::vector<uint64_t>{50, 51, 52, 53}), 2);
  ExpectBalanced(a);
}

TEST(KvBlockAllocatorTest, CachingOffNamesNothing) {
  KvBlockAllocator a(4);
  a.set_caching(false);
  std::vector<int32_t> seq;
  ASSERT_TRUE(a.Allocate(2, seq).ok());
  a.Name(seq[0], 5);
  a.Release(seq);
  EXPECT_EQ(a.cached_blocks(), 0);
  EXPECT_EQ(a.free_blocks(), 4);
  EXPECT_TRUE(a.TakeEvents().stored.empty());
}

TEST(KvBlockAllocatorTest, EventsGiveEachNameItsLatestState) {
  KvBlockAllocator a(1);
  std::vector<int32_t> seq;
  ASSERT_TRUE(a.Allocate(1, seq).ok());
  a.Name(seq[0], 1);
  a.Release(seq);
  seq.clear();
  ASSERT_TRUE(a.Allocate(1, seq).ok());  // evicts 1
  a.Name(seq[0], 2);
  a.Release(seq);
  seq.clear();
  ASSERT_TRUE(a.Allocate(1, seq).ok());  // evicts 2
  a.Name(seq[0], 1);                     // 1 again
  KvBlockEvents events = a.TakeEvents();
  EXPECT_EQ(events.stored, (std::vector<uint64_t>{1}));
  EXPECT_EQ(events.removed, (std::vector<uint64_t>{2}));
  EXPECT_EQ(a.Names(), (std::vector<uint64_t>{1}));
}

// A random mix of sequences that allocate, match, name and release: the states always add
// up, a referenced block is never handed out again, and a named block keeps its name until
// it is evicted.
TEST(KvBlockAllocatorTest, RandomMixKeepsTheBooksBalanced) {
  std::mt19937 rng(7);
  KvBlockAllocator a(32);
  a.set_max_cached(20);
  struct Seq {
    std::vector<int32_t> blocks;
    std::vector<uint64_t> names;
  };
  std::vector<Seq> live;
  // Names come from a few prefixes so that sequences share.
  auto names_of = [](int prefix, int n) {
    std::vector<uint64_t> out;
    for (int i = 0; i < n; ++i) out.push_back(static_cast<uint64_t>(prefix) * 1000 + i);
    return out;
  };
  for (int step = 0; step < 5000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      Seq s;
      s.names = names_of(static_cast<int>(rng() % 4), 1 + static_cast<int>(rng() % 5));
      a.Match(s.names, s.blocks);
      const int64_t extra = 1 + static_cast<int64_t>(rng() % 3);
      if (!a.Allocate(extra, s.blocks).ok()) {
        a.Release(s.blocks);
        continue;
      }
      // Name the full blocks (all but the last).
      for (size_t i = 0; i + 1 < s.blocks.size() && i < s.names.size(); ++i) {
        a.Name(s.blocks[i], s.names[i]);
      }
      live.push_back(std::move(s));
    } else {
      const size_t i = rng() % live.size();
      a.Release(live[i].blocks);
      live.erase(live.begin() + static_cast<long>(i));
    }
    ExpectBalanced(a);
    ASSERT_LE(a.cached_blocks(), 20);
    std::map<int32_t, int> refs;
    for (const Seq& s : live) {
      for (int32_t b : s.blocks) ++refs[b];
    }
    ASSERT_EQ(static_cast<int64_t>(refs.size()), a.referenced_blocks()) << "step " << step;
  }
  for (Seq& s : live) a.Release(s.blocks);
  EXPECT_EQ(a.referenced_blocks(), 0);
  ExpectBalanced(a);
}

}  // namespace
}  // namespace dsv3::engine
