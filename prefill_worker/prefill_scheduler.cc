#include "prefill_worker/prefill_scheduler.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "engine/thread_pool.h"
#include "common/serving_metrics.h"
#include "engine/mtp.h"
#include "worker_common/worker_conversions.h"

namespace dsv3::prefill {

absl::StatusOr<std::unique_ptr<PrefillScheduler>> PrefillScheduler::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, transport::KvWriter& writer,
    PrefillSchedulerOptions options) {
  if (options.chunk_tokens <= 0) return absl::InvalidArgumentError("chunk_tokens must be > 0");
  std::unique_ptr<PrefillScheduler> s(new PrefillScheduler(model, writer, options));
  auto pool = engine::KvCachePool::Create(layout);
  if (!pool.ok()) return pool.status();
  s->pool_ = std::move(*pool);
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
  for (auto& a : running_) a->job->done(shutting_down);
  absl::MutexLock lock(&mu_);
  for (auto& a : queue_) a->job->done(shutting_down);
}

absl::Status PrefillScheduler::Submit(std::unique_ptr<PrefillJob> job) {
  if (absl::Status s = model_.ValidateTokens(job->prompt, 0); !s.ok()) return s;
  if (static_cast<int64_t>(job->prompt.size()) > pool_->capacity_tokens()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt of ", job->prompt.size(), " tokens exceeds this prefill worker's KV pool of ",
        pool_->capacity_tokens(), " tokens"));
  }
  if (absl::Status s = engine::ValidateSamplingParams(job->sampling, model_.config().vocab_size);
      !s.ok()) {
    return s;
  }
  auto transfer = writer_.Begin(job->target);
  if (!transfer.ok()) {
    return absl::Status(transfer.status().code(),
                        absl::StrCat("decode worker ", job->decode_address, ": ",
                                     transfer.status().message()));
  }
  auto active = std::make_unique<Active>();
  active->transfer = std::move(*transfer);
  active->enqueued = absl::Now();
  const int64_t tokens = static_cast<int64_t>(job->prompt.size());
  active->job = std::move(job);
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError("prefill worker shutting down");
  queued_tokens_ += tokens;
  queue_.push_back(std::move(active));
  return absl::OkStatus();
}

PrefillLoad PrefillScheduler::Load() const {
  absl::MutexLock lock(&mu_);
  return PrefillLoad{queued_tokens_, static_cast<int>(queue_.size()), tokens_per_second_};
}

void PrefillScheduler::Loop() {
  engine::ThreadPool::MarkComputeThread();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stop_ || !queue_.empty() || !running_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stop_) return;
      while (!queue_.empty()) {
        running_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // This step's chunks, oldest request first, within the token budget.
    std::vector<Chunk> chunks;
    int64_t budget = options_.chunk_tokens;
    for (auto& a : running_) {
      if (budget == 0) break;
      const int64_t done = a->kv.num_tokens;
      const int64_t n = std::min<int64_t>(budget, a->job->prompt.size() - done);
      if (absl::Status s = pool_->Reserve(a->kv, done + n); !s.ok()) {
        if (chunks.empty() && a == running_.front()) {
          a->failure = s;  // cannot ever fit; others may once this finishes
        }
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
    int64_t finished_tokens = 0;
    for (auto& a : running_) {
      const bool complete = a->kv.num_tokens == static_cast<int64_t>(a->job->prompt.size());
      if (!a->failure.ok() || complete) {
        if (!a->failure.ok()) a->job->done(a->failure);
        finished_tokens += static_cast<int64_t>(a->job->prompt.size());
        pool_->Release(a->kv);
      } else {
        kept.push_back(std::move(a));
      }
    }
    running_ = std::move(kept);
    absl::MutexLock lock(&mu_);
    queued_tokens_ -= finished_tokens;
    if (seconds > 0) tokens_per_second_ = tokens / seconds;
    m.requests_running.WithLabels({options_.model_name}).Set(static_cast<double>(running_.size()));
    m.requests_waiting.WithLabels({options_.model_name}).Set(static_cast<double>(queue_.size()));
  }
}

void PrefillScheduler::RunStep(std::vector<Chunk>& chunks) {
  std::vector<engine::SequenceInput> inputs;
  for (Chunk& c : chunks) {
    if (c.request->first_step == absl::InfinitePast()) {
      c.request->first_step = absl::Now();
      Metrics().queue_time_seconds.WithLabels({options_.model_name})
          .Observe(absl::ToDoubleSeconds(c.request->first_step - c.request->enqueued));
    }
    inputs.push_back(engine::SequenceInput{
        std::span<const int32_t>(c.request->job->prompt).subspan(c.begin, c.count),
        &c.request->kv, false});
  }
  const bool mtp = model_.has_mtp() &&
                   pool_->layout().num_layers > model_.config().num_hidden_layers;
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
  const int64_t block_size = pool_->layout().block_size;
  int64_t pos = begin;
  const int64_t end = begin + count;
  while (pos < end) {
    // Rows of one local block are contiguous; blocks line up with the destination's.
    const int64_t run = std::min(end - pos, block_size - pos % block_size);
    const float* rows = pool_->Row(layer, a.kv, pos);
    absl::Status s = a.transfer->PutLayerRows(static_cast<int>(layer), static_cast<int>(pos),
                                              static_cast<int>(run), rows);
    if (!s.ok()) {
      a.failure = absl::Status(s.code(), absl::StrCat("KV transfer to decode worker ",
                                                      a.job->decode_address, ": ", s.message()));
      return;
    }
    pos += run;
  }
}

void PrefillScheduler::Complete(Active& a, std::span<const float> last_logits) {
  const PrefillJob& job = *a.job;
  auto sampler =
      engine::RequestSampler::Create(job.sampling, model_.config().vocab_size, job.prompt);
  if (!sampler.ok()) {
    a.failure = sampler.status();
    return;
  }
  absl::StatusOr<engine::SampledToken> token = sampler->Sample(last_logits);
  if (!token.ok()) {
    a.failure = token.status();
    return;
  }
  const absl::Time flush_start = absl::Now();
  absl::Time deadline = std::min(job.deadline, flush_start + options_.transfer_timeout);
  if (absl::Status s = a.transfer->Flush(deadline); !s.ok()) {
    a.failure = absl::Status(s.code(), absl::StrCat("decode worker ", job.decode_address, ": ",
                                                    s.message()));
    return;
  }
  const ServingMetrics& m = Metrics();
  m.kv_transfer_bytes.WithLabels({options_.model_name})
      .Increment(static_cast<double>(a.transfer->bytes()));
  m.kv_transfer_seconds.WithLabels({options_.model_name})
      .Observe(absl::ToDoubleSeconds(absl::Now() - a.first_step));
  v1::PrefillResponse response;
  response.set_first_token_id(token->token);
  if (job.logprobs > 0) worker::ToWireLogprob(*token, response.mutable_first_token_logprob());
  response.set_kv_bytes(a.transfer->bytes());
  // Puts start with the first layer of the first step and end with the flush.
  response.set_kv_transfer_ns(absl::ToInt64Nanoseconds(absl::Now() - a.first_step));
  response.set_queue_ns(absl::ToInt64Nanoseconds(a.first_step - a.enqueued));
  response.set_compute_ns(a.compute_ns);
  response.set_last_hidden_state(a.last_hidden);
  DSV3_LOG(DEBUG).With("request_id", job.request_id)
      << "prefill done: " << job.prompt.size() << " tokens, " << a.transfer->bytes()
      << " KV bytes, flush " << absl::FormatDuration(absl::Now() - flush_start);
  a.job->done(std::move(response));
}

}  // namespace dsv3::prefill
