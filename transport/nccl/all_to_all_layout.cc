#include "transport/nccl/all_to_all_layout.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsv3::transport {
namespace {

// Bounds on a received header, so a corrupt one cannot overflow the size arithmetic:
// rows * hidden * 4 + pairs * 8 stays far below 2^63.
constexpr int64_t kMaxRowsOrPairs = int64_t{1} << 31;
constexpr int64_t kMaxHidden = int64_t{1} << 24;

int64_t SegmentBytes(int64_t floats) { return floats * static_cast<int64_t>(sizeof(float)); }

}  // namespace

absl::StatusOr<ExpertCommRanks> ExpertCommRanks::Make(int32_t num_expert_workers,
                                                      int32_t world_size) {
  if (num_expert_workers < 1 || num_expert_workers >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("an expert communicator of ", world_size, " ranks cannot hold ",
                     num_expert_workers, " expert workers and at least one attention worker"));
  }
  return ExpertCommRanks(num_expert_workers, world_size);
}

std::vector<int32_t> ExpertCommRanks::PeerOrder(int32_t rank) const {
  std::vector<int32_t> peers;
  if (IsExpertRank(rank)) {
    const int32_t n = num_attention_workers();
    for (int32_t i = 0; i < n; ++i) peers.push_back(AttentionRank((WorkerOfRank(rank) + i) % n));
  } else if (IsAttentionRank(rank)) {
    const int32_t n = num_expert_workers_;
    for (int32_t i = 0; i < n; ++i)
      peers.push_back(ExpertRank((AttentionIndexOfRank(rank) + i) % n));
  }
  return peers;
}

void EncodeDispatchHeader(const DispatchHeader& header, int64_t* words) {
  words[0] = kDispatchHeaderMagic;
  words[1] = header.sequence;
  words[2] = header.layer;
  words[3] = header.placement_version;
  words[4] = header.hidden;
  words[5] = header.rows;
  words[6] = header.pairs;
}

absl::StatusOr<DispatchHeader> DecodeDispatchHeader(const int64_t* words) {
  if (words[0] != kDispatchHeaderMagic) {
    return absl::InvalidArgumentError(absl::StrCat("dispatch header has magic ", words[0], ", not ",
                                                   kDispatchHeaderMagic,
                                                   ": the peer is out of step"));
  }
  DispatchHeader h;
  h.sequence = words[1];
  h.layer = words[2];
  h.placement_version = words[3];
  h.hidden = words[4];
  h.rows = words[5];
  h.pairs = words[6];
  if (h.hidden <= 0 || h.hidden > kMaxHidden || h.rows < 0 || h.rows >= kMaxRowsOrPairs ||
      h.pairs < 0 || h.pairs >= kMaxRowsOrPairs) {
    return absl::InvalidArgumentError(absl::StrCat("dispatch header with hidden ", h.hidden, ", ",
                                                   h.rows, " rows and ", h.pairs,
                                                   " pairs is out of range"));
  }
  return h;
}

void EncodeCombineHeader(const CombineHeader& header, int64_t* words) {
  words[0] = kCombineHeaderMagic;
  words[1] = header.sequence;
  words[2] = static_cast<int64_t>(header.code);
  words[3] = header.placement_version;
}

absl::StatusOr<CombineHeader> DecodeCombineHeader(const int64_t* words) {
  if (words[0] != kCombineHeaderMagic) {
    return absl::InvalidArgumentError(absl::StrCat("combine header has magic ", words[0], ", not ",
                                                   kCombineHeaderMagic,
                                                   ": the peer is out of step"));
  }
  CombineHeader h;
  h.sequence = words[1];
  // Codes this build does not know are still failures.
  const int64_t code = words[2];
  h.code = code >= 0 && code <= static_cast<int64_t>(absl::StatusCode::kUnauthenticated)
               ? static_cast<absl::StatusCode>(code)
               : absl::StatusCode::kUnknown;
  h.placement_version = words[3];
  return h;
}

int64_t AlignSegment(int64_t bytes) {
  return (bytes + kSegmentAlignment - 1) / kSegmentAlignment * kSegmentAlignment;
}

absl::StatusOr<DispatchSendLayout> MakeDispatchSendLayout(const experts::DispatchPlan& plan,
                                                          int32_t num_expert_workers,
                                                          const DispatchHeader& common) {
  if (num_expert_workers < 1 ||
      plan.destinations.size() > static_cast<size_t>(num_expert_workers)) {
    return absl::InvalidArgumentError(absl::StrCat("dispatch plan for ", plan.destinations.size(),
                                                   " workers on a communicator with ",
                                                   num_expert_workers, " expert workers"));
  }
  if (common.hidden <= 0 || common.hidden > kMaxHidden) {
    return absl::InvalidArgumentError(absl::StrCat("hidden size ", common.hidden));
  }
  const size_t n = static_cast<size_t>(num_expert_workers);
  DispatchSendLayout layout;
  layout.headers.assign(n, common);
  layout.send_offset.assign(n, 0);
  layout.send_bytes.assign(n, 0);
  layout.recv_offset.assign(n, 0);
  layout.recv_floats.assign(n, 0);
  for (size_t w = 0; w < n; ++w) {
    DispatchHeader& h = layout.headers[w];
    if (w < plan.destinations.size()) {
      h.rows = static_cast<int64_t>(plan.destinations[w].rows.size());
      h.pairs = plan.destinations[w].num_pairs();
    } else {
      h.rows = 0;
      h.pairs = 0;
    }
    layout.send_offset[w] = layout.send_total;
    layout.send_bytes[w] = h.payload_bytes();
    layout.send_total += AlignSegment(layout.send_bytes[w]);
    layout.recv_offset[w] = layout.recv_total;
    layout.recv_floats[w] = h.output_floats();
    layout.recv_total += AlignSegment(SegmentBytes(layout.recv_floats[w]));
  }
  return layout;
}

void PackDispatchBuffer(const experts::DispatchPlan& plan, const DispatchSendLayout& layout,
                        const float* x, uint8_t* buffer) {
  for (size_t w = 0; w < plan.destinations.size(); ++w) {
    if (layout.send_bytes[w] == 0) continue;
    experts::PackDispatch(plan.destinations[w], x, layout.headers[w].hidden,
                          buffer + layout.send_offset[w]);
  }
}

void EncodeDispatchHeaders(const DispatchSendLayout& layout, int64_t* words) {
  for (size_t w = 0; w < layout.headers.size(); ++w) {
    EncodeDispatchHeader(layout.headers[w], words + w * kDispatchHeaderWords);
  }
}

void FinishExchange(const DispatchSendLayout& layout, const int64_t* combine_words,
                    const uint8_t* outputs, ExchangeResult* result) {
  const size_t n = layout.headers.size();
  result->status = absl::OkStatus();
  result->outputs.assign(n, {});
  result->failed_workers.clear();
  for (size_t w = 0; w < n; ++w) {
    const DispatchHeader& sent = layout.headers[w];
    absl::StatusOr<CombineHeader> answer =
        DecodeCombineHeader(combine_words + w * kCombineHeaderWords);
    absl::Status problem;
    bool out_of_step = false;
    if (!answer.ok()) {
      problem =
          absl::InternalError(absl::StrCat("expert worker ", w, ": ", answer.status().message()));
      out_of_step = true;
    } else if (answer->sequence != sent.sequence) {
      problem = absl::InternalError(absl::StrCat("expert worker ", w, " answered step ",
                                                 answer->sequence, " to step ", sent.sequence));
      out_of_step = true;
    } else {
      result->newest_placement_version =
          std::max(result->newest_placement_version, answer->placement_version);
      if (answer->code != absl::StatusCode::kOk) {
        problem = absl::Status(
            answer->code,
            absl::StrCat("expert worker ", w, " refused layer ", sent.layer,
                         " (dispatched with placement version ", sent.placement_version,
                         ", it holds ", answer->placement_version, ")"));
      }
    }
    // A refusal matters only where we needed an answer; a worker out of step has broken the
    // call sequence for everyone.
    if (!problem.ok() && (sent.pairs > 0 || out_of_step)) {
      result->failed_workers.push_back(static_cast<int32_t>(w));
      if (result->status.ok()) result->status = problem;
      continue;
    }
    if (sent.pairs == 0) continue;
    const float* y = reinterpret_cast<const float*>(outputs + layout.recv_offset[w]);
    result->outputs[w].assign(y, y + layout.recv_floats[w]);
  }
}

absl::StatusOr<DispatchRecvLayout> MakeDispatchRecvLayout(
    const int64_t* header_words, const std::vector<int64_t>& expected_sequence,
    int64_t max_buffer_bytes) {
  const size_t n = expected_sequence.size();
  DispatchRecvLayout layout;
  layout.headers.resize(n);
  layout.recv_offset.assign(n, 0);
  layout.recv_bytes.assign(n, 0);
  layout.send_offset.assign(n, 0);
  layout.send_floats.assign(n, 0);
  for (size_t a = 0; a < n; ++a) {
    absl::StatusOr<DispatchHeader> h =
        DecodeDispatchHeader(header_words + a * kDispatchHeaderWords);
    if (!h.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention rank ", a, ": ", h.status().message()));
    }
    if (h->sequence != expected_sequence[a]) {
      return absl::InvalidArgumentError(absl::StrCat("attention rank ", a, " sent step ",
                                                     h->sequence, ", expected step ",
                                                     expected_sequence[a]));
    }
    layout.headers[a] = *h;
    layout.recv_offset[a] = layout.recv_total;
    layout.recv_bytes[a] = h->payload_bytes();
    layout.recv_total += AlignSegment(layout.recv_bytes[a]);
    layout.send_offset[a] = layout.send_total;
    layout.send_floats[a] = h->output_floats();
    layout.send_total += AlignSegment(SegmentBytes(layout.send_floats[a]));
    // Checked as we go: each term is below 2^58, so the sums cannot overflow first.
    if (layout.recv_total > max_buffer_bytes || layout.send_total > max_buffer_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("a step of ", layout.recv_total, " dispatch bytes and ", layout.send_total,
                       " output bytes (so far) exceeds the limit of ", max_buffer_bytes, " bytes"));
    }
  }
  return layout;
}

std::vector<ExpertStepInput> UnpackExpertStep(const DispatchRecvLayout& layout,
                                              const uint8_t* recv_buffer, uint8_t* output_buffer) {
  std::vector<ExpertStepInput> inputs(layout.headers.size());
  for (size_t a = 0; a < inputs.size(); ++a) {
    ExpertStepInput& in = inputs[a];
    in.attention_index = static_cast<int32_t>(a);
    in.header = layout.headers[a];
    in.outputs = reinterpret_cast<float*>(output_buffer + layout.send_offset[a]);
    if (layout.send_floats[a] > 0) {
      std::memset(in.outputs, 0, static_cast<size_t>(SegmentBytes(layout.send_floats[a])));
    }
    absl::StatusOr<experts::DispatchView> view =
        experts::UnpackDispatch(recv_buffer + layout.recv_offset[a], layout.recv_bytes[a],
                                in.header.rows, in.header.pairs, in.header.hidden);
    if (view.ok()) {
      in.dispatch = *std::move(view);
    } else {
      in.status = view.status();
    }
  }
  return inputs;
}

void EncodeCombineHeaders(std::vector<ExpertStepInput>& inputs, int64_t placement_version,
                          int64_t* words) {
  for (size_t a = 0; a < inputs.size(); ++a) {
    ExpertStepInput& in = inputs[a];
    if (!in.status.ok() && in.header.output_floats() > 0) {
      // Half-written outputs must not pass for an answer.
      std::memset(in.outputs, 0, static_cast<size_t>(SegmentBytes(in.header.output_floats())));
    }
    CombineHeader h;
    h.sequence = in.header.sequence;
    h.code = in.status.code();
    h.placement_version = placement_version;
    EncodeCombineHeader(h, words + a * kCombineHeaderWords);
  }
}

}  // namespace dsv3::transport
