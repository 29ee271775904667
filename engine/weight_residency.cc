#include "engine/weight_residency.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/quantize.h"
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

HugePageCopy CopyToHugePages(std::span<const MappedRegion> regions, LoadProgress* progress) {
  HugePageCopy out;
  int64_t total = 0;
  for (const MappedRegion& r : regions) total += (std::max<int64_t>(r.bytes, 0) + 63) / 64 * 64;
  if (total == 0) return out;
  CodeArena arena = CodeArena::Create(total);
  struct Copy {
    const uint8_t* src;
    uint8_t* dst;
    int64_t bytes;
    int64_t tensors;  // 1 on a region's last piece
  };
  std::vector<Copy> pieces;
  std::shared_ptr<uint8_t> first;
  for (const MappedRegion& r : regions) {
    std::shared_ptr<uint8_t> dst = arena.Take(std::max<int64_t>(r.bytes, 1));
    if (dst == nullptr) return {};  // out of memory: the caller keeps the mapping
    if (first == nullptr) first = dst;
    out.copies.push_back(dst.get());
    // Pieces end on 64 MiB boundaries of the source address, so every whole page of the
    // region is in exactly one piece and gets released.
    const auto* src = static_cast<const uint8_t*>(r.data);
    for (int64_t at = 0; at < r.bytes;) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(src + at);
      const int64_t to_boundary = static_cast<int64_t>((a / kPieceBytes + 1) * kPieceBytes - a);
      const int64_t n = std::min(r.bytes - at, to_boundary);
      pieces.push_back({src + at, dst.get() + at, n, at + n == r.bytes ? 1 : 0});
      at += n;
    }
  }
  ThreadPool::Default().ParallelForDynamic(
      static_cast<int64_t>(pieces.size()), [&](int64_t i, int) {
        const Copy& c = pieces[static_cast<size_t>(i)];
        std::memcpy(c.dst, c.src, static_cast<size_t>(c.bytes));
        ReleaseResident({c.src, c.bytes});
        if (progress != nullptr) progress->Add(c.bytes, c.tensors);
      });
  out.block = first;  // shares the arena's block
  return out;
}

}  // namespace dsv3::engine
