// The NCCL expert all-to-all's shared arithmetic (all_to_all_layout.h): ranks, peer order,
// headers, send/receive offsets on both sides, and a whole step simulated on the CPU with
// memcpy where NCCL would move the bytes. With CUDA built, also what the NCCL backend does
// without a GPU.

#include "transport/nccl/all_to_all_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "experts/dispatch_plan.h"
#include "experts/expert_placement.h"

#if DSV3_TEST_NCCL
#include <cuda_runtime_api.h>

#include "transport/nccl/nccl_expert_all_to_all.h"
#endif

namespace dsv3::transport {
namespace {

TEST(ExpertCommRanksTest, ExpertsFirstThenAttention) {
  EXPECT_FALSE(ExpertCommRanks::Make(0, 3).ok());
  EXPECT_FALSE(ExpertCommRanks::Make(3, 3).ok());  // no attention rank
  EXPECT_FALSE(ExpertCommRanks::Make(4, 3).ok());
  absl::StatusOr<ExpertCommRanks> r = ExpertCommRanks::Make(3, 5);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->num_expert_workers(), 3);
  EXPECT_EQ(r->num_attention_workers(), 2);
  EXPECT_EQ(r->world_size(), 5);
  EXPECT_EQ(r->ExpertRank(2), 2);
  EXPECT_EQ(r->AttentionRank(1), 4);
  EXPECT_TRUE(r->IsExpertRank(0));
  EXPECT_FALSE(r->IsExpertRank(3));
  EXPECT_TRUE(r->IsAttentionRank(3));
  EXPECT_FALSE(r->IsAttentionRank(5));
  EXPECT_FALSE(r->IsAttentionRank(-1));
  EXPECT_EQ(r->AttentionIndexOfRank(4), 1);
  EXPECT_EQ(r->WorkerOfRank(1), 1);
}

TEST(ExpertCommRanksTest, PeerOrderIsRotatedAndCoversTheOtherSide) {
  absl::StatusOr<ExpertCommRanks> r = ExpertCommRanks::Make(3, 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->PeerOrder(0), (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(r->PeerOrder(1), (std::vector<int32_t>{4, 3}));
  EXPECT_EQ(r->PeerOrder(2), (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(r->PeerOrder(3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(r->PeerOrder(4), (std::vector<int32_t>{1, 2, 0}));
  EXPECT_TRUE(r->PeerOrder(5).empty());
  EXPECT_TRUE(r->PeerOrder(-1).empty());
  // Every expert/attention pair talks both ways, once; no rank talks to its own side.
  for (int32_t e = 1; e <= 4; ++e) {
    for (int32_t world = e + 1; world <= 8; ++world) {
      absl::StatusOr<ExpertCommRanks> q = ExpertCommRanks::Make(e, world);
      ASSERT_TRUE(q.ok());
      for (int32_t rank = 0; rank < world; ++rank) {
        std::vector<int32_t> peers = q->PeerOrder(rank);
        std::set<int32_t> unique(peers.begin(), peers.end());
        EXPECT_EQ(unique.size(), peers.size());
        EXPECT_EQ(peers.size(), static_cast<size_t>(q->IsExpertRank(rank) ? world - e : e));
        for (int32_t peer : peers) {
          EXPECT_NE(q->IsExpertRank(peer), q->IsExpertRank(rank)) << rank << " -> " << peer;
          std::vector<int32_t> back = q->PeerOrder(peer);
          EXPECT_EQ(std::count(back.begin(), back.end(), rank), 1);
        }
      }
    }
  }
}

TEST(AllToAllHeaderTest, DispatchRoundTripAndChecks) {
  DispatchHeader h;
  h.sequence = 7;
  h.layer = 61;
  h.placement_version = 3;
  h.hidden = 7168;
  h.rows = 5;
  h.pairs = 9;
  int64_t words[kDispatchHeaderWords];
  EncodeDispatchHeader(h, words);
  absl::StatusOr<DispatchHeader> back = DecodeDispatchHeader(words);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, h);
  EXPECT_EQ(back->payload_bytes(), 5 * 7168 * 4 + 9 * 8);
  EXPECT_EQ(back->output_floats(), 9 * 7168);

  int64_t bad[kDispatchHeaderWords];
  std::memcpy(bad, words, sizeof(words));
  bad[0] = kCombineHeaderMagic;
  EXPECT_NE(DecodeDispatchHeader(bad).status().message().find("out of step"), std::string::npos);
  std::memcpy(bad, words, sizeof(words));
  bad[5] = -1;  // rows
  EXPECT_EQ(DecodeDispatchHeader(bad).status().code(), absl::StatusCode::kInvalidArgument);
  std::memcpy(bad, words, sizeof(words));
  bad[4] = 0;  // hidden
  EXPECT_FALSE(DecodeDispatchHeader(bad).ok());
  std::memcpy(bad, words, sizeof(words));
  bad[6] = int64_t{1} << 40;  // pairs: sizes could overflow
  EXPECT_FALSE(DecodeDispatchHeader(bad).ok());
}

TEST(AllToAllHeaderTest, CombineRoundTripAndUnknownCodes) {
  CombineHeader h;
  h.sequence = 12;
  h.code = absl::StatusCode::kFailedPrecondition;
  h.placement_version = 4;
  int64_t words[kCombineHeaderWords];
  EncodeCombineHeader(h, words);
  absl::StatusOr<CombineHeader> back = DecodeCombineHeader(words);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, h);
  words[2] = 99;
  EXPECT_EQ(DecodeCombineHeader(words)->code, absl::StatusCode::kUnknown);
  words[2] = -3;
  EXPECT_EQ(DecodeCombineHeader(words)->code, absl::StatusCode::kUnknown);
  words[0] = kDispatchHeaderMagic;
  EXPECT_FALSE(DecodeCombineHeader(words).ok());
}

TEST(AllToAllLayoutTest, AlignSegment) {
  EXPECT_EQ(AlignSegment(0), 0);
  EXPECT_EQ(AlignSegment(1), kSegmentAlignment);
  EXPECT_EQ(AlignSegment(kSegmentAlignment), kSegmentAlignment);
  EXPECT_EQ(AlignSegment(kSegmentAlignment + 4), 2 * kSegmentAlignment);
}

// Layer 3: 8 experts, expert e on worker e % 3; `experts` is [rows, 2] (top-2).
experts::DispatchPlan SmallPlan(int32_t num_workers, const std::vector<int32_t>& experts) {
  experts::ExpertPlacement::Layer layer;
  layer.layer = 3;
  for (int32_t e = 0; e < 8; ++e) layer.replicas.push_back({e % 3});
  absl::StatusOr<experts::DispatchPlan> plan =
      experts::PlanDispatch(layer, experts.data(), static_cast<int64_t>(experts.size()) / 2, 2,
                            num_workers, std::vector<bool>(static_cast<size_t>(num_workers), true));
  EXPECT_TRUE(plan.ok()) << plan.status();
  return *plan;
}

TEST(AllToAllLayoutTest, SendLayoutPerExpertWorker) {
  // Rows 0..3 choose (0,3) (1,4) (0,2) (6,7): worker 0 gets experts 0,3,0,6 (rows 0,2,3),
  // worker 1 gets 1,4,7 (rows 1,3), worker 2 gets 2 (row 2); worker 3 is in the
  // communicator but holds nothing.
  const std::vector<int32_t> experts = {0, 3, 1, 4, 0, 2, 6, 7};
  experts::DispatchPlan plan = SmallPlan(3, experts);
  DispatchHeader common;
  common.sequence = 2;
  common.layer = 3;
  common.placement_version = 5;
  common.hidden = 6;
  absl::StatusOr<DispatchSendLayout> layout = MakeDispatchSendLayout(plan, 4, common);
  ASSERT_TRUE(layout.ok()) << layout.status();
  ASSERT_EQ(layout->headers.size(), 4u);
  const std::vector<int64_t> rows = {3, 2, 1, 0}, pairs = {4, 3, 1, 0};
  int64_t expected_send = 0, expected_recv = 0;
  for (size_t w = 0; w < 4; ++w) {
    const DispatchHeader& h = layout->headers[w];
    EXPECT_EQ(h.sequence, 2);
    EXPECT_EQ(h.layer, 3);
    EXPECT_EQ(h.placement_version, 5);
    EXPECT_EQ(h.hidden, 6);
    EXPECT_EQ(h.rows, rows[w]) << w;
    EXPECT_EQ(h.pairs, pairs[w]) << w;
    EXPECT_EQ(layout->send_offset[w], expected_send) << w;
    EXPECT_EQ(layout->send_offset[w] % kSegmentAlignment, 0);
    EXPECT_EQ(layout->send_bytes[w], experts::DispatchPayloadBytes(h.rows, h.pairs, 6)) << w;
    expected_send += AlignSegment(layout->send_bytes[w]);
    EXPECT_EQ(layout->recv_offset[w], expected_recv) << w;
    EXPECT_EQ(layout->recv_floats[w], h.pairs * 6) << w;
    expected_recv += AlignSegment(layout->recv_floats[w] * 4);
  }
  EXPECT_EQ(layout->send_bytes[3], 0);
  EXPECT_EQ(layout->send_total, expected_send);
  EXPECT_EQ(layout->recv_total, expected_recv);

  // Packed: each segment is exactly PackDispatch of its destination.
  std::vector<float> x(4 * 6);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.5f;
  std::vector<uint8_t> buffer(static_cast<size_t>(layout->send_total), 0xee);
  PackDispatchBuffer(plan, *layout, x.data(), buffer.data());
  for (size_t w = 0; w < 3; ++w) {
    std::vector<uint8_t> alone(static_cast<size_t>(layout->send_bytes[w]));
    experts::PackDispatch(plan.destinations[w], x.data(), 6, alone.data());
    EXPECT_EQ(0, std::memcmp(alone.data(), buffer.data() + layout->send_offset[w], alone.size()))
        << w;
  }

  std::vector<int64_t> words(4 * kDispatchHeaderWords);
  EncodeDispatchHeaders(*layout, words.data());
  for (size_t w = 0; w < 4; ++w) {
    absl::StatusOr<DispatchHeader> h =
        DecodeDispatchHeader(words.data() + w * kDispatchHeaderWords);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(*h, layout->headers[w]);
  }

  EXPECT_EQ(MakeDispatchSendLayout(plan, 2, common).status().code(),
            absl::StatusCode::kInvalidArgument);  // 3 destinations, 2 expert ranks
  common.hidden = 0;
  EXPECT_FALSE(MakeDispatchSendLayout(plan, 4, common).ok());
}

TEST(AllToAllLayoutTest, RecvLayoutChecksStepAndSize) {
  std::vector<int64_t> words(2 * kDispatchHeaderWords);
  DispatchHeader a;
  a.sequence = 4;
  a.hidden = 8;
  a.rows = 2;
  a.pairs = 3;
  DispatchHeader b = a;
  b.rows = 0;
  b.pairs = 0;
  EncodeDispatchHeader(a, words.data());
  EncodeDispatchHeader(b, words.data() + kDispatchHeaderWords);
  absl::StatusOr<DispatchRecvLayout> layout = MakeDispatchRecvLayout(words.data(), {4, 4}, 1 << 20);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->headers[0], a);
  EXPECT_EQ(layout->headers[1], b);
  EXPECT_EQ(layout->recv_bytes, (std::vector<int64_t>{2 * 8 * 4 + 3 * 8, 0}));
  EXPECT_EQ(layout->recv_offset, (std::vector<int64_t>{0, kSegmentAlignment}));
  EXPECT_EQ(layout->recv_total, kSegmentAlignment);
  EXPECT_EQ(layout->send_floats, (std::vector<int64_t>{24, 0}));
  EXPECT_EQ(layout->send_total, kSegmentAlignment);

  absl::Status s = MakeDispatchRecvLayout(words.data(), {4, 5}, 1 << 20).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("attention rank 1 sent step 4, expected step 5"), std::string::npos)
      << s;
  EXPECT_EQ(MakeDispatchRecvLayout(words.data(), {4, 4}, 100).status().code(),
            absl::StatusCode::kResourceExhausted);
  words[kDispatchHeaderWords] = 0;  // rank 1's magic
  EXPECT_NE(MakeDispatchRecvLayout(words.data(), {4, 4}, 1 << 20)
                .status()
                .message()
                .find("attention rank 1"),
            std::string::npos);
}

// Stands in for an expert: y = (expert + 1) * x + row index within the dispatch.
float FakeExpert(int32_t expert, float x, int32_t row) {
  return static_cast<float>(expert + 1) * x + static_cast<float>(row);
}

void ComputeFake(std::vector<ExpertStepInput>& inputs) {
  for (ExpertStepInput& in : inputs) {
    if (!in.status.ok()) continue;
    const int64_t hidden = in.header.hidden;
    for (size_t p = 0; p < in.dispatch.pair_expert.size(); ++p) {
      const int32_t row = in.dispatch.pair_token[p];
      for (int64_t j = 0; j < hidden; ++j) {
        in.outputs[static_cast<int64_t>(p) * hidden + j] =
            FakeExpert(in.dispatch.pair_expert[p], in.dispatch.x[row * hidden + j], row);
      }
    }
  }
}

// One attention rank's side of a simulated step.
struct AttentionSide {
  experts::DispatchPlan plan;
  std::vector<float> x;
  DispatchSendLayout layout;
  std::vector<uint8_t> send;
  std::vector<int64_t> header_words;
  std::vector<uint8_t> recv;
  std::vector<int64_t> combine_words;
};

// A whole step: A attention ranks, E expert ranks. The "wire" copies each (attention, expert)
// segment from the sender's offset to the receiver's, checking both sides agree on its size,
// in PeerOrder; then every attention rank gathers, and the result must equal the experts
// applied directly.
TEST(AllToAllLayoutTest, SimulatedStepMatchesDirectComputation) {
  constexpr int32_t kExperts = 3, kAttention = 2;
  constexpr int64_t kHidden = 5;
  absl::StatusOr<ExpertCommRanks> ranks = ExpertCommRanks::Make(kExperts, kExperts + kAttention);
  ASSERT_TRUE(ranks.ok());
  const std::vector<std::vector<int32_t>> choices = {
      {0, 3, 1, 4, 0, 2, 6, 7, 5, 1},  // 5 rows
      {2, 5},                          // 1 row: only worker 2
  };
  std::vector<AttentionSide> att(kAttention);
  for (int32_t a = 0; a < kAttention; ++a) {
    AttentionSide& s = att[a];
    s.plan = SmallPlan(kExperts, choices[a]);
    s.x.resize(static_cast<size_t>(s.plan.rows * kHidden));
    for (size_t i = 0; i < s.x.size(); ++i) s.x[i] = static_cast<float>(a * 100 + i);
    DispatchHeader common;
    common.sequence = 9;
    common.layer = 3;
    common.placement_version = 2;
    common.hidden = kHidden;
    absl::StatusOr<DispatchSendLayout> layout = MakeDispatchSendLayout(s.plan, kExperts, common);
    ASSERT_TRUE(layout.ok()) << layout.status();
    s.layout = *layout;
    s.send.assign(static_cast<size_t>(s.layout.send_total), 0);
    PackDispatchBuffer(s.plan, s.layout, s.x.data(), s.send.data());
    s.header_words.resize(kExperts * kDispatchHeaderWords);
    EncodeDispatchHeaders(s.layout, s.header_words.data());
    s.recv.assign(static_cast<size_t>(s.layout.recv_total), 0);
    s.combine_words.assign(kExperts * kCombineHeaderWords, 0);
  }

  for (int32_t w = 0; w < kExperts; ++w) {
    const int32_t rank = ranks->ExpertRank(w);
    // Group 1: headers, received in the expert's peer order.
    std::vector<int64_t> headers(kAttention * kDispatchHeaderWords);
    for (int32_t peer : ranks->PeerOrder(rank)) {
      const int32_t a = ranks->AttentionIndexOfRank(peer);
      std::memcpy(headers.data() + a * kDispatchHeaderWords,
                  att[a].header_words.data() + w * kDispatchHeaderWords,
                  kDispatchHeaderWords * sizeof(int64_t));
    }
    absl::StatusOr<DispatchRecvLayout> layout =
        MakeDispatchRecvLayout(headers.data(), std::vector<int64_t>(kAttention, 9), 1 << 20);
    ASSERT_TRUE(layout.ok()) << layout.status();
    // Group 2: payloads.
    std::vector<uint8_t> recv(static_cast<size_t>(layout->recv_total), 0xcd);
    for (int32_t a = 0; a < kAttention; ++a) {
      ASSERT_EQ(layout->recv_bytes[a], att[a].layout.send_bytes[w]) << a << " -> " << w;
      std::memcpy(recv.data() + layout->recv_offset[a],
                  att[a].send.data() + att[a].layout.send_offset[w],
                  static_cast<size_t>(layout->recv_bytes[a]));
    }
    std::vector<uint8_t> out(static_cast<size_t>(layout->send_total), 0xab);
    std::vector<ExpertStepInput> inputs = UnpackExpertStep(*layout, recv.data(), out.data());
    ASSERT_EQ(inputs.size(), static_cast<size_t>(kAttention));
    for (const ExpertStepInput& in : inputs) ASSERT_TRUE(in.status.ok()) << in.status;
    ComputeFake(inputs);
    std::vector<int64_t> combine(kAttention * kCombineHeaderWords);
    EncodeCombineHeaders(inputs, /*placement_version=*/2 + w, combine.data());
    // Group 3: answers back.
    for (int32_t a = 0; a < kAttention; ++a) {
      std::memcpy(att[a].combine_words.data() + w * kCombineHeaderWords,
                  combine.data() + a * kCombineHeaderWords, kCombineHeaderWords * 8);
      ASSERT_EQ(layout->send_floats[a], att[a].layout.recv_floats[w]) << w << " -> " << a;
      std::memcpy(att[a].recv.data() + att[a].layout.recv_offset[w],
                  out.data() + layout->send_offset[a],
                  static_cast<size_t>(layout->send_floats[a]) * sizeof(float));
    }
  }

  for (int32_t a = 0; a < kAttention; ++a) {
    AttentionSide& s = att[a];
    ExchangeResult result;
    FinishExchange(s.layout, s.combine_words.data(), s.recv.data(), &result);
    ASSERT_TRUE(result.status.ok()) << result.status;
    EXPECT_TRUE(result.failed_workers.empty());
    EXPECT_EQ(result.newest_placement_version, 2 + kExperts - 1);
    ASSERT_EQ(result.outputs.size(), static_cast<size_t>(kExperts));
    std::vector<const float*> outs;
    for (int32_t w = 0; w < kExperts; ++w) {
      EXPECT_EQ(result.outputs[w].size(),
                static_cast<size_t>(s.plan.destinations[w].num_pairs() * kHidden));
      outs.push_back(result.outputs[w].data());
    }
    const int64_t slots = s.plan.rows * s.plan.top_k;
    std::vector<float> ys(static_cast<size_t>(slots * kHidden), -1.0f);
    experts::GatherOutputs(s.plan, outs, kHidden, ys.data());
    for (int64_t slot = 0; slot < slots; ++slot) {
      const int64_t t = slot / 2;
      const int32_t w = s.plan.slot_worker[slot];
      // The fake adds the row's index within the worker's dispatch.
      const std::vector<int32_t>& sent = s.plan.destinations[w].rows;
      const int32_t local =
          static_cast<int32_t>(std::find(sent.begin(), sent.end(), t) - sent.begin());
      for (int64_t j = 0; j < kHidden; ++j) {
        EXPECT_FLOAT_EQ(ys[slot * kHidden + j],
                        FakeExpert(choices[a][slot], s.x[t * kHidden + j], local))
            << "attention " << a << " slot " << slot << " j " << j;
      }
    }
  }
}

TEST(AllToAllLayoutTest, RefusalsAndBadPayloadsAreAnsweredWithTheirCode) {
  DispatchHeader h;
  h.sequence = 1;
  h.layer = 3;
  h.hidden = 2;
  h.rows = 1;
  h.pairs = 2;
  std::vector<int64_t> words(2 * kDispatchHeaderWords);
  EncodeDispatchHeader(h, words.data());
  EncodeDispatchHeader(h, words.data() + kDispatchHeaderWords);
  absl::StatusOr<DispatchRecvLayout> layout = MakeDispatchRecvLayout(words.data(), {1, 1}, 4096);
  ASSERT_TRUE(layout.ok());
  std::vector<uint8_t> recv(static_cast<size_t>(layout->recv_total), 0);
  // Attention 0: row 0 twice, experts 1 and 2. Attention 1: a pair names row 5 of 1.
  const int32_t good[4] = {0, 1, 0, 2};
  const int32_t bad[4] = {0, 1, 5, 2};
  std::memcpy(recv.data() + layout->recv_offset[0] + 2 * 4, good, sizeof(good));
  std::memcpy(recv.data() + layout->recv_offset[1] + 2 * 4, bad, sizeof(bad));
  std::vector<uint8_t> out(static_cast<size_t>(layout->send_total), 0xff);
  std::vector<ExpertStepInput> inputs = UnpackExpertStep(*layout, recv.data(), out.data());
  ASSERT_EQ(inputs.size(), 2u);
  EXPECT_TRUE(inputs[0].status.ok());
  EXPECT_EQ(inputs[0].dispatch.pair_expert, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(inputs[1].status.code(), absl::StatusCode::kInvalidArgument);
  for (const ExpertStepInput& in : inputs) {
    for (int64_t i = 0; i < in.header.output_floats(); ++i) EXPECT_EQ(in.outputs[i], 0.0f);
  }
  // The compute writes attention 0's outputs, then refuses them (e.g. a stale placement).
  for (int i = 0; i < 4; ++i) inputs[0].outputs[i] = 7.0f;
  inputs[0].status = absl::FailedPreconditionError("stale placement");
  std::vector<int64_t> combine(2 * kCombineHeaderWords);
  EncodeCombineHeaders(inputs, 6, combine.data());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(inputs[0].outputs[i], 0.0f) << i;
  EXPECT_EQ(DecodeCombineHeader(combine.data())->code, absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(DecodeCombineHeader(combine.data() + kCombineHeaderWords)->code,
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeCombineHeader(combine.data())->placement_version, 6);
  EXPECT_EQ(DecodeCombineHeader(combine.data())->sequence, 1);
}

TEST(AllToAllLayoutTest, FinishExchangeReportsFailedWorkers) {
  // Worker 0: 2 pairs, answers OK. Worker 1: 1 pair, refuses. Worker 2: no pairs, refuses
  // (ignored). Worker 3: no pairs, answers a wrong step (out of step: failed anyway).
  DispatchSendLayout layout;
  DispatchHeader h;
  h.sequence = 5;
  h.layer = 4;
  h.placement_version = 2;
  h.hidden = 3;
  for (int64_t pairs : {2, 1, 0, 0}) {
    h.pairs = pairs;
    h.rows = pairs > 0 ? 1 : 0;
    layout.headers.push_back(h);
    layout.recv_offset.push_back(layout.recv_total);
    layout.recv_floats.push_back(pairs * 3);
    layout.recv_total += AlignSegment(pairs * 3 * 4);
  }
  std::vector<uint8_t> outputs(static_cast<size_t>(layout.recv_total));
  for (size_t i = 0; i < outputs.size() / 4; ++i) {
    const float v = static_cast<float>(i);
    std::memcpy(outputs.data() + i * 4, &v, 4);
  }
  std::vector<int64_t> words(4 * kCombineHeaderWords);
  const CombineHeader answers[4] = {{5, absl::StatusCode::kOk, 2},
                                    {5, absl::StatusCode::kFailedPrecondition, 3},
                                    {5, absl::StatusCode::kInternal, 9},
                                    {4, absl::StatusCode::kOk, 1}};
  for (int w = 0; w < 4; ++w) EncodeCombineHeader(answers[w], words.data() + w * 4);
  ExchangeResult result;
  FinishExchange(layout, words.data(), outputs.data(), &result);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status.message().find("expert worker 1 refused layer 4"), std::string::npos)
      << result.status;
  EXPECT_EQ(result.failed_workers, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(result.newest_placement_version, 9);  // well-formed answers only
  ASSERT_EQ(result.outputs.size(), 4u);
  EXPECT_EQ(result.outputs[0], (experts::FloatBuffer{0, 1, 2, 3, 4, 5}));
  EXPECT_TRUE(result.outputs[1].empty());
  EXPECT_TRUE(result.outputs[2].empty());

  // All well: no failures, outputs for the workers with pairs.
  EncodeCombineHeader({5, absl::StatusCode::kOk, 2}, words.data() + 4);
  EncodeCombineHeader({5, absl::StatusCode::kOk, 2}, words.data() + 8);
  EncodeCombineHeader({5, absl::StatusCode::kOk, 2}, words.data() + 12);
  ExchangeResult ok;
  FinishExchange(layout, words.data(), outputs.data(), &ok);
  EXPECT_TRUE(ok.status.ok()) << ok.status;
  EXPECT_TRUE(ok.failed_workers.empty());
  const float first = static_cast<float>(kSegmentAlignment / 4);  // worker 1's segment
  EXPECT_EQ(ok.outputs[1], (experts::FloatBuffer{first, first + 1, first + 2}));

  // A garbled answer (wrong magic) is out of step.
  words[4] = 0;
  ExchangeResult garbled;
  FinishExchange(layout, words.data(), outputs.data(), &garbled);
  EXPECT_EQ(garbled.status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(garbled.failed_workers, (std::vector<int32_t>{1}));
}

#if DSV3_TEST_NCCL
TEST(NcclExpertAllToAllTest, UniqueIdIsNcclSized) {
  absl::StatusOr<std::string> a = MakeNcclUniqueId();
  if (!a.ok()) GTEST_SKIP() << "no NCCL bootstrap network here: " << a.status();
  absl::StatusOr<std::string> b = MakeNcclUniqueId();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->size(), 128u);
  EXPECT_NE(*a, *b);
}

TEST(NcclExpertAllToAllTest, CreateChecksArgumentsBeforeTouchingTheGpu) {
  NcclCommOptions options;
  options.unique_id = std::string(128, '\0');
  options.world_size = 3;
  options.num_expert_workers = 2;
  options.rank = 1;  // an expert rank
  absl::Status s = NcclExpertAllToAll::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not an attention rank"), std::string::npos) << s;
  options.rank = 2;
  EXPECT_NE(NcclExpertServer::Create(options).status().message().find("not an expert rank"),
            std::string::npos);
  options.num_expert_workers = 3;
  EXPECT_EQ(NcclExpertAllToAll::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.num_expert_workers = 2;
  options.unique_id = "short";
  s = NcclExpertAllToAll::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unique id of 5 bytes"), std::string::npos) << s;
}

TEST(NcclExpertAllToAllTest, NoGpuIsAClearError) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) {
    GTEST_SKIP() << "a GPU is present; needs the multi-rank test instead";
  }
  NcclCommOptions options;
  options.unique_id = std::string(128, '\0');
  options.world_size = 2;
  options.num_expert_workers = 1;
  options.rank = 1;
  absl::Status s = NcclExpertAllToAll::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("CUDA device 0 cannot be used"), std::string::npos) << s;
  options.rank = 0;
  EXPECT_EQ(NcclExpertServer::Create(options).status().code(),
            absl::StatusCode::kFailedPrecondition);
}
#endif  // DSV3_TEST_NCCL

}  // namespace
}  // namespace dsv3::transport
