#ifndef DSV3_ROUTER_COMPLETION_DECODE_READER_H_
#define DSV3_ROUTER_COMPLETION_DECODE_READER_H_

// CompletionRun's Decode stream: reads the decode worker's token batches into the run (Emit),
// cancels the call when the router stops generation (a stop string), and ends the run with the
// stream's status. Only completion_run.cc includes this.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "router/completion_run.h"

namespace dsv3::router {

// The Decode stream of one completion.
class CompletionRun::DecodeReader : public grpc::ClientReadReactor<v1::DecodeResponse> {
 public:
  DecodeReader(std::shared_ptr<CompletionRun> run, std::unique_ptr<grpc::ClientContext> context)
      : run_(std::move(run)), context_(std::move(context)) {}

  void Begin(v1::DecodeWorker::Stub& stub, const v1::DecodeRequest& request) {
    request_ = request;
    stub.async()->Decode(context_.get(), &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() { context_->TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    std::vector<int32_t> ids(response_.token_ids().begin(), response_.token_ids().end());
    std::vector<v1::TokenLogprob> logprobs(response_.logprobs().begin(),
                                           response_.logprobs().end());
    const bool last = response_.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
    if (last) saw_finish_ = true;
    if (run_->Emit(ids, logprobs, response_.finish_reason(), last ? &response_.usage() : nullptr)) {
      stopped_by_router_ = true;
      context_->TryCancel();  // the decode worker frees the sequence's blocks
      return;
    }
    if (!last) StartRead(&response_);
  }

  // Whether another decode worker may take the request over: the stream broke in transport
  // (no trailer from the worker: it died), or the worker said so (common/grpc_status.h).
  bool Resumable(CompletionRun& run, const grpc::Status& status) const {
    if (status.ok()) return true;          // it ended without a finish
    if (run.DecodeStalled()) return true;  // the router ended the call (OnDecodeStalled)
    const auto& trailers = context_->GetServerTrailingMetadata();
    auto it = trailers.find(kResumableTrailer);
    if (it != trailers.end()) return it->second == "1";           // the worker says
    return status.error_code() == grpc::StatusCode::UNAVAILABLE;  // the stream broke
  }

  void OnDone(const grpc::Status& status) override {
    // The run outlives this call even when Resume retires this reader into it.
    std::shared_ptr<CompletionRun> run = std::move(run_);
    absl::Status result = absl::OkStatus();
    if (!stopped_by_router_ && !saw_finish_) {
      result = status.ok() ? absl::UnavailableError("decode stream ended without a finish")
                           : FromGrpcStatus(status);
      if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
        result =
            absl::UnavailableError(absl::StrCat("decode worker ", run->decode_.address,
                                                " failed mid-stream: ", status.error_message()));
      } else if (run->DecodeStalled() && !run->IsCancelled()) {
        result = absl::UnavailableError(
            absl::StrCat("decode worker ", run->decode_.address, " stopped answering mid-stream"));
      }
      // The worker went away (died, or shuts down): the request goes on elsewhere.
      if (Resumable(*run, status) &&
          run->Resume(run->DecodeStalled() ? "decode_stalled" : "decode_failed",
                      result.ToString())) {
        return;
      }
    }
    run->Finish(result);
    // The reader lives inside the run; the run outlives this call (local shared_ptr).
  }

 private:
  std::shared_ptr<CompletionRun> run_;
  std::unique_ptr<grpc::ClientContext> context_;
  v1::DecodeRequest request_;
  v1::DecodeResponse response_;
  bool saw_finish_ = false;
  bool stopped_by_router_ = false;
};

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_COMPLETION_DECODE_READER_H_
