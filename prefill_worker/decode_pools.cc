#include "prefill_worker/decode_pools.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/status_macros.h"
#include "dsv3/v1/worker.grpc.pb.h"

namespace dsv3::prefill {
namespace {

absl::Status Mismatch(const std::string& address) {
  return absl::PermissionDeniedError(
      absl::StrCat("the KV destination does not match what decode worker ", address,
                   " says of its pool (layout, UCX address, rkey, base address or landing slot)"));
}

}  // namespace

absl::StatusOr<v1::WorkerInfo> DecodePools::Ask(const std::string& address) {
  auto stub = v1::WorkerStatus::NewStub(ClusterChannel(address));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::WorkerInfo info;
  const grpc::Status status = stub->GetInfo(&ctx, v1::GetInfoRequest(), &info);
  if (!status.ok()) {
    // ABORTED, as a transfer into a decode worker that died is: the router resumes the
    // request on another decode worker.
    return absl::AbortedError(absl::StrCat("cannot ask decode worker ", address,
                                           " about its KV pool: ", status.error_message()));
  }
  if (info.role() != v1::WORKER_ROLE_DECODE && info.role() != v1::WORKER_ROLE_COLOCATED) {
    return absl::PermissionDeniedError(
        absl::StrCat(address, " is not a decode worker: it has no KV pool to write into"));
  }
  return info;
}

bool DecodePools::Matches(const v1::KvDestination& d, const v1::WorkerInfo& info) {
  const v1::KvPoolAccess& pool = info.kv_pool();
  // The landing mark goes into one aligned slot of the decode worker's own landing table,
  // and the hidden state, if any, within that slot (kv_landing_table.h: at 56, 8 + bytes).
  const uint64_t slot_bytes = pool.landing_slot_bytes() > 0 ? pool.landing_slot_bytes() : 8;
  const uint64_t slot = d.landing().address() - pool.landing_base_address();
  const uint64_t hidden_at = d.landing().hidden_address();
  const bool hidden_ok =
      hidden_at == 0 || (hidden_at == d.landing().address() + 56 &&
                         64 + uint64_t{d.landing().hidden_bytes()} <= slot_bytes);
  const bool landing_ok =
      d.landing().rkey() == pool.landing_rkey() &&
      d.landing().address() >= pool.landing_base_address() && slot % slot_bytes == 0 &&
      slot / slot_bytes < static_cast<uint64_t>(pool.landing_slots()) && hidden_ok;
  return d.ucx_worker_address() == pool.ucx_worker_address() && d.rkey() == pool.rkey() &&
         d.base_address() == pool.base_address() && landing_ok &&
         d.layout().SerializeAsString() == info.kv_layout().SerializeAsString();
}

absl::Status DecodePools::Check(const v1::KvDestination& destination) {
  const std::string& address = destination.decode_address();
  if (address.empty()) {
    return absl::InvalidArgumentError("KvDestination names no decode worker (decode_address)");
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = known_.find(address);
    if (it != known_.end() && Matches(destination, it->second.info)) return absl::OkStatus();
    // Asked again at most once a second: a stream of forged destinations costs one GetInfo
    // a second, not one per call.
    if (it != known_.end() && absl::Now() - it->second.asked < absl::Seconds(1)) {
      return Mismatch(address);
    }
  }
  DSV3_ASSIGN_OR_RETURN(v1::WorkerInfo info, Ask(address));  // not under the lock: a network call
  const bool matches = Matches(destination, info);
  {
    absl::MutexLock lock(&mu_);
    known_[address] = Known{std::move(info), absl::Now()};
  }
  return matches ? absl::OkStatus() : Mismatch(address);
}

}  // namespace dsv3::prefill
