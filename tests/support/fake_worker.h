#ifndef DSV3_TESTS_SUPPORT_FAKE_WORKER_H_
#define DSV3_TESTS_SUPPORT_FAKE_WORKER_H_

// A scripted prefill or decode worker served in the test's own process over a real gRPC
// socket: what lets the router's request path (CompletionRun) and its worker registry be
// tested without starting worker processes or a model. Like a real worker it serves
// dsv3.v1.WorkerStatus and its role's own service (PrefillWorker or DecodeWorker). It hands out
// leases, answers a Prefill once it has its destination (or holds every answer until the test lets
// them go), streams scripted Decode tokens, and records every call so a test can check what the
// router asked for and when.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dsv3/v1/worker.grpc.pb.h"

namespace dsv3::testing {

struct FakeWorkerScript {
  v1::WorkerRole role = v1::WORKER_ROLE_DECODE;
  // Reserve answers this status the first `reserve_failures` times, then grants a lease.
  int reserve_failures = 0;
  grpc::StatusCode reserve_failure = grpc::StatusCode::RESOURCE_EXHAUSTED;
  // Prefill answers this status the first `prefill_failures` times it has its destination.
  int prefill_failures = 0;
  grpc::StatusCode prefill_failure = grpc::StatusCode::ABORTED;
  int32_t first_token = 11;
  // Decode streams these (at most max_tokens - 1), one a message, the last with
  // FINISH_REASON_LENGTH.
  std::vector<int32_t> decode_tokens = {12, 13};
  int32_t block_size = 16;
  int32_t num_blocks = 64;
};

// What the worker was asked, in order of arrival.
struct FakeWorkerCalls {
  int reserves = 0;
  std::vector<uint64_t> leases;  // granted
  int prefills = 0;
  int prefills_with_destination = 0;  // the destination in the Prefill itself
  int destination_updates = 0;        // ... or in an UpdatePrefill
  std::vector<std::string> cancels;   // UpdatePrefill cancel reasons
  int prefill_answers = 0;
  std::vector<uint64_t> decodes;             // lease ids
  std::map<uint64_t, std::string> released;  // lease id -> reason
};

// One object implements the three services (their methods' names differ); Start registers
// the status service and the role's.
class FakeWorker : public v1::WorkerStatus::Service,
                   public v1::PrefillWorker::Service,
                   public v1::DecodeWorker::Service {
 public:
  // Serves on a free localhost port.
  static std::unique_ptr<FakeWorker> Start(FakeWorkerScript script);
  ~FakeWorker() override;

  const std::string& address() const { return address_; }
  FakeWorkerCalls calls() const;
  // Waits until `done(calls)` holds; false at the timeout.
  bool WaitFor(const std::function<bool(const FakeWorkerCalls&)>& done,
               absl::Duration timeout = absl::Seconds(10)) const;
  // While held, no Prefill answers (neither a result nor a cancellation): a prompt that
  // computes, or a worker that keeps writing. Letting go answers them all.
  void HoldPrefills(bool hold);
  // A stopped process (SIGSTOP): its connections stay open, but no load report and no
  // further Decode token goes out until it goes on.
  void Pause(bool paused);
  // Its load reports say it drains (the registry then picks it no more).
  void SetDraining(bool draining);

  grpc::Status GetInfo(grpc::ServerContext* context, const v1::GetInfoRequest* request,
                       v1::WorkerInfo* info) override;
  grpc::Status WatchLoad(grpc::ServerContext* context, const v1::WatchLoadRequest* request,
                         grpc::ServerWriter<v1::LoadReport>* writer) override;
  grpc::Status Reserve(grpc::ServerContext* context, const v1::ReserveRequest* request,
                       v1::ReserveResponse* response) override;
  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillResponse* response) override;
  grpc::Status UpdatePrefill(grpc::ServerContext* context, const v1::UpdatePrefillRequest* request,
                             v1::UpdatePrefillResponse* response) override;
  grpc::Status Decode(grpc::ServerContext* context, const v1::DecodeRequest* request,
                      grpc::ServerWriter<v1::DecodeResponse>* writer) override;
  grpc::Status Release(grpc::ServerContext* context, const v1::ReleaseRequest* request,
                       v1::ReleaseResponse* response) override;

 private:
  explicit FakeWorker(FakeWorkerScript script) : script_(std::move(script)) {}
  struct Job {
    bool has_destination = false;
    std::string cancel;  // non-empty: cancelled
  };

  const FakeWorkerScript script_;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  FakeWorkerCalls calls_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Job> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, uint64_t> secrets_ ABSL_GUARDED_BY(mu_);  // lease id -> secret
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_lease_ ABSL_GUARDED_BY(mu_) = 100;
};

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_SUPPORT_FAKE_WORKER_H_
