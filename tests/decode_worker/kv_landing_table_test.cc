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

}  // namespace
}  // namespace dsv3::decode
