#include "prefill_worker/prefill_scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"
#include "engine/mtp.h"
#include "engine/thread_pool.h"
#include "worker_common/worker_conversions.h"

namespace dsv3::prefill {

absl::StatusOr<std::unique_ptr<PrefillScheduler>> PrefillScheduler::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, transport::KvWriter& writer,
    PrefillSchedulerOptions options) {
  if (options.chunk_tokens <= 0) return absl::InvalidArgumentError("chunk_tokens must be > 0");
  std::unique_ptr<PrefillScheduler> s(new PrefillScheduler(model, writer, options));
  DSV3_ASSIGN_OR_RETURN(s->pool_, engine::KvCachePool::Create(layout));
  s->pool_->blocks().set_caching(options.prefix_cache);
  s->pool_->blocks().set_max_cached(options.prefix_cache_max_blocks);
  s->pool_load_.blocks_total = s->pool_->layout().num_blocks;
  s->pool_load_.blocks_free = s->pool_->free_blocks();
  s->loop_ = std::thread([raw = s.get()] { raw->Loop(); });
  return s;
}

PrefillScheduler::~PrefillScheduler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (loop_.joinable()) loop_.join();
  absl::Status shutting_down = absl::UnavailableError("prefill worker shutting down");
  for (auto& a : running_) EndWithError(*a, shutting_down, /*may_release_lease=*/false);
  absl::MutexLock lock(&mu_);
  for (auto& a : queue_) a->job->done(shutting_down);
}

namespace {

// An update for a job that never arrives is dropped after this long.
constexpr absl::Duration kUpdateKeep = absl::Seconds(60);
// Longest wait for a cancelled job's in-flight writes before it answers.
constexpr absl::Duration kQuiesceTimeout = absl::Seconds(2);
// How often a loop with nothing to compute looks at deadlines and departed callers.
constexpr absl::Duration kIdleCheck = absl::Milliseconds(20);

// The destination cannot take the KV (its decode worker died, stalled or refused):
// ABORTED, which tells the router to resume the request on another decode worker rather
// than retry this prefill into the same lease.
absl::Status TransferFailed(const std::string& decode_address, const absl::Status& cause) {
  return absl::AbortedError(
      absl::StrCat("KV transfer to decode worker ", decode_address, " failed: ", cause.ToString()));
}

}  // namespace

absl::Status PrefillScheduler::Submit(std::unique_ptr<PrefillJob> job) {
  DSV3_RETURN_IF_ERROR(model_.ValidateTokens(job->prompt, 0));
  if (job->resumed_output_tokens < 0 ||
      job->resumed_output_tokens > static_cast<int64_t>(job->prompt.size())) {
    return absl::InvalidArgumentError(absl::StrCat("resumed_output_tokens ",
                                                   job->resumed_output_tokens,
                                                   " outside the prompt of ", job->prompt.size()));
  }
  if (static_cast<int64_t>(job->prompt.size()) > pool_->capacity_tokens()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt of ", job->prompt.size(), " tokens exceeds this prefill worker's KV pool of ",
        pool_->capacity_tokens(), " tokens"));
  }
  if (absl::Status s = engine::ValidateSamplingParams(job->sampling, model_.config().vocab_size);
      !s.ok()) {
    return s;
  }
  if (!job->target.has_value() && job->job_id == 0) {
    return absl::InvalidArgumentError("a prefill without a destination needs a job_id");
  }
  auto active = std::make_unique<Active>();
  if (job->target.has_value()) {
    auto transfer = writer_.Begin(*job->target);
    if (!transfer.ok()) {
      return TransferFailed(job->decode_address, transfer.status());
    }
    active->transfer = std::move(*transfer);
  }
  active->enqueued = absl::Now();
  const int64_t tokens = static_cast<int64_t>(job->prompt.size());
  const uint64_t job_id = job->job_id;
  active->job = std::move(job);
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("prefill worker shutting down");
  if (job_id != 0 && !live_jobs_.insert(job_id).second) {
    return absl::AlreadyExistsError(absl::StrCat("prefill job ", job_id, " is already running"));
  }
  queued_tokens_ += tokens;
  queue_.push_back(std::move(active));
  return absl::OkStatus();
}

absl::Status PrefillScheduler::Update(uint64_t job_id, PrefillUpdate update) {
  if (job_id == 0) return absl::InvalidArgumentError("job_id must be set");
  PendingUpdate pending;
  pending.received = absl::Now();
  pending.decode_address = update.decode_address;
  pending.lease = update.lease;
  pending.lease_deadline = update.lease_deadline;
  pending.cancel = update.cancel;
  absl::Status result = absl::OkStatus();
  if (update.cancel.ok()) {
    if (!update.target.has_value()) return absl::InvalidArgumentError("the update is empty");
    auto transfer = writer_.Begin(*update.target);
    if (transfer.ok()) {
      pending.transfer = std::move(*transfer);
    } else {
      // The job cannot write there: it fails with the reason, and so does this call.
      result = TransferFailed(update.decode_address, transfer.status());
      pending.cancel = result;
    }
  }
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("prefill worker shutting down");
  auto it = updates_.find(job_id);
  if (it != updates_.end() && !it->second.cancel.ok()) {
    // A cancel not yet taken wins over anything that comes after it (the destination and
    // the cancel are separate calls and may arrive in either order).
    return result;
  }
  updates_[job_id] = std::move(pending);
  updates_arrived_ = true;
  return result;
}

PrefillLoad PrefillScheduler::Load() const {
  absl::MutexLock lock(&mu_);
  PrefillLoad load = pool_load_;
  load.queued_tokens = queued_tokens_;
  load.queued_requests = static_cast<int>(queue_.size());
  load.tokens_per_second = tokens_per_second_;
  return load;
}

bool PrefillScheduler::TakeUpdate(Active& a) {
  if (a.job->job_id == 0) return a.transfer != nullptr;
  PendingUpdate update;
  {
    absl::MutexLock lock(&mu_);
    auto it = updates_.find(a.job->job_id);
    if (it == updates_.end()) return a.transfer != nullptr;
    update = std::move(it->second);
    updates_.erase(it);
  }
  if (!update.cancel.ok()) {
    if (a.failure.ok()) a.failure = update.cancel;
  } else if (a.transfer == nullptr) {
    a.transfer = std::move(update.transfer);
    a.job->decode_address = update.decode_address;
    a.job->lease = update.lease;
    a.job->deadline = std::min(a.job->deadline, update.lease_deadline);
  }
  return a.transfer != nullptr;
}

void PrefillScheduler::ServiceJobs() {
  const absl::Time now = absl::Now();
  for (auto& a : running_) {
    if (a->answered) continue;
    const bool had_destination = a->transfer != nullptr;
    const bool has_destination = TakeUpdate(*a);
    if (a->failure.ok() && a->job->caller_gone && a->job->caller_gone()) {
      a->failure = absl::CancelledError("the caller cancelled the prefill");
    }
    if (a->failure.ok() && now > a->job->deadline) {
      a->failure = absl::DeadlineExceededError(
          has_destination ? "prefill deadline exceeded"
                          : "prefill deadline exceeded before the KV destination arrived");
    }
    if (!a->failure.ok()) continue;  // answered below, after the step
    if (has_destination && !had_destination) {
      // Everything computed so far leaves now; later steps send layer by layer.
      SendRows(*a, 0, pool_->layout().num_layers, 0, a->kv.num_tokens);
    }
    if (has_destination && a->token.has_value()) {
      a->destination_wait_ns = absl::ToInt64Nanoseconds(now - a->computed_at);
      Answer(*a, *a->token);
    }
  }
}

void PrefillScheduler::Loop() {
  engine::ThreadPool::MarkComputeThread();
  bool idle = false;  // the last pass had nothing to compute
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this, idle]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || !queue_.empty() || updates_arrived_ || (!idle && !running_.empty());
      };
      if (running_.empty()) {
        mu_.Await(absl::Condition(&has_work));
      } else {
        mu_.AwaitWithTimeout(absl::Condition(&has_work), kIdleCheck);
      }
      if (stop_) return;
      updates_arrived_ = false;
      while (!queue_.empty()) {
        running_.push_back(std::move(queue_.front()));
        queue_.pop_front();
        TakeCachedPrefix(*running_.back());
        queued_tokens_ -= running_.back()->cached_tokens;  // nothing to compute there
      }
      const absl::Time now = absl::Now();
      for (auto it = updates_.begin(); it != updates_.end();) {
        auto next = std::next(it);
        if (now - it->second.received > kUpdateKeep) updates_.erase(it);
        it = next;
      }
    }
    ServiceJobs();
    // This step's chunks, oldest request first, within the token budget. Jobs computed
    // and waiting only for their destination hold their blocks, so a job that does not
    // fit now may once they leave.
    std::vector<Chunk> chunks;
    int64_t budget = options_.chunk_tokens;
    for (auto& a : running_) {
      if (budget == 0) break;
      if (!a->failure.ok() || a->answered || a->token.has_value()) continue;
      const int64_t done = a->kv.num_tokens;
      const int64_t n = std::min<int64_t>(budget, a->job->prompt.size() - done);
      if (absl::Status s = pool_->Reserve(a->kv, done + n); !s.ok()) {
        // It cannot ever fit only if no other job holds blocks that will come back.
        const bool others_hold_blocks =
            std::any_of(running_.begin(), running_.end(),
                        [&](const auto& b) { return b.get() != a.get() && !b->kv.blocks.empty(); });
        if (chunks.empty() && !others_hold_blocks) a->failure = s;
        break;
      }
      chunks.push_back(Chunk{a.get(), done, n});
      budget -= n;
    }
    const absl::Time start = absl::Now();
    if (!chunks.empty()) RunStep(chunks);
    int64_t tokens = 0;
    for (const Chunk& c : chunks) tokens += c.count;
    const ServingMetrics& m = Metrics();
    if (tokens > 0) {
      m.prefill_batch_tokens.WithLabels({options_.model_name}).Observe(static_cast<double>(tokens));
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    // Report and drop what finished (or failed).
    std::vector<std::unique_ptr<Active>> kept;
    std::vector<uint64_t> ended;
    int64_t finished_tokens = 0;
    for (auto& a : running_) {
      if (!a->answered && !a->failure.ok()) EndWithError(*a, a->failure);
      if (a->answered) {
        finished_tokens += static_cast<int64_t>(a->job->prompt.size()) - a->cached_tokens;
        if (a->job->job_id != 0) ended.push_back(a->job->job_id);
        pool_->Release(a->kv);
      } else {
        kept.push_back(std::move(a));
      }
    }
    running_ = std::move(kept);
    idle = chunks.empty() && finished_tokens == 0;
    absl::MutexLock lock(&mu_);
    for (uint64_t id : ended) {
      live_jobs_.erase(id);
      updates_.erase(id);  // e.g. a cancel that crossed the answer
    }
    queued_tokens_ -= finished_tokens;
    if (seconds > 0 && tokens > 0) tokens_per_second_ = tokens / seconds;
    kv_events_.Append(pool_->blocks().TakeEvents());
    pool_load_.blocks_free = pool_->free_blocks();
    pool_load_.blocks_cached = pool_->blocks().cached_blocks();
    RecordPrefixCacheBlocks(m, options_.model_name, pool_load_.blocks_cached,
                            pool_->blocks().evictions() - evictions_reported_);
    evictions_reported_ = pool_->blocks().evictions();
    m.requests_running.WithLabels({options_.model_name}).Set(static_cast<double>(running_.size()));
    m.requests_waiting.WithLabels({options_.model_name}).Set(static_cast<double>(queue_.size()));
  }
}

void PrefillScheduler::TakeCachedPrefix(Active& a) {
  if (!options_.prefix_cache) return;
  const std::vector<int32_t>& prompt = a.job->prompt;
  const int64_t n = static_cast<int64_t>(prompt.size());
  std::vector<uint64_t> names = KvBlockHashes(options_.kv_identity, prompt);
  // At least the last position is computed: its logits give the first token.
  names.resize(
      std::min<size_t>(names.size(), static_cast<size_t>((n - 1) / pool_->layout().block_size)));
  a.cached_tokens = pool_->TakeCachedPrefix(names, a.kv);
  RecordPrefixCacheLookup(Metrics(), options_.model_name, n, a.cached_tokens);
  if (a.cached_tokens > 0 && a.transfer != nullptr) {
    // The destination is known already: the cached rows leave at once.
    SendRows(a, 0, pool_->layout().num_layers, 0, a.cached_tokens);
  }
}

void PrefillScheduler::RunStep(std::vector<Chunk>& chunks) {
  std::vector<engine::SequenceInput> inputs;
  for (Chunk& c : chunks) {
    if (c.request->first_step == absl::InfinitePast()) {
      c.request->first_step = absl::Now();
      Metrics()
          .queue_time_seconds.WithLabels({options_.model_name})
          .Observe(absl::ToDoubleSeconds(c.request->first_step - c.request->enqueued));
    }
    c.request->step_begin = c.begin;
    c.request->step_end = c.begin + c.count;
    inputs.push_back(engine::SequenceInput{
        std::span<const int32_t>(c.request->job->prompt).subspan(c.begin, c.count), &c.request->kv,
        false});
  }
  const bool mtp =
      model_.has_mtp() && pool_->layout().num_layers > model_.config().num_hidden_layers;
  engine::ForwardOptions options;
  options.return_hidden = mtp;
  // Each layer's rows leave for the decode workers while the next layer computes.
  options.on_layer_kv_written = [&](int64_t layer) {
    for (Chunk& c : chunks) SendLayer(c, layer, c.begin, c.count);
  };
  const absl::Time start = absl::Now();
  absl::StatusOr<engine::ForwardResult> out = model_.Forward(inputs, *pool_, options);
  if (out.ok() && mtp) {
    absl::Status s = RunMtp(chunks, *out);
    if (!s.ok()) out = s;
  }
  const int64_t ns = absl::ToInt64Nanoseconds(absl::Now() - start);
  for (size_t i = 0; i < chunks.size(); ++i) {
    Active& a = *chunks[i].request;
    a.compute_ns += ns;
    if (!out.ok()) {
      a.failure = out.status();
      continue;
    }
    if (a.failure.ok() && a.kv.num_tokens == static_cast<int64_t>(a.job->prompt.size())) {
      if (mtp) {
        // The decode worker drafts from h_{n-1} (the main model's last final-normed state).
        std::span<const float> h = out->HiddenRow(i, chunks[i].count - 1);
        a.last_hidden.assign(reinterpret_cast<const char*>(h.data()), h.size() * sizeof(float));
      }
      Complete(a, out->LastLogits(i));
    }
  }
}

absl::Status PrefillScheduler::RunMtp(std::vector<Chunk>& chunks,
                                      const engine::ForwardResult& main) {
  // MTP row i combines h_i with token i+1: the prompt gives rows 0..n-2; row n-1 needs the
  // first sampled token, so the decode worker computes it.
  const int64_t hidden = model_.config().hidden_size;
  std::vector<engine::MtpInput> inputs;
  std::vector<Chunk> mtp_chunks;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    const int64_t n = static_cast<int64_t>(c.request->job->prompt.size());
    const int64_t rows = std::min(c.begin + c.count, n - 1) - c.begin;
    if (rows <= 0) continue;
    std::span<const float> h(main.hidden.data() + main.token_begin[i] * hidden,
                             static_cast<size_t>(rows * hidden));
    inputs.push_back(engine::MtpInput{
        h, std::span<const int32_t>(c.request->job->prompt).subspan(c.begin + 1, rows),
        &c.request->kv, false});
    mtp_chunks.push_back(Chunk{c.request, c.begin, rows});
  }
  if (inputs.empty()) return absl::OkStatus();
  auto out = engine::MtpForward(model_, inputs, *pool_);
  if (!out.ok()) return out.status();
  const int64_t layer = model_.config().num_hidden_layers;
  for (Chunk& c : mtp_chunks) SendLayer(c, layer, c.begin, c.count);
  return absl::OkStatus();
}

void PrefillScheduler::SendLayer(Chunk& c, int64_t layer, int64_t begin, int64_t count) {
  Active& a = *c.request;
  if (!a.failure.ok()) return;
  if (absl::Now() > a.job->deadline) {
    // Past it the lease may be freed and its blocks given to another request: no more
    // writes; the job ends at the step boundary.
    a.failure = absl::DeadlineExceededError("prefill deadline exceeded");
    return;
  }
  if (a.transfer == nullptr) {
    if (!TakeUpdate(a) || !a.failure.ok()) return;  // the rows wait in the local pool
    // The destination arrived mid-step: earlier steps' rows of every layer, and this
    // step's rows of the layers already computed, go first.
    SendRows(a, 0, pool_->layout().num_layers, 0, a.step_begin);
    SendRows(a, 0, std::min<int64_t>(layer, model_.config().num_hidden_layers), a.step_begin,
             a.step_end);
  }
  SendRows(a, layer, layer + 1, begin, begin + count);
}

void PrefillScheduler::SendRows(Active& a, int64_t first_layer, int64_t end_layer, int64_t begin,
                                int64_t end) {
  const int64_t block_size = pool_->layout().block_size;
  const int64_t main_layers = model_.config().num_hidden_layers;
  const int64_t prompt = static_cast<int64_t>(a.job->prompt.size());
  // The decode worker's own cached prefix is not written (it may be shared there).
  begin = std::max<int64_t>(begin, a.transfer->target().cached_tokens);
  for (int64_t layer = first_layer; layer < end_layer && a.failure.ok(); ++layer) {
    // MTP row i needs prompt token i+1: the last position's row is the decode worker's.
    const int64_t layer_end = layer >= main_layers ? std::min(end, prompt - 1) : end;
    int64_t pos = begin;
    while (pos < layer_end) {
      // Rows of one local block are contiguous; blocks line up with the destination's.
      const int64_t run = std::min(layer_end - pos, block_size - pos % block_size);
      const float* rows = pool_->Row(layer, a.kv, pos);
      absl::Status s = a.transfer->PutLayerRows(static_cast<int>(layer), static_cast<int>(pos),
                                                static_cast<int>(run), rows);
      if (!s.ok()) {
        a.failure = TransferFailed(a.job->decode_address, s);
        return;
      }
      pos += run;
    }
  }
}

void PrefillScheduler::Complete(Active& a, std::span<const float> last_logits) {
  const PrefillJob& job = *a.job;
  if (options_.prefix_cache) {
    // Every row of the prompt is computed (MTP rows below n - 1): its full blocks may serve
    // later prompts from now on.
    pool_->NameBlocks(a.kv, KvBlockHashes(options_.kv_identity, job.prompt));
  }
  auto sampler = engine::RequestSampler::Create(job.sampling, model_.config().vocab_size,
                                                job.prompt, job.resumed_output_tokens);
  if (!sampler.ok()) {
    a.failure = sampler.status();
    return;
  }
  if (a.job->constraint != nullptr) {
    a.failure = sampler->Constrain(std::move(a.job->constraint), job.max_output_tokens);
    if (!a.failure.ok()) return;
  }
  absl::StatusOr<engine::SampledToken> token = sampler->Sample(last_logits);
  if (!token.ok()) {
    a.failure = token.status();
    return;
  }
  if (a.transfer == nullptr) {
    if (!TakeUpdate(a)) {
      // Answered when the destination arrives (ServiceJobs).
      a.token = *token;
      a.computed_at = absl::Now();
      return;
    }
    if (!a.failure.ok()) return;
    SendRows(a, 0, pool_->layout().num_layers, 0, a.kv.num_tokens);
  }
  Answer(a, *token);
}

void PrefillScheduler::Answer(Active& a, const engine::SampledToken& token) {
  const PrefillJob& job = *a.job;
  if (!a.failure.ok()) return;
  const absl::Time flush_start = absl::Now();
  absl::Time deadline = std::min(job.deadline, flush_start + options_.transfer_timeout);
  DecodeLiveness::Probe probe = liveness_.ProbeFor(job.decode_address);
  // The MTP draft's starting hidden state travels with the KV, into the lease's slot.
  if (absl::Status s = a.transfer->Land(
          deadline, [&probe] { return probe.Check(); }, a.last_hidden);
      !s.ok()) {
    a.failure = TransferFailed(job.decode_address, s);
    return;
  }
  const ServingMetrics& m = Metrics();
  m.kv_transfer_bytes.WithLabels({options_.model_name})
      .Increment(static_cast<double>(a.transfer->bytes()));
  m.kv_transfer_seconds.WithLabels({options_.model_name})
      .Observe(absl::ToDoubleSeconds(absl::Now() - a.first_step));
  PrefillResult result;
  result.first_token = token;
  result.kv_bytes = a.transfer->bytes();
  // From the first step (the first puts) to the completed flush.
  result.kv_transfer_ns = absl::ToInt64Nanoseconds(absl::Now() - a.first_step);
  result.queue_ns = absl::ToInt64Nanoseconds(a.first_step - a.enqueued);
  result.compute_ns = a.compute_ns;
  result.destination_wait_ns = a.destination_wait_ns;
  result.cached_tokens = static_cast<int32_t>(a.cached_tokens);
  DSV3_LOG(DEBUG).With("request_id", job.request_id)
      << "prefill done: " << job.prompt.size() << " tokens, " << a.transfer->bytes()
      << " KV bytes, flush " << absl::FormatDuration(absl::Now() - flush_start);
  a.answered = true;
  a.job->done(std::move(result));
}

void PrefillScheduler::EndWithError(Active& a, const absl::Status& status, bool may_release_lease) {
  if (a.answered) return;
  if (a.transfer != nullptr) {
    // Puts already posted must land (or fail) before the caller may free the lease.
    DecodeLiveness::Probe probe = liveness_.ProbeFor(a.job->decode_address);
    (void)a.transfer->Flush(absl::Now() + kQuiesceTimeout, [&probe] { return probe.Check(); });
    // Whoever called would release the lease once this call ended; gone, it cannot. (Past
    // the job's deadline the caller's request, or the lease, is over either way.)
    const bool caller_gone =
        (a.job->caller_gone && a.job->caller_gone()) || absl::Now() > a.job->deadline;
    if (may_release_lease && a.job->lease.id != 0 && caller_gone && options_.on_abandoned_lease) {
      options_.on_abandoned_lease(a.job->decode_address, a.job->lease);
    }
  }
  a.answered = true;
  a.job->done(status);
}

}  // namespace dsv3::prefill
