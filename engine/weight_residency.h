#ifndef DSV3_ENGINE_WEIGHT_RESIDENCY_H_
#define DSV3_ENGINE_WEIGHT_RESIDENCY_H_

// Making the mapped checkpoint bytes a process holds resident at load time, so resident memory
// is what the role holds and the first request does not page-fault gigabytes in: readahead is
// requested for every region (MADV_WILLNEED), then the pages are mapped in 64 MiB pieces on the
// engine's threads (MADV_POPULATE_READ; one read per page where the kernel lacks it), with
// progress reported as each piece completes. Or the bytes are copied out of the mapping into
// anonymous memory in transparent huge pages (CopyToHugePages): the decode kernels stream
// weights, and with 4 KiB pages every 4 KiB of a weight costs a TLB miss and the hardware
// prefetchers stop at each page's end (bench/RESULTS.md, session 19).

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/load_progress.h"

namespace dsv3::engine {

struct MappedRegion {
  const void* data = nullptr;  // inside a read-only file mapping
  int64_t bytes = 0;
};

// `progress` (optional) receives each region's bytes and one tensor per region.
void MakeResident(std::span<const MappedRegion> regions, LoadProgress* progress);

// The copies CopyToHugePages made: copies[i] holds regions[i]'s bytes, inside `block`.
struct HugePageCopy {
  std::shared_ptr<const void> block;  // null: nothing copied (out of memory, or no regions)
  std::vector<const void*> copies;
};

// Copies every region into one block of anonymous memory, 64-byte aligned each, advised into
// transparent huge pages (granted where THP is "always" or "madvise"), on the engine's threads
// in 64 MiB pieces; each piece's mapped pages are released once copied (ReleaseResident), so
// the process holds the bytes once, plus a piece per thread. Progress as MakeResident.
HugePageCopy CopyToHugePages(std::span<const MappedRegion> regions, LoadProgress* progress);

// Drops the whole pages inside `region` from this process (they stay in the page cache, and
// a later read maps them again): for stored weights replaced by a quantized copy.
void ReleaseResident(const MappedRegion& region);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_WEIGHT_RESIDENCY_H_
