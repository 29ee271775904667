#ifndef DSV3_TRANSPORT_EXPERT_ALL_TO_ALL_H_
#define DSV3_TRANSPORT_EXPERT_ALL_TO_ALL_H_

// The attention worker's side of the expert all-to-all, one MoE layer at a time: dispatch
// (each expert worker gets its rows and (row, expert) pairs, dispatch_plan.h) and combine
// (each answers one output row per pair). Backends: UCX active messages
// (ucx_expert_client.h; CPU pods, what runs here) and NCCL grouped send/recv
// (nccl_expert_all_to_all.h; GPU pods). Colocated experts need no all-to-all: the engine's
// LocalExpertExecutor runs them.

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "experts/dispatch_plan.h"

namespace dsv3::transport {

struct ExchangeRequest {
  int64_t layer = 0;
  int64_t placement_version = 0;  // of the map the plan was made with
  const experts::DispatchPlan* plan = nullptr;
  const float* x = nullptr;  // [plan->rows, hidden]
  int64_t hidden = 0;
  absl::Time deadline = absl::InfiniteFuture();
};

struct ExchangeResult {
  absl::Status status;
  // outputs[w]: [plan.destinations[w].num_pairs(), hidden] for every worker that got pairs.
  std::vector<experts::FloatBuffer> outputs;
  // Workers that failed (peer gone, deadline, error answer): the caller marks them down and
  // may retry on replicas.
  std::vector<int32_t> failed_workers;
  // The highest placement version any answering worker holds (a newer map to fetch).
  int64_t newest_placement_version = 0;
};

class ExpertAllToAll {
 public:
  virtual ~ExpertAllToAll() = default;
  // Sends every destination with pairs its dispatch, runs `overlapped` (the shared expert)
  // while the experts compute, then waits for every answer until the deadline. Thread-safe:
  // concurrent exchanges (different forward steps) are told apart by call ids.
  virtual ExchangeResult Exchange(const ExchangeRequest& request,
                                  absl::FunctionRef<void()> overlapped) = 0;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_EXPERT_ALL_TO_ALL_H_
