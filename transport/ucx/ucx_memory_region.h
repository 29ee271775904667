#ifndef DSV3_TRANSPORT_UCX_UCX_MEMORY_REGION_H_
#define DSV3_TRANSPORT_UCX_UCX_MEMORY_REGION_H_

// A buffer registered once with UCX (ucp_mem_map) so that peers can write into it with
// one-sided puts, and its packed remote key for them.

#include <ucp/api/ucp.h>

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "transport/ucx/ucx_context.h"

namespace dsv3::transport {

class UcxMemoryRegion {
 public:
  // Registers [base, base + length), which must outlive the region.
  static absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> Register(UcxContext& context, void* base,
                                                                   size_t length);
  // Lets UCX allocate `length` bytes (zeroed; freed with the region). Over shared memory
  // this is what makes puts truly one-sided: UCX 1.13's posix/sysv transports hand out
  // remote keys only for memory they allocated, so puts into a Register-ed user buffer are
  // emulated over active messages and complete only as the target's progress thread gets
  // to them (measured: bench/RESULTS-transport.md); puts into Allocate-d memory are plain
  // copies by the initiator.
  static absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> Allocate(UcxContext& context,
                                                                   size_t length);
  ~UcxMemoryRegion();
  UcxMemoryRegion(const UcxMemoryRegion&) = delete;
  UcxMemoryRegion& operator=(const UcxMemoryRegion&) = delete;

  uint64_t base_address() const { return reinterpret_cast<uint64_t>(base_); }
  void* base() const { return base_; }
  size_t length() const { return length_; }
  // ucp_rkey_pack output: what a peer unpacks to put into this region.
  const std::string& packed_rkey() const { return packed_rkey_; }

 private:
  UcxMemoryRegion(UcxContext& context, void* base, size_t length)
      : context_(context), base_(base), length_(length) {}
  static absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> Map(UcxContext& context, void* base,
                                                              size_t length, bool allocate);
  UcxContext& context_;
  void* base_;
  size_t length_;
  ucp_mem_h memh_ = nullptr;
  std::string packed_rkey_;
};

}  // namespace dsv3::transport

#endif  // DSV3_TRANSPORT_UCX_UCX_MEMORY_REGION_H_
