#ifndef DSV3_EXPERTS_DISPATCH_PLAN_H_
#define DSV3_EXPERTS_DISPATCH_PLAN_H_

// One MoE layer of one batch, routed to the expert workers: which rows (hidden states) and
// which (row, expert) pairs go to each worker, and where each (row, slot)'s output comes
// back. Every backend of the all-to-all (in-process, UCX, NCCL) sends what this plans and
// finds each slot's output with SlotOutputRows, so the arithmetic is the same whatever the
// wire.
//
// A worker is sent each row once, however many of its experts the row chose; it answers one
// output row per pair (the expert's unweighted output). The attention worker then adds
// weight * output in slot order, the order LocalExpertExecutor adds them in, so a cluster
// with expert workers computes what a colocated one does.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "experts/expert_placement.h"

namespace dsv3::experts {

// Resizing leaves new elements uninitialised: dispatch and combine buffers are written over
// whole, and zero-filling megabytes per MoE layer costs about as much as receiving them.
template <typename T>
struct UninitializedAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitializedAllocator<U>;
  };
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using FloatBuffer = std::vector<float, UninitializedAllocator<float>>;

struct DispatchPlan {
  struct Destination {
    std::vector<int32_t> rows;         // batch rows sent to this worker, ascending
    std::vector<int32_t> pair_token;   // per pair: index into `rows`
    std::vector<int32_t> pair_expert;  // per pair: the expert to run
    int64_t num_pairs() const { return static_cast<int64_t>(pair_expert.size()); }
  };
  int64_t rows = 0;
  int64_t top_k = 0;
  std::vector<Destination> destinations;  // by worker index (empty when nothing goes there)
  std::vector<int32_t> slot_worker;       // [rows, top_k]: the worker that runs the slot
  std::vector<int32_t> slot_pair;         // [rows, top_k]: its pair index at that worker
};

// experts: [rows, top_k]. A replicated expert's tokens are spread over its replicas in turn
// (starting at `spread_seed`), skipping workers with worker_up[w] == false; an expert with no
// replica up is UNAVAILABLE (naming it), an id outside the layer INVALID_ARGUMENT.
absl::StatusOr<DispatchPlan> PlanDispatch(const ExpertPlacement::Layer& layer,
                                          const int32_t* experts, int64_t rows, int64_t top_k,
                                          int32_t num_workers, const std::vector<bool>& worker_up,
                                          uint64_t spread_seed = 0);

// Wire layout of one destination's dispatch payload: the rows' hidden states
// ([rows, hidden] f32), then the pairs ([pairs] x {int32 row index, int32 expert}).
int64_t DispatchPayloadBytes(int64_t rows, int64_t pairs, int64_t hidden);
void PackDispatch(const DispatchPlan::Destination& d, const float* x, int64_t hidden, uint8_t* out);

// A received dispatch payload, checked: sizes agree and every pair's row index is in range.
struct DispatchView {
  const float* x = nullptr;  // [rows, hidden] (aligned: the payload must be 4-byte aligned)
  std::vector<int32_t> pair_token;
  std::vector<int32_t> pair_expert;
  int64_t rows = 0;
};
absl::StatusOr<DispatchView> UnpackDispatch(const uint8_t* payload, int64_t bytes, int64_t rows,
                                            int64_t pairs, int64_t hidden);

// slots[s] = row slot_pair[s] of outputs[slot_worker[s]] ([pairs, hidden] per worker): where
// each slot's expert output landed, for the engine to add them in slot order without a copy.
void SlotOutputRows(const DispatchPlan& plan, const std::vector<const float*>& outputs,
                    int64_t hidden, const float** slots);
// The same rows copied into ys ([rows * top_k, hidden]).
void GatherOutputs(const DispatchPlan& plan, const std::vector<const float*>& outputs,
                   int64_t hidden, float* ys);

}  // namespace dsv3::experts

#endif  // DSV3_EXPERTS_DISPATCH_PLAN_H_
