#ifndef DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_
#define DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_

// The prefill worker's engine loop. Queued prompts are batched each step and chunked to a
// token budget (a long prompt does not stall short ones). After each layer of a step, the
// new rows of that layer go to each request's decode worker with UCX puts while the next
// layer computes; when a prompt's last chunk is done, its transfer is flushed and the first
// token is sampled and reported.
//
// A job may arrive without its destination (the router reserves the decode worker's blocks
// while the prompt queues and computes): its rows stay in the local pool until Update
// brings the destination, then everything computed so far is sent at once and the rest
// layer by layer as usual. Jobs end early at a step boundary when cancelled (Update), when
// their caller has gone, or at their deadline, after their in-flight writes completed.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kv_block_hash.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "prefill_worker/decode_liveness.h"
#include "transport/kv_transfer/kv_writer.h"
#include "worker_common/kv_event_log.h"

namespace dsv3::prefill {

// The decode worker's lease a destination writes into (KvDestination.lease_id/secret).
struct DecodeLease {
  uint64_t id = 0;  // 0: not known
  uint64_t secret = 0;
};

struct PrefillSchedulerOptions {
  std::string model_name;  // the `model` label of the metrics
  // Prompt tokens computed per step, across all requests in the step.
  int chunk_tokens = 512;
  // Longest wait for a request's KV to be flushed into its decode worker.
  absl::Duration transfer_timeout = absl::Seconds(10);
  // Prefix caching: a prompt's full blocks stay in the local pool after its job, named by
  // their content; a later prompt that begins with them computes only the rest.
  bool prefix_cache = true;
  // Most blocks the cache keeps that no job holds; 0: any block of the pool not in use.
  int64_t prefix_cache_max_blocks = 0;
  // Names blocks the way the router and the decode workers do (common/kv_block_hash.h).
  KvCacheIdentity kv_identity;
  // Called (on the scheduler thread: must not block) when a job whose caller is gone ends
  // with a destination: no Decode will follow, so its lease may be freed at once rather
  // than at its expiry (a router that died between Reserve and Decode). Only after the
  // job's puts completed, so nothing lands in the blocks once they are someone else's.
  std::function<void(const std::string& decode_address, DecodeLease lease)> on_abandoned_lease;
};

// A finished prefill: the first token (sampled here) and what the job cost.
struct PrefillResult {
  engine::SampledToken first_token;
  int64_t kv_bytes = 0;        // row bytes put into the decode worker's pool
  int64_t kv_transfer_ns = 0;  // from the first puts to the completed flush
  int64_t queue_ns = 0;        // queued before the first chunk ran
  int64_t compute_ns = 0;
  int64_t destination_wait_ns = 0;  // waited for the destination after the last chunk
  int32_t cached_tokens = 0;        // prompt tokens the prefix cache held
};

struct PrefillJob {
  std::string request_id;
  // Names the job for Update; 0: the destination is known at Submit.
  uint64_t job_id = 0;
  std::vector<int32_t> prompt;
  // The last this-many prompt tokens are the request's earlier output (a migrated request).
  int64_t resumed_output_tokens = 0;
  engine::SamplingParams sampling;
  // Structured output (null: free text), and the most output tokens the request may have,
  // the resumed ones included (the constraint keeps room to finish within them).
  std::unique_ptr<engine::TokenConstraint> constraint;
  int64_t max_output_tokens = 0;
  int32_t logprobs = 0;
  std::optional<transport::KvWriteTarget> target;  // absent: comes with Update
  std::string decode_address;                      // for error messages
  DecodeLease lease;                               // of the target
  absl::Time deadline = absl::InfiniteFuture();
  // True once the caller has gone (the call was cancelled); polled between steps.
  std::function<bool()> caller_gone;
  // Called once, on the scheduler thread, with the response or the error.
  std::function<void(absl::StatusOr<PrefillResult>)> done;
};

// What UpdatePrefill brings for a job: its destination, or the end of it.
struct PrefillUpdate {
  std::optional<transport::KvWriteTarget> target;
  std::string decode_address;
  DecodeLease lease;
  absl::Time lease_deadline = absl::InfiniteFuture();
  absl::Status cancel;  // not OK: end the job with this status
};

struct PrefillLoad {
  int64_t queued_tokens = 0;
  int queued_requests = 0;
  double tokens_per_second = 0;
  int64_t blocks_total = 0;
  int64_t blocks_free = 0;  // free or cached
  int64_t blocks_cached = 0;
};

class PrefillScheduler {
 public:
  static absl::StatusOr<std::unique_ptr<PrefillScheduler>> Create(
      const engine::Model& model, const engine::KvCacheLayout& layout, transport::KvWriter& writer,
      PrefillSchedulerOptions options);
  // Stops the loop; queued requests end with UNAVAILABLE.
  ~PrefillScheduler();

  // Validates and queues; errors that need no compute are returned at once.
  absl::Status Submit(std::unique_ptr<PrefillJob> job);
  // Hands a job (queued, running, or not arrived yet) its destination or its end. An
  // update for a job that never comes is dropped after a while.
  absl::Status Update(uint64_t job_id, PrefillUpdate update);
  PrefillLoad Load() const;
  // The prefix cache's stored and evicted block names, for WatchLoad.
  const worker::KvEventLog& kv_events() const { return kv_events_; }

 private:
  struct Active {
    std::unique_ptr<PrefillJob> job;
    engine::KvSequence kv;                            // in the local pool
    std::unique_ptr<transport::KvTransfer> transfer;  // null until the destination is known
    int64_t cached_tokens = 0;  // prompt positions taken from the local prefix cache
    absl::Status failure;
    absl::Time enqueued;
    absl::Time first_step = absl::InfinitePast();
    int64_t compute_ns = 0;
    std::string last_hidden;  // float32 bytes of h_{n-1} (models with MTP)
    // Prompt positions of the step running now (for sending earlier layers' rows when the
    // destination arrives mid-step).
    int64_t step_begin = 0;
    int64_t step_end = 0;
    // Computed, sampled, waiting for the destination.
    std::optional<engine::SampledToken> token;
    absl::Time computed_at;
    int64_t destination_wait_ns = 0;
    bool answered = false;
  };
  struct PendingUpdate {
    std::unique_ptr<transport::KvTransfer> transfer;
    std::string decode_address;
    DecodeLease lease;
    absl::Time lease_deadline = absl::InfiniteFuture();
    absl::Status cancel;
    absl::Time received;
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
  // Between steps: ends what was cancelled or timed out, hands out destinations, answers
  // jobs whose destination was all they waited for.
  void ServiceJobs();
  void RunStep(std::vector<Chunk>& chunks);
  // A job joining the running set starts from the cached blocks its prompt begins with.
  void TakeCachedPrefix(Active& a);
  // Sends rows [begin, begin+count) of `layer` of one request to its decode worker (once
  // its destination is known; the rows stay in the local pool until then).
  void SendLayer(Chunk& chunk, int64_t layer, int64_t begin, int64_t count);
  // Rows [begin, end) of layers [first_layer, end_layer) (the MTP layer has no row for
  // the last prompt position).
  void SendRows(Active& a, int64_t first_layer, int64_t end_layer, int64_t begin, int64_t end);
  // Moves the job's update, if one arrived, into it; true when it now has a destination.
  bool TakeUpdate(Active& a);
  // The MTP layer's rows for this step's prompt positions (models with MTP).
  absl::Status RunMtp(std::vector<Chunk>& chunks, const engine::ForwardResult& main);
  void Complete(Active& request, std::span<const float> last_logits);
  // Flushes the transfer and answers with the first token.
  void Answer(Active& request, const engine::SampledToken& token);
  // Answers with an error once none of the job's writes is in flight; then, when its caller
  // is gone and `may_release_lease` (not at shutdown), hands its lease to on_abandoned_lease.
  void EndWithError(Active& request, const absl::Status& status, bool may_release_lease = true);

  const engine::Model& model_;
  transport::KvWriter& writer_;
  const PrefillSchedulerOptions options_;
  std::unique_ptr<engine::KvCachePool> pool_;  // loop thread only
  worker::KvEventLog kv_events_;
  DecodeLiveness liveness_;  // flushes ask it whether their decode worker still answers

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Active>> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  double tokens_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  PrefillLoad pool_load_ ABSL_GUARDED_BY(mu_);  // the pool's counts after the last step
  int64_t evictions_reported_ = 0;              // loop thread only
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<uint64_t, PendingUpdate> updates_ ABSL_GUARDED_BY(mu_);
  bool updates_arrived_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<uint64_t> live_jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Active>> running_;  // loop thread only
  std::thread loop_;
};

}  // namespace dsv3::prefill

#endif  // DSV3_PREFILL_WORKER_PREFILL_SCHEDULER_H_
