// Real UCX transfers between two UCX workers (two contexts: the "decode" side registers a
// paged pool, the "prefill" side writes rows into reserved blocks), over tcp and over
// shared memory; the bytes that land must equal the rows written, and nothing else moves.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "transport/kv_transfer/kv_writer.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_memory_region.h"

namespace dsv3::transport {
namespace {

using ::testing::HasSubstr;

KvPoolLayout TestLayout() {
  KvPoolLayout l;
  l.num_layers = 3;
  l.block_size = 4;
  l.num_blocks = 8;
  l.row_bytes = 576 * 4;  // kv_lora_rank 512 + rope 64, float32
  l.block_stride_bytes = l.block_size * l.row_bytes;
  l.layer_stride_bytes = l.num_blocks * l.block_stride_bytes;
  return l;
}

// "tcp": sockets on loopback. "posix,cma,self" / "sysv,cma,self": shared memory, which
// UCX 1.13 only uses for RMA without peer error handling.
UcxOptions OptionsFor(const std::string& transports) {
  UcxOptions o;
  o.transports = transports;
  o.peer_error_handling = transports.find("tcp") != std::string::npos;
  if (transports.find("tcp") != std::string::npos) o.net_devices = "lo";
  return o;
}

class KvTransferTest : public ::testing::TestWithParam<std::string> {
 protected:
  // The decode pool registered from user memory (as the decode worker does), or allocated
  // by UCX (UcxMemoryRegion::Allocate: one-sided over shared memory).
  void RowsLandInTheirBlocksByteForByte(bool ucx_allocated);
};

TEST_P(KvTransferTest, RowsLandInTheirBlocksByteForByte) {
  RowsLandInTheirBlocksByteForByte(/*ucx_allocated=*/false);
}

TEST_P(KvTransferTest, RowsLandInAUcxAllocatedPool) {
  RowsLandInTheirBlocksByteForByte(/*ucx_allocated=*/true);
}

void KvTransferTest::RowsLandInTheirBlocksByteForByte(bool ucx_allocated) {
  auto decode = UcxContext::Create(OptionsFor(GetParam()));
  ASSERT_TRUE(decode.ok()) << decode.status();
  auto prefill = UcxContext::Create(OptionsFor(GetParam()));
  ASSERT_TRUE(prefill.ok()) << prefill.status();

  const KvPoolLayout layout = TestLayout();
  std::vector<uint8_t> user_pool(ucx_allocated ? 0 : layout.SpanBytes(), 0xAB);
  auto region = ucx_allocated
                    ? UcxMemoryRegion::Allocate(**decode, layout.SpanBytes())
                    : UcxMemoryRegion::Register(**decode, user_pool.data(), user_pool.size());
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_EQ((*region)->length(), static_cast<size_t>(layout.SpanBytes()));
  std::span<uint8_t> pool(static_cast<uint8_t*>((*region)->base()), (*region)->length());
  if (ucx_allocated) {
    EXPECT_TRUE(std::all_of(pool.begin(), pool.end(), [](uint8_t b) { return b == 0; }));
    std::fill(pool.begin(), pool.end(), 0xAB);
  }

  KvWriteTarget target;
  target.worker_address = (*decode)->worker_address();
  target.packed_rkey = (*region)->packed_rkey();
  target.base_address = (*region)->base_address();
  target.layout = layout;
  target.block_ids = {5, 2, 7};  // 12 token slots, out of order on purpose
  // The lease's landing slot: the 4th word of a table the decode side allocated.
  auto landing = UcxMemoryRegion::Allocate(**decode, 8 * 8);
  ASSERT_TRUE(landing.ok()) << landing.status();
  target.landing_rkey = (*landing)->packed_rkey();
  target.landing_address = (*landing)->base_address() + 3 * 8;
  target.landing_tag = 0x0123456789abcdefULL;

  const int tokens = 10;  // the last block is partly used
  std::mt19937 rng(7);
  std::vector<std::vector<uint8_t>> rows(layout.num_layers,
                                         std::vector<uint8_t>(tokens * layout.row_bytes));
  for (auto& layer_rows : rows) {
    for (auto& b : layer_rows) b = static_cast<uint8_t>(rng());
  }

  KvWriter writer(**prefill, layout);
  auto transfer = writer.Begin(target);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  for (int layer = 0; layer < layout.num_layers; ++layer) {
    // Two chunks per layer (3 + 7 tokens), as a chunked prefill writes them.
    ASSERT_TRUE((*transfer)->PutLayerRows(layer, 0, 3, rows[layer].data()).ok());
    ASSERT_TRUE(
        (*transfer)->PutLayerRows(layer, 3, 7, rows[layer].data() + 3 * layout.row_bytes).ok());
  }
  absl::Status flushed = (*transfer)->Flush(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(flushed.ok()) << flushed;
  EXPECT_EQ((*transfer)->bytes(), layout.num_layers * tokens * layout.row_bytes);
  // Rows alone do not mark the lease landed: Land puts the tag after them.
  const volatile uint64_t* landing_word = static_cast<const uint64_t*>((*landing)->base()) + 3;
  EXPECT_EQ(*landing_word, 0u);
  absl::Status landed = (*transfer)->Land(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(landed.ok()) << landed;
  EXPECT_EQ(*landing_word, target.landing_tag);
  EXPECT_EQ((*transfer)->bytes(), layout.num_layers * tokens * layout.row_bytes);  // rows only
  EXPECT_EQ(static_cast<const uint64_t*>((*landing)->base())[2], 0u);  // its neighbours untouched
  EXPECT_EQ(static_cast<const uint64_t*>((*landing)->base())[4], 0u);

  std::vector<uint8_t> expected(pool.size(), 0xAB);
  for (int layer = 0; layer < layout.num_layers; ++layer) {
    for (int t = 0; t < tokens; ++t) {
      int block = target.block_ids[t / layout.block_size];
      std::memcpy(expected.data() + layout.RowOffset(layer, block, t % layout.block_size),
                  rows[layer].data() + t * layout.row_bytes, layout.row_bytes);
    }
  }
  EXPECT_TRUE(std::equal(pool.begin(), pool.end(), expected.begin(), expected.end()))
      << "pool bytes differ from the rows written";

  // The endpoint is reused for the next request to the same decode worker.
  auto again = writer.Begin(target);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(writer.open_endpoints(), 1u);
  transfer->reset();
  again->reset();
}

// A decode worker that speculates takes the last prompt position's hidden state in the
// lease's landing slot: Land puts the tag again and the hidden state at the address the
// destination names (with the rows, before the mark), only when its size is the one asked.
TEST_P(KvTransferTest, LandPutsTheHiddenStateInTheSlotBeforeTheMark) {
  auto decode = UcxContext::Create(OptionsFor(GetParam()));
  ASSERT_TRUE(decode.ok()) << decode.status();
  auto prefill = UcxContext::Create(OptionsFor(GetParam()));
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  const KvPoolLayout layout = TestLayout();
  auto region = UcxMemoryRegion::Allocate(**decode, layout.SpanBytes());
  ASSERT_TRUE(region.ok()) << region.status();
  // Two slots of 128 bytes (kv_landing_table.h): tag at 0, mark at 56, hidden state at 64.
  auto landing = UcxMemoryRegion::Allocate(**decode, 2 * 128);
  ASSERT_TRUE(landing.ok()) << landing.status();
  const auto* table = static_cast<const uint8_t*>((*landing)->base());
  KvWriter writer(**prefill, layout);
  std::string hidden(40, '\0');
  for (size_t i = 0; i < hidden.size(); ++i) hidden[i] = static_cast<char>(i + 1);
  for (const bool right_size : {false, true}) {
    KvWriteTarget target;
    target.worker_address = (*decode)->worker_address();
    target.packed_rkey = (*region)->packed_rkey();
    target.base_address = (*region)->base_address();
    target.layout = layout;
    target.block_ids = {1};
    target.landing_rkey = (*landing)->packed_rkey();
    target.landing_address = (*landing)->base_address() + 128;
    target.landing_tag = right_size ? 0x1122334455667788ULL : 0x99ULL;
    target.landing_hidden_address = target.landing_address + 56;
    target.landing_hidden_bytes = 40;
    auto transfer = writer.Begin(target);
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    const std::string_view put =
        right_size ? std::string_view(hidden) : std::string_view(hidden).substr(0, 39);
    absl::Status landed = (*transfer)->Land(absl::Now() + absl::Seconds(10), nullptr, put);
    ASSERT_TRUE(landed.ok()) << landed;
    EXPECT_EQ((*transfer)->bytes(), 0);  // no rows; the slot's bytes are not KV bytes
    uint64_t tag = 0, mark = 0;
    std::memcpy(&tag, table + 128, 8);
    std::memcpy(&mark, table + 128 + 56, 8);
    EXPECT_EQ(tag, target.landing_tag);
    if (!right_size) {
      EXPECT_EQ(mark, 0u) << "a hidden state of another size was put";
      continue;
    }
    EXPECT_EQ(mark, target.landing_tag);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(table + 128 + 64), 40), hidden);
    EXPECT_TRUE(std::all_of(table, table + 128, [](uint8_t b) { return b == 0; }))
        << "the other slot was written";
    EXPECT_TRUE(std::all_of(table + 128 + 104, table + 256, [](uint8_t b) { return b == 0; }))
        << "bytes past the hidden state were written";
  }
}

INSTANTIATE_TEST_SUITE_P(Transports, KvTransferTest,
                         ::testing::Values("tcp", "posix,cma,self", "sysv,cma,self"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == ',') c = '_';
                           }
                           return name;
                         });

TEST(KvWriterTest, RefusesAMismatchedLayout) {
  auto prefill = UcxContext::Create(OptionsFor("tcp"));
  ASSERT_TRUE(prefill.ok());
  KvWriter writer(**prefill, TestLayout());
  KvWriteTarget target;
  target.layout = TestLayout();
  target.layout.row_bytes *= 2;
  target.worker_address = "x";
  auto transfer = writer.Begin(target);
  EXPECT_EQ(transfer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(transfer.status().message(), HasSubstr("layout mismatch"));
}

TEST(KvWriterTest, RejectsRowsBeyondTheReservation) {
  auto decode = UcxContext::Create(OptionsFor("tcp"));
  auto prefill = UcxContext::Create(OptionsFor("tcp"));
  ASSERT_TRUE(decode.ok() && prefill.ok());
  const KvPoolLayout layout = TestLayout();
  std::vector<uint8_t> pool(layout.SpanBytes());
  auto region = UcxMemoryRegion::Register(**decode, pool.data(), pool.size());
  ASSERT_TRUE(region.ok());
  KvWriteTarget target;
  target.worker_address = (*decode)->worker_address();
  target.packed_rkey = (*region)->packed_rkey();
  target.base_address = (*region)->base_address();
  target.layout = layout;
  target.block_ids = {1};
  KvWriter writer(**prefill, layout);
  auto transfer = writer.Begin(target);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  std::vector<uint8_t> rows(5 * layout.row_bytes);
  EXPECT_EQ((*transfer)->PutLayerRows(0, 0, 5, rows.data()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*transfer)->PutLayerRows(3, 0, 1, rows.data()).code(),
            absl::StatusCode::kInvalidArgument);
  target.block_ids = {8};
  EXPECT_EQ(writer.Begin(target).status().code(), absl::StatusCode::kInvalidArgument);
  // A landing slot must be an aligned word with a non-zero tag.
  target.block_ids = {1};
  target.landing_rkey = (*region)->packed_rkey();
  target.landing_address = (*region)->base_address() + 4;
  target.landing_tag = 1;
  EXPECT_EQ(writer.Begin(target).status().code(), absl::StatusCode::kInvalidArgument);
  target.landing_address += 4;
  target.landing_tag = 0;
  EXPECT_EQ(writer.Begin(target).status().code(), absl::StatusCode::kInvalidArgument);
  target.landing_tag = 1;
  EXPECT_TRUE(writer.Begin(target).ok());
}

// A decode worker that goes away: the flush ends with an error by its deadline, no hang.
TEST(KvWriterTest, DeadPeerFailsTheFlushInsteadOfHanging) {
  auto prefill = UcxContext::Create(OptionsFor("tcp"));
  ASSERT_TRUE(prefill.ok());
  const KvPoolLayout layout = TestLayout();
  std::vector<uint8_t> rows(layout.block_size * layout.row_bytes, 1);
  KvWriter writer(**prefill, layout);
  std::unique_ptr<KvTransfer> transfer;
  {
    auto decode = UcxContext::Create(OptionsFor("tcp"));
    ASSERT_TRUE(decode.ok());
    std::vector<uint8_t> pool(layout.SpanBytes());
    auto region = UcxMemoryRegion::Register(**decode, pool.data(), pool.size());
    ASSERT_TRUE(region.ok());
    KvWriteTarget target;
    target.worker_address = (*decode)->worker_address();
    target.packed_rkey = (*region)->packed_rkey();
    target.base_address = (*region)->base_address();
    target.layout = layout;
    target.block_ids = {0};
    auto begun = writer.Begin(target);
    ASSERT_TRUE(begun.ok()) << begun.status();
    transfer = std::move(*begun);
    ASSERT_TRUE(transfer->Flush(absl::Now() + absl::Seconds(10)).ok());
    // The decode side (worker, pool) is destroyed here.
  }
  absl::Time start = absl::Now();
  absl::Status status = transfer->PutLayerRows(0, 0, layout.block_size, rows.data());
  if (status.ok()) status = transfer->Flush(absl::Now() + absl::Seconds(3));
  EXPECT_FALSE(status.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace dsv3::transport
