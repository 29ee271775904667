#include "engine/kernels/axpy_rows.h"

#include "engine/kernels/avx512.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {
namespace {

#if DSV3_HAVE_AVX512_KERNEL

// R rows of y by 64 columns stay in 4R registers over all k terms; each vector of t loaded
// serves the R rows. The last columns go 16 at a time, masked, in the same order per element.
template <int R>
DSV3_AVX512 void AxpyRowsAvx512(const float* x, int64_t ldx, const float* t, int64_t k, int64_t ldt,
                                int64_t n, float* y, int64_t ldy) {
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) {
    __m512 acc[R][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_loadu_ps(y + i * ldy + c + 16 * v);
    }
    for (int64_t r = 0; r < k; ++r) {
      const float* tr = t + r * ldt + c;
      const __m512 t0 = _mm512_loadu_ps(tr);
      const __m512 t1 = _mm512_loadu_ps(tr + 16);
      const __m512 t2 = _mm512_loadu_ps(tr + 32);
      const __m512 t3 = _mm512_loadu_ps(tr + 48);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i) {
        const __m512 a = _mm512_set1_ps(x[i * ldx + r]);
        acc[i][0] = _mm512_fmadd_ps(a, t0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(a, t1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(a, t2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(a, t3, acc[i][3]);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) _mm512_storeu_ps(y + i * ldy + c + 16 * v, acc[i][v]);
    }
  }
  for (; c < n; c += 16) {
    const __mmask16 mask = TailMask(n - c);
    __m512 acc[R];
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) acc[i] = _mm512_maskz_loadu_ps(mask, y + i * ldy + c);
    for (int64_t r = 0; r < k; ++r) {
      const __m512 tv = _mm512_maskz_loadu_ps(mask, t + r * ldt + c);
#pragma GCC unroll 4
      for (int i = 0; i < R; ++i)
        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + r]), tv, acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; ++i) _mm512_mask_storeu_ps(y + i * ldy + c, mask, acc[i]);
  }
}

#endif  // DSV3_HAVE_AVX512_KERNEL

}  // namespace

void AxpyRows(const float* x, int64_t m, int64_t ldx, const float* t, int64_t k, int64_t ldt,
              int64_t n, float* y, int64_t ldy) {
#if DSV3_HAVE_AVX512_KERNEL
  if (CpuHasAvx512()) {
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) AxpyRowsAvx512<4>(x + i * ldx, ldx, t, k, ldt, n, y + i * ldy, ldy);
    switch (m - i) {
      case 3:
        return AxpyRowsAvx512<3>(x + i * ldx, ldx, t, k, ldt, n, y + i * ldy, ldy);
      case 2:
        return AxpyRowsAvx512<2>(x + i * ldx, ldx, t, k, ldt, n, y + i * ldy, ldy);
      case 1:
        return AxpyRowsAvx512<1>(x + i * ldx, ldx, t, k, ldt, n, y + i * ldy, ldy);
      default:
        return;
    }
  }
#endif
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < k; ++r) Axpy(x[i * ldx + r], t + r * ldt, y + i * ldy, n);
  }
}

}  // namespace dsv3::engine
