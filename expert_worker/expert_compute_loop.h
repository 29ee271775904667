#ifndef DSV3_EXPERT_WORKER_EXPERT_COMPUTE_LOOP_H_
#define DSV3_EXPERT_WORKER_EXPERT_COMPUTE_LOOP_H_

// The expert worker's compute thread: takes every dispatch that has arrived (from every
// attention worker), groups them by layer, runs each layer's pairs as one grouped
// computation per expert (engine::ComputeExpertPairs over the concatenated rows), answers
// each sender with its slice, and counts tokens per (layer, expert), queue and compute time.

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "expert_worker/expert_shard.h"
#include "transport/ucx/ucx_expert_server.h"

namespace dsv3::expert {

// Cumulative load since start (a watcher reports differences between two snapshots).
struct ExpertLoadSnapshot {
  std::vector<int64_t> tokens;  // [moe layer index, expert]
  int64_t queue_ns = 0;
  int64_t compute_ns = 0;
  int64_t batches = 0;     // grouped computations run
  int64_t dispatches = 0;  // dispatch messages answered
};

class ExpertComputeLoop {
 public:
  ExpertComputeLoop(ExpertShard& shard, transport::UcxExpertServer& server);
  ~ExpertComputeLoop();  // stops the thread
  void Stop();
  ExpertLoadSnapshot Snapshot() const;

 private:
  void Loop();
  void RunLayer(const ExpertHolding& holding, int64_t layer,
                const std::vector<transport::ExpertDispatch*>& group);

  ExpertShard& shard_;
  transport::UcxExpertServer& server_;
  const int64_t num_experts_;
  std::vector<int64_t> layer_slot_;  // model layer -> index into moe layers (-1: none)
  std::unique_ptr<std::atomic<int64_t>[]> tokens_;
  std::vector<metrics::Counter*> token_counters_;  // dsv3_expert_tokens_total children
  std::atomic<int64_t> queue_ns_{0}, compute_ns_{0}, batches_{0}, dispatches_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace dsv3::expert

#endif  // DSV3_EXPERT_WORKER_EXPERT_COMPUTE_LOOP_H_
