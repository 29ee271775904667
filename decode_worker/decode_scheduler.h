#ifndef DSV3_DECODE_WORKER_DECODE_SCHEDULER_H_
#define DSV3_DECODE_WORKER_DECODE_SCHEDULER_H_

// The decode worker's engine loop: KV leases in the paged pool (Reserve -> a prefill worker
// writes the prompt's rows -> Start), and continuous batching: at every step, sequences
// that started join the running batch, finished or cancelled ones leave and free their
// blocks, and every running sequence advances by one token.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kv_block_hash.h"
#include "decode_worker/kv_landing_table.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/speculative.h"
#include "worker_common/kv_event_log.h"
#include "worker_common/sequence_end.h"

namespace dsv3::decode {

struct DecodeSchedulerOptions {
  std::string model_name;  // the `model` label of the metrics
  // Most sequences in one step's batch; more wait for a slot.
  int max_running = 64;
  // How long a lease waits for its Start before its blocks are freed.
  absl::Duration default_lease = absl::Seconds(30);
  // No lease lives longer, whatever a caller asks (a lease pins pool blocks).
  absl::Duration max_lease = absl::Minutes(2);
  // MTP speculative decoding (models with an MTP layer): each step drafts up to
  // num_draft_tokens tokens with the MTP layer (engine/speculative.h) and verifies them in
  // the same main forward pass.
  bool speculative_mtp = false;
  int32_t num_draft_tokens = 1;
  // Prefix caching: the full blocks of a finished sequence (prompt and answer) stay in the
  // pool, named by their content, until their room is needed; a Reserve whose prompt begins
  // with cached blocks takes them instead of having the prefill worker send them again.
  bool prefix_cache = true;
  // Most blocks the cache keeps that no request holds; 0: any block not in use.
  int64_t prefix_cache_max_blocks = 0;
  // Names blocks the way the router and the prefill workers do (common/kv_block_hash.h).
  KvCacheIdentity kv_identity;
  // prefill_here: most prompt tokens all such sequences compute together in one step, so
  // that a suffix computed here lengthens each step of the running batch by a bounded amount
  // (chunked over several steps); 0: each suffix in one step.
  int64_t local_prefill_chunk_tokens = 0;
  // Where prefill workers mark a lease's prompt KV as landed: a Start that no prefill
  // preceded is refused (prefill_here ones compute the prompt and need no mark). Outlives
  // the scheduler. Null: not checked (a pool no prefill worker writes into).
  KvLandingTable* landing = nullptr;
};

struct LeaseGrant {
  uint64_t lease_id = 0;
  // Drawn at random per lease; Start and Release must present it, so that no one who merely
  // guesses or sees a lease id can take over or free another request's blocks.
  uint64_t secret = 0;
  std::vector<int32_t> block_ids;
  absl::Time expiry;
  // The first cached_tokens positions came from the prefix cache (not to be written).
  int64_t cached_tokens = 0;
  // The lease's slot in the landing table (options.landing: its byte offset there) and the
  // tag that marks it landed; -1 without a table.
  int64_t landing_offset = -1;
  uint64_t landing_tag = 0;
};

// Where a running sequence's output goes. Called on the scheduler thread: must not block.
class DecodeSink {
 public:
  virtual ~DecodeSink() = default;
  virtual void OnTokens(std::span<const engine::SampledToken> tokens) = 0;
  // The last call: why the sequence ended, its usage, and an error when it failed.
  virtual void OnFinish(worker::FinishReason reason, const worker::SequenceUsage& usage,
                        const absl::Status& status) = 0;
};

struct DecodeStart {
  uint64_t lease_id = 0;
  uint64_t lease_secret = 0;
  std::vector<int32_t> prompt;  // the whole prompt (penalties need it)
  // Its last this-many tokens are the request's earlier output (a migrated request).
  int64_t resumed_output_tokens = 0;
  int32_t first_token = 0;  // sampled by the prefill worker; fed first
  engine::SamplingParams sampling;
  // Structured output (null: free text); it sees the resumed output and the first token.
  std::unique_ptr<engine::TokenConstraint> constraint;
  int32_t max_tokens = 16;    // completion tokens in all, the first token included
  int32_t eos_token_id = -1;  // -1: none
  // No prefill worker ran: the first step computes the prompt positions the lease's cached
  // prefix lacks and samples the first token (first_token unused). Otherwise the MTP draft
  // starts from the hidden state the prefill worker put into the lease's landing slot.
  bool prefill_here = false;
};

struct DecodeLoad {
  int64_t blocks_total = 0;
  int64_t blocks_free = 0;
  int running = 0;
  int waiting = 0;
  int leases = 0;
  double tokens_per_second = 0;
  int64_t blocks_cached = 0;  // included in blocks_free
};

class DecodeScheduler {
 public:
  // The KV pool is the scheduler's own memory, or, with `pool_memory`, a caller's buffer of
  // `pool_memory_bytes` (at least layout.total_bytes()) that must outlive the scheduler.
  static absl::StatusOr<std::unique_ptr<DecodeScheduler>> Create(
      const engine::Model& model, const engine::KvCacheLayout& layout,
      DecodeSchedulerOptions options, void* pool_memory = nullptr, size_t pool_memory_bytes = 0);
  // Stops the loop; sequences still running end with UNAVAILABLE.
  ~DecodeScheduler();
  DecodeScheduler(const DecodeScheduler&) = delete;
  DecodeScheduler& operator=(const DecodeScheduler&) = delete;

  engine::KvCachePool& pool() { return *pool_; }
  // The prefix cache's stored and evicted block names, for WatchLoad.
  const worker::KvEventLog& kv_events() const { return kv_events_; }

  // Allocates blocks for prompt_tokens + max_new_tokens positions, starting with the cached
  // blocks `prompt` begins with (when given and the cache is on). RESOURCE_EXHAUSTED when
  // the pool lacks them; INVALID_ARGUMENT when they exceed the model's context.
  absl::StatusOr<LeaseGrant> Reserve(int prompt_tokens, int max_new_tokens, absl::Duration lease,
                                     std::span<const int32_t> prompt = {});
  // Frees a lease that has not started. False when it is unknown (expired, started, freed)
  // or `secret` is not its secret.
  bool Release(uint64_t lease_id, uint64_t secret);
  // Starts decoding a lease whose prompt KV is now in its blocks. NOT_FOUND for an unknown
  // or expired lease, PERMISSION_DENIED for a wrong secret, FAILED_PRECONDITION when no
  // prefill has marked the lease landed (and not prefill_here).
  absl::Status Start(DecodeStart start, std::shared_ptr<DecodeSink> sink);
  // Ends a started sequence (the client left); its sink gets OnFinish(CANCELLED).
  void Cancel(uint64_t lease_id);
  // Before a shutdown: refuses new leases, lets the sequences in flight run until `deadline`,
  // then ends those left (and leases not started) with a resumable UNAVAILABLE
  // (common/grpc_status.h), so that the router resumes them on another decode worker.
  // Returns once none is left.
  void Drain(absl::Time deadline);

  DecodeLoad Load() const;

 private:
  struct Lease {
    engine::KvSequence kv;
    int prompt_tokens = 0;
    int max_new_tokens = 0;
    absl::Time expiry;
    int64_t cached_tokens = 0;  // from the prefix cache
    uint64_t secret = 0;
    KvLandingTable::Slot landing;  // freed with the lease
  };
  struct Sequence {
    uint64_t lease_id = 0;
    engine::KvSequence kv;
    std::unique_ptr<engine::RequestSampler> sampler;
    int32_t next_input = 0;
    int32_t generated = 0;  // completion tokens so far, the first included
    int32_t max_tokens = 0;
    int32_t eos_token_id = -1;
    int32_t prompt_tokens = 0;
    std::shared_ptr<DecodeSink> sink;
    // Prompt and emitted tokens: names the blocks kept in the prefix cache at the end.
    std::vector<int32_t> tokens;
    std::atomic<bool> cancelled{false};
    bool failed = false;  // ended with an error: its KV is not kept
    // prefill_here: prompt tokens the first steps compute (empty once they ran; the first
    // prefill_done of them are computed), and how many came from the prefix cache (reported
    // in usage).
    std::vector<int32_t> pending_prompt;
    int64_t prefill_done = 0;
    int32_t cached_prompt_tokens = 0;
    absl::Time started;  // Start() was called: queue time runs until it joins a step
    // Speculation: the MTP rows still to append and the drafts so far.
    bool speculative = false;
    engine::SpeculativeState spec;

    worker::SequenceUsage Usage() const {
      return {prompt_tokens, generated, cached_prompt_tokens, static_cast<int32_t>(spec.drafted),
              static_cast<int32_t>(spec.accepted)};
    }
  };

  DecodeScheduler(const engine::Model& model, DecodeSchedulerOptions options)
      : model_(model), options_(options) {}
  void Loop();
  // One step over `batch`; returns the sequences that finished (already reported).
  std::vector<Sequence*> Step(const std::vector<Sequence*>& batch);
  // The last step of a prefill_here sequence's suffix (its last chunk went through the model
  // with the batch): samples the first token. Returns false when the sequence finished.
  bool FinishLocalPrefill(
      Sequence* seq, const engine::ForwardResult& out, size_t index,
      const std::function<void(Sequence*, worker::FinishReason, const absl::Status&)>& finish);
  // A speculating prefill_here sequence keeps the hidden states of the `rows` positions its
  // chunk computed: with the tokens after them they give the MTP rows once the suffix is
  // done (mtp_num_tokens stays where the cached prefix ends until then).
  void KeepPrefillHidden(Sequence* seq, const engine::ForwardResult& out, size_t index,
                         int64_t rows);
  // Appends each speculating sequence's pending MTP rows and returns its drafts.
  std::vector<std::vector<int32_t>> Draft(const std::vector<Sequence*>& active);
  // Frees the sequence's blocks; with `keep_kv`, its full blocks stay in the prefix cache.
  void FinishLocked(Sequence* seq, bool keep_kv) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Names the first blocks of `kv` that `tokens` (valid_tokens of them with complete KV in
  // every layer this worker reads) fill.
  void NameBlocksLocked(const engine::KvSequence& kv, std::span<const int32_t> tokens,
                        int64_t valid_tokens) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordMetricsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the pool's new prefix-cache events into kv_events_.
  void PublishKvEventsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const engine::Model& model_;
  const DecodeSchedulerOptions options_;
  std::unique_ptr<engine::KvCachePool> pool_;
  worker::KvEventLog kv_events_;

  mutable absl::Mutex mu_;
  // Starts at random: a lease id of an earlier process on the same address (a restart) is
  // unknown here, never another request's lease.
  uint64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
  // Started sequences by lease id; `waiting_` ones join `running_` at a step boundary.
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_ ABSL_GUARDED_BY(mu_);
  std::deque<Sequence*> waiting_ ABSL_GUARDED_BY(mu_);
  std::vector<Sequence*> running_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // no new leases
  bool evict_ ABSL_GUARDED_BY(mu_) = false;     // the drain's deadline passed
  double tokens_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_reported_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread loop_;
};

}  // namespace dsv3::decode

#endif  // DSV3_DECODE_WORKER_DECODE_SCHEDULER_H_
