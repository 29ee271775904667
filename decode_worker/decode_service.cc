#include "decode_worker/decode_service.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/kv_block_hash.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/model_config.h"
#include "worker_common/structured_outputs.h"
#include "worker_common/worker_conversions.h"

namespace dsv3::decode {
namespace {

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// One Decode call: the scheduler pushes tokens in (its thread), gRPC writes them out one at
// a time. Lives until both are done with it: the scheduler holds a shared_ptr as its sink,
// the reactor part is freed by gRPC in OnDone.
class DecodeStream : public DecodeSink, public std::enable_shared_from_this<DecodeStream> {
 public:
  class Reactor : public grpc::ServerWriteReactor<v1::DecodeResponse> {
   public:
    explicit Reactor(DecodeScheduler& scheduler) : scheduler_(scheduler) {}
    void OnWriteDone(bool ok) override { stream_->WriteDone(ok); }
    void OnCancel() override { scheduler_.Cancel(lease_id_); }
    void OnDone() override {
      stream_.reset();
      delete this;
    }
    DecodeScheduler& scheduler_;
    grpc::CallbackServerContext* context_ = nullptr;  // valid until OnDone
    uint64_t lease_id_ = 0;
    std::shared_ptr<DecodeStream> stream_;
  };

  explicit DecodeStream(Reactor* reactor) : reactor_(reactor) {}

  void OnTokens(std::span<const engine::SampledToken> tokens) override {
    v1::DecodeResponse response;
    for (const auto& t : tokens) {
      response.add_token_ids(t.token);
      if (want_logprobs_) worker::ToWireLogprob(t, response.add_logprobs());
    }
    Push(std::move(response), std::nullopt);
  }

  void OnFinish(worker::FinishReason reason, const worker::SequenceUsage& usage,
                const absl::Status& status) override {
    v1::DecodeResponse response;
    response.set_finish_reason(worker::ToWireFinishReason(reason));
    *response.mutable_usage() = worker::ToWireUsage(usage);
    // A cancelled sequence ends its stream with CANCELLED; errors with their status, and
    // whether another decode worker may take the request over.
    const bool cancelled = reason == worker::FinishReason::kCancelled;
    grpc::Status final = cancelled ? grpc::Status::CANCELLED : ToGrpcStatus(status);
    if (!final.ok() && !cancelled) {
      reactor_->context_->AddTrailingMetadata(kResumableTrailer, IsResumable(status) ? "1" : "0");
    }
    Push(std::move(response), final);
  }

  void WriteDone(bool ok) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) queue_.clear();  // the client is gone; only the Finish remains
    MaybeWriteLocked();
  }

  bool want_logprobs_ = false;

 private:
  void Push(v1::DecodeResponse response, std::optional<grpc::Status> final) {
    absl::MutexLock lock(&mu_);
    if (final.has_value()) {
      final_ = final;
      if (!final->ok()) queue_.clear();  // nothing more to say than the error
      if (final->ok()) queue_.push_back(std::move(response));
    } else {
      queue_.push_back(std::move(response));
    }
    MaybeWriteLocked();
  }

  // Starts the next write, or the Finish once everything is written. gRPC runs the
  // reactions on its own threads, so calling it under mu_ cannot re-enter.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finish_called_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      reactor_->StartWrite(&current_);
    } else if (final_.has_value()) {
      finish_called_ = true;
      reactor_->Finish(*final_);
    }
  }

  Reactor* reactor_;  // valid until Finish has been called
  absl::Mutex mu_;
  std::deque<v1::DecodeResponse> queue_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  v1::DecodeResponse current_;
};

}  // namespace

absl::StatusOr<KvPoolMemory> ParseKvPoolMemory(absl::string_view name) {
  if (name == "ucx") return KvPoolMemory::kUcx;
  if (name == "engine") return KvPoolMemory::kEngine;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown KV pool memory \"", name, "\" (want ucx or engine)"));
}

absl::string_view KvPoolMemoryName(KvPoolMemory memory) {
  return memory == KvPoolMemory::kUcx ? "ucx" : "engine";
}

absl::StatusOr<std::unique_ptr<DecodeService>> DecodeService::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, transport::UcxContext& ucx,
    DecodeServiceOptions options) {
  options.scheduler.model_name = options.model_name;
  const std::string config_hash = engine::ModelConfigHash(model.config());
  options.scheduler.kv_identity = KvCacheIdentityOf(
      config_hash,
      worker::ToWireLayout(layout,
                           static_cast<int>(layout.num_layers - model.config().num_hidden_layers)));
  std::unique_ptr<DecodeService> s(new DecodeService(model, ucx, std::move(options)));
  s->config_hash_ = config_hash;
  {
    // A slot per lease; leases hold at least one block each but for the rare fully cached
    // prompt, so twice the pool's blocks (and at least 1024) is ample. Its memory comes from
    // where the pool's does (--kv_pool_memory): UCX-allocated, the prefill worker's put is a
    // plain copy over shared memory; the worker's own, registered, it is emulated like the
    // pool's rows, and no peer maps a segment of this process.
    int slots = static_cast<int>(std::clamp<int64_t>(2 * layout.num_blocks, 1024, 1 << 22));
    // Speculating, a slot also takes the hidden state the first draft needs (28 KiB at
    // DeepSeek-V3's width): leases beyond what the batch can run soon wait at the router.
    const bool speculative = s->options_.scheduler.speculative_mtp && model.has_mtp();
    const int64_t hidden_bytes =
        speculative ? model.config().hidden_size * static_cast<int64_t>(sizeof(float)) : 0;
    if (speculative) slots = std::min(slots, std::max(1024, 4 * s->options_.scheduler.max_running));
    const size_t bytes = static_cast<size_t>(slots * KvLandingTable::SlotBytes(hidden_bytes));
    absl::StatusOr<std::unique_ptr<transport::UcxMemoryRegion>> region;
    if (s->options_.kv_pool_memory == KvPoolMemory::kUcx) {
      region = transport::UcxMemoryRegion::Allocate(ucx, bytes);
    } else {
      s->landing_memory_ = std::make_unique<uint64_t[]>(bytes / 8);
      region = transport::UcxMemoryRegion::Register(ucx, s->landing_memory_.get(), bytes);
    }
    if (!region.ok()) {
      return absl::Status(region.status().code(), absl::StrCat("allocating the KV landing table: ",
                                                               region.status().message()));
    }
    s->landing_region_ = std::move(*region);
    std::memset(s->landing_region_->base(), 0, s->landing_region_->length());
    s->landing_ = std::make_unique<KvLandingTable>(s->landing_region_->base(), slots, hidden_bytes);
    s->options_.scheduler.landing = s->landing_.get();
  }
  if (s->options_.kv_pool_memory == KvPoolMemory::kUcx) {
    // The region first: it owns the memory the scheduler's pool lives in.
    if (layout.total_bytes() <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("bad KV cache layout: ", layout.ToString()));
    }
    // UCX's shared-memory transports allocate it in /dev/shm (tmpfs): a pool larger than
    // what is free there would fault (SIGBUS) when first touched, so refuse it clearly.
    if (struct statvfs shm; statvfs("/dev/shm", &shm) == 0) {
      const uint64_t free_bytes = static_cast<uint64_t>(shm.f_bavail) * shm.f_frsize;
      if (free_bytes < static_cast<uint64_t>(layout.total_bytes())) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "the KV pool (", layout.total_bytes() >> 20, " MiB) does not fit /dev/shm (",
            free_bytes >> 20,
            " MiB free): enlarge /dev/shm (docker --shm-size, a Memory "
            "emptyDir on Kubernetes), lower --kv_blocks, or use --kv_pool_memory=engine "
            "(with dsv3 cluster: --ucx_transports tcp)"));
      }
    }
    auto region =
        transport::UcxMemoryRegion::Allocate(ucx, static_cast<size_t>(layout.total_bytes()));
    if (!region.ok()) {
      return absl::Status(
          region.status().code(),
          absl::StrCat("allocating the KV pool with UCX: ", region.status().message(),
                       " (--kv_pool_memory=engine uses the engine's own)"));
    }
    s->pool_region_ = std::move(*region);
    // Touched now, as the engine's own pools are populated (engine/kv_cache.cc): resident
    // from the start, and a /dev/shm that cannot hold it faults here, not mid-request.
    std::memset(s->pool_region_->base(), 0, s->pool_region_->length());
    DSV3_ASSIGN_OR_RETURN(
        s->scheduler_, DecodeScheduler::Create(model, layout, s->options_.scheduler,
                                               s->pool_region_->base(), s->pool_region_->length()));
  } else {
    DSV3_ASSIGN_OR_RETURN(s->scheduler_,
                          DecodeScheduler::Create(model, layout, s->options_.scheduler));
    engine::KvCachePool& pool = s->scheduler_->pool();
    DSV3_ASSIGN_OR_RETURN(
        s->pool_region_, transport::UcxMemoryRegion::Register(ucx, pool.base(), pool.size_bytes()));
  }
  s->watchers_ = std::make_unique<worker::LoadWatchers>(
      [raw = s.get()] { return raw->LoadSnapshot(); }, &s->scheduler_->kv_events());
  DSV3_LOG(INFO) << "KV pool: " << layout.ToString() << ", " << layout.total_bytes() / (1 << 20)
                 << " MiB "
                 << (s->options_.kv_pool_memory == KvPoolMemory::kUcx ? "allocated by"
                                                                      : "registered with")
                 << " UCX";
  return s;
}

DecodeService::~DecodeService() {
  watchers_.reset();
  if (options_.kv_pool_memory == KvPoolMemory::kUcx) {
    scheduler_.reset();    // stop the loop and drop the pool before its memory goes
    pool_region_.reset();  // frees the memory
  } else {
    pool_region_.reset();  // unregister before the pool goes
    scheduler_.reset();
  }
}

v1::KvLayout DecodeService::WireLayout() const {
  const engine::KvCacheLayout& layout = scheduler_->pool().layout();
  return worker::ToWireLayout(
      layout, static_cast<int>(layout.num_layers - model_.config().num_hidden_layers));
}

v1::LoadReport DecodeService::LoadSnapshot() const {
  DecodeLoad load = scheduler_->Load();
  v1::LoadReport r;
  r.set_role(v1::WORKER_ROLE_DECODE);
  r.set_unix_ms(absl::ToUnixMillis(absl::Now()));
  r.set_kv_blocks_total(static_cast<int32_t>(load.blocks_total));
  r.set_kv_blocks_free(static_cast<int32_t>(load.blocks_free));
  r.set_running_requests(load.running);
  r.set_waiting_requests(load.waiting);
  r.set_tokens_per_second(load.tokens_per_second);
  r.set_kv_blocks_cached(static_cast<int32_t>(load.blocks_cached));
  return r;
}

grpc::ServerUnaryReactor* DecodeService::Reserve(grpc::CallbackServerContext* context,
                                                 const v1::ReserveRequest* request,
                                                 v1::ReserveResponse* response) {
  if (!request->config_hash().empty() && request->config_hash() != config_hash_) {
    return Reply(context, absl::FailedPreconditionError(absl::StrCat(
                              "model mismatch: caller has config hash ", request->config_hash(),
                              ", this decode worker serves ", config_hash_)));
  }
  auto grant = scheduler_->Reserve(
      request->prompt_tokens(), request->max_new_tokens(), absl::Milliseconds(request->lease_ms()),
      std::span<const int32_t>(request->prompt_token_ids().data(),
                               static_cast<size_t>(request->prompt_token_ids_size())));
  if (!grant.ok()) return Reply(context, grant.status());
  v1::KvDestination* d = response->mutable_destination();
  d->set_ucx_worker_address(ucx_.worker_address());
  d->set_rkey(pool_region_->packed_rkey());
  d->set_base_address(pool_region_->base_address());
  *d->mutable_layout() = WireLayout();
  for (int32_t b : grant->block_ids) d->add_block_ids(b);
  d->set_lease_id(grant->lease_id);
  d->set_lease_secret(grant->secret);
  d->set_lease_expiry_unix_ms(absl::ToUnixMillis(grant->expiry));
  d->set_decode_address(options_.advertised_address);
  d->set_config_hash(config_hash_);
  d->set_cached_tokens(static_cast<int32_t>(grant->cached_tokens));
  v1::KvLanding* landing = d->mutable_landing();
  landing->set_rkey(landing_region_->packed_rkey());
  const uint64_t slot =
      landing_region_->base_address() + static_cast<uint64_t>(grant->landing_offset);
  landing->set_address(slot);
  landing->set_tag(grant->landing_tag);
  if (landing_->hidden_bytes() > 0) {
    landing->set_hidden_address(slot + KvLandingTable::kHiddenMarkOffset);
    landing->set_hidden_bytes(static_cast<uint32_t>(landing_->hidden_bytes()));
  }
  DSV3_LOG(DEBUG).With("request_id", request->request_id())
      << "reserved lease " << grant->lease_id << ": " << grant->block_ids.size() << " blocks, "
      << grant->cached_tokens << " prompt tokens cached";
  return Reply(context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::DecodeResponse>* DecodeService::Decode(
    grpc::CallbackServerContext* context, const v1::DecodeRequest* request) {
  auto* reactor = new DecodeStream::Reactor(*scheduler_);
  reactor->context_ = context;
  auto stream = std::make_shared<DecodeStream>(reactor);
  reactor->stream_ = stream;
  reactor->lease_id_ = request->lease_id();
  stream->want_logprobs_ = request->sampling().logprobs() > 0;

  DecodeStart start;
  start.lease_id = request->lease_id();
  start.lease_secret = request->lease_secret();
  start.prompt.assign(request->prompt_token_ids().begin(), request->prompt_token_ids().end());
  start.first_token = request->first_token_id();
  start.sampling = worker::ToEngineSampling(request->sampling());
  start.max_tokens =
      request->sampling().max_tokens() > 0 ? request->sampling().max_tokens() : 1 << 30;
  start.eos_token_id = request->sampling().ignore_eos() ? -1 : request->eos_token_id();
  start.prefill_here = request->prefill_here();
  start.resumed_output_tokens = request->resumed_output_tokens();
  absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> constraint =
      worker::ConstraintFor(options_.structured_outputs.get(), request->sampling());
  absl::Status started = constraint.status();
  if (started.ok()) {
    start.constraint = *std::move(constraint);
    started = scheduler_->Start(std::move(start), stream);
  }
  if (!started.ok()) {
    DSV3_LOG(WARNING).With("request_id", request->request_id()) << "Decode: " << started;
    stream->OnFinish(worker::FinishReason::kError, worker::SequenceUsage(), started);
  }
  return reactor;
}

grpc::ServerUnaryReactor* DecodeService::Release(grpc::CallbackServerContext* context,
                                                 const v1::ReleaseRequest* request,
                                                 v1::ReleaseResponse* response) {
  response->set_released(scheduler_->Release(request->lease_id(), request->lease_secret()));
  if (response->released()) {
    DSV3_LOG(INFO) << "released lease " << request->lease_id() << ": " << request->reason();
  }
  return Reply(context, absl::OkStatus());
}

std::unique_ptr<worker::WorkerStatusService> DecodeService::NewStatusService() const {
  v1::WorkerInfo info = worker::BaseWorkerInfo(v1::WORKER_ROLE_DECODE, options_.model_name,
                                               config_hash_, model_.config());
  *info.mutable_kv_layout() = WireLayout();
  info.set_speculative_decoding(options_.scheduler.speculative_mtp && model_.has_mtp());
  info.set_prefix_cache(options_.scheduler.prefix_cache);
  v1::KvPoolAccess* pool = info.mutable_kv_pool();
  pool->set_ucx_worker_address(ucx_.worker_address());
  pool->set_rkey(pool_region_->packed_rkey());
  pool->set_base_address(pool_region_->base_address());
  pool->set_landing_rkey(landing_region_->packed_rkey());
  pool->set_landing_base_address(landing_region_->base_address());
  pool->set_landing_slots(landing_->slots());
  pool->set_landing_slot_bytes(static_cast<int32_t>(landing_->slot_bytes()));
  // Over shared memory the UCX worker, and with it the address, can be replaced
  // (transport/ucx/ucx_context.h).
  return std::make_unique<worker::WorkerStatusService>(
      std::move(info), watchers_.get(), [this](v1::WorkerInfo* live) {
        live->mutable_kv_pool()->set_ucx_worker_address(ucx_.worker_address());
      });
}

}  // namespace dsv3::decode
