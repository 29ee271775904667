#include "decode_worker/decode_scheduler.h"

#include <sys/random.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "common/status_macros.h"
#include "engine/thread_pool.h"

namespace dsv3::decode {

absl::StatusOr<std::unique_ptr<DecodeScheduler>> DecodeScheduler::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, DecodeSchedulerOptions options,
    void* pool_memory, size_t pool_memory_bytes) {
  std::unique_ptr<DecodeScheduler> s(new DecodeScheduler(model, options));
  DSV3_ASSIGN_OR_RETURN(
      s->pool_, pool_memory != nullptr
                    ? engine::KvCachePool::CreateOver(layout, pool_memory, pool_memory_bytes)
                    : engine::KvCachePool::Create(layout));
  s->pool_->blocks().set_caching(options.prefix_cache);
  s->pool_->blocks().set_max_cached(options.prefix_cache_max_blocks);
  {
    absl::MutexLock lock(&s->mu_);
    s->next_lease_id_ = (std::random_device{}() * uint64_t{0x9E3779B97F4A7C15} ^
                         static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()))) >>
                        1;
    if (s->next_lease_id_ == 0) s->next_lease_id_ = 1;
  }
  s->loop_ = std::thread([raw = s.get()] { raw->Loop(); });
  return s;
}

DecodeScheduler::~DecodeScheduler() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (loop_.joinable()) loop_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [id, seq] : sequences_) {
    seq->sink->OnFinish(worker::FinishReason::kError, seq->Usage(),
                        MarkResumable(absl::UnavailableError("decode worker shutting down")));
    pool_->Release(seq->kv);
  }
  sequences_.clear();
  for (auto& [id, lease] : leases_) pool_->Release(lease.kv);
  leases_.clear();
}

namespace {

// 64 bits from the kernel's CSPRNG (getrandom), never 0: a lease's secret (and landing tag)
// must not be predictable from those of other leases.
uint64_t Random64() {
  uint64_t secret = 0;
  while (secret == 0) {
    if (getrandom(&secret, sizeof(secret), 0) != sizeof(secret)) secret = 0;
  }
  return secret;
}

}  // namespace

absl::StatusOr<LeaseGrant> DecodeScheduler::Reserve(int prompt_tokens, int max_new_tokens,
                                                    absl::Duration lease,
                                                    std::span<const int32_t> prompt) {
  const int64_t context = model_.config().max_position_embeddings;
  if (prompt_tokens <= 0 || max_new_tokens <= 0) {
    return absl::InvalidArgumentError("Reserve needs prompt_tokens > 0 and max_new_tokens > 0");
  }
  if (static_cast<int64_t>(prompt_tokens) + max_new_tokens > context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt (", prompt_tokens, " tokens) + max_new_tokens (", max_new_tokens,
                     ") exceeds the model context of ", context, " tokens"));
  }
  if (lease <= absl::ZeroDuration()) lease = options_.default_lease;
  lease = std::min(lease, options_.max_lease);
  const int64_t block_size = pool_->layout().block_size;
  const int64_t blocks = (prompt_tokens + max_new_tokens + 1 + block_size - 1) / block_size;
  if (blocks > pool_->layout().num_blocks) {
    // Not "full now": this request can never fit, so waiting would not help.
    return absl::InvalidArgumentError(
        absl::StrCat("prompt + max_new_tokens (", prompt_tokens + max_new_tokens,
                     " tokens) exceeds this decode worker's whole KV pool (",
                     pool_->layout().num_blocks * block_size, " tokens)"));
  }
  if (!prompt.empty() && static_cast<int>(prompt.size()) != prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Reserve: ", prompt.size(), " prompt token ids for prompt_tokens ", prompt_tokens));
  }
  std::vector<uint64_t> names;
  const bool lookup = options_.prefix_cache && !prompt.empty();
  if (lookup) {
    names = KvBlockHashes(options_.kv_identity, prompt);
    // At least the last position stays to compute (its logits give the first token).
    names.resize(std::min<size_t>(
        names.size(), static_cast<size_t>((prompt_tokens - 1) / pool_->layout().block_size)));
  }
  absl::MutexLock lock(&mu_);
  if (draining_) return MarkResumable(absl::UnavailableError("decode worker draining"));
  engine::KvSequence kv;
  const int64_t cached = lookup ? pool_->TakeCachedPrefix(names, kv) : 0;
  // +1: a verified draft may occupy the position after the last token.
  if (absl::Status s = pool_->Reserve(kv, prompt_tokens + max_new_tokens + 1); !s.ok()) {
    pool_->Release(kv);  // the cached blocks go back to the cache
    return s;
  }
  if (lookup) RecordPrefixCacheLookup(Metrics(), options_.model_name, prompt_tokens, cached);
  kv.num_tokens = kv.mtp_num_tokens = 0;  // set at Start
  PublishKvEventsLocked();                // blocks it evicted
  KvLandingTable::Slot landing;
  if (options_.landing != nullptr) {
    absl::StatusOr<KvLandingTable::Slot> slot = options_.landing->Claim(Random64());
    if (!slot.ok()) {
      pool_->Release(kv);
      return slot.status();
    }
    landing = *std::move(slot);
  }
  const uint64_t id = next_lease_id_++;
  LeaseGrant grant{
      id,           Random64(), kv.blocks, absl::Now() + lease, cached, landing.offset_bytes(),
      landing.tag()};
  leases_[id] = Lease{std::move(kv), prompt_tokens, max_new_tokens,    grant.expiry,
                      cached,        grant.secret,  std::move(landing)};
  return grant;
}

bool DecodeScheduler::Release(uint64_t lease_id, uint64_t secret) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease_id);
  if (it == leases_.end() || it->second.secret != secret) return false;
  pool_->Release(it->second.kv);
  leases_.erase(it);
  return true;
}

absl::Status DecodeScheduler::Start(DecodeStart start, std::shared_ptr<DecodeSink> sink) {
  absl::MutexLock lock(&mu_);
  if (stop_) return MarkResumable(absl::UnavailableError("decode worker shutting down"));
  // Past the drain's deadline its lease is gone: the request goes elsewhere.
  if (evict_) return MarkResumable(absl::UnavailableError("decode worker draining"));
  auto it = leases_.find(start.lease_id);
  if (it == leases_.end()) {
    // Nothing of the request is here (the lease expired, or this worker restarted since it
    // granted it): another decode worker can take the request.
    return MarkResumable(absl::NotFoundError(
        absl::StrCat("lease ", start.lease_id, " is unknown, expired or already used")));
  }
  Lease& lease = it->second;
  if (lease.secret != start.lease_secret) {
    return absl::PermissionDeniedError(
        absl::StrCat("lease ", start.lease_id, ": not the lease's secret"));
  }
  // Rows no prefill wrote are a previous request's (blocks are reused unzeroed), and
  // starting would also name them in the prefix cache.
  if (!start.prefill_here && options_.landing != nullptr &&
      !options_.landing->Landed(lease.landing)) {
    return absl::FailedPreconditionError(
        absl::StrCat("lease ", start.lease_id,
                     ": no prefill has landed the prompt's KV in it (a prefill worker marks "
                     "the lease after its last row; Decode must follow its Prefill)"));
  }
  // Checked here, per request: an id outside the vocabulary would fail (or read out of
  // bounds in) the step of every sequence batched with it.
  const int64_t vocab = model_.config().vocab_size;
  if (!start.prefill_here && (start.first_token < 0 || start.first_token >= vocab)) {
    return absl::InvalidArgumentError(absl::StrCat("first_token_id ", start.first_token,
                                                   " is outside the vocabulary of ", vocab));
  }
  for (size_t i = 0; i < start.prompt.size(); ++i) {
    if (start.prompt[i] < 0 || start.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", start.prompt[i],
                                                     " at position ", i,
                                                     " is outside the vocabulary of ", vocab));
    }
  }
  if (static_cast<int>(start.prompt.size()) != lease.prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("lease ", start.lease_id, " holds ",
                                                   lease.prompt_tokens, " prompt tokens, not ",
                                                   start.prompt.size()));
  }
  DSV3_ASSIGN_OR_RETURN(auto sampler,
                        engine::RequestSampler::Create(start.sampling, model_.config().vocab_size,
                                                       start.prompt, start.resumed_output_tokens));
  if (start.constraint != nullptr) {
    DSV3_RETURN_IF_ERROR(sampler.Constrain(
        std::move(start.constraint),
        start.resumed_output_tokens + std::min(start.max_tokens, lease.max_new_tokens)));
  }
  auto seq = std::make_unique<Sequence>();
  seq->lease_id = start.lease_id;
  seq->kv = std::move(lease.kv);
  seq->kv.num_tokens = lease.prompt_tokens;  // the prefill worker wrote these rows
  seq->sampler = std::make_unique<engine::RequestSampler>(std::move(sampler));
  seq->max_tokens = std::min(start.max_tokens, lease.max_new_tokens);
  seq->eos_token_id = start.eos_token_id;
  seq->prompt_tokens = lease.prompt_tokens;
  seq->sink = std::move(sink);
  seq->started = absl::Now();
  seq->tokens = std::move(start.prompt);
  const int64_t hidden = model_.config().hidden_size;
  if (start.prefill_here) {
    // The first step computes the positions the cached prefix lacks; the prompt's blocks are
    // named when the sequence ends (its MTP rows are complete only then).
    seq->kv.num_tokens = lease.cached_tokens;
    seq->kv.mtp_num_tokens = lease.cached_tokens;
    seq->cached_prompt_tokens = static_cast<int32_t>(lease.cached_tokens);
    seq->pending_prompt.assign(seq->tokens.begin() + lease.cached_tokens, seq->tokens.end());
    seq->speculative = options_.speculative_mtp && model_.has_mtp();
    leases_.erase(it);
    waiting_.push_back(seq.get());
    sequences_[seq->lease_id] = std::move(seq);
    return absl::OkStatus();
  }
  seq->sampler->Replay(start.first_token);
  seq->next_input = start.first_token;
  seq->tokens.push_back(start.first_token);
  seq->generated = 1;
  // The prompt's blocks are complete now (the prefill worker flushed them): requests that
  // share them may take them from here on. MTP rows exist for positions < n - 1.
  NameBlocksLocked(seq->kv, seq->tokens,
                   seq->prompt_tokens - (options_.kv_identity.num_mtp_layers > 0 ? 1 : 0));
  PublishKvEventsLocked();
  // The last prompt position's hidden state, which the prefill worker put beside the mark.
  const std::span<const std::byte> last_hidden = options_.landing != nullptr
                                                     ? options_.landing->LandedHidden(lease.landing)
                                                     : std::span<const std::byte>();
  if (options_.speculative_mtp && model_.has_mtp() &&
      last_hidden.size() == static_cast<size_t>(hidden) * sizeof(float)) {
    // The prefill worker wrote MTP rows 0..n-2; row n-1 pairs h_{n-1} with the first token.
    seq->speculative = true;
    seq->kv.mtp_num_tokens = lease.prompt_tokens - 1;
    seq->spec.hidden.resize(static_cast<size_t>(hidden));
    std::memcpy(seq->spec.hidden.data(), last_hidden.data(), last_hidden.size());
    seq->spec.next = {start.first_token};
  }
  leases_.erase(it);
  waiting_.push_back(seq.get());
  sequences_[seq->lease_id] = std::move(seq);
  return absl::OkStatus();
}

void DecodeScheduler::Drain(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  auto idle = [this]()
                  ABSL_SHARED_LOCKS_REQUIRED(mu_) { return sequences_.empty() && leases_.empty(); };
  if (mu_.AwaitWithDeadline(absl::Condition(&idle), deadline)) return;
  DSV3_LOG(INFO) << "drain deadline: " << sequences_.size() << " sequences and " << leases_.size()
                 << " leases resume on other decode workers";
  evict_ = true;  // the loop ends them at its next step boundary
  auto evicted = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return sequences_.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&evicted), absl::Seconds(5));
}

void DecodeScheduler::Cancel(uint64_t lease_id) {
  absl::MutexLock lock(&mu_);
  auto it = sequences_.find(lease_id);
  if (it != sequences_.end()) it->second->cancelled.store(true, std::memory_order_relaxed);
}

DecodeLoad DecodeScheduler::Load() const {
  absl::MutexLock lock(&mu_);
  DecodeLoad load;
  load.blocks_total = pool_->layout().num_blocks;
  load.blocks_free = pool_->free_blocks();
  load.running = static_cast<int>(running_.size());
  load.waiting = static_cast<int>(waiting_.size());
  load.leases = static_cast<int>(leases_.size());
  load.tokens_per_second = tokens_per_second_;
  load.blocks_cached = pool_->blocks().cached_blocks();
  return load;
}

void DecodeScheduler::PublishKvEventsLocked() { kv_events_.Append(pool_->blocks().TakeEvents()); }

void DecodeScheduler::RecordMetricsLocked() {
  PublishKvEventsLocked();
  const ServingMetrics& m = Metrics();
  const int64_t total = pool_->layout().num_blocks;
  RecordKvBlocks(m, options_.model_name, pool_->blocks().referenced_blocks(), total);
  RecordPrefixCacheBlocks(m, options_.model_name, pool_->blocks().cached_blocks(),
                          pool_->blocks().evictions() - evictions_reported_);
  evictions_reported_ = pool_->blocks().evictions();
  m.requests_running.WithLabels({options_.model_name}).Set(static_cast<double>(running_.size()));
  m.requests_waiting.WithLabels({options_.model_name}).Set(static_cast<double>(waiting_.size()));
}

void DecodeScheduler::NameBlocksLocked(const engine::KvSequence& kv,
                                       std::span<const int32_t> tokens, int64_t valid_tokens) {
  if (!options_.prefix_cache) return;
  std::vector<uint64_t> names = KvBlockHashes(options_.kv_identity, tokens);
  const int64_t block_size = pool_->layout().block_size;
  names.resize(std::min<size_t>(
      names.size(), static_cast<size_t>(std::max<int64_t>(0, valid_tokens / block_size))));
  pool_->NameBlocks(kv, names);
}

void DecodeScheduler::FinishLocked(Sequence* seq, bool keep_kv) {
  if (keep_kv) {
    // Main rows are complete below num_tokens; MTP rows (read only when this worker
    // speculates) below mtp_num_tokens.
    int64_t valid = seq->kv.num_tokens;
    if (seq->speculative) valid = std::min(valid, seq->kv.mtp_num_tokens);
    NameBlocksLocked(seq->kv, seq->tokens, valid);
  }
  pool_->Release(seq->kv);
  sequences_.erase(seq->lease_id);
}

void DecodeScheduler::Loop() {
  engine::ThreadPool::MarkComputeThread();
  while (true) {
    std::vector<Sequence*> batch;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || !waiting_.empty() || !running_.empty() || (evict_ && !leases_.empty());
      };
      // The timeout lets expired leases go even when nothing runs.
      mu_.AwaitWithTimeout(absl::Condition(&has_work), absl::Milliseconds(100));
      if (stop_) return;
      const absl::Time now = absl::Now();
      for (auto it = leases_.begin(); it != leases_.end();) {
        if (it->second.expiry < now) {
          DSV3_LOG(WARNING).With("lease", absl::StrCat(it->first))
              << "lease expired without Decode; freeing " << it->second.kv.blocks.size()
              << " blocks";
          pool_->Release(it->second.kv);
          it = leases_.erase(it);
        } else {
          ++it;
        }
      }
      if (evict_) {
        // Drained: what is left resumes on another decode worker.
        for (auto& [id, lease] : leases_) pool_->Release(lease.kv);
        leases_.clear();
        running_.clear();
        for (auto& [id, seq] : sequences_) {
          seq->sink->OnFinish(worker::FinishReason::kError, seq->Usage(),
                              MarkResumable(absl::UnavailableError(
                                  "decode worker draining: the request resumes elsewhere")));
          pool_->Release(seq->kv);
        }
        sequences_.clear();
        waiting_.clear();
      }
      // Leave: cancelled sequences. Join: waiting ones, up to the bound.
      std::vector<Sequence*> kept;
      for (Sequence* seq : running_) {
        if (seq->cancelled.load(std::memory_order_relaxed)) {
          seq->sink->OnFinish(worker::FinishReason::kCancelled, seq->Usage(),
                              absl::CancelledError("cancelled by the client"));
          FinishLocked(seq, /*keep_kv=*/true);
        } else {
          kept.push_back(seq);
        }
      }
      running_ = std::move(kept);
      while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
        Metrics()
            .queue_time_seconds.WithLabels({options_.model_name})
            .Observe(absl::ToDoubleSeconds(now - waiting_.front()->started));
        running_.push_back(waiting_.front());
        waiting_.pop_front();
      }
      RecordMetricsLocked();
      batch = running_;
    }
    if (batch.empty()) continue;
    Metrics()
        .decode_batch_size.WithLabels({options_.model_name})
        .Observe(static_cast<double>(batch.size()));
    const absl::Time start = absl::Now();
    std::vector<Sequence*> finished = Step(batch);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    absl::MutexLock lock(&mu_);
    tokens_per_second_ = seconds > 0 ? batch.size() / seconds : 0;
    for (Sequence* seq : finished) {
      running_.erase(std::find(running_.begin(), running_.end(), seq));
      FinishLocked(seq, /*keep_kv=*/!seq->failed);
    }
    RecordMetricsLocked();
  }
}

}  // namespace dsv3::decode
