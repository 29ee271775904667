#ifndef DSV3_ENGINE_KERNELS_LATENT_ATTENTION_H_
#define DSV3_ENGINE_KERNELS_LATENT_ATTENTION_H_

// The two inner loops of MLA decode attention in the absorbed form (engine/mla_attention.cc),
// for a group of heads that share each pass over a sequence's latent-cache rows: the scores
// of every head against every row, and the probability-weighted sum of the rows per head.
// Each cache row is read once per group; per row, the heads' queries and sums stay in L1 (at
// most 8 heads). AVX-512 where the CPU has it, Dot/Axpy loops otherwise.

#include <cstdint>

namespace dsv3::engine {

// scores[g * score_stride + j] = scale * sum_c q[g * q_stride + c] * rows[j][c], for g < heads
// (any count), j < n, c < width. A score's bits depend on its query and row alone, not on the
// other queries or rows of the call.
void LatentScores(const float* q, int64_t q_stride, int64_t heads, const float* const* rows,
                  int64_t n, int64_t width, float scale, float* scores, int64_t score_stride);

// out[g * out_stride + c] = sum_j p[g * p_stride + j] * rows[j][c], for g < heads (1..8),
// c < cols (overwritten).
void LatentWeightedSum(const float* p, int64_t p_stride, int64_t heads, const float* const* rows,
                       int64_t n, int64_t cols, float* out, int64_t out_stride);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_LATENT_ATTENTION_H_
