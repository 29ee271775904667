#include "transport/ucx/ucx_memory_region.h"

#include <cstring>

namespace dsv3::transport {

absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> UcxMemoryRegion::Register(UcxContext& context,
                                                                           void* base,
                                                                           size_t length) {
  if (base == nullptr || length == 0) {
    return absl::InvalidArgumentError("cannot register an empty buffer with UCX");
  }
  return Map(context, base, length, /*allocate=*/false);
}

absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> UcxMemoryRegion::Allocate(UcxContext& context,
                                                                           size_t length) {
  if (length == 0) return absl::InvalidArgumentError("cannot allocate 0 bytes with UCX");
  return Map(context, nullptr, length, /*allocate=*/true);
}

absl::StatusOr<std::unique_ptr<UcxMemoryRegion>> UcxMemoryRegion::Map(UcxContext& context,
                                                                      void* base, size_t length,
                                                                      bool allocate) {
  std::unique_ptr<UcxMemoryRegion> region(new UcxMemoryRegion(context, base, length));
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = base;
  params.length = length;
  if (allocate) {
    params.field_mask |= UCP_MEM_MAP_PARAM_FIELD_FLAGS;
    params.flags = UCP_MEM_MAP_ALLOCATE;
  }
  ucs_status_t status = ucp_mem_map(context.context(), &params, &region->memh_);
  if (status != UCS_OK) return UcxError(status, "ucp_mem_map");
  if (allocate) {
    ucp_mem_attr_t attr{};
    attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
    status = ucp_mem_query(region->memh_, &attr);
    if (status != UCS_OK) return UcxError(status, "ucp_mem_query");
    region->base_ = attr.address;
    region->length_ = length;  // UCX may round the allocation up; callers see what they asked
    std::memset(region->base_, 0, length);
  }

  void* rkey_buffer = nullptr;
  size_t rkey_size = 0;
  status = ucp_rkey_pack(context.context(), region->memh_, &rkey_buffer, &rkey_size);
  if (status != UCS_OK) return UcxError(status, "ucp_rkey_pack");
  region->packed_rkey_.assign(static_cast<const char*>(rkey_buffer), rkey_size);
  ucp_rkey_buffer_release(rkey_buffer);
  return region;
}

UcxMemoryRegion::~UcxMemoryRegion() {
  if (memh_ != nullptr) ucp_mem_unmap(context_.context(), memh_);
}

}  // namespace dsv3::transport
