// The gRPC dsv3.v1.Inference front end on a real grpc::Server on 127.0.0.1 against a
// scripted backend: streaming, status mapping, cancellation, deadlines, and 1,000
// concurrent streams held open at once.

#include "router/grpc_inference_service.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/router/scripted_backend.h"

namespace dsv3::router {
namespace {

using testing::Script;
using testing::ScriptedBackend;

class GrpcInferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
      server_->Wait();
    }
  }

  struct StreamResult {
    std::vector<v1::GenerateResponse> responses;
    grpc::Status status;
  };

  StreamResult RunGenerate(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    StreamResult result;
    auto reader = stub_->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) result.responses.push_back(response);
    result.status = reader->Finish();
    return result;
  }

  // Declared first: outlives the server and the service.
  ScriptedBackend backend_;
  GrpcInferenceService service_{backend_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

v1::GenerateRequest TextRequest(const std::string& text, int n = 1) {
  v1::GenerateRequest request;
  request.set_text(text);
  request.set_n(n);
  return request;
}

TEST_F(GrpcInferenceServiceTest, GenerateStreamsEveryResponseInOrder) {
  Script script;
  script.pieces = {{"c{i}-a", {1}}, {"c{i}-b", {2, 3}}};
  backend_.SetScript(script);
  v1::GenerateRequest request = TextRequest("hi", 2);
  request.set_request_id("r-1");
  request.mutable_sampling()->set_temperature(0.7f);
  const StreamResult result = RunGenerate(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), 4u);
  std::string text[2];
  for (const v1::GenerateResponse& r : result.responses) {
    ASSERT_TRUE(r.index() == 0 || r.index() == 1);
    EXPECT_EQ(r.request_id(), "r-1");
    text[r.index()] += r.text();
  }
  EXPECT_EQ(text[0], "c0-ac0-b");
  EXPECT_EQ(text[1], "c1-ac1-b");
  EXPECT_EQ(result.responses[3].finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(result.responses[3].usage().completion_tokens(), 3);
  EXPECT_THAT(result.responses[2].token_ids(), ::testing::ElementsAre(2, 3));
  // The request reached the backend as sent, plus the call's deadline.
  const v1::GenerateRequest seen = backend_.last_request();
  EXPECT_EQ(seen.text(), "hi");
  EXPECT_FLOAT_EQ(seen.sampling().temperature(), 0.7f);
  // gRPC sends the timeout rounded up to a coarser unit, so the server's deadline may be
  // a little later than the client's.
  EXPECT_GT(seen.timeout_ms(), 9000);
  EXPECT_LE(seen.timeout_ms(), 10500);
}

TEST_F(GrpcInferenceServiceTest, SynchronousErrorsKeepTheirCode) {
  const std::vector<absl::Status> errors = {
      absl::InvalidArgumentError("prompt too long"), absl::ResourceExhaustedError("full"),
      absl::UnavailableError("no worker"), absl::DeadlineExceededError("late")};
  for (const absl::Status& error : errors) {
    SCOPED_TRACE(error.ToString());
    backend_.SetGenerateError(error);
    const StreamResult result = RunGenerate(TextRequest("x"));
    EXPECT_TRUE(result.responses.empty());
    EXPECT_EQ(static_cast<int>(result.status.error_code()), static_cast<int>(error.code()));
    EXPECT_EQ(result.status.error_message(), std::string(error.message()));
  }
  backend_.SetGenerateError(absl::OkStatus());
  v1::GenerateRequest request = TextRequest("x");
  request.set_model("nope");
  EXPECT_EQ(RunGenerate(request).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcInferenceServiceTest, ErrorAfterResponsesArrivesAfterThem) {
  Script script;
  script.final_status = absl::UnavailableError("decode worker died");
  backend_.SetScript(script);
  const StreamResult result = RunGenerate(TextRequest("x"));
  EXPECT_EQ(result.responses.size(), 3u);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(result.status.error_message(), "decode worker died");
}

TEST_F(GrpcInferenceServiceTest, ClientCancelCancelsTheBackendRequest) {
  Script script;
  script.endless = true;
  script.interval = absl::Milliseconds(10);
  backend_.SetScript(script);
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, TextRequest("x"));
  v1::GenerateResponse response;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&response));
  context.TryCancel();
  const absl::Time cancelled_at = absl::Now();
  EXPECT_TRUE(backend_.WaitForCancels(1, absl::Seconds(1)));
  EXPECT_LT(absl::Now() - cancelled_at, absl::Seconds(1));
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
}

TEST_F(GrpcInferenceServiceTest, ClientCancelWhileTheBackendIsSilent) {
  Script script;
  script.hold_after_first = true;
  backend_.SetScript(script);
  grpc::ClientContext context;
  auto reader = stub_->Generate(&context, TextRequest("x"));
  v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  ASSERT_TRUE(backend_.WaitForHeld(1, absl::Seconds(5)));
  context.TryCancel();
  EXPECT_TRUE(backend_.WaitForCancels(1, absl::Seconds(1)));
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
}

TEST_F(GrpcInferenceServiceTest, DeadlineReachesTheBackendAndEndsTheCall) {
  Script script;
  script.endless = true;
  script.interval = absl::Milliseconds(10);
  backend_.SetScript(script);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  auto reader = stub_->Generate(&context, TextRequest("x"));
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  const v1::GenerateRequest seen = backend_.last_request();
  EXPECT_GT(seen.timeout_ms(), 0);
  EXPECT_LE(seen.timeout_ms(), 400);  // gRPC rounds the sent timeout up
  EXPECT_TRUE(backend_.WaitForCancels(1, absl::Seconds(1)));
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
}

TEST_F(GrpcInferenceServiceTest, UnaryCalls) {
  grpc::ClientContext c1;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("ab");
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(stub_->Tokenize(&c1, tokenize, &tokens).ok());
  EXPECT_THAT(tokens.ids(), ::testing::ElementsAre('a', 'b'));

  grpc::ClientContext c2;
  tokenize.set_model("nope");
  EXPECT_EQ(stub_->Tokenize(&c2, tokenize, &tokens).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext c3;
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&c3, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).name(), "test-model");

  grpc::ClientContext c4;
  v1::GetModelInfoRequest info_request;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&c4, info_request, &info).ok());
  EXPECT_EQ(info.max_context_tokens(), 4096);

  grpc::ClientContext c5;
  info_request.set_model("nope");
  EXPECT_EQ(stub_->GetModelInfo(&c5, info_request, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// One stream of the concurrency test, on the callback client API.
class CountingReader final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  struct Totals {
    absl::Mutex mu;
    int first_responses ABSL_GUARDED_BY(mu) = 0;
    int done ABSL_GUARDED_BY(mu) = 0;
    int ok ABSL_GUARDED_BY(mu) = 0;
  };

  CountingReader(v1::Inference::Stub& stub, Totals& totals) : totals_(totals) {
    request_.set_text("x");
    context_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    stub.async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (text_.empty()) {
      absl::MutexLock lock(&totals_.mu);
      ++totals_.first_responses;
    }
    text_ += response_.text();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&totals_.mu);
    ++totals_.done;
    if (status.ok() && text_ == "Hello world!") ++totals_.ok;
  }

 private:
  Totals& totals_;
  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  std::string text_;
};

TEST_F(GrpcInferenceServiceTest, ThousandConcurrentStreamsHeldOpenThenCompleted) {
  constexpr int kStreams = 1000;
  Script script;
  script.hold_after_first = true;
  backend_.SetScript(script);
  const absl::Time start = absl::Now();

  CountingReader::Totals totals;
  std::vector<std::unique_ptr<CountingReader>> readers;
  readers.reserve(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    readers.push_back(std::make_unique<CountingReader>(*stub_, totals));
  }
  // Every stream is open and has its first response while none has finished.
  {
    absl::MutexLock lock(&totals.mu);
    auto all_started = [&totals]() ABSL_SHARED_LOCKS_REQUIRED(totals.mu) {
      return totals.first_responses == kStreams;
    };
    EXPECT_TRUE(totals.mu.AwaitWithTimeout(absl::Condition(&all_started), absl::Seconds(15)))
        << totals.first_responses << " of " << kStreams << " streams started";
    EXPECT_EQ(totals.done, 0);
  }
  EXPECT_TRUE(backend_.WaitForHeld(kStreams, absl::Seconds(5)));
  EXPECT_EQ(backend_.running(), kStreams);

  backend_.ReleaseHeld();
  {
    absl::MutexLock lock(&totals.mu);
    auto all_done = [&totals]()
                        ABSL_SHARED_LOCKS_REQUIRED(totals.mu) { return totals.done == kStreams; };
    EXPECT_TRUE(totals.mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(15)))
        << totals.done << " of " << kStreams << " streams finished";
    EXPECT_EQ(totals.ok, kStreams);
  }
  EXPECT_EQ(backend_.cancels(), 0);
  EXPECT_TRUE(backend_.WaitForRunning(0, absl::Seconds(2)));
  std::cout << kStreams << " streams opened and completed in " << absl::Now() - start << "\n";

  // A reader may be destroyed only after its OnDone. If the waits above timed out, end the
  // stragglers (bounded), and leak any that still did not finish rather than free them
  // under gRPC.
  absl::MutexLock lock(&totals.mu);
  if (totals.done != kStreams) {
    totals.mu.Unlock();
    backend_.ReleaseHeld();
    for (auto& reader : readers) reader->Cancel();
    totals.mu.Lock();
    auto all_done = [&totals]()
                        ABSL_SHARED_LOCKS_REQUIRED(totals.mu) { return totals.done == kStreams; };
    if (!totals.mu.AwaitWithTimeout(absl::Condition(&all_done), absl::Seconds(5))) {
      for (auto& reader : readers) reader.release();
    }
  }
}

}  // namespace
}  // namespace dsv3::router
