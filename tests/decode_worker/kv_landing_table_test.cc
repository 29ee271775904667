#include "decode_worker/kv_landing_table.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace dsv3::decode {
namespace {

// A slot lands only when the word at its offset holds its own tag, as a prefill worker's
// put leaves it; a slot is cleared when claimed, so a tag left by its previous lease does
// not count; slots go back to the table with their lease.
TEST(KvLandingTableTest, ASlotLandsOnlyWithItsOwnTag) {
  std::vector<uint64_t> memory(4, 0);
  KvLandingTable table(memory.data(), 4);
  auto a = table.Claim(0x1111);
  auto b = table.Claim(0x2222);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->index(), b->index());
  EXPECT_FALSE(table.Landed(*a));
  memory[static_cast<size_t>(b->index())] = 0x1111;  // a's tag in b's slot
  EXPECT_FALSE(table.Landed(*b));
  std::memcpy(reinterpret_cast<char*>(memory.data()) + a->offset_bytes(), "\x11\x11\0\0\0\0\0\0",
              8);  // the little-endian tag, as the wire puts it
  EXPECT_TRUE(table.Landed(*a));
  EXPECT_FALSE(table.Landed(*b));

  const int a_index = a->index();
  *a = KvLandingTable::Slot();  // the lease ends: its slot goes back
  EXPECT_EQ(table.free_slots(), 3);
  auto c = table.Claim(0x3333);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->index(), a_index);  // reused, and cleared
  EXPECT_EQ(memory[static_cast<size_t>(a_index)], 0u);
  EXPECT_FALSE(table.Landed(*c));
  // A slot of another table (or none) never lands here.
  EXPECT_FALSE(table.Landed(KvLandingTable::Slot()));
  EXPECT_FALSE(table.Claim(0).ok());
}

TEST(KvLandingTableTest, AFullTableRefusesWithResourceExhausted) {
  std::vector<uint64_t> memory(2, 0);
  KvLandingTable table(memory.data(), 2);
  std::vector<KvLandingTable::Slot> held;
  for (int i = 0; i < 2; ++i) held.push_back(*table.Claim(7 + i));
  auto refused = table.Claim(9);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  held.pop_back();
  EXPECT_TRUE(table.Claim(9).ok());
  EXPECT_EQ(table.free_slots(), 1);  // the claimed temporary went back too
}

// Speculating, a slot also holds the last prompt position's hidden state: taken only once
// the slot landed and only when the mark before it is this lease's tag (a hidden state a
// previous lease's prefill put, or none, is not this one's).
TEST(KvLandingTableTest, AHiddenStateCountsOnlyWithThisLeasesMark) {
  constexpr int64_t kHidden = 40;
  const int64_t slot_bytes = KvLandingTable::SlotBytes(kHidden);
  EXPECT_EQ(slot_bytes, 128);
  EXPECT_EQ(KvLandingTable::SlotBytes(0), 8);
  std::vector<uint64_t> memory(static_cast<size_t>(2 * slot_bytes / 8), 0);
  auto* bytes = reinterpret_cast<char*>(memory.data());
  KvLandingTable table(memory.data(), 2, kHidden);
  EXPECT_EQ(table.slot_bytes(), 128);
  auto a = table.Claim(0x1111);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->offset_bytes(), a->index() * 128);
  char* slot = bytes + a->offset_bytes();
  const uint64_t tag = 0x1111, old_tag = 0x2222;
  std::memset(slot + KvLandingTable::kHiddenOffset, 7, kHidden);
  std::memcpy(slot + KvLandingTable::kHiddenMarkOffset, &old_tag, 8);
  EXPECT_TRUE(table.LandedHidden(*a).empty());  // not landed
  std::memcpy(slot, &tag, 8);
  EXPECT_TRUE(table.Landed(*a));
  EXPECT_TRUE(table.LandedHidden(*a).empty());  // landed, with an earlier lease's state
  std::memcpy(slot + KvLandingTable::kHiddenMarkOffset, &tag, 8);
  std::span<const std::byte> hidden = table.LandedHidden(*a);
  ASSERT_EQ(hidden.size(), static_cast<size_t>(kHidden));
  EXPECT_EQ(reinterpret_cast<const char*>(hidden.data()), slot + KvLandingTable::kHiddenOffset);
  // Reclaimed: tag and mark cleared.
  const int index = a->index();
  *a = KvLandingTable::Slot();
  auto b = table.Claim(0x1111);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(b->index(), index);
  EXPECT_FALSE(table.Landed(*b));
  uint64_t mark = 1;
  std::memcpy(&mark, slot + KvLandingTable::kHiddenMarkOffset, 8);
  EXPECT_EQ(mark, 0u);
  // A table without hidden states has none to give.
  std::vector<uint64_t> small(2, 0);
  KvLandingTable plain(small.data(), 2);
  auto c = plain.Claim(5);
  small[static_cast<size_t>(c->index())] = 5;
  EXPECT_TRUE(plain.Landed(*c));
  EXPECT_TRUE(plain.LandedHidden(*c).empty());
}

}  // namespace
}  // namespace dsv3::decode
