#ifndef DSV3_ENGINE_KERNELS_AXPY_ROWS_H_
#define DSV3_ENGINE_KERNELS_AXPY_ROWS_H_

// A small product whose every element is summed in one fixed order, whatever the number of
// rows: the query fold of the absorbed MLA attention (q_nope W_UK) when a model's rows must come
// out alike (engine/kernels/linear.h, RowsAlike). A GEMM may sum in another order per shape;
// this sums term by term, like a loop of Axpy, with the rows' sums held in registers.

#include <cstdint>

namespace dsv3::engine {

// y[i * ldy + c] += sum over r < k of x[i * ldx + r] * t[r * ldt + c], for i < m, c < n.
// Each element adds its k terms in turn, r = 0 first, one multiply-add each: a row's result is
// the same bits alone or among others. AVX-512 where the CPU has it, Axpy loops otherwise.
void AxpyRows(const float* x, int64_t m, int64_t ldx, const float* t, int64_t k, int64_t ldt,
              int64_t n, float* y, int64_t ldy);

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_KERNELS_AXPY_ROWS_H_
