// KvIndex: a worker's names follow its events (reset replaces them), overlap counts only a
// chain's leading names, and a forgotten worker overlaps nothing.

#include "router/kv_index.h"

#include <gtest/gtest.h>

#include <vector>

namespace dsv3::router {
namespace {

v1::KvCacheEvents Events(bool reset, std::vector<uint64_t> stored,
                         std::vector<uint64_t> removed = {}) {
  v1::KvCacheEvents e;
  e.set_reset(reset);
  for (uint64_t n : stored) e.add_stored(n);
  for (uint64_t n : removed) e.add_removed(n);
  return e;
}

TEST(KvIndexTest, OverlapIsTheLeadingNamesAWorkerHolds) {
  KvIndex index;
  index.Apply("p0", Events(true, {1, 2, 3}));
  index.Apply("p1", Events(true, {1, 3}));
  const std::vector<uint64_t> prompt = {1, 2, 3, 4};
  EXPECT_EQ(index.Overlap("p0", prompt), 3);
  EXPECT_EQ(index.Overlap("p1", prompt), 1) << "3 without 2 is not a prefix";
  EXPECT_EQ(index.Overlap("p2", prompt), 0);
  index.Apply("p0", Events(false, {4}, {2}));
  EXPECT_EQ(index.Overlap("p0", prompt), 1);
  index.Apply("p0", Events(true, {1, 2}));  // a new stream: everything it holds
  EXPECT_EQ(index.Overlap("p0", prompt), 2);
  EXPECT_EQ(index.size("p0"), 2u);
  index.Forget("p0");
  EXPECT_EQ(index.Overlap("p0", prompt), 0);
  EXPECT_EQ(index.size("p0"), 0u);
}

}  // namespace
}  // namespace dsv3::router
