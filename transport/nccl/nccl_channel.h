#ifndef DSV3_TRANSPORT_NCCL_NCCL_CHANNEL_H_
#define DSV3_TRANSPORT_NCCL_NCCL_CHANNEL_H_

// Internal to the NCCL expert all-to-all (nccl_expert_all_to_all.cc): one non-blocking NCCL
// communicator with its stream and staging buffers, and the CUDA/NCCL status helpers. Built
// only with CUDA (DSV3_HAVE_CUDA).

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "transport/nccl/nccl_expert_all_to_all.h"

namespace dsv3::transport {

// Polls spin (yielding) at first, then sleep, longer once the wait is clearly idle: a layer's
// exchange takes tens of microseconds, an idle expert's wait for the next step seconds.
inline constexpr int kSpinPolls = 2000;
inline constexpr int kShortSleepPolls = 50000;
inline constexpr absl::Duration kShortPollSleep = absl::Microseconds(20);
inline constexpr absl::Duration kLongPollSleep = absl::Microseconds(500);
// ncclCommFinalize at teardown flushes nothing (every call waits for its own work); it is
// bounded so that a vanished peer cannot hold a destructor.
inline constexpr absl::Duration kFinalizeTimeout = absl::Seconds(10);

inline bool Posted(ncclResult_t r) { return r == ncclSuccess || r == ncclInProgress; }

inline absl::Status CudaStatus(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
}

inline absl::StatusCode NcclCode(ncclResult_t r) {
  switch (r) {
    case ncclInvalidArgument:
      return absl::StatusCode::kInvalidArgument;
    case ncclInvalidUsage:
      return absl::StatusCode::kFailedPrecondition;
    case ncclRemoteError:  // a peer failed or went away
    case ncclSystemError:  // sockets, network
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kInternal;
  }
}

inline absl::Status NcclStatus(ncclResult_t r, ncclComm_t comm, absl::string_view what) {
  if (Posted(r)) return absl::OkStatus();
  // The last error's text names the cause (e.g. which peer); it may be empty.
  const char* last = ncclGetLastError(comm);
  return absl::Status(NcclCode(r),
                      absl::StrCat(what, ": ", ncclGetErrorString(r),
                                   last != nullptr && *last != '\0' ? absl::StrCat(" (", last, ")")
                                                                    : std::string()));
}

// Grow-only staging memory, device or pinned host (pinned, so copies are asynchronous on the
// stream). Reallocated, contents dropped, only when a step needs more.
class CudaBuffer {
 public:
  explicit CudaBuffer(bool pinned_host) : pinned_host_(pinned_host) {}
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  ~CudaBuffer() { Free(); }

  absl::Status Reserve(int64_t bytes) {
    if (bytes <= capacity_) return absl::OkStatus();
    // Doubling keeps a growing batch from reallocating every step; at least a segment, so
    // the pointer is never null.
    const int64_t want = std::max({bytes, capacity_ * 2, kSegmentAlignment});
    Free();
    void* p = nullptr;
    const cudaError_t e = pinned_host_ ? cudaMallocHost(&p, static_cast<size_t>(want))
                                       : cudaMalloc(&p, static_cast<size_t>(want));
    if (e != cudaSuccess) {
      return absl::ResourceExhaustedError(
          absl::StrCat("allocating ", want, " bytes of ", pinned_host_ ? "pinned host" : "device",
                       " memory: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")"));
    }
    data_ = p;
    capacity_ = want;
    return absl::OkStatus();
  }
  uint8_t* data() const { return static_cast<uint8_t*>(data_); }

 private:
  void Free() {
    if (data_ == nullptr) return;
    if (pinned_host_) {
      cudaFreeHost(data_);
    } else {
      cudaFree(data_);
    }
    data_ = nullptr;
    capacity_ = 0;
  }

  const bool pinned_host_;
  void* data_ = nullptr;
  int64_t capacity_ = 0;
};

// One non-blocking communicator, its stream and staging buffers. Every wait polls NCCL's
// asynchronous error, the abort flag and the deadline; any failure once a step has begun
// aborts the communicator, since the ranks can no longer agree on the call order.
class NcclChannel {
 public:
  static absl::StatusOr<std::unique_ptr<NcclChannel>> Open(const NcclCommOptions& options);
  NcclChannel(const NcclChannel&) = delete;
  NcclChannel& operator=(const NcclChannel&) = delete;
  ~NcclChannel();

  void RequestAbort() { abort_requested_.store(true, std::memory_order_relaxed); }

  // UNAVAILABLE once aborted; otherwise binds the calling thread to the device.
  absl::Status Begin() {
    if (!broken_.ok()) return broken_;
    if (abort_requested_.load(std::memory_order_relaxed)) {
      return Fail(absl::UnavailableError("NCCL expert communicator aborted on request"));
    }
    return Check(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  }

  // ncclGroupStart, `post` (the sends and receives), ncclGroupEnd. With a non-blocking
  // communicator NCCL may still be enqueueing the group: WaitEnqueued before the next call.
  absl::Status PostGroup(absl::string_view what, absl::FunctionRef<ncclResult_t()> post) {
    ncclResult_t r = ncclGroupStart();
    if (!Posted(r)) return Fail(NcclStatus(r, comm_, absl::StrCat(what, ": ncclGroupStart")));
    const ncclResult_t posted = post();
    r = ncclGroupEnd();  // closes the group even when a call in it failed
    if (!Posted(posted)) return Fail(NcclStatus(posted, comm_, what));
    if (!Posted(r)) return Fail(NcclStatus(r, comm_, absl::StrCat(what, ": ncclGroupEnd")));
    return absl::OkStatus();
  }

  absl::Status WaitEnqueued(absl::string_view what, absl::Time deadline) {
    return Poll(what, deadline, [this, what]() -> absl::StatusOr<bool> {
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) return NcclStatus(r, comm_, what);
      if (state == ncclInProgress) return false;
      if (state != ncclSuccess) return NcclStatus(state, comm_, what);
      return true;
    });
  }

  absl::Status WaitStream(absl::string_view what, absl::Time deadline) {
    return Poll(what, deadline, [this, what]() -> absl::StatusOr<bool> {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaErrorNotReady) return false;
      if (e != cudaSuccess) return CudaStatus(e, what);
      return true;
    });
  }

  absl::Status Copy(void* dst, const void* src, int64_t bytes, cudaMemcpyKind kind,
                    absl::string_view what) {
    if (bytes == 0) return absl::OkStatus();
    return Check(
        CudaStatus(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), kind, stream_), what));
  }

  // A failure that leaves the ranks out of step: abort (once) and remember why.
  absl::Status Fail(absl::Status why) {
    if (comm_ != nullptr) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    if (broken_.ok()) {
      broken_ =
          absl::UnavailableError(absl::StrCat("NCCL expert communicator aborted: ", why.message()));
    }
    return why;
  }
  absl::Status Check(absl::Status s) { return s.ok() ? s : Fail(std::move(s)); }

  ncclComm_t comm() const { return comm_; }
  cudaStream_t stream() const { return stream_; }

  CudaBuffer host_send{true};
  CudaBuffer device_send{false};
  CudaBuffer host_recv{true};
  CudaBuffer device_recv{false};

 private:
  explicit NcclChannel(int32_t device) : device_(device) {}

  // Until done() says so, or NCCL reports an error, an abort is requested or the deadline
  // passes (each of which aborts the communicator).
  absl::Status Poll(absl::string_view what, absl::Time deadline,
                    absl::FunctionRef<absl::StatusOr<bool>()> done) {
    for (int spin = 0;; ++spin) {
      absl::StatusOr<bool> finished = done();
      if (!finished.ok()) return Fail(finished.status());
      if (*finished) return absl::OkStatus();
      ncclResult_t state = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
      if (r != ncclSuccess) {
        return Fail(NcclStatus(r, comm_, absl::StrCat(what, ": ncclCommGetAsyncError")));
      }
      if (!Posted(state)) return Fail(NcclStatus(state, comm_, what));
      if (abort_requested_.load(std::memory_order_relaxed)) {
        return Fail(absl::UnavailableError(absl::StrCat(what, ": aborted on request")));
      }
      if (absl::Now() >= deadline) {
        return Fail(absl::DeadlineExceededError(
            absl::StrCat(what, " did not finish by the deadline (a peer is gone or stalled)")));
      }
      if (spin < kSpinPolls) {
        std::this_thread::yield();
      } else {
        absl::SleepFor(spin < kShortSleepPolls ? kShortPollSleep : kLongPollSleep);
      }
    }
  }

  const int32_t device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  std::atomic<bool> abort_requested_{false};
  absl::Status broken_;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_NCCL_NCCL_CHANNEL_H_
