#include "prefill_worker/prefill_service.h"

#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "engine/model_config.h"
#include "worker_common/worker_conversions.h"

namespace dsv3::prefill {

absl::StatusOr<std::unique_ptr<PrefillService>> PrefillService::Create(
    const engine::Model& model, const engine::KvCacheLayout& layout, transport::UcxContext& ucx,
    PrefillServiceOptions options) {
  options.scheduler.model_name = options.model_name;
  std::unique_ptr<PrefillService> s(new PrefillService(model, std::move(options)));
  s->config_hash_ = engine::ModelConfigHash(model.config());
  s->layout_ = layout;
  s->writer_ = std::make_unique<transport::KvWriter>(ucx, worker::ToTransportLayout(layout));
  auto scheduler = PrefillScheduler::Create(model, layout, *s->writer_, s->options_.scheduler);
  if (!scheduler.ok()) return scheduler.status();
  s->scheduler_ = std::move(*scheduler);
  s->watchers_ = std::make_unique<worker::LoadWatchers>([raw = s.get()] {
    PrefillLoad load = raw->scheduler_->Load();
    v1::LoadReport r;
    r.set_role(v1::WORKER_ROLE_PREFILL);
    r.set_unix_ms(absl::ToUnixMillis(absl::Now()));
    r.set_queued_prefill_tokens(load.queued_tokens);
    r.set_waiting_requests(load.queued_requests);
    r.set_tokens_per_second(load.tokens_per_second);
    return r;
  });
  return s;
}

PrefillService::~PrefillService() {
  watchers_.reset();
  scheduler_.reset();  // answers what is queued before the writer goes
  writer_.reset();
}

grpc::ServerUnaryReactor* PrefillService::Prefill(grpc::CallbackServerContext* context,
                                                  const v1::PrefillRequest* request,
                                                  v1::PrefillResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const v1::KvDestination& d = request->destination();
  if (!d.config_hash().empty() && d.config_hash() != config_hash_) {
    reactor->Finish(ToGrpcStatus(absl::FailedPreconditionError(absl::StrCat(
        "decode worker ", d.decode_address(), " serves a different model (config hash ",
        d.config_hash(), ", this prefill worker: ", config_hash_, ")"))));
    return reactor;
  }
  auto target = worker::ToWriteTarget(d);
  if (!target.ok()) {
    reactor->Finish(ToGrpcStatus(target.status()));
    return reactor;
  }
  auto job = std::make_unique<PrefillJob>();
  job->request_id = request->request_id();
  job->prompt.assign(request->prompt_token_ids().begin(), request->prompt_token_ids().end());
  job->sampling = worker::ToEngineSampling(request->sampling());
  job->logprobs = request->sampling().logprobs();
  job->target = std::move(*target);
  job->decode_address = d.decode_address();
  if (d.lease_expiry_unix_ms() > 0) job->deadline = absl::FromUnixMillis(d.lease_expiry_unix_ms());
  job->deadline = std::min(job->deadline, absl::FromChrono(context->deadline()));
  const std::string request_id = request->request_id();
  job->done = [reactor, response, request_id](absl::StatusOr<v1::PrefillResponse> result) {
    if (result.ok()) {
      *response = std::move(*result);
      reactor->Finish(grpc::Status::OK);
    } else {
      DSV3_LOG(WARNING).With("request_id", request_id) << "prefill failed: " << result.status();
      reactor->Finish(ToGrpcStatus(result.status()));
    }
  };
  if (absl::Status s = scheduler_->Submit(std::move(job)); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
  }
  return reactor;
}

grpc::ServerWriteReactor<v1::LoadReport>* PrefillService::WatchLoad(
    grpc::CallbackServerContext* context, const v1::WatchLoadRequest* request) {
  return watchers_->Watch(context, request);
}

grpc::ServerUnaryReactor* PrefillService::GetInfo(grpc::CallbackServerContext* context,
                                                  const v1::GetInfoRequest*,
                                                  v1::WorkerInfo* response) {
  const engine::ModelConfig& config = model_.config();
  response->set_role(v1::WORKER_ROLE_PREFILL);
  response->set_model_name(options_.model_name);
  response->set_config_hash(config_hash_);
  response->set_model_type(config.model_type);
  response->set_vocab_size(static_cast<int32_t>(config.vocab_size));
  response->set_max_position_embeddings(static_cast<int32_t>(config.max_position_embeddings));
  *response->mutable_kv_layout() = worker::ToWireLayout(
      layout_, static_cast<int>(layout_.num_layers - config.num_hidden_layers));
  response->set_version(GetBuildInfo().version);
  response->set_git_revision(GetBuildInfo().git_revision);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace dsv3::prefill
