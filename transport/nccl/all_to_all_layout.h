#ifndef DSV3_TRANSPORT_NCCL_ALL_TO_ALL_LAYOUT_H_
#define DSV3_TRANSPORT_NCCL_ALL_TO_ALL_LAYOUT_H_

// The arithmetic of the NCCL expert all-to-all (nccl_expert_all_to_all.h) without NCCL: who
// is which rank, the order a rank posts its peers in, the small headers sent ahead of the
// bulk, and where each peer's bytes sit in one contiguous send or receive buffer. Both sides
// compute sizes with the same code here, so they post matching sends and receives; all of
// it runs and is tested on the CPU.
//
// One step (one MoE layer of one forward pass), three NCCL groups on each side:
//   1. counts:   attention rank -> every expert rank: a DispatchHeader (kDispatchHeaderWords
//                int64), sent even when it carries no rows, so the expert knows the sizes.
//   2. dispatch: attention -> each expert with rows: the payload, PackDispatch's wire layout
//                (dispatch_plan.h), all destinations packed back to back in one buffer.
//   3. combine:  expert -> every attention rank: a CombineHeader (kCombineHeaderWords int64),
//                then [pairs, hidden] f32 outputs when pairs > 0. An expert that cannot
//                answer still sends the outputs (zeros) so both sides post the same calls.
// NCCL matches the point-to-point calls between two ranks in the order they were issued, so
// every pair of ranks must issue these in the same sequence: every rank of a communicator
// takes part in every step (lockstep), and within a group each rank posts its peers in
// PeerOrder.

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "experts/dispatch_plan.h"
#include "transport/expert_all_to_all.h"

namespace dsv3::transport {

// Ranks of an expert communicator: [0, E) are the expert workers (rank == worker index in the
// placement, so rank 0, expert worker 0, makes the unique id), [E, E + A) the attention
// workers (prefill/decode) in the order they joined.
class ExpertCommRanks {
 public:
  // INVALID_ARGUMENT unless 1 <= num_expert_workers < world_size.
  static absl::StatusOr<ExpertCommRanks> Make(int32_t num_expert_workers, int32_t world_size);

  int32_t num_expert_workers() const { return num_expert_workers_; }
  int32_t num_attention_workers() const { return world_size_ - num_expert_workers_; }
  int32_t world_size() const { return world_size_; }

  int32_t ExpertRank(int32_t worker) const { return worker; }
  int32_t AttentionRank(int32_t index) const { return num_expert_workers_ + index; }
  bool IsExpertRank(int32_t rank) const { return rank >= 0 && rank < num_expert_workers_; }
  bool IsAttentionRank(int32_t rank) const {
    return rank >= num_expert_workers_ && rank < world_size_;
  }
  // Expert worker index of an expert rank; attention index of an attention rank.
  int32_t WorkerOfRank(int32_t rank) const { return rank; }
  int32_t AttentionIndexOfRank(int32_t rank) const { return rank - num_expert_workers_; }

  // The ranks `rank` talks to (every rank of the other side), in the order it posts them in a
  // group: rotated to start at its own position, so the ranks of one side do not all start
  // on the same peer. Empty for a rank outside the communicator.
  std::vector<int32_t> PeerOrder(int32_t rank) const;

 private:
  ExpertCommRanks(int32_t num_expert_workers, int32_t world_size)
      : num_expert_workers_(num_expert_workers), world_size_(world_size) {}
  int32_t num_expert_workers_;
  int32_t world_size_;
};

// Group 1, attention -> expert. `sequence` counts the steps of the sending rank (0, 1, ...),
// so an expert notices a rank that got out of step.
struct DispatchHeader {
  int64_t sequence = 0;
  int64_t layer = 0;
  int64_t placement_version = 0;
  int64_t hidden = 0;
  int64_t rows = 0;
  int64_t pairs = 0;
  int64_t payload_bytes() const { return experts::DispatchPayloadBytes(rows, pairs, hidden); }
  int64_t output_floats() const { return pairs * hidden; }
  bool operator==(const DispatchHeader&) const = default;
};
inline constexpr int kDispatchHeaderWords = 7;                       // magic + the six fields
inline constexpr int64_t kDispatchHeaderMagic = 0x5053494433565344;  // "DSV3DISP"
void EncodeDispatchHeader(const DispatchHeader& header, int64_t* words);
// INVALID_ARGUMENT on a wrong magic (the peer is out of step), negative counts, hidden <= 0,
// or counts so large the sizes could overflow.
absl::StatusOr<DispatchHeader> DecodeDispatchHeader(const int64_t* words);

// Group 3, expert -> attention: how the expert answered this step.
struct CombineHeader {
  int64_t sequence = 0;  // the dispatch's sequence, echoed
  absl::StatusCode code = absl::StatusCode::kOk;
  int64_t placement_version = 0;  // the placement version the expert holds
  bool operator==(const CombineHeader&) const = default;
};
inline constexpr int kCombineHeaderWords = 4;                       // magic + the three fields
inline constexpr int64_t kCombineHeaderMagic = 0x424d4f4333565344;  // "DSV3COMB"
void EncodeCombineHeader(const CombineHeader& header, int64_t* words);
absl::StatusOr<CombineHeader> DecodeCombineHeader(const int64_t* words);

// Offsets of one buffer's segments are rounded up to this (bytes), so every peer's segment
// starts aligned for the GPU's copies and for reading floats in place.
inline constexpr int64_t kSegmentAlignment = 256;
int64_t AlignSegment(int64_t bytes);

// The attention side of one step, indexed by expert worker (0..E-1).
struct DispatchSendLayout {
  std::vector<DispatchHeader> headers;  // every worker gets one (zero rows and pairs included)
  std::vector<int64_t> send_offset;     // bytes into the send buffer
  std::vector<int64_t> send_bytes;      // DispatchPayloadBytes; 0: no payload send
  int64_t send_total = 0;               // bytes of the send buffer
  std::vector<int64_t> recv_offset;     // bytes into the output buffer ([pairs, hidden] f32)
  std::vector<int64_t> recv_floats;     // pairs * hidden; 0: no output receive
  int64_t recv_total = 0;               // bytes of the output buffer
};
// `common` carries sequence, layer, placement version and hidden; rows and pairs come from
// the plan. INVALID_ARGUMENT when the plan has more destinations than there are expert
// workers, or hidden <= 0.
absl::StatusOr<DispatchSendLayout> MakeDispatchSendLayout(const experts::DispatchPlan& plan,
                                                          int32_t num_expert_workers,
                                                          const DispatchHeader& common);
// Writes every destination's PackDispatch payload at its offset in `buffer`
// ([layout.send_total] bytes; the padding between segments is left as it is).
void PackDispatchBuffer(const experts::DispatchPlan& plan, const DispatchSendLayout& layout,
                        const float* x, uint8_t* buffer);
// [E * kDispatchHeaderWords]: worker w's header at w * kDispatchHeaderWords.
void EncodeDispatchHeaders(const DispatchSendLayout& layout, int64_t* words);

// Fills `result` from the expert workers' answers: combine_words
// [E * kCombineHeaderWords] (worker w's at w * kCombineHeaderWords) and `outputs` (the
// output buffer, laid out by `layout`). outputs[w] is set for each worker with pairs that
// answered OK; a worker with pairs that answered an error, or out of step, is in
// failed_workers and makes the status not OK (its own code when it sent one). The newest
// placement version is taken over every well-formed answer.
void FinishExchange(const DispatchSendLayout& layout, const int64_t* combine_words,
                    const uint8_t* outputs, ExchangeResult* result);

// The expert side of one step, indexed by attention index (0..A-1).
struct DispatchRecvLayout {
  std::vector<DispatchHeader> headers;
  std::vector<int64_t> recv_offset;  // bytes into the receive buffer
  std::vector<int64_t> recv_bytes;   // 0: no payload receive
  int64_t recv_total = 0;
  std::vector<int64_t> send_offset;  // bytes into the output buffer
  std::vector<int64_t> send_floats;  // 0: only the combine header goes back
  int64_t send_total = 0;
};
// header_words: [A * kDispatchHeaderWords] as received. expected_sequence[a] is the sequence
// attention index a must send now. INVALID_ARGUMENT when a header does not decode or is out
// of step, RESOURCE_EXHAUSTED when either buffer would exceed max_buffer_bytes: the ranks
// no longer agree on what comes next, so the communicator has to go.
absl::StatusOr<DispatchRecvLayout> MakeDispatchRecvLayout(
    const int64_t* header_words, const std::vector<int64_t>& expected_sequence,
    int64_t max_buffer_bytes);

// What an expert's compute sees of one attention rank's dispatch in a step.
struct ExpertStepInput {
  int32_t attention_index = 0;
  DispatchHeader header;
  experts::DispatchView dispatch;  // the checked payload, when status is OK
  float* outputs = nullptr;        // [header.pairs, header.hidden], zeroed: the compute fills it
  // Not OK: the payload did not unpack, or the compute refused this input (e.g. a placement
  // version it does not hold). Answered as its code, with zero outputs.
  absl::Status status;
};
// One input per attention index, viewing `recv_buffer` and `output_buffer` (laid out by
// `layout`; the output buffer is zeroed here).
std::vector<ExpertStepInput> UnpackExpertStep(const DispatchRecvLayout& layout,
                                              const uint8_t* recv_buffer, uint8_t* output_buffer);
// [A * kCombineHeaderWords]; zeroes the outputs of every input that is not OK.
void EncodeCombineHeaders(std::vector<ExpertStepInput>& inputs, int64_t placement_version,
                          int64_t* words);

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_NCCL_ALL_TO_ALL_LAYOUT_H_
