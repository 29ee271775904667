#include "prefill_worker/prefill_service.h"

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/grpc_status.h"
#include "common/kv_block_hash.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/model_config.h"
#include "worker_common/structured_outputs.h"
#include "worker_common/worker_conversions.h"

namespace dsv3::prefill {
namespace {

// Frees a lease whose caller left (PrefillSchedulerOptions::on_abandoned_lease): a Release
// on its decode worker, sent and forgotten (the lease expires on its own if this fails).
void ReleaseAbandonedLease(const std::string& decode_address, DecodeLease lease) {
  struct Call {
    std::unique_ptr<v1::DecodeWorker::Stub> stub;
    grpc::ClientContext ctx;
    v1::ReleaseRequest request;
    v1::ReleaseResponse response;
  };
  auto call = std::make_shared<Call>();
  call->stub = v1::DecodeWorker::NewStub(ClusterChannel(decode_address));
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  call->request.set_lease_id(lease.id);
  call->request.set_lease_secret(lease.secret);
  call->request.set_reason("its prefill's caller left before a Decode");
  call->stub->async()->Release(
      &call->ctx, &call->request, &call->response, [call, decode_address](grpc::Status s) {
        DSV3_LOG(INFO) << "lease " << call->request.lease_id() << " on " << decode_address
                       << " (its prefill's caller left): "
                       << (!s.ok()                     ? "release failed: " + s.error_message()
                           : call->response.released() ? "released"
                                                       : "already gone");
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrefillService>> PrefillService::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, transport::UcxContext& ucx,
    PrefillServiceOptions options) {
  options.scheduler.model_name = options.model_name;
  // Not while draining: the server then cancels the calls it ends, and their callers (alive)
  // may send the same lease to another prefill worker.
  auto draining = std::make_shared<std::atomic<bool>>(false);
  options.scheduler.on_abandoned_lease = [draining](const std::string& address, DecodeLease lease) {
    if (!draining->load()) ReleaseAbandonedLease(address, lease);
  };
  const std::string config_hash = engine::ModelConfigHash(model.config());
  options.scheduler.kv_identity = KvCacheIdentityOf(
      config_hash,
      worker::ToWireLayout(layout,
                           static_cast<int>(layout.num_layers - model.config().num_hidden_layers)));
  std::unique_ptr<PrefillService> s(new PrefillService(model, std::move(options)));
  s->config_hash_ = config_hash;
  s->draining_ = std::move(draining);
  s->layout_ = layout;
  s->writer_ = std::make_unique<transport::KvWriter>(ucx, worker::ToTransportLayout(layout));
  DSV3_ASSIGN_OR_RETURN(
      s->scheduler_, PrefillScheduler::Create(model, layout, *s->writer_, s->options_.scheduler));
  s->watchers_ = std::make_unique<worker::LoadWatchers>(
      [raw = s.get()] {
        PrefillLoad load = raw->scheduler_->Load();
        v1::LoadReport r;
        r.set_role(v1::WORKER_ROLE_PREFILL);
        r.set_unix_ms(absl::ToUnixMillis(absl::Now()));
        r.set_queued_prefill_tokens(load.queued_tokens);
        r.set_waiting_requests(load.queued_requests);
        r.set_tokens_per_second(load.tokens_per_second);
        r.set_kv_blocks_total(static_cast<int32_t>(load.blocks_total));
        r.set_kv_blocks_free(static_cast<int32_t>(load.blocks_free));
        r.set_kv_blocks_cached(static_cast<int32_t>(load.blocks_cached));
        return r;
      },
      &s->scheduler_->kv_events());
  return s;
}

PrefillService::~PrefillService() {
  watchers_.reset();
  scheduler_.reset();  // answers what is queued before the writer goes
  writer_.reset();
}

absl::StatusOr<PrefillUpdate> PrefillService::ToUpdate(const v1::KvDestination& d) const {
  if (!d.config_hash().empty() && d.config_hash() != config_hash_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "decode worker ", d.decode_address(), " serves a different model (config hash ",
        d.config_hash(), ", this prefill worker: ", config_hash_, ")"));
  }
  // Written only where the decode worker itself says its pool is.
  DSV3_RETURN_IF_ERROR(decode_pools_->Check(d));
  DSV3_ASSIGN_OR_RETURN(auto target, worker::ToWriteTarget(d));
  PrefillUpdate update;
  update.target = std::move(target);
  update.decode_address = d.decode_address();
  update.lease = DecodeLease{d.lease_id(), d.lease_secret()};
  if (d.lease_expiry_unix_ms() > 0) {
    update.lease_deadline = absl::FromUnixMillis(d.lease_expiry_unix_ms());
  }
  return update;
}

grpc::ServerUnaryReactor* PrefillService::Prefill(grpc::CallbackServerContext* context,
                                                  const v1::PrefillRequest* request,
                                                  v1::PrefillResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto job = std::make_unique<PrefillJob>();
  if (request->has_destination()) {
    auto destination = ToUpdate(request->destination());
    if (!destination.ok()) {
      reactor->Finish(ToGrpcStatus(destination.status()));
      return reactor;
    }
    job->target = std::move(destination->target);
    job->decode_address = destination->decode_address;
    job->lease = destination->lease;
    job->deadline = destination->lease_deadline;
  }
  job->request_id = request->request_id();
  job->job_id = request->job_id();
  job->prompt.assign(request->prompt_token_ids().begin(), request->prompt_token_ids().end());
  job->resumed_output_tokens = request->resumed_output_tokens();
  job->sampling = worker::ToEngineSampling(request->sampling());
  job->logprobs = request->sampling().logprobs();
  job->max_output_tokens =
      request->resumed_output_tokens() +
      (request->sampling().max_tokens() > 0 ? request->sampling().max_tokens() : int64_t{1} << 30);
  absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> constraint =
      worker::ConstraintFor(options_.structured_outputs.get(), request->sampling());
  if (!constraint.ok()) {
    reactor->Finish(ToGrpcStatus(constraint.status()));
    return reactor;
  }
  job->constraint = *std::move(constraint);
  job->deadline = std::min(job->deadline, absl::FromChrono(context->deadline()));
  job->caller_gone = [context] { return context->IsCancelled(); };
  const std::string request_id = request->request_id();
  const bool logprobs = job->logprobs > 0;
  job->done = [reactor, response, request_id, logprobs](absl::StatusOr<PrefillResult> result) {
    if (result.ok()) {
      response->set_first_token_id(result->first_token.token);
      if (logprobs) {
        worker::ToWireLogprob(result->first_token, response->mutable_first_token_logprob());
      }
      response->set_kv_bytes(result->kv_bytes);
      response->set_kv_transfer_ns(result->kv_transfer_ns);
      response->set_queue_ns(result->queue_ns);
      response->set_compute_ns(result->compute_ns);
      response->set_destination_wait_ns(result->destination_wait_ns);
      response->set_cached_tokens(result->cached_tokens);
      reactor->Finish(grpc::Status::OK);
    } else {
      if (absl::IsCancelled(result.status())) {
        DSV3_LOG(INFO).With("request_id", request_id) << "prefill ended: " << result.status();
      } else {
        DSV3_LOG(WARNING).With("request_id", request_id) << "prefill failed: " << result.status();
      }
      reactor->Finish(ToGrpcStatus(result.status()));
    }
  };
  if (absl::Status s = scheduler_->Submit(std::move(job)); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
  }
  return reactor;
}

grpc::ServerUnaryReactor* PrefillService::UpdatePrefill(grpc::CallbackServerContext* context,
                                                        const v1::UpdatePrefillRequest* request,
                                                        v1::UpdatePrefillResponse*) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status status;
  switch (request->update_case()) {
    case v1::UpdatePrefillRequest::kDestination: {
      auto update = ToUpdate(request->destination());
      if (!update.ok()) {
        // The job cannot use it either: it ends with the same error.
        PrefillUpdate end;
        end.cancel = update.status();
        (void)scheduler_->Update(request->job_id(), std::move(end));
        status = update.status();
      } else {
        status = scheduler_->Update(request->job_id(), std::move(*update));
      }
      break;
    }
    case v1::UpdatePrefillRequest::kCancelReason: {
      PrefillUpdate end;
      end.cancel = absl::CancelledError(request->cancel_reason().empty()
                                            ? std::string("cancelled by the router")
                                            : request->cancel_reason());
      status = scheduler_->Update(request->job_id(), std::move(end));
      break;
    }
    default:
      status = absl::InvalidArgumentError("UpdatePrefill needs a destination or a cancel_reason");
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

std::unique_ptr<worker::WorkerStatusService> PrefillService::NewStatusService() const {
  const engine::ModelConfig& config = model_.config();
  v1::WorkerInfo info =
      worker::BaseWorkerInfo(v1::WORKER_ROLE_PREFILL, options_.model_name, config_hash_, config);
  *info.mutable_kv_layout() = worker::ToWireLayout(
      layout_, static_cast<int>(layout_.num_layers - config.num_hidden_layers));
  info.set_prefix_cache(options_.scheduler.prefix_cache);
  return std::make_unique<worker::WorkerStatusService>(std::move(info), watchers_.get());
}

}  // namespace dsv3::prefill
