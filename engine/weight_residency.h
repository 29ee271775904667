#ifndef DSV3_ENGINE_WEIGHT_RESIDENCY_H_
#define DSV3_ENGINE_WEIGHT_RESIDENCY_H_

// Making the mapped checkpoint bytes a process holds resident at load time, so resident memory
// is what the role holds and the first request does not page-fault gigabytes in: readahead is
// requested for every region (MADV_WILLNEED), then the pages are mapped in 64 MiB pieces on the
// engine's threads (MADV_POPULATE_READ; one read per page where the kernel lacks it), with
// progress reported as each piece completes.

#include <cstdint>
#include <span>

#include "engine/load_progress.h"

namespace dsv3::engine {

struct MappedRegion {
  const void* data = nullptr;  // inside a read-only file mapping
  int64_t bytes = 0;
};

// `progress` (optional) receives each region's bytes and one tensor per region.
void MakeResident(std::span<const MappedRegion> regions, LoadProgress* progress);

// Drops the whole pages inside `region` from this process (they stay in the page cache, and
// a later read maps them again): for stored weights replaced by a quantized copy.
void ReleaseResident(const MappedRegion& region);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_WEIGHT_RESIDENCY_H_
