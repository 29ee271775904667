#include "engine/weight_residency.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "engine/thread_pool.h"

namespace dsv3::engine {
namespace {

constexpr int64_t kPieceBytes = int64_t{64} << 20;

struct Piece {
  uintptr_t begin = 0;  // page-aligned
  uintptr_t end = 0;
  int64_t bytes = 0;    // tensor bytes this piece accounts for
  int64_t tensors = 0;  // 1 on a region's last piece
};

int64_t PageSize() {
  static const int64_t page = ::sysconf(_SC_PAGESIZE);
  return page;
}

void Populate(uintptr_t begin, uintptr_t end) {
#ifdef MADV_POPULATE_READ
  if (::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_READ) == 0) return;
#endif
  // Older kernels: fault each page in with a read.
  volatile unsigned char sink = 0;
  for (uintptr_t p = begin; p < end; p += static_cast<uintptr_t>(PageSize())) {
    sink = sink + *reinterpret_cast<const volatile unsigned char*>(p);
  }
}

}  // namespace

void MakeResident(std::span<const MappedRegion> regions, LoadProgress* progress) {
  const uintptr_t page = static_cast<uintptr_t>(PageSize());
  std::vector<Piece> pieces;
  for (const MappedRegion& r : regions) {
    if (r.data == nullptr || r.bytes <= 0) continue;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(r.data) & ~(page - 1);
    const uintptr_t end =
        (reinterpret_cast<uintptr_t>(r.data) + static_cast<uintptr_t>(r.bytes) + page - 1) &
        ~(page - 1);
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);  // advisory only
    int64_t accounted = 0;
    for (uintptr_t p = begin; p < end; p += kPieceBytes) {
      Piece piece;
      piece.begin = p;
      piece.end = std::min(end, p + static_cast<uintptr_t>(kPieceBytes));
      piece.bytes = std::min<int64_t>(r.bytes - accounted, static_cast<int64_t>(piece.end - p));
      accounted += piece.bytes;
      pieces.push_back(piece);
    }
    pieces.back().bytes += r.bytes - accounted;
    pieces.back().tensors = 1;
  }
  ThreadPool::Default().ParallelForDynamic(static_cast<int64_t>(pieces.size()),
                                           [&](int64_t i, int) {
                                             const Piece& piece = pieces[static_cast<size_t>(i)];
                                             Populate(piece.begin, piece.end);
                                             if (progress != nullptr)
                                               progress->Add(piece.bytes, piece.tensors);
                                           });
}

void ReleaseResident(const MappedRegion& region) {
  if (region.data == nullptr || region.bytes <= 0) return;
  const uintptr_t page = static_cast<uintptr_t>(PageSize());
  // Only pages wholly inside the region: its neighbours may share the edge pages.
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(region.data) + page - 1) & ~(page - 1);
  const uintptr_t end =
      (reinterpret_cast<uintptr_t>(region.data) + static_cast<uintptr_t>(region.bytes)) &
      ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace dsv3::engine
