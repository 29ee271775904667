// libFuzzer target: the internal gRPC requests (dsv3.v1.DecodeWorker: Reserve, Decode,
// Release; PrefillWorker: Prefill, UpdatePrefill; WorkerStatus: GetInfo) as a real decode
// worker and a real prefill worker handle them: both workers run in this process on a tiny golden
// model, each behind its own gRPC server on loopback, with a real UCX KV transfer between them; the
// input is a sequence of calls. Every call must end with a status a caller can act on (OK, a client
// error, a resource or precondition error; never INTERNAL, UNKNOWN or a crash), and once the
// input's leases are released the decode worker must be back to no lease, no sequence and every
// block free (nothing a request held is leaked).
//
// Input: up to 8 records [op][length lo][length hi][length bytes of a serialized request].
// op % 6 picks the call (0 Reserve, 1 Prefill, 2 Decode, 3 Release, 4 UpdatePrefill, 5
// GetInfo). Unless op has bit 0x80 ("as given"), Prefill, Decode and Release are aimed at the
// lease of the input's latest successful Reserve (its destination, lease id and secret): a
// fuzzer cannot guess a 64-bit secret, and the deep paths are behind it. As given, a
// destination still names this decode worker when it names one (the fuzzer must not dial
// out). Decodes are capped at 4 tokens so that an input cannot run for minutes.
//
//   worker_requests_fuzzer -max_total_time=60 CORPUS_DIR tests/fuzz/worker_requests
//   DSV3_FUZZ_WRITE_SEEDS=tests/fuzz/worker_requests worker_requests_fuzzer -runs=0
//     (writes the seed inputs; DSV3_FUZZ_MODEL=<dir> picks another model)

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "decode_worker/decode_service.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "engine/model.h"
#include "prefill_worker/prefill_service.h"
#include "tests/support/fuzz_call_sequence.h"
#include "transport/ucx/ucx_context.h"

namespace {

using dsv3::fuzzing::AppendRecord;
using dsv3::fuzzing::CheckStatus;
using dsv3::fuzzing::SetDeadline;

enum Op : uint8_t { kReserve, kPrefill, kDecode, kRelease, kUpdate, kInfo, kOps };
constexpr uint8_t kAsGiven = 0x80;

struct Cluster {
  std::unique_ptr<dsv3::engine::Model> model;
  std::unique_ptr<dsv3::transport::UcxContext> ucx;
  std::unique_ptr<dsv3::decode::DecodeService> decode;
  std::unique_ptr<dsv3::prefill::PrefillService> prefill;
  std::unique_ptr<dsv3::worker::WorkerStatusService> decode_status;
  std::unique_ptr<dsv3::worker::WorkerStatusService> prefill_status;
  std::unique_ptr<grpc::Server> decode_server;
  std::unique_ptr<grpc::Server> prefill_server;
  std::unique_ptr<dsv3::v1::DecodeWorker::Stub> decode_stub;
  std::unique_ptr<dsv3::v1::PrefillWorker::Stub> prefill_stub;
  std::unique_ptr<dsv3::v1::WorkerStatus::Stub> decode_status_stub;
  std::unique_ptr<dsv3::v1::WorkerStatus::Stub> prefill_status_stub;
  std::string decode_address;
};

Cluster* cluster = nullptr;

[[noreturn]] void Die(const std::string& what) {
  dsv3::fuzzing::Die("worker_requests_fuzzer", what);
}

std::unique_ptr<grpc::Server> Serve(std::initializer_list<grpc::Service*> services,
                                    std::string* address) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) Die("cannot start a gRPC server on loopback");
  *address = "127.0.0.1:" + std::to_string(port);
  return server;
}

struct Lease {
  uint64_t id = 0;
  uint64_t secret = 0;
};

class Run {
 public:
  void Reserve(const std::string& bytes) {
    dsv3::v1::ReserveRequest req;
    if (!req.ParseFromString(bytes)) return;
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5000);
    dsv3::v1::ReserveResponse resp;
    grpc::Status s = cluster->decode_stub->Reserve(&ctx, req, &resp);
    CheckStatus("Reserve", s);
    if (!s.ok()) return;
    latest_ = resp.destination();
    leases_[latest_->lease_id()] = latest_->lease_secret();
  }

  void Prefill(const std::string& bytes, bool as_given) {
    dsv3::v1::PrefillRequest req;
    if (!req.ParseFromString(bytes)) return;
    if (!as_given && latest_.has_value()) *req.mutable_destination() = *latest_;
    if (req.has_destination() && !req.destination().decode_address().empty()) {
      req.mutable_destination()->set_decode_address(cluster->decode_address);
    }
    grpc::ClientContext ctx;
    // Without a destination the job waits for an UpdatePrefill that this input cannot send
    // while the call blocks: a short deadline ends it.
    SetDeadline(ctx, req.has_destination() ? 10000 : 300);
    dsv3::v1::PrefillResponse resp;
    CheckStatus("Prefill", cluster->prefill_stub->Prefill(&ctx, req, &resp));
  }

  void Decode(const std::string& bytes, bool as_given) {
    dsv3::v1::DecodeRequest req;
    if (!req.ParseFromString(bytes)) return;
    if (!as_given && latest_.has_value()) {
      req.set_lease_id(latest_->lease_id());
      req.set_lease_secret(latest_->lease_secret());
    }
    dsv3::v1::SamplingParams* sampling = req.mutable_sampling();
    if (sampling->max_tokens() <= 0 || sampling->max_tokens() > 4) sampling->set_max_tokens(4);
    grpc::ClientContext ctx;
    SetDeadline(ctx, 10000);
    auto reader = cluster->decode_stub->Decode(&ctx, req);
    dsv3::v1::DecodeResponse resp;
    while (reader->Read(&resp)) {
    }
    grpc::Status s = reader->Finish();
    CheckStatus("Decode", s);
    // Four tokens of a tiny model take milliseconds: a Decode that runs out its deadline hung.
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      std::fprintf(stderr, "Decode ran past its 10 s deadline\n");
      __builtin_trap();
    }
  }

  void Release(const std::string& bytes, bool as_given) {
    dsv3::v1::ReleaseRequest req;
    if (!req.ParseFromString(bytes)) return;
    if (!as_given && latest_.has_value()) {
      req.set_lease_id(latest_->lease_id());
      req.set_lease_secret(latest_->lease_secret());
    }
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5000);
    dsv3::v1::ReleaseResponse resp;
    CheckStatus("Release", cluster->decode_stub->Release(&ctx, req, &resp));
  }

  void Update(const std::string& bytes) {
    dsv3::v1::UpdatePrefillRequest req;
    if (!req.ParseFromString(bytes)) return;
    if (req.has_destination() && !req.destination().decode_address().empty()) {
      req.mutable_destination()->set_decode_address(cluster->decode_address);
    }
    grpc::ClientContext ctx;
    SetDeadline(ctx, 5000);
    dsv3::v1::UpdatePrefillResponse resp;
    CheckStatus("UpdatePrefill", cluster->prefill_stub->UpdatePrefill(&ctx, req, &resp));
  }

  void Info(const std::string& bytes) {
    dsv3::v1::GetInfoRequest req;
    if (!req.ParseFromString(bytes)) return;
    for (dsv3::v1::WorkerStatus::Stub* stub :
         {cluster->decode_status_stub.get(), cluster->prefill_status_stub.get()}) {
      grpc::ClientContext ctx;
      SetDeadline(ctx, 5000);
      dsv3::v1::WorkerInfo info;
      grpc::Status s = stub->GetInfo(&ctx, req, &info);
      CheckStatus("GetInfo", s);
      if (!s.ok()) __builtin_trap();
    }
  }

  // Releases what the input left reserved, then checks that the decode worker holds nothing.
  void End() {
    for (const auto& [id, secret] : leases_) {
      grpc::ClientContext ctx;
      SetDeadline(ctx, 5000);
      dsv3::v1::ReleaseRequest req;
      req.set_lease_id(id);
      req.set_lease_secret(secret);
      req.set_reason("fuzz input done");
      dsv3::v1::ReleaseResponse resp;
      CheckStatus("Release", cluster->decode_stub->Release(&ctx, req, &resp));
    }
    dsv3::decode::DecodeLoad load;
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    do {
      load = cluster->decode->scheduler().Load();
      if (load.leases == 0 && load.running == 0 && load.waiting == 0 &&
          load.blocks_free == load.blocks_total) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(1));
    } while (absl::Now() < deadline);
    std::fprintf(stderr,
                 "decode worker holds %d leases, %d running, %d waiting, %lld of %lld "
                 "blocks free after the input's leases were released\n",
                 load.leases, load.running, load.waiting, static_cast<long long>(load.blocks_free),
                 static_cast<long long>(load.blocks_total));
    __builtin_trap();
  }

 private:
  std::optional<dsv3::v1::KvDestination> latest_;
  std::map<uint64_t, uint64_t> leases_;
};

// Seed inputs: the request path as the router drives it, and the hostile variants the
// integration tests check (tests/integration/disaggregated_workers_bad_input_test.cc).
void WriteSeeds(const std::string& dir) {
  const std::vector<int32_t> prompt = {1, 7, 42, 3, 9, 11, 5};
  dsv3::v1::ReserveRequest reserve;
  reserve.set_prompt_tokens(static_cast<int32_t>(prompt.size()));
  reserve.set_max_new_tokens(4);
  for (int32_t t : prompt) reserve.add_prompt_token_ids(t);
  dsv3::v1::PrefillRequest prefill;
  for (int32_t t : prompt) prefill.add_prompt_token_ids(t);
  prefill.mutable_sampling()->set_max_tokens(4);
  dsv3::v1::DecodeRequest decode;
  for (int32_t t : prompt) decode.add_prompt_token_ids(t);
  decode.set_first_token_id(2);
  decode.mutable_sampling()->set_max_tokens(4);
  decode.mutable_sampling()->set_temperature(0.7f);
  decode.mutable_sampling()->set_logprobs(2);
  dsv3::v1::ReleaseRequest release;
  release.set_reason("seed");
  std::map<std::string, std::string> seeds;
  {  // reserve -> prefill -> decode, as the router does
    std::string s;
    AppendRecord(&s, kReserve, reserve);
    AppendRecord(&s, kPrefill, prefill);
    AppendRecord(&s, kDecode, decode);
    seeds["prefill_then_decode"] = s;
  }
  {  // a decode with no prefill (refused), then a release
    std::string s;
    AppendRecord(&s, kReserve, reserve);
    AppendRecord(&s, kDecode, decode);
    AppendRecord(&s, kRelease, release);
    seeds["decode_before_prefill"] = s;
  }
  {  // conditional disaggregation: the decode worker computes the prompt itself
    std::string s;
    AppendRecord(&s, kReserve, reserve);
    dsv3::v1::DecodeRequest here = decode;
    here.set_prefill_here(true);
    AppendRecord(&s, kDecode, here);
    seeds["prefill_here"] = s;
  }
  {  // a destination forged from the lease (another base address), as given
    std::string s;
    AppendRecord(&s, kReserve, reserve);
    AppendRecord(&s, kInfo, dsv3::v1::GetInfoRequest());
    dsv3::v1::PrefillRequest forged = prefill;
    dsv3::v1::KvDestination* d = forged.mutable_destination();
    d->set_decode_address("x");
    d->set_base_address(4096);
    d->add_block_ids(3);
    d->mutable_landing()->set_address(8);
    d->mutable_landing()->set_tag(1);
    AppendRecord(&s, kPrefill | kAsGiven, forged);
    seeds["forged_destination"] = s;
  }
  {  // a job without destination, updated and cancelled
    std::string s;
    dsv3::v1::PrefillRequest job = prefill;
    job.set_job_id(77);
    AppendRecord(&s, kPrefill | kAsGiven, job);
    dsv3::v1::UpdatePrefillRequest cancel;
    cancel.set_job_id(77);
    cancel.set_cancel_reason("seed");
    AppendRecord(&s, kUpdate, cancel);
    seeds["update_prefill"] = s;
  }
  dsv3::fuzzing::WriteSeeds("worker_requests_fuzzer", dir, seeds);
}

}  // namespace

// The services live until the process exits (the fuzzer never tears them down); what UCX
// itself allocates and drops meanwhile (56 bytes in libucs, seen at exit) is not ours to fix.
extern "C" const char* __lsan_default_suppressions() { return "leak:libucs.so\n"; }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* seeds = std::getenv("DSV3_FUZZ_WRITE_SEEDS"); seeds != nullptr) {
    WriteSeeds(seeds);
  }
  const char* model_dir = std::getenv("DSV3_FUZZ_MODEL");
  const std::string dir = model_dir != nullptr
                              ? model_dir
                              : std::string(DSV3_SOURCE_DIR) + "/tests/data/golden/tiny-v3-mtp";
  cluster = new Cluster();
  auto model = dsv3::engine::Model::Load(dir);
  if (!model.ok()) Die("loading " + dir + ": " + std::string(model.status().message()));
  cluster->model = std::move(*model);
  dsv3::transport::UcxOptions ucx_options;
  ucx_options.transports = "tcp";
  ucx_options.net_devices = "lo";
  auto ucx = dsv3::transport::UcxContext::Create(ucx_options);
  if (!ucx.ok()) Die("UCX: " + std::string(ucx.status().message()));
  cluster->ucx = std::move(*ucx);
  // A small pool (16 blocks of 16 positions): exhaustion is reachable.
  const dsv3::engine::KvCacheLayout layout = cluster->model->KvLayout(16, 16);

  dsv3::decode::DecodeServiceOptions decode_options;
  decode_options.model_name = "fuzz";
  decode_options.scheduler.speculative_mtp = true;
  decode_options.scheduler.max_lease = absl::Seconds(10);
  auto decode =
      dsv3::decode::DecodeService::Create(*cluster->model, layout, *cluster->ucx, decode_options);
  if (!decode.ok()) Die("decode service: " + std::string(decode.status().message()));
  cluster->decode = std::move(*decode);
  cluster->decode_status = cluster->decode->NewStatusService();
  cluster->decode_server =
      Serve({cluster->decode.get(), cluster->decode_status.get()}, &cluster->decode_address);
  cluster->decode->set_advertised_address(cluster->decode_address);

  dsv3::prefill::PrefillServiceOptions prefill_options;
  prefill_options.model_name = "fuzz";
  prefill_options.scheduler.chunk_tokens = 8;
  prefill_options.scheduler.transfer_timeout = absl::Seconds(5);
  auto prefill = dsv3::prefill::PrefillService::Create(*cluster->model, layout, *cluster->ucx,
                                                       prefill_options);
  if (!prefill.ok()) Die("prefill service: " + std::string(prefill.status().message()));
  cluster->prefill = std::move(*prefill);
  std::string prefill_address;
  cluster->prefill_status = cluster->prefill->NewStatusService();
  cluster->prefill_server =
      Serve({cluster->prefill.get(), cluster->prefill_status.get()}, &prefill_address);

  auto decode_channel =
      grpc::CreateChannel(cluster->decode_address, grpc::InsecureChannelCredentials());
  auto prefill_channel = grpc::CreateChannel(prefill_address, grpc::InsecureChannelCredentials());
  cluster->decode_stub = dsv3::v1::DecodeWorker::NewStub(decode_channel);
  cluster->decode_status_stub = dsv3::v1::WorkerStatus::NewStub(decode_channel);
  cluster->prefill_stub = dsv3::v1::PrefillWorker::NewStub(prefill_channel);
  cluster->prefill_status_stub = dsv3::v1::WorkerStatus::NewStub(prefill_channel);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Run run;
  dsv3::fuzzing::ForEachRecord(data, size, 8, [&](uint8_t op, const std::string& bytes) {
    const bool as_given = (op & kAsGiven) != 0;
    switch ((op & 0x7F) % kOps) {
      case kReserve:
        run.Reserve(bytes);
        break;
      case kPrefill:
        run.Prefill(bytes, as_given);
        break;
      case kDecode:
        run.Decode(bytes, as_given);
        break;
      case kRelease:
        run.Release(bytes, as_given);
        break;
      case kUpdate:
        run.Update(bytes);
        break;
      case kInfo:
        run.Info(bytes);
        break;
    }
  });
  run.End();
  return 0;
}
