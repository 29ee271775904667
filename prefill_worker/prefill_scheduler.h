#ifndef DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_
#define DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_

// The prefill worker's engine loop. Queued prompts are batched each step and chunked to a
// token budget (a long prompt does not stall short ones). After each layer of a step, the
// new rows of that layer go to each request's decode worker with UCX puts while the next
// layer computes; when a prompt's last chunk is done, its transfer is flushed and the first
// token is sampled and reported.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsv3/v1/worker.pb.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "transport/kv_transfer/kv_writer.h"

namespace dsv3::prefill {

struct PrefillSchedulerOptions {
  std::string model_name;  // the `model` label of the metrics
  // Prompt tokens computed per step, across all requests in the step.
  int chunk_tokens = 512;
  // Longest wait for a request's KV to be flushed into its decode worker.
  absl::Duration transfer_timeout = absl::Seconds(10);
};

struct PrefillJob {
  std::string request_id;
  std::vector<int32_t> prompt;
  engine::SamplingParams sampling;
  int32_t logprobs = 0;
  transport::KvWriteTarget target;
  std::string decode_address;  // for error messages
  absl::Time deadline = absl::InfiniteFuture();
  // Called once, on the scheduler thread, with the response or the error.
  std::function<void(absl::StatusOr<v1::PrefillResponse>)> done;
};

struct PrefillLoad {
  int64_t queued_tokens = 0;
  int queued_requests = 0;
  double tokens_per_second = 0;
};

class PrefillScheduler {
 public:
  static absl::StatusOr<std::unique_ptr<PrefillScheduler>> Create(
      const engine::Model& model, const engine::KvCacheLayout& layout,
      transport::KvWriter& writer, PrefillSchedulerOptions options);
  // Stops the loop; queued requests end with UNAVAILABLE.
  ~PrefillScheduler();

  // Validates and queues; errors that need no compute are returned at once.
  absl::Status Submit(std::unique_ptr<PrefillJob> job);
  PrefillLoad Load() const;

 private:
  struct Active {
    std::unique_ptr<PrefillJob> job;
    engine::KvSequence kv;  // in the local pool
    std::unique_ptr<transport::KvTransfer> transfer;
    absl::Status failure;
    absl::Time enqueued;
    absl::Time first_step = absl::InfinitePast();
    int64_t compute_ns = 0;
    std::string last_hidden;  // float32 bytes of h_{n-1} (models with MTP)
  };
  struct Chunk {
    Active* request;
    int64_t begin;  // first prompt position in this step
    int64_t count;
  };

  PrefillScheduler(const engine::Model& model, transport::KvWriter& writer,
                   PrefillSchedulerOptions options)
      : model_(model), writer_(writer), options_(options) {}
  void Loop();
  void RunStep(std::vector<Chunk>& chunks);
  // Sends rows [begin, begin+count) of `layer` of one request to its decode worker.
  void SendLayer(Chunk& chunk, int64_t layer, int64_t begin, int64_t count);
  // The MTP layer's rows for this step's prompt positions (models with MTP).
  absl::Status RunMtp(std::vector<Chunk>& chunks, const engine::ForwardResult& main);
  void Complete(Active& request, std::span<const float> last_logits);

  const engine::Model& model_;
  transport::KvWriter& writer_;
  const PrefillSchedulerOptions options_;
  std::unique_ptr<engine::KvCachePool> pool_;  // loop thread only

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Active>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double tokens_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Active>> running_;  // loop thread only
  std::thread loop_;
};

}  // namespace dsv3::prefill

#endif  // DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_
