#include "transport/nccl/nccl_channel.h"

#include "absl/memory/memory.h"

namespace dsv3::transport {

absl::StatusOr<std::unique_ptr<NcclChannel>> NcclChannel::Open(const NcclCommOptions& options) {
  if (options.unique_id.size() != sizeof(ncclUniqueId)) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL unique id of ", options.unique_id.size(),
                                                   " bytes, expected ", sizeof(ncclUniqueId)));
  }
  const cudaError_t e = cudaSetDevice(options.cuda_device);
  if (e != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.cuda_device, " cannot be used for NCCL: ", cudaGetErrorName(e),
        " (", cudaGetErrorString(e), ")"));
  }
  auto channel = absl::WrapUnique(new NcclChannel(options.cuda_device));
  // Non-blocking: the NCCL kernels must not wait behind other work on the legacy stream.
  if (absl::Status s =
          CudaStatus(cudaStreamCreateWithFlags(&channel->stream_, cudaStreamNonBlocking),
                     "cudaStreamCreateWithFlags");
      !s.ok()) {
    return s;
  }
  ncclUniqueId id;
  std::memcpy(id.internal, options.unique_id.data(), sizeof(id.internal));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // so that every wait below can honour a deadline
  const ncclResult_t r =
      ncclCommInitRankConfig(&channel->comm_, options.world_size, id, options.rank, &config);
  const std::string what = absl::StrCat("joining the NCCL communicator as rank ", options.rank,
                                        " of ", options.world_size);
  if (!Posted(r)) return channel->Fail(NcclStatus(r, channel->comm_, what));
  if (absl::Status s = channel->WaitEnqueued(what, absl::Now() + options.init_timeout); !s.ok()) {
    return s;
  }
  return channel;
}

NcclChannel::~NcclChannel() {
  if (comm_ != nullptr) {
    cudaSetDevice(device_);
    bool clean = Posted(ncclCommFinalize(comm_));
    const absl::Time deadline = absl::Now() + kFinalizeTimeout;
    while (clean) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || !Posted(state)) {
        clean = false;
      } else if (state == ncclSuccess) {
        break;
      } else if (absl::Now() >= deadline) {
        clean = false;
      } else {
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
    if (clean) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::StatusOr<std::string> MakeNcclUniqueId() {
  ncclUniqueId id;
  const ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) return NcclStatus(r, nullptr, "ncclGetUniqueId");
  return std::string(id.internal, sizeof(id.internal));
}

}  // namespace dsv3::transport
