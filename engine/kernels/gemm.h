#ifndef DSV3_ENGINE_KERNELS_GEMM_H_
#define DSV3_ENGINE_KERNELS_GEMM_H_

// f32 GEMM on the calling thread through oneDNN matmul (JIT brgemm kernels, chosen at run time
// for AVX-512 / AVX2 / SSE4.1). Callers parallelise by splitting the output between the
// engine's threads; this never starts threads of its own. Primitives are cached per thread
// and shape.
//
// bf16 operands are deliberately not used: without AMX/AVX512_BF16 oneDNN emulates bf16 and it
// is ~5x slower than converting a weight tile to f32 and running f32 (TOOLCHAIN.md), and the
// golden tolerance rules out bf16 activations anyway.

#include <cstdint>

namespace dsv3::engine {

enum class BLayout {
  kKN,  // B stored [k, n] (ldb >= n): C = A B
  kNK,  // B stored [n, k] (ldb >= k), e.g. a weight tile in nn.Linear layout: C = A B^T
};
enum class GemmOutput { kOverwrite, kAccumulate };

// C[m, n] (= or +=) A[m, k] op(B), row-major with leading dimensions lda, ldb, ldc.
void Gemm(const float* a, int64_t lda, const float* b, int64_t ldb, BLayout b_layout, float* c,
          int64_t ldc, int64_t m, int64_t n, int64_t k, GemmOutput output);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_GEMM_H_
