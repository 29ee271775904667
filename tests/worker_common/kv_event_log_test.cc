// KvEventLog: a new stream gets every name (reset), later reports only what changed since
// that stream's previous one (the latest state of each name), streams are independent, and
// a stream that falls behind the bounded history gets a reset instead of a gap.

#include "worker_common/kv_event_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace dsv3::worker {
namespace {

engine::KvBlockEvents Stored(std::vector<uint64_t> names) {
  engine::KvBlockEvents e;
  e.stored = std::move(names);
  return e;
}

engine::KvBlockEvents Removed(std::vector<uint64_t> names) {
  engine::KvBlockEvents e;
  e.removed = std::move(names);
  return e;
}

std::vector<uint64_t> Sorted(const google::protobuf::RepeatedField<uint64_t>& names) {
  std::vector<uint64_t> out(names.begin(), names.end());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(KvEventLogTest, ANewStreamGetsEverythingThenDeltas) {
  KvEventLog log;
  log.Append(Stored({1, 2, 3}));
  log.Append(Removed({2}));
  uint64_t cursor = 0;
  v1::KvCacheEvents first;
  log.Collect(&cursor, &first);
  EXPECT_TRUE(first.reset());
  EXPECT_EQ(Sorted(first.stored()), (std::vector<uint64_t>{1, 3}));
  EXPECT_EQ(first.removed_size(), 0);

  v1::KvCacheEvents quiet;
  log.Collect(&cursor, &quiet);
  EXPECT_FALSE(quiet.reset());
  EXPECT_EQ(quiet.stored_size() + quiet.removed_size(), 0);

  log.Append(Stored({4}));
  log.Append(Removed({1}));
  log.Append(Stored({1}));  // evicted and stored again: stored is its latest state
  log.Append(Removed({3}));
  v1::KvCacheEvents delta;
  log.Collect(&cursor, &delta);
  EXPECT_FALSE(delta.reset());
  EXPECT_EQ(Sorted(delta.stored()), (std::vector<uint64_t>{1, 4}));
  EXPECT_EQ(Sorted(delta.removed()), (std::vector<uint64_t>{3}));
  EXPECT_EQ(log.size(), 2u);
}

TEST(KvEventLogTest, StreamsAreIndependent) {
  KvEventLog log;
  uint64_t a = 0, b = 0;
  v1::KvCacheEvents ignored;
  log.Collect(&a, &ignored);
  log.Append(Stored({7}));
  v1::KvCacheEvents to_a;
  log.Collect(&a, &to_a);
  EXPECT_EQ(Sorted(to_a.stored()), (std::vector<uint64_t>{7}));
  log.Append(Stored({8}));
  v1::KvCacheEvents to_b;
  log.Collect(&b, &to_b);
  EXPECT_TRUE(to_b.reset());
  EXPECT_EQ(Sorted(to_b.stored()), (std::vector<uint64_t>{7, 8}));
  v1::KvCacheEvents again_a;
  log.Collect(&a, &again_a);
  EXPECT_EQ(Sorted(again_a.stored()), (std::vector<uint64_t>{8}));
}

TEST(KvEventLogTest, AStreamBehindTheHistoryGetsAReset) {
  KvEventLog log(/*max_history=*/8);
  uint64_t cursor = 0;
  v1::KvCacheEvents ignored;
  log.Collect(&cursor, &ignored);
  for (uint64_t name = 100; name < 120; ++name) log.Append(Stored({name}));
  log.Append(Removed({100}));
  v1::KvCacheEvents late;
  log.Collect(&cursor, &late);
  EXPECT_TRUE(late.reset());
  EXPECT_EQ(late.stored_size(), 19);
  EXPECT_EQ(late.removed_size(), 0);
}

}  // namespace
}  // namespace dsv3::worker
