#include "engine/kernels/quantize.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kernels/matmul_direct.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {
namespace {

// One group's scale as stored (f16) and as used (its f32 value); 0 for an all-zero group.
struct GroupScale {
  uint16_t bits = 0;
  float value = 0.0f;
};

GroupScale ScaleFor(float divisor_source, float divisor) {
  constexpr float kF16Max = 65504.0f;
  GroupScale s;
  s.bits = FloatToF16(std::clamp(divisor_source / divisor, -kF16Max, kF16Max));
  s.value = F16ToFloat(s.bits);
  return s;
}

void QuantizeRowQ8(const float* w, int64_t n, int8_t* codes, uint16_t* scales) {
  for (int64_t g = 0; g < n / kQuantGroup; ++g) {
    const float* v = w + g * kQuantGroup;
    float amax = 0.0f;
    for (int64_t i = 0; i < kQuantGroup; ++i) amax = std::max(amax, std::fabs(v[i]));
    const GroupScale s = ScaleFor(amax, 127.0f);
    scales[g] = s.bits;
    const float inv = s.value > 0.0f ? 1.0f / s.value : 0.0f;
    for (int64_t i = 0; i < kQuantGroup; ++i) {
      const float q = std::nearbyint(v[i] * inv);
      codes[g * kQuantGroup + i] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
    }
  }
}

// kQ4 (levels 16) or kQ6 (64) codes of a row, one byte each: per group, scale = m / -(levels /
// 2) for the value m of largest magnitude, codes round(w / scale) clamped to [-levels / 2,
// levels / 2 - 1], stored + levels / 2.
void GroupCodes(const float* w, int64_t n, int levels, uint8_t* stored, uint16_t* scales) {
  const float half = static_cast<float>(levels / 2);
  for (int64_t g = 0; g < n / kQuantGroup; ++g) {
    const float* v = w + g * kQuantGroup;
    float extreme = 0.0f;
    for (int64_t i = 0; i < kQuantGroup; ++i) {
      if (std::fabs(v[i]) > std::fabs(extreme)) extreme = v[i];
    }
    const GroupScale s = ScaleFor(extreme, -half);
    scales[g] = s.bits;
    const float inv = s.value != 0.0f ? 1.0f / s.value : 0.0f;
    for (int64_t i = 0; i < kQuantGroup; ++i) {
      stored[g * kQuantGroup + i] =
          static_cast<uint8_t>(std::clamp(std::nearbyint(v[i] * inv), -half, half - 1) + half);
    }
  }
}

// The low 4 bits of a chunk of `width` codes (linear.h): byte b holds column b in its low
// nibble and column b + width / 2 in its high one.
void PackNibbles(const uint8_t* stored, int64_t width, uint8_t* out) {
  for (int64_t b = 0; b < width / 2; ++b) {
    out[b] = static_cast<uint8_t>((stored[b] & 0xF) | (stored[b + width / 2] & 0xF) << 4);
  }
}

void QuantizeRowQ4(const float* w, int64_t n, uint8_t* codes, uint16_t* scales) {
  std::vector<uint8_t> stored(static_cast<size_t>(n));
  GroupCodes(w, n, 16, stored.data(), scales);
  for (int64_t c0 = 0; c0 < n; c0 += 64) {
    PackNibbles(stored.data() + c0, std::min<int64_t>(64, n - c0), codes + c0 / 2);
  }
}

// kQ6: the nibbles as kQ4's, then the top 2 bits of a chunk's W columns in W / 4 bytes.
void QuantizeRowQ6(const float* w, int64_t n, uint8_t* codes, uint16_t* scales) {
  std::vector<uint8_t> stored(static_cast<size_t>(n));
  GroupCodes(w, n, 64, stored.data(), scales);
  for (int64_t c0 = 0; c0 < n; c0 += 64) {
    const int64_t width = std::min<int64_t>(64, n - c0);
    const uint8_t* q = stored.data() + c0;
    uint8_t* out = codes + c0 / 4 * 3;
    PackNibbles(q, width, out);
    for (int64_t b = 0; b < width / 4; ++b) {
      uint8_t top = 0;
      for (int p = 0; p < 4; ++p) {
        top |= static_cast<uint8_t>((q[b + p * width / 4] >> 4) << (2 * p));
      }
      out[width / 2 + b] = top;
    }
  }
}

}  // namespace

bool CanQuantize(const Linear& w) {
  return !w.empty() && w.dtype != DType::kQ8 && w.dtype != DType::kQ4 && w.dtype != DType::kQ6 &&
         w.in_features % kQuantGroup == 0;
}

int64_t QuantizedCodeBytes(const Linear& w, DType target) {
  return w.out_features * Linear::RowBytes(target, w.in_features);
}

CodeArena CodeArena::Create(int64_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = static_cast<size_t>(bytes) >= kHuge ? kHuge : 64;
  const size_t n =
      std::max<size_t>(align, (static_cast<size_t>(bytes) + align - 1) / align * align);
  CodeArena arena;
  void* p = std::aligned_alloc(align, n);
  if (p == nullptr) return arena;
  if (align == kHuge) ::madvise(p, n, MADV_HUGEPAGE);  // advisory: THP "madvise" mode needs it
  arena.base_ =
      std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
  arena.size_ = static_cast<int64_t>(n);
  return arena;
}

std::shared_ptr<uint8_t> CodeArena::Take(int64_t bytes) {
  const int64_t at = (used_ + 63) / 64 * 64;  // cache-line aligned for the kernels' loads
  if (base_ == nullptr || at + bytes > size_) return nullptr;
  used_ = at + bytes;
  return std::shared_ptr<uint8_t>(base_, base_.get() + at);
}

absl::StatusOr<Linear> QuantizeLinear(const Linear& w, DType target, CodeArena* arena) {
  if (target != DType::kQ8 && target != DType::kQ4 && target != DType::kQ6) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot quantize to ", DTypeName(target), " (only Q8_G32, Q6_G32, Q4_G32)"));
  }
  if (!CanQuantize(w)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot quantize a ", DTypeName(w.dtype), " projection [", w.out_features,
                     ", ", w.in_features, "]: its inputs must be a multiple of ", kQuantGroup));
  }
  const int64_t out = w.out_features;
  const int64_t in = w.in_features;
  const int64_t groups = in / kQuantGroup;
  const int64_t row_bytes = Linear::RowBytes(target, in);
  std::shared_ptr<uint8_t> codes;
  if (arena != nullptr) {
    codes = arena->Take(out * row_bytes);
  } else {
    codes = CodeArena::Create(out * row_bytes).Take(out * row_bytes);
  }
  if (codes == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate ", out * row_bytes, " bytes for quantized weights"));
  }
  Linear q;
  q.dtype = target;
  q.out_features = out;
  q.in_features = in;
  q.group = kQuantGroup;
  q.group_scales.resize(static_cast<size_t>(out * groups));
  ThreadPool::Default().ParallelFor(
      out,
      [&](int64_t begin, int64_t end) {
        std::vector<float> row(static_cast<size_t>(in));
        for (int64_t r = begin; r < end; ++r) {
          DequantRowFast(w, r, row.data());
          uint16_t* scales = q.group_scales.data() + r * groups;
          if (target == DType::kQ8) {
            QuantizeRowQ8(row.data(), in, reinterpret_cast<int8_t*>(codes.get() + r * row_bytes),
                          scales);
          } else if (target == DType::kQ4) {
            QuantizeRowQ4(row.data(), in, codes.get() + r * row_bytes, scales);
          } else {
            QuantizeRowQ6(row.data(), in, codes.get() + r * row_bytes, scales);
          }
        }
      },
      1);
  q.data = codes.get();
  q.owner = std::shared_ptr<const void>(codes, codes.get());
  return q;
}

std::vector<float> QuantizeE4M3Blocks(const float* v, int64_t rows, int64_t cols,
                                      int64_t block_rows, int64_t block_cols, uint8_t* out) {
  const int64_t sr = (rows + block_rows - 1) / block_rows;
  const int64_t sc = (cols + block_cols - 1) / block_cols;
  std::vector<float> scales(static_cast<size_t>(sr * sc), 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      float& m = scales[static_cast<size_t>((r / block_rows) * sc + c / block_cols)];
      m = std::max(m, std::fabs(v[r * cols + c]));
    }
  }
  for (float& m : scales) m = m > 0 ? m / 448.0f : 1.0f;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = FloatToE4M3(
          v[r * cols + c] / scales[static_cast<size_t>((r / block_rows) * sc + c / block_cols)]);
    }
  }
  return scales;
}

}  // namespace dsv3::engine
