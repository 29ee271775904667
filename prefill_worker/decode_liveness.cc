#include "prefill_worker/decode_liveness.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"

namespace dsv3::prefill {

DecodeLiveness::Probe DecodeLiveness::ProbeFor(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) channel = ClusterChannel(address);
  return Probe(channel, address);
}

absl::Status DecodeLiveness::Probe::Check() {
  if (address_.empty()) return absl::OkStatus();
  const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  if (state != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    failures_ = 0;
    return absl::OkStatus();
  }
  // A channel in backoff may be stale (the worker came back): try again now, and count.
  grpc::experimental::ChannelResetConnectionBackoff(channel_.get());
  if (++failures_ < kFailuresInARow) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("decode worker ", address_,
                                             " does not answer (its gRPC port refuses "
                                             "connections) while the KV transfer waits"));
}

}  // namespace dsv3::prefill
