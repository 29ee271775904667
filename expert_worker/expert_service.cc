#include "expert_worker/expert_service.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "experts/placement_proto.h"

namespace dsv3::expert {

ExpertService::ExpertService(ExpertShard& shard, transport::UcxContext& ucx,
                             transport::UcxExpertServer& server, ExpertComputeLoop& loop)
    : shard_(shard),
      ucx_(ucx),
      server_(server),
      loop_(loop),
      config_hash_(engine::ModelConfigHash(shard.config())) {}

grpc::Status ExpertService::Join(grpc::ServerContext*, const v1::JoinRequest* request,
                                 v1::JoinResponse* response) {
  if (!request->config_hash().empty() && request->config_hash() != config_hash_) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        absl::StrCat("model config mismatch: member ", request->member_id(), " has ",
                     request->config_hash(), ", this expert worker ", config_hash_)));
  }
  if (request->transport() != v1::EXPERT_TRANSPORT_UCX &&
      request->transport() != v1::EXPERT_TRANSPORT_UNSPECIFIED) {
    return ToGrpcStatus(absl::FailedPreconditionError(
        "this expert worker serves the UCX all-to-all; NCCL members need a GPU build with "
        "--transport=nccl"));
  }
  if (request->ucx_worker_address().empty()) {
    return ToGrpcStatus(absl::InvalidArgumentError("ucx_worker_address is required"));
  }
  absl::StatusOr<uint32_t> member = server_.AddMember(request->ucx_worker_address());
  if (!member.ok()) {
    return ToGrpcStatus(absl::UnavailableError(absl::StrCat(
        "cannot reach member ", request->member_id(), " over UCX: ", member.status().message())));
  }
  std::shared_ptr<const ExpertHolding> holding = shard_.current();
  response->set_worker_index(shard_.worker_index());
  response->set_transport(v1::EXPERT_TRANSPORT_UCX);
  response->set_ucx_worker_address(ucx_.worker_address());
  response->set_member_index(*member);
  experts::PlacementToProto(holding->placement, response->mutable_placement());
  DSV3_LOG(INFO) << "member " << request->member_id() << " joined as " << *member;
  return grpc::Status::OK;
}

grpc::Status ExpertService::GetPlacement(grpc::ServerContext*, const v1::GetPlacementRequest*,
                                         v1::ExpertPlacement* response) {
  experts::PlacementToProto(shard_.current()->placement, response);
  return grpc::Status::OK;
}

grpc::Status ExpertService::ApplyPlacement(grpc::ServerContext*, const v1::ExpertPlacement* request,
                                           v1::ApplyPlacementResponse* response) {
  experts::ExpertPlacement next = experts::PlacementFromProto(*request);
  const int64_t version = next.version;
  DSV3_LOG(INFO) << "applying expert placement version " << version;
  absl::Status st = shard_.Apply(std::move(next));
  if (!st.ok()) return ToGrpcStatus(st);
  std::shared_ptr<const ExpertHolding> holding = shard_.current();
  response->set_version(holding->placement.version);
  response->set_experts_loaded(static_cast<int32_t>(holding->experts_held));
  response->set_expert_bytes(holding->expert_bytes);
  return grpc::Status::OK;
}

grpc::Status ExpertService::WatchExpertLoad(grpc::ServerContext* context,
                                            const v1::WatchExpertLoadRequest* request,
                                            grpc::ServerWriter<v1::ExpertLoadReport>* writer) {
  const absl::Duration interval =
      absl::Milliseconds(request->interval_ms() > 0 ? request->interval_ms() : 1000);
  ExpertLoadSnapshot previous;  // zeros: the first report covers everything since start
  const std::vector<int64_t>& layers = shard_.moe_layers();
  const int64_t n = shard_.config().n_routed_experts;
  while (!context->IsCancelled() && !draining_.load()) {
    ExpertLoadSnapshot now = loop_.Snapshot();
    v1::ExpertLoadReport report;
    report.set_worker_index(shard_.worker_index());
    report.set_placement_version(shard_.current()->placement.version);
    report.set_unix_ms(absl::ToUnixMillis(absl::Now()));
    report.set_ready(true);
    report.set_queue_ns(now.queue_ns - previous.queue_ns);
    report.set_compute_ns(now.compute_ns - previous.compute_ns);
    for (size_t i = 0; i < now.tokens.size(); ++i) {
      const int64_t before = i < previous.tokens.size() ? previous.tokens[i] : 0;
      if (now.tokens[i] == before) continue;
      v1::ExpertTokenCount* c = report.add_counts();
      c->set_layer(static_cast<int32_t>(layers[i / static_cast<size_t>(n)]));
      c->set_expert(static_cast<int32_t>(i % static_cast<size_t>(n)));
      c->set_tokens(now.tokens[i] - before);
    }
    if (!writer->Write(report)) break;
    previous = std::move(now);
    const absl::Time next = absl::Now() + interval;
    while (absl::Now() < next && !context->IsCancelled() && !draining_.load()) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return grpc::Status::OK;
}

}  // namespace dsv3::expert
