#include "engine/kernels/linear.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/ops.h"

namespace dsv3::engine {
namespace {

// Rows of W dequantised per tile: large enough to amortise a GEMM call, small enough to stay
// in L2 for the widest hidden sizes.
constexpr int64_t kTileRows = 64;
// From this many activation rows on, a tile goes through BLAS sgemm instead of dot products.
constexpr int64_t kGemmMinRows = 4;

std::vector<float>& TileBuffer() {
  thread_local std::vector<float> buffer;
  return buffer;
}

}  // namespace

void Linear::DequantRow(int64_t row, int64_t col_begin, int64_t n, float* out) const {
  const int64_t first = row * in_features + col_begin;
  if (dtype != DType::kF8E4M3) {
    ConvertToFloat(dtype, data, first, n, out);
    return;
  }
  const auto* codes = static_cast<const uint8_t*>(data) + first;
  const int64_t scale_cols = (in_features + block_cols - 1) / block_cols;
  const float* scales = scale_inv.data() + (row / block_rows) * scale_cols;
  int64_t c = 0;
  while (c < n) {
    const int64_t col = col_begin + c;
    const int64_t block = col / block_cols;
    const int64_t block_end = std::min(n, (block + 1) * block_cols - col_begin);
    const float s = scales[block];
    for (; c < block_end; ++c) out[c] = kE4M3ToFloat[codes[c]] * s;
  }
}

void MatMulRows(const float* x, int64_t m, int64_t ldx, const Linear& w, int64_t row_begin,
                int64_t row_count, float* y, int64_t ldy) {
  const int64_t in = w.in_features;
  std::vector<float>& tile = TileBuffer();
  tile.resize(static_cast<size_t>(kTileRows * in));
  for (int64_t r0 = 0; r0 < row_count; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, row_count - r0);
    for (int64_t r = 0; r < rows; ++r) w.DequantRow(row_begin + r0 + r, 0, in, &tile[r * in]);
    if (m >= kGemmMinRows) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  static_cast<int>(rows), static_cast<int>(in), 1.0f, x, static_cast<int>(ldx),
                  tile.data(), static_cast<int>(in), 0.0f, y + r0, static_cast<int>(ldy));
      continue;
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < rows; ++r) y[i * ldy + r0 + r] = Dot(x + i * ldx, &tile[r * in], in);
    }
  }
}

void MatMulTransposedRows(const float* x, int64_t m, int64_t ldx, const Linear& w,
                          int64_t row_begin, int64_t row_count, float* y, int64_t ldy) {
  const int64_t in = w.in_features;
  std::vector<float>& tile = TileBuffer();
  tile.resize(static_cast<size_t>(kTileRows * in));
  for (int64_t i = 0; i < m; ++i) std::memset(y + i * ldy, 0, sizeof(float) * in);
  for (int64_t r0 = 0; r0 < row_count; r0 += kTileRows) {
    const int64_t rows = std::min(kTileRows, row_count - r0);
    for (int64_t r = 0; r < rows; ++r) w.DequantRow(row_begin + r0 + r, 0, in, &tile[r * in]);
    if (m >= kGemmMinRows) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m),
                  static_cast<int>(in), static_cast<int>(rows), 1.0f, x + r0,
                  static_cast<int>(ldx), tile.data(), static_cast<int>(in), 1.0f, y,
                  static_cast<int>(ldy));
      continue;
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < rows; ++r) Axpy(x[i * ldx + r0 + r], &tile[r * in], y + i * ldy, in);
    }
  }
}

}  // namespace dsv3::engine
