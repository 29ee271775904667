#ifndef DSV3_ENGINE_KERNELS_LOGITS_H_
#define DSV3_ENGINE_KERNELS_LOGITS_H_

// Reductions over a logits row (129,280 entries for DeepSeek-V3): what sampling a token needs
// once per sequence per step, vectorized (AVX-512 where the CPU has it) so that it stays a
// small share of a decode step.

#include <cstdint>
#include <vector>

namespace dsv3::engine {

// Index of the first largest entry (NaN entries never win); 0 when n is 0 or all are NaN.
int64_t ArgmaxFirst(const float* x, int64_t n);

// The largest entry (-inf when n is 0).
float MaxOf(const float* x, int64_t n);

// sum_i exp((x_i - shift) * scale), accumulated in double. Entries with (x_i - shift) * scale
// below -87 (exp under float's normal range; -inf included) add nothing. Relative error
// about 1e-7 (a float exponential).
double SumExp(const float* x, int64_t n, float shift, float scale);

// Bands of a row by distance below `max`: band[i] = min(floor((max - x_i) * scale), last)
// for finite x_i (scale > 0, x_i <= max), kNoBand for -inf and NaN. Returns how many are
// finite. Walking the bands in turn visits the entries in descending order, band by band.
inline constexpr uint8_t kNoBand = 255;
int64_t BandsOf(const float* x, int64_t n, float max, float scale, uint8_t last, uint8_t* band);

// Appends to `ids` the indices i (ascending) with band[i] == b.
void IndicesInBand(const uint8_t* band, int64_t n, uint8_t b, std::vector<int32_t>* ids);

// SumExp over the entries x[ids[0..n)]; *min_x and *max_x: the smallest and largest of them
// (+inf and -inf when n is 0).
double SumExpAt(const float* x, const int32_t* ids, int64_t n, float shift, float scale,
                float* min_x, float* max_x);

// BandsOf for the entries x[ids[0..n)] (all finite, none above `max`): band[i] =
// min(floor((max - x[ids[i]]) * scale), last).
void BandsAt(const float* x, const int32_t* ids, int64_t n, float max, float scale, uint8_t last,
             uint8_t* band);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_LOGITS_H_
