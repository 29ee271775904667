// libFuzzer target: the expert worker's gRPC requests (dsv3.v1.Expert: Join, GetPlacement,
// ApplyPlacement, WatchExpertLoad) as a real expert worker handles them: its shard of a tiny
// golden model, its UCX expert server and compute loop, behind a gRPC server on loopback in
// this process; the input is a sequence of calls. Every call must end with a status a caller
// can act on (OK, a client error, a precondition error; never INTERNAL, UNKNOWN or a crash),
// and after every input the placement in effect must still be a valid one for the model,
// with the experts it assigns to this worker loaded.
//
// Input: up to 8 records [op][length lo][length hi][length bytes of a serialized request].
// op % 4 picks the call (0 Join, 1 GetPlacement, 2 ApplyPlacement, 3 WatchExpertLoad).
// Unless op has bit 0x80 ("as given"), an ApplyPlacement's version is the one in effect + 1
// (versions only go up: one large version would lock every later input out of the loading
// path). A Join's UCX worker address, when not empty, is always replaced with a real one:
// UCX unpacks a worker address without a length, so bytes that are not one are not ours to
// hand it (what guards that in production is mutual TLS on this port).
//
//   expert_requests_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/expert_requests
//   DSV3_FUZZ_WRITE_SEEDS=tests/fuzz/expert_requests expert_requests_fuzzer -runs=0
//     (writes the seed inputs)

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "dsv3/v1/expert.grpc.pb.h"
#include "expert_worker/expert_compute_loop.h"
#include "expert_worker/expert_service.h"
#include "expert_worker/expert_shard.h"
#include "experts/placement_proto.h"
#include "tests/support/fuzz_call_sequence.h"
#include "transport/ucx/ucx_context.h"
#include "transport/ucx/ucx_expert_server.h"

namespace {

using dsv3::fuzzing::AppendRecord;
using dsv3::fuzzing::CheckStatus;
using dsv3::fuzzing::SetDeadline;

enum Op : uint8_t { kJoin, kGetPlacement, kApply, kWatch, kOps };
constexpr uint8_t kAsGiven = 0x80;

struct Worker {
  std::unique_ptr<dsv3::expert::ExpertShard> shard;
  std::unique_ptr<dsv3::transport::UcxContext> ucx;
  std::unique_ptr<dsv3::transport::UcxExpertServer> server;
  std::unique_ptr<dsv3::expert::ExpertComputeLoop> loop;
  std::unique_ptr<dsv3::expert::ExpertService> service;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<dsv3::v1::Expert::Stub> stub;
  // An attention worker's side: a real UCX worker address to join with.
  std::unique_ptr<dsv3::transport::UcxContext> member_ucx;
};

Worker* worker = nullptr;

[[noreturn]] void Die(const std::string& what) {
  dsv3::fuzzing::Die("expert_requests_fuzzer", what);
}

void Join(const std::string& bytes) {
  dsv3::v1::JoinRequest req;
  if (!req.ParseFromString(bytes)) return;
  if (!req.ucx_worker_address().empty()) {
    req.set_ucx_worker_address(worker->member_ucx->worker_address());
  }
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  dsv3::v1::JoinResponse resp;
  const grpc::Status s = worker->stub->Join(&ctx, req, &resp);
  CheckStatus("Join", s);
  if (s.ok() && resp.worker_index() != worker->shard->worker_index()) __builtin_trap();
}

dsv3::v1::ExpertPlacement GetPlacement() {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 5000);
  dsv3::v1::ExpertPlacement placement;
  const grpc::Status s =
      worker->stub->GetPlacement(&ctx, dsv3::v1::GetPlacementRequest(), &placement);
  CheckStatus("GetPlacement", s);
  if (!s.ok()) __builtin_trap();
  return placement;
}

void Apply(const std::string& bytes, bool as_given) {
  dsv3::v1::ExpertPlacement req;
  if (!req.ParseFromString(bytes)) return;
  const int64_t before = worker->shard->current()->placement.version;
  if (!as_given) req.set_version(before + 1);
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10000);
  dsv3::v1::ApplyPlacementResponse resp;
  const grpc::Status s = worker->stub->ApplyPlacement(&ctx, req, &resp);
  CheckStatus("ApplyPlacement", s);
  const int64_t after = GetPlacement().version();
  // Applied: the version asked for (or the same one, a no-op); refused: nothing changed.
  if (s.ok() && after != std::max(before, req.version())) __builtin_trap();
  if (!s.ok() && after != before) __builtin_trap();
}

void Watch(const std::string& bytes) {
  dsv3::v1::WatchExpertLoadRequest req;
  if (!req.ParseFromString(bytes)) return;
  grpc::ClientContext ctx;
  SetDeadline(ctx, 3000);
  auto reader = worker->stub->WatchExpertLoad(&ctx, req);
  dsv3::v1::ExpertLoadReport report;
  if (reader->Read(&report) && report.worker_index() != worker->shard->worker_index()) {
    __builtin_trap();
  }
  ctx.TryCancel();
  const grpc::Status s = reader->Finish();
  if (s.error_code() != grpc::StatusCode::CANCELLED) CheckStatus("WatchExpertLoad", s);
}

// The placement in effect is one the model can run with, and this worker holds its experts.
void CheckHolding() {
  std::shared_ptr<const dsv3::expert::ExpertHolding> h = worker->shard->current();
  const absl::Status valid =
      h->placement.Validate(worker->shard->moe_layers(), worker->shard->config().n_routed_experts);
  if (!valid.ok()) {
    std::fprintf(stderr, "placement in effect is invalid: %s\n", valid.ToString().c_str());
    __builtin_trap();
  }
  const int64_t assigned =
      static_cast<int64_t>(h->placement.ExpertsOf(worker->shard->worker_index()).size());
  if (h->experts_held < assigned) {
    std::fprintf(stderr, "holds %lld experts of the %lld assigned\n",
                 static_cast<long long>(h->experts_held), static_cast<long long>(assigned));
    __builtin_trap();
  }
}

// Seed inputs: the calls as attention workers and the rebalancer make them, and the broken
// maps tests/expert_worker/expert_worker_test.cc checks.
void WriteSeeds(const std::string& dir, const dsv3::v1::ExpertPlacement& current) {
  dsv3::v1::JoinRequest join;
  join.set_member_id("decode-0");
  join.set_transport(dsv3::v1::EXPERT_TRANSPORT_UCX);
  join.set_ucx_worker_address("x");
  dsv3::v1::ExpertPlacement moved = current;
  if (moved.layers_size() > 0 && moved.layers(0).replicas_size() > 1) {
    // Expert 0 of the first MoE layer gets a second copy on worker 1 (this worker is 0).
    moved.mutable_layers(0)->mutable_replicas(0)->add_workers(1);
  }
  dsv3::v1::ExpertPlacement broken = current;
  if (broken.layers_size() > 0 && broken.layers(0).replicas_size() > 0) {
    broken.mutable_layers(0)->mutable_replicas(0)->clear_workers();  // an expert nobody holds
  }
  dsv3::v1::WatchExpertLoadRequest watch;
  watch.set_interval_ms(50);
  std::map<std::string, std::string> seeds;
  {
    std::string s;
    AppendRecord(&s, kJoin, join);
    AppendRecord(&s, kGetPlacement, dsv3::v1::GetPlacementRequest());
    AppendRecord(&s, kWatch, watch);
    seeds["join_and_watch"] = s;
  }
  {
    std::string s;
    AppendRecord(&s, kApply, moved);
    AppendRecord(&s, kApply, broken);
    AppendRecord(&s, kApply | kAsGiven, current);  // an older version: refused
    seeds["rebalance"] = s;
  }
  dsv3::fuzzing::WriteSeeds("expert_requests_fuzzer", dir, seeds);
}

}  // namespace

// The worker lives until the process exits (the fuzzer never tears it down); what UCX itself
// allocates and drops meanwhile is not ours to fix.
extern "C" const char* __lsan_default_suppressions() { return "leak:libucs.so\n"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* model_dir = std::getenv("DSV3_FUZZ_MODEL");
  const std::string dir = model_dir != nullptr
                              ? model_dir
                              : std::string(DSV3_SOURCE_DIR) + "/tests/data/golden/tiny-v3-fp8";
  worker = new Worker();
  // Worker 0 of 2: a rebalance can move experts here and away.
  auto shard = dsv3::expert::ExpertShard::Load(dir, 0, 2);
  if (!shard.ok()) Die("loading " + dir + ": " + std::string(shard.status().message()));
  worker->shard = std::move(*shard);
  dsv3::transport::UcxOptions ucx_options;
  ucx_options.transports = "tcp";
  ucx_options.net_devices = "lo";
  for (auto* ucx : {&worker->ucx, &worker->member_ucx}) {
    auto made = dsv3::transport::UcxContext::Create(ucx_options);
    if (!made.ok()) Die("UCX: " + std::string(made.status().message()));
    *ucx = std::move(*made);
  }
  auto server = dsv3::transport::UcxExpertServer::Create(*worker->ucx, 0);
  if (!server.ok()) Die("expert server: " + std::string(server.status().message()));
  worker->server = std::move(*server);
  worker->loop = std::make_unique<dsv3::expert::ExpertComputeLoop>(*worker->shard, *worker->server);
  worker->service = std::make_unique<dsv3::expert::ExpertService>(*worker->shard, *worker->ucx,
                                                                  *worker->server, *worker->loop);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(worker->service.get());
  worker->grpc_server = builder.BuildAndStart();
  if (worker->grpc_server == nullptr || port == 0) Die("cannot start a gRPC server on loopback");
  worker->stub = dsv3::v1::Expert::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  if (const char* seeds = std::getenv("DSV3_FUZZ_WRITE_SEEDS"); seeds != nullptr) {
    WriteSeeds(seeds, GetPlacement());
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dsv3::fuzzing::ForEachRecord(data, size, 8, [](uint8_t op, const std::string& bytes) {
    switch ((op & 0x7F) % kOps) {
      case kJoin:
        Join(bytes);
        break;
      case kGetPlacement:
        GetPlacement();
        break;
      case kApply:
        Apply(bytes, (op & kAsGiven) != 0);
        break;
      case kWatch:
        Watch(bytes);
        break;
    }
  });
  CheckHolding();
  return 0;
}
