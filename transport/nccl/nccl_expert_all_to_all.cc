#include "transport/nccl/nccl_expert_all_to_all.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "transport/nccl/nccl_channel.h"

namespace dsv3::transport {
namespace {

// Bytes of the header region at the start of a staging buffer, aligned so the payload region
// after it is.
int64_t HeaderRegion(int64_t peers, int words) { return AlignSegment(peers * words * 8); }

std::vector<int32_t> WorkersWithPairs(const experts::DispatchPlan& plan) {
  std::vector<int32_t> workers;
  for (size_t w = 0; w < plan.destinations.size(); ++w) {
    if (plan.destinations[w].num_pairs() > 0) workers.push_back(static_cast<int32_t>(w));
  }
  return workers;
}

// The attention rank's transfers of one step (groups as in all_to_all_layout.h); `overlapped`
// runs after the sends and receives are posted. The results land in ch.host_recv.
absl::Status AttentionTransfers(NcclChannel& ch, const ExpertCommRanks& ranks, int32_t rank,
                                const experts::DispatchPlan& plan, const DispatchSendLayout& layout,
                                const float* x, absl::Time deadline,
                                absl::FunctionRef<void()> overlapped) {
  const int64_t experts = ranks.num_expert_workers();
  const int64_t header_bytes = HeaderRegion(experts, kDispatchHeaderWords);
  const int64_t combine_bytes = HeaderRegion(experts, kCombineHeaderWords);
  const int64_t send_bytes = header_bytes + layout.send_total;
  const int64_t recv_bytes = combine_bytes + layout.recv_total;
  for (CudaBuffer* b : {&ch.host_send, &ch.device_send}) {
    DSV3_RETURN_IF_ERROR(ch.Check(b->Reserve(send_bytes)));
  }
  for (CudaBuffer* b : {&ch.host_recv, &ch.device_recv}) {
    DSV3_RETURN_IF_ERROR(ch.Check(b->Reserve(recv_bytes)));
  }
  EncodeDispatchHeaders(layout, reinterpret_cast<int64_t*>(ch.host_send.data()));
  PackDispatchBuffer(plan, layout, x, ch.host_send.data() + header_bytes);
  if (absl::Status s = ch.Copy(ch.device_send.data(), ch.host_send.data(), send_bytes,
                               cudaMemcpyHostToDevice, "staging the dispatch");
      !s.ok()) {
    return s;
  }
  const std::vector<int32_t> peers = ranks.PeerOrder(rank);
  const uint8_t* dsend = ch.device_send.data();
  uint8_t* drecv = ch.device_recv.data();

  absl::Status s = ch.PostGroup("sending dispatch counts", [&]() -> ncclResult_t {
    for (int32_t peer : peers) {
      const size_t w = static_cast<size_t>(ranks.WorkerOfRank(peer));
      const ncclResult_t r = ncclSend(dsend + w * kDispatchHeaderWords * 8, kDispatchHeaderWords,
                                      ncclInt64, peer, ch.comm(), ch.stream());
      if (!Posted(r)) return r;
    }
    return ncclSuccess;
  });
  if (s.ok()) s = ch.WaitEnqueued("sending dispatch counts", deadline);
  if (!s.ok()) return s;

  s = ch.PostGroup("sending dispatch payloads", [&]() -> ncclResult_t {
    for (int32_t peer : peers) {
      const size_t w = static_cast<size_t>(ranks.WorkerOfRank(peer));
      if (layout.send_bytes[w] == 0) continue;
      const ncclResult_t r = ncclSend(dsend + header_bytes + layout.send_offset[w],
                                      static_cast<size_t>(layout.send_bytes[w]), ncclUint8, peer,
                                      ch.comm(), ch.stream());
      if (!Posted(r)) return r;
    }
    return ncclSuccess;
  });
  if (s.ok()) s = ch.WaitEnqueued("sending dispatch payloads", deadline);
  if (!s.ok()) return s;

  s = ch.PostGroup("receiving expert outputs", [&]() -> ncclResult_t {
    for (int32_t peer : peers) {
      const size_t w = static_cast<size_t>(ranks.WorkerOfRank(peer));
      ncclResult_t r = ncclRecv(drecv + w * kCombineHeaderWords * 8, kCombineHeaderWords, ncclInt64,
                                peer, ch.comm(), ch.stream());
      if (!Posted(r)) return r;
      if (layout.recv_floats[w] == 0) continue;
      r = ncclRecv(drecv + combine_bytes + layout.recv_offset[w],
                   static_cast<size_t>(layout.recv_floats[w]), ncclFloat32, peer, ch.comm(),
                   ch.stream());
      if (!Posted(r)) return r;
    }
    return ncclSuccess;
  });
  if (!s.ok()) return s;
  // The shared expert runs while the experts compute and the bytes move.
  overlapped();
  s = ch.WaitEnqueued("receiving expert outputs", deadline);
  if (s.ok()) {
    s = ch.Copy(ch.host_recv.data(), drecv, recv_bytes, cudaMemcpyDeviceToHost,
                "copying expert outputs to the host");
  }
  if (s.ok()) s = ch.WaitStream("waiting for the expert outputs", deadline);
  return s;
}

}  // namespace

NcclExpertAllToAll::NcclExpertAllToAll(std::unique_ptr<NcclChannel> channel, ExpertCommRanks ranks,
                                       int32_t rank)
    : channel_(std::move(channel)), ranks_(ranks), rank_(rank) {}

NcclExpertAllToAll::~NcclExpertAllToAll() = default;

absl::StatusOr<std::unique_ptr<NcclExpertAllToAll>> NcclExpertAllToAll::Create(
    const NcclCommOptions& options) {
  DSV3_ASSIGN_OR_RETURN(ExpertCommRanks ranks,
                        ExpertCommRanks::Make(options.num_expert_workers, options.world_size));
  if (!ranks.IsAttentionRank(options.rank)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is not an attention rank (ranks ", options.num_expert_workers,
        "..", options.world_size - 1, " of ", options.world_size, ")"));
  }
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<NcclChannel> channel, NcclChannel::Open(options));
  return absl::WrapUnique(new NcclExpertAllToAll(std::move(channel), ranks, options.rank));
}

void NcclExpertAllToAll::Abort() { channel_->RequestAbort(); }

ExchangeResult NcclExpertAllToAll::Exchange(const ExchangeRequest& request,
                                            absl::FunctionRef<void()> overlapped) {
  bool ran = false;
  auto once = [&] {
    if (ran) return;
    ran = true;
    overlapped();
  };
  ExchangeResult result;
  {
    absl::MutexLock lock(&mu_);
    result = ExchangeLocked(request, once);
  }
  once();  // exactly once, even when the exchange failed before its sends
  return result;
}

ExchangeResult NcclExpertAllToAll::ExchangeLocked(const ExchangeRequest& request,
                                                  absl::FunctionRef<void()> overlapped) {
  ExchangeResult result;
  const int32_t experts = ranks_.num_expert_workers();
  absl::Status invalid;
  if (request.plan == nullptr) {
    invalid = absl::InvalidArgumentError("exchange without a dispatch plan");
  } else if (request.plan->rows > 0 && request.x == nullptr) {
    invalid = absl::InvalidArgumentError("exchange of rows without hidden states");
  }
  DispatchHeader common;
  common.sequence = sequence_;
  common.layer = request.layer;
  common.placement_version = request.placement_version;
  common.hidden = request.hidden;
  absl::StatusOr<DispatchSendLayout> layout =
      invalid.ok() ? MakeDispatchSendLayout(*request.plan, experts, common)
                   : absl::StatusOr<DispatchSendLayout>(invalid);
  // An invalid request still takes its step, empty, so the expert ranks stay in step.
  const experts::DispatchPlan empty;
  const experts::DispatchPlan& plan = layout.ok() ? *request.plan : empty;
  if (!layout.ok()) {
    invalid = layout.status();
    common.hidden = 1;
    layout = MakeDispatchSendLayout(empty, experts, common);
  }
  absl::Status s = channel_->Begin();
  if (s.ok()) {
    s = AttentionTransfers(*channel_, ranks_, rank_, plan, *layout, request.x, request.deadline,
                           overlapped);
    ++sequence_;
  }
  if (!s.ok()) {
    result.status = absl::Status(
        s.code(), absl::StrCat("NCCL expert exchange of layer ", request.layer, ": ", s.message()));
    result.failed_workers = WorkersWithPairs(plan);
    return result;
  }
  const int64_t combine_bytes = HeaderRegion(experts, kCombineHeaderWords);
  FinishExchange(*layout, reinterpret_cast<const int64_t*>(channel_->host_recv.data()),
                 channel_->host_recv.data() + combine_bytes, &result);
  if (!invalid.ok()) {
    result.outputs.clear();
    result.status = invalid;
  }
  return result;
}

NcclExpertServer::NcclExpertServer(std::unique_ptr<NcclChannel> channel, ExpertCommRanks ranks,
                                   int32_t rank, int64_t max_step_bytes)
    : channel_(std::move(channel)),
      ranks_(ranks),
      rank_(rank),
      max_step_bytes_(max_step_bytes),
      expected_sequence_(static_cast<size_t>(ranks.num_attention_workers()), 0) {}

NcclExpertServer::~NcclExpertServer() = default;

absl::StatusOr<std::unique_ptr<NcclExpertServer>> NcclExpertServer::Create(
    const NcclCommOptions& options, int64_t max_step_bytes) {
  DSV3_ASSIGN_OR_RETURN(ExpertCommRanks ranks,
                        ExpertCommRanks::Make(options.num_expert_workers, options.world_size));
  if (!ranks.IsExpertRank(options.rank)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is not an expert rank (ranks 0..",
                     options.num_expert_workers - 1, " of ", options.world_size, ")"));
  }
  DSV3_ASSIGN_OR_RETURN(std::unique_ptr<NcclChannel> channel, NcclChannel::Open(options));
  return absl::WrapUnique(
      new NcclExpertServer(std::move(channel), ranks, options.rank, max_step_bytes));
}

void NcclExpertServer::Abort() { channel_->RequestAbort(); }

absl::Status NcclExpertServer::Step(int64_t placement_version, absl::Time deadline,
                                    ComputeFn compute) {
  absl::MutexLock lock(&mu_);
  return StepLocked(placement_version, deadline, compute);
}

absl::Status NcclExpertServer::StepLocked(int64_t placement_version, absl::Time deadline,
                                          ComputeFn compute) {
  NcclChannel& ch = *channel_;
  DSV3_RETURN_IF_ERROR(ch.Begin());
  const int64_t attention = ranks_.num_attention_workers();
  const std::vector<int32_t> peers = ranks_.PeerOrder(rank_);
  auto index_of = [this](int32_t peer) {
    return static_cast<size_t>(ranks_.AttentionIndexOfRank(peer));
  };

  // Group 1: every attention rank's header.
  const int64_t header_bytes = HeaderRegion(attention, kDispatchHeaderWords);
  for (CudaBuffer* b : {&ch.host_recv, &ch.device_recv}) {
    DSV3_RETURN_IF_ERROR(ch.Check(b->Reserve(header_bytes)));
  }
  uint8_t* drecv = ch.device_recv.data();
  absl::Status s = ch.PostGroup("receiving dispatch counts", [&]() -> ncclResult_t {
    for (int32_t peer : peers) {
      const ncclResult_t r =
          ncclRecv(drecv + index_of(peer) * kDispatchHeaderWords * 8, kDispatchHeaderWords,
                   ncclInt64, peer, ch.comm(), ch.stream());
      if (!Posted(r)) return r;
    }
    return ncclSuccess;
  });
  if (s.ok()) s = ch.WaitEnqueued("receiving dispatch counts", deadline);
  if (s.ok()) {
    s = ch.Copy(ch.host_recv.data(), drecv, header_bytes, cudaMemcpyDeviceToHost,
                "copying dispatch counts to the host");
  }
  if (s.ok()) s = ch.WaitStream("waiting for dispatch counts", deadline);
  if (!s.ok()) return s;
  absl::StatusOr<DispatchRecvLayout> layout = MakeDispatchRecvLayout(
      reinterpret_cast<const int64_t*>(ch.host_recv.data()), expected_sequence_, max_step_bytes_);
  if (!layout.ok()) return ch.Fail(layout.status());
  for (int64_t& next : expected_sequence_) ++next;

  // Group 2: the payloads, into the same buffers (the headers are decoded).
  for (CudaBuffer* b : {&ch.host_recv, &ch.device_recv}) {
    if (s = ch.Check(b->Reserve(layout->recv_total)); !s.ok()) return s;
  }
  drecv = ch.device_recv.data();
  if (layout->recv_total > 0) {
    s = ch.PostGroup("receiving dispatch payloads", [&]() -> ncclResult_t {
      for (int32_t peer : peers) {
        const size_t a = index_of(peer);
        if (layout->recv_bytes[a] == 0) continue;
        const ncclResult_t r =
            ncclRecv(drecv + layout->recv_offset[a], static_cast<size_t>(layout->recv_bytes[a]),
                     ncclUint8, peer, ch.comm(), ch.stream());
        if (!Posted(r)) return r;
      }
      return ncclSuccess;
    });
    if (s.ok()) s = ch.WaitEnqueued("receiving dispatch payloads", deadline);
    if (s.ok()) {
      s = ch.Copy(ch.host_recv.data(), drecv, layout->recv_total, cudaMemcpyDeviceToHost,
                  "copying dispatch payloads to the host");
    }
    if (s.ok()) s = ch.WaitStream("waiting for dispatch payloads", deadline);
    if (!s.ok()) return s;
  }

  // Compute, then group 3: every attention rank's answer.
  const int64_t combine_bytes = HeaderRegion(attention, kCombineHeaderWords);
  const int64_t send_bytes = combine_bytes + layout->send_total;
  for (CudaBuffer* b : {&ch.host_send, &ch.device_send}) {
    if (s = ch.Check(b->Reserve(send_bytes)); !s.ok()) return s;
  }
  std::vector<ExpertStepInput> inputs =
      UnpackExpertStep(*layout, ch.host_recv.data(), ch.host_send.data() + combine_bytes);
  compute(inputs);
  EncodeCombineHeaders(inputs, placement_version, reinterpret_cast<int64_t*>(ch.host_send.data()));
  s = ch.Copy(ch.device_send.data(), ch.host_send.data(), send_bytes, cudaMemcpyHostToDevice,
              "staging expert outputs");
  if (!s.ok()) return s;
  const uint8_t* dsend = ch.device_send.data();
  s = ch.PostGroup("sending expert outputs", [&]() -> ncclResult_t {
    for (int32_t peer : peers) {
      const size_t a = index_of(peer);
      ncclResult_t r = ncclSend(dsend + a * kCombineHeaderWords * 8, kCombineHeaderWords, ncclInt64,
                                peer, ch.comm(), ch.stream());
      if (!Posted(r)) return r;
      if (layout->send_floats[a] == 0) continue;
      r = ncclSend(dsend + combine_bytes + layout->send_offset[a],
                   static_cast<size_t>(layout->send_floats[a]), ncclFloat32, peer, ch.comm(),
                   ch.stream());
      if (!Posted(r)) return r;
    }
    return ncclSuccess;
  });
  if (s.ok()) s = ch.WaitEnqueued("sending expert outputs", deadline);
  // Waited for, so the staging buffers are free for the next step.
  if (s.ok()) s = ch.WaitStream("waiting for the outputs to leave", deadline);
  return s;
}

}  // namespace dsv3::transport
