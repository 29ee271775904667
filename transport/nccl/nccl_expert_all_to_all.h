#ifndef DSV3_TRANSPORT_NCCL_NCCL_EXPERT_ALL_TO_ALL_H_
#define DSV3_TRANSPORT_NCCL_NCCL_EXPERT_ALL_TO_ALL_H_

// The expert all-to-all over NCCL grouped ncclSend/ncclRecv (GPU pods); built only with CUDA
// (DSV3_HAVE_CUDA). Both sides of one communicator: NcclExpertAllToAll (attention worker,
// the ExpertAllToAll backend) and NcclExpertServer (expert worker). The step protocol, the
// rank layout (experts first, then attention workers) and every size and offset are in
// all_to_all_layout.h; this file only moves the bytes.
//
// The communicator is non-blocking (ncclConfig_t::blocking = 0) and every wait polls with a
// deadline: a peer that dies or stalls makes the waiting rank abort the communicator
// (ncclCommAbort) and report an error instead of hanging. An aborted communicator cannot be
// repaired: every later call fails with UNAVAILABLE, and the members join again with a new
// unique id.
//
// Limits: every rank takes part in every step (NCCL matches calls by order), so the attention
// workers of one communicator step through their MoE layers together, and an attention worker
// with no tokens still exchanges an empty dispatch. Payloads are staged through pinned host
// memory (the engine computes on the CPU); the first step with a peer also sets up NCCL's
// connection to it, so give it a generous deadline.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "transport/expert_all_to_all.h"
#include "transport/nccl/all_to_all_layout.h"

namespace dsv3::transport {

// A new ncclUniqueId as bytes (NCCL_UNIQUE_ID_BYTES of them), for JoinResponse.nccl_unique_id.
// Made once per communicator by rank 0 (expert worker 0). Needs no GPU.
absl::StatusOr<std::string> MakeNcclUniqueId();

struct NcclCommOptions {
  std::string unique_id;  // ncclUniqueId bytes, as handed out over gRPC Join
  int32_t rank = 0;
  int32_t world_size = 0;
  int32_t num_expert_workers = 0;  // ranks [0, num_expert_workers) are the expert workers
  int32_t cuda_device = 0;
  // ncclCommInitRankConfig waits for every rank; given up (and aborted) after this.
  absl::Duration init_timeout = absl::Seconds(120);
};

// Owns the communicator, its stream and the staging buffers (internal to the .cc).
class NcclChannel;

// The attention worker's side. Exchange calls are serialized (one communicator, one call
// order); `overlapped` runs exactly once per call, while the GPUs move the bytes.
class NcclExpertAllToAll final : public ExpertAllToAll {
 public:
  // INVALID_ARGUMENT for a unique id of the wrong size or a rank that is not an attention
  // rank; FAILED_PRECONDITION when the CUDA device cannot be used (no GPU or driver);
  // DEADLINE_EXCEEDED when the other ranks do not join within init_timeout.
  static absl::StatusOr<std::unique_ptr<NcclExpertAllToAll>> Create(const NcclCommOptions& options);
  ~NcclExpertAllToAll() override;

  ExchangeResult Exchange(const ExchangeRequest& request,
                          absl::FunctionRef<void()> overlapped) override;

  // From any thread: a waiting Exchange aborts the communicator and returns UNAVAILABLE.
  void Abort();

 private:
  NcclExpertAllToAll(std::unique_ptr<NcclChannel> channel, ExpertCommRanks ranks, int32_t rank);
  ExchangeResult ExchangeLocked(const ExchangeRequest& request,
                                absl::FunctionRef<void()> overlapped)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Used under mu_, except its thread-safe RequestAbort.
  const std::unique_ptr<NcclChannel> channel_;
  absl::Mutex mu_;
  const ExpertCommRanks ranks_;
  const int32_t rank_;
  int64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

// The expert worker's side: one Step per step of the attention ranks. The compute sees every
// attention rank's dispatch of the step at once (so it can batch the tokens of one layer
// across them) and fills each OK input's outputs; inputs that are not OK (their payload did
// not unpack) are answered with their error. Setting an input's status refuses it (e.g. a
// placement version or layer this worker does not hold).
class NcclExpertServer {
 public:
  using ComputeFn = absl::FunctionRef<void(std::vector<ExpertStepInput>& inputs)>;

  // As NcclExpertAllToAll::Create, for an expert rank. max_step_bytes bounds the dispatch and
  // the output buffer of one step (a larger announced step is a protocol error).
  static absl::StatusOr<std::unique_ptr<NcclExpertServer>> Create(
      const NcclCommOptions& options, int64_t max_step_bytes = int64_t{4} << 30);
  ~NcclExpertServer();

  // Receives every attention rank's header and payload, runs `compute`, sends the outputs
  // back. `deadline` bounds the whole step, the wait for the first header included (an idle
  // expert passes a far deadline, or absl::InfiniteFuture() and relies on Abort). An error
  // means the communicator was aborted; the worker rejoins with a new one.
  absl::Status Step(int64_t placement_version, absl::Time deadline, ComputeFn compute);

  // From any thread: a waiting Step aborts the communicator and returns UNAVAILABLE.
  void Abort();

 private:
  NcclExpertServer(std::unique_ptr<NcclChannel> channel, ExpertCommRanks ranks, int32_t rank,
                   int64_t max_step_bytes);

  absl::Status StepLocked(int64_t placement_version, absl::Time deadline, ComputeFn compute)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<NcclChannel> channel_;  // as in NcclExpertAllToAll
  absl::Mutex mu_;
  const ExpertCommRanks ranks_;
  const int32_t rank_;
  const int64_t max_step_bytes_;
  std::vector<int64_t> expected_sequence_ ABSL_GUARDED_BY(mu_);  // per attention index
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_NCCL_NCCL_EXPERT_ALL_TO_ALL_H_
