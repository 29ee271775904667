#ifndef DSV3_ROUTER_COMPLETION_RUN_H_
#define DSV3_ROUTER_COMPLETION_RUN_H_

// One completion of one request, end to end, as asynchronous gRPC calls (no thread waits
// on a worker):
//   at once: Reserve on a decode worker D  (RESOURCE_EXHAUSTED/UNAVAILABLE: try another D,
//                                           or wait for capacity)
//            Prefill on a prefill worker P, with a job id and no destination yet: the
//                prompt queues and computes while D reserves
//   Reserve answered: UpdatePrefill(job, D's KvDestination) -> P sends the rows computed so
//       far and the rest layer by layer (P died: retry on another P while the lease is
//       valid, the destination now in the Prefill)
//   first token -> text; Decode stream on D -> tokens -> text, stop strings
//   Release the lease whenever a Decode will not follow.
// Conditional disaggregation: when the decode worker's prefix cache leaves only a short
// suffix of the prompt (CompletionPlan::decode_prefill_max_tokens), there is no Prefill:
// Reserve, then Decode(prefill_here), and the decode worker computes the suffix itself.
// Migration: when the decode worker fails (the Decode stream breaks: killed, draining; or
// the prefill worker reports ABORTED: the KV transfer into its lease failed), the request is
// resumed (Resume) as a new attempt on another decode worker, up to
// CompletionPlan::migration_limit times: its prompt is the original prompt + the tokens
// streamed so far (resumed_output_tokens: the sampler continues its stream and penalties
// after them) and its max_tokens what remains; the client's stream goes on with the next
// token. A prefill worker's prefix cache holds the original prompt, so mostly the streamed
// tokens are computed again.
// Every call carries the request's deadline; Cancel() reaches the worker holding the
// request (the Decode stream is cancelled; a running prefill gets UpdatePrefill(cancel)).
// A lease is released only once no prefill can write into it any more (its call returned),
// so no KV write can land in blocks given to someone else.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsv3/v1/inference.pb.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "router/completion_state.h"
#include "router/completion_text.h"
#include "router/delayed_tasks.h"
#include "router/live_count.h"
#include "router/response_parsers.h"
#include "router/tool_calls/tool_call_format.h"
#include "router/worker_registry.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::router {

// What every completion of a request shares.
struct CompletionPlan {
  std::string request_id;
  std::vector<int32_t> prompt;
  v1::SamplingParams sampling;  // resolved: max_tokens > 0, seed set when sampling
  int32_t eos_token_id = -1;
  bool return_text = true;
  const tokenizer::Tokenizer* tokenizer = nullptr;  // may be null
  std::string config_hash;
  absl::Time deadline;
  absl::Time arrival;
  std::string model_name;  // the `model` label of the metrics
  // Names of the prompt's full KV blocks (common/kv_block_hash.h), for KV-aware routing;
  // empty when the workers keep no prefix cache.
  std::vector<uint64_t> kv_names;
  // Conditional disaggregation: when the chosen decode worker's prefix cache holds more of
  // the prompt than any prefill worker's and leaves at most this many tokens to compute,
  // the decode worker computes them itself (no prefill worker, no KV transfer). 0: never.
  int32_t decode_prefill_max_tokens = 0;
  // How many times the request may be resumed on another decode worker (see above).
  int migration_limit = 0;
  // Non-null: the text is parsed for tool calls in this format (GenerateResponse.tool_calls).
  std::shared_ptr<const ToolCallFormat> tool_calls;
  // Non-empty: the text's reasoning is split off with this parser (router/reasoning/).
  std::string reasoning_parser;
};

class CompletionRun : public std::enable_shared_from_this<CompletionRun> {
 public:
  using ResponseFn = std::function<void(const v1::GenerateResponse&)>;
  using DoneFn = std::function<void(const absl::Status&)>;

  CompletionRun(std::shared_ptr<const CompletionPlan> plan, int index, WorkerRegistry& workers,
                DelayedTasks& delayed, std::shared_ptr<LiveCount> live, ResponseFn on_response,
                DoneFn on_done);
  ~CompletionRun();
  void Start();
  void Cancel();

 private:
  class DecodeReader;
  // Starts an attempt: picks the workers and sends the first calls.
  void Begin();
  // Resumes the request on another decode worker as prompt + the tokens streamed so far,
  // once no call of the failed attempt is pending (its Decode stream ended, or its Prefill
  // answered before any Decode). `reason` labels dsv3_request_migrations_total. False: it
  // cannot be (limit reached, past the deadline, ended); the caller ends the request.
  bool Resume(const char* reason, const std::string& why);
  // Asks the registry to call OnDecodeStalled if the attempt's decode worker stops answering
  // (a stopped or wedged process keeps its connections open: only its silence tells).
  void WatchDecodeWorker(const std::string& address);
  // Ends the attempt's pending Reserve or Decode stream on it; both then resume elsewhere.
  void OnDecodeStalled(int attempt);
  bool DecodeStalled();
  // The same for the prefill worker computing job `job_id`: OnPrefillStalled cancels the
  // Prefill call, and OnPrefilled starts the prompt again on another prefill worker.
  void WatchPrefillWorker(const std::string& address, uint64_t job_id);
  void OnPrefillStalled(uint64_t job_id);
  // After a stalled prefill worker's call was cancelled. When it had the lease, it may still
  // write into it once it runs again (up to the lease's end less a margin, where it stops):
  // that lease is abandoned (the decode worker frees it when it expires) and a new one is
  // reserved. False: no other prefill worker, or past the deadline.
  bool RestartAfterPrefillStall(const std::string& stalled, bool lease_was_shared);
  // What an attempt's decode side held (its worker, the blocks noted there, the stall
  // watch), taken out of the run with its lease forgotten (neither released nor used);
  // Forget it outside mu_.
  struct DroppedDecode {
    WorkerView decode;
    int64_t blocks = 0;
    uint64_t watch = 0;
  };
  DroppedDecode DropDecodeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forget(const DroppedDecode& dropped);
  void ReserveOn(WorkerView decode);
  void OnReserved(const grpc::Status& status);
  // Every decode worker is full: try again shortly (until the deadline), as a queue would.
  void WaitForCapacity(const absl::Status& last_error);
  void PrefillOn(WorkerView prefill);
  void OnPrefilled(const grpc::Status& status);
  // UpdatePrefill: the destination (non-null) or a cancellation with `cancel` as reason.
  void SendUpdate(const WorkerView& prefill, uint64_t job_id, const v1::KvDestination* destination,
                  const std::string& cancel);
  // Ends the request with `status` before its Decode; stops a running prefill.
  void FailBeforeDecode(const absl::Status& status, bool reserve_ended);
  // After every state change: frees a lease nothing will use once no prefill can write
  // into it, and reports a cancellation once no call is pending.
  void Settle();
  void StartDecode();
  // prefill_on_decode_: the lease came back; decode there if its cache still holds enough of
  // the prompt, else send the prompt to a prefill worker after all.
  void AfterLocalReserve();
  // Feeds sampled tokens through the text stream; returns true when generation must stop.
  bool Emit(const std::vector<int32_t>& ids, const std::vector<v1::TokenLogprob>& logprobs,
            v1::FinishReason finish, const v1::Usage* usage);
  void ReleaseLease(const std::string& reason);
  void Finish(const absl::Status& status);
  bool IsCancelled();
  // Applies `event` to state_ (the transition function of router/completion_state.h).
  CompletionAction StepLocked(CompletionEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::unique_ptr<grpc::ClientContext> NewContext() const;
  PickHint Hint() const;

  const std::shared_ptr<const CompletionPlan> plan_;
  const int index_;
  WorkerRegistry& workers_;
  DelayedTasks& delayed_;
  const std::shared_ptr<LiveCount> live_;  // counts this run while it exists
  const ResponseFn on_response_;
  const DoneFn on_done_;
  CompletionText text_;
  ResponseParsers parsers_;  // plan_->tool_calls, plan_->reasoning_parser

  absl::Mutex mu_;
  // Where the calls and the lease stand (router/completion_state.h); changed only by Step.
  CompletionState state_ ABSL_GUARDED_BY(mu_);
  v1::KvDestination destination_ ABSL_GUARDED_BY(mu_);
  WorkerView prefill_ ABSL_GUARDED_BY(mu_);
  uint64_t job_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Only the chain's own callbacks touch these (one at a time per call kind).
  std::set<std::string> tried_decode_;
  absl::Duration backoff_ = absl::Milliseconds(20);
  std::set<std::string> tried_prefill_;
  int64_t prefill_assigned_ = 0;  // tokens noted as sent to the prefill worker
  // The decode worker computes the prompt's uncached suffix (set in Begin, before any call).
  bool prefill_on_decode_ = false;
  // The attempt's prompt and sampling: the plan's, and after a migration the plan's prompt +
  // the tokens streamed before it, and the max_tokens that remain. Written only by Resume,
  // when no call is pending.
  std::vector<int32_t> prompt_;
  v1::SamplingParams sampling_;
  int64_t resumed_output_ = 0;   // tokens of prompt_ that are the request's own output
  std::vector<int32_t> output_;  // every token streamed to the client
  int migrations_ = 0;
  // Usage.cached_prompt_tokens, fixed when a migration follows streamed tokens (the later
  // attempts' prompts are not the client's).
  std::optional<int32_t> cached_prompt_tokens_;

  WorkerView decode_ ABSL_GUARDED_BY(mu_);
  int64_t decode_assigned_ ABSL_GUARDED_BY(mu_) = 0;  // blocks noted as taken on decode_
  int completion_tokens_ = 0;
  absl::Time last_token_time_ = absl::InfinitePast();  // for TTFT / inter-token latency
  int64_t prefill_worker_ns_ = 0;  // the prefill worker's own time, for the first response
  absl::Time reserve_sent_;        // for dsv3_reserve_seconds
  std::unique_ptr<grpc::ClientContext> reserve_call_ ABSL_GUARDED_BY(mu_);  // in flight
  v1::ReserveRequest reserve_request_;
  v1::ReserveResponse reserve_response_;
  std::unique_ptr<grpc::ClientContext> prefill_call_ ABSL_GUARDED_BY(mu_);  // in flight
  v1::PrefillRequest prefill_request_;
  v1::PrefillResponse prefill_response_;
  std::unique_ptr<DecodeReader> decode_reader_ ABSL_GUARDED_BY(mu_);
  int attempt_ ABSL_GUARDED_BY(mu_) = 0;                   // incremented by Resume
  uint64_t stall_watch_ ABSL_GUARDED_BY(mu_) = 0;          // WorkerRegistry::WatchStall's token
  uint64_t prefill_stall_watch_ ABSL_GUARDED_BY(mu_) = 0;  // the same, for the prefill
  // Readers of failed attempts: a reader's own OnDone resumes the request, so it is kept.
  std::vector<std::unique_ptr<DecodeReader>> retired_readers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_COMPLETION_RUN_H_
