// Block names: chained (a block's name depends on every token before it), the same for a
// prefix as for the whole, different for another model or layout, and with MTP layers the
// token after a block is part of its name.

#include "common/kv_block_hash.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace dsv3 {
namespace {

KvCacheIdentity Identity(int mtp = 0) {
  KvCacheIdentity id;
  id.config_hash = "abc123";
  id.block_size = 4;
  id.num_layers = 2;
  id.num_mtp_layers = mtp;
  id.kv_lora_rank = 16;
  id.qk_rope_head_dim = 8;
  id.dtype = "f32";
  return id;
}

std::vector<int32_t> Tokens(int n, int first = 1) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(KvBlockHashTest, OnlyFullBlocksAreNamed) {
  EXPECT_EQ(NamedBlockCount(Identity(), 3), 0);
  EXPECT_EQ(NamedBlockCount(Identity(), 4), 1);
  EXPECT_EQ(NamedBlockCount(Identity(), 9), 2);
  // With MTP a block needs the token after it.
  EXPECT_EQ(NamedBlockCount(Identity(1), 4), 0);
  EXPECT_EQ(NamedBlockCount(Identity(1), 5), 1);
  EXPECT_EQ(KvBlockHashes(Identity(), Tokens(11)).size(), 2u);
}

TEST(KvBlockHashTest, APrefixHasThePrefixOfTheNames) {
  const auto whole = KvBlockHashes(Identity(), Tokens(16));
  const auto part = KvBlockHashes(Identity(), Tokens(9));
  ASSERT_EQ(whole.size(), 4u);
  ASSERT_EQ(part.size(), 2u);
  EXPECT_EQ(part[0], whole[0]);
  EXPECT_EQ(part[1], whole[1]);
  EXPECT_NE(whole[0], whole[1]);
}

TEST(KvBlockHashTest, ANameDependsOnEveryEarlierToken) {
  auto tokens = Tokens(12);
  const auto before = KvBlockHashes(Identity(), tokens);
  tokens[1] = 999;  // in block 0
  const auto after = KvBlockHashes(Identity(), tokens);
  for (size_t k = 0; k < before.size(); ++k) EXPECT_NE(before[k], after[k]) << k;
  tokens = Tokens(12);
  tokens[9] = 999;  // in block 2 only
  const auto late = KvBlockHashes(Identity(), tokens);
  EXPECT_EQ(late[0], before[0]);
  EXPECT_EQ(late[1], before[1]);
  EXPECT_NE(late[2], before[2]);
}

TEST(KvBlockHashTest, AnotherModelOrLayoutNeverShares) {
  const auto base = KvBlockHashes(Identity(), Tokens(8));
  KvCacheIdentity other = Identity();
  other.config_hash = "abc124";
  EXPECT_NE(KvBlockHashes(other, Tokens(8))[0], base[0]);
  other = Identity();
  other.kv_lora_rank = 32;
  EXPECT_NE(KvBlockHashes(other, Tokens(8))[0], base[0]);
  other = Identity();
  other.dtype = "bf16";
  EXPECT_NE(KvBlockHashes(other, Tokens(8))[0], base[0]);
  EXPECT_NE(KvBlockHashes(Identity(1), Tokens(8))[0], base[0]);
}

TEST(KvBlockHashTest, WithMtpTheNextTokenIsPartOfTheName) {
  auto tokens = Tokens(9);
  const auto a = KvBlockHashes(Identity(1), tokens);
  tokens[4] = 999;  // first token of block 1: the MTP row of block 0's last slot saw it
  const auto b = KvBlockHashes(Identity(1), tokens);
  EXPECT_NE(a[0], b[0]);
}

TEST(KvBlockHashTest, NamesAreFixedAcrossProcessesAndBuilds) {
  // The router and every worker compute these independently: a change here is a change of
  // the wire contract (old and new processes would stop sharing blocks).
  const auto names = KvBlockHashes(Identity(), Tokens(4));
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], 0x65ea98cdcddffc81ull);
}

}  // namespace
}  // namespace dsv3
