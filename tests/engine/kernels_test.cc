#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "engine/dtype.h"
#include "engine/kernels/axpy_rows.h"
#include "engine/kernels/latent_attention.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/matmul_bf16.h"
#include "engine/kernels/matmul_fp8.h"
#include "engine/kernels/ops.h"
#include "engine/rope.h"

namespace dsv3::engine {
namespace {

TEST(DTypeTest, E4M3Decoding) {
  EXPECT_EQ(E4M3ToFloat(0x00), 0.0f);
  EXPECT_EQ(E4M3ToFloat(0x38), 1.0f);    // exp 7, mant 0
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);  // max finite
  EXPECT_EQ(E4M3ToFloat(0xFE), -448.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(E4M3ToFloat(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xFF)));
  EXPECT_EQ(E4M3ToFloat(0x3C), 1.5f);
}

TEST(DTypeTest, EncodersRoundTrip) {
  for (int c = 0; c < 256; ++c) {
    if (c == 0x7F || c == 0xFF || c == 0x80) continue;
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
  EXPECT_EQ(FloatToE4M3(1000.0f), 0x7E);                // saturates
  EXPECT_EQ(E4M3ToFloat(FloatToE4M3(1.0625f)), 1.0f);   // tie -> even
  EXPECT_EQ(E4M3ToFloat(FloatToE4M3(1.1875f)), 1.25f);  // tie -> even
  EXPECT_EQ(BF16ToFloat(FloatToBF16(3.140625f)), 3.140625f);
  EXPECT_EQ(F16ToFloat(FloatToF16(-2.5f)), -2.5f);
  EXPECT_EQ(F16ToFloat(FloatToF16(6.1035156e-05f)), 6.1035156e-05f);
  EXPECT_EQ(F16ToFloat(0x3C00), 1.0f);
}

// W [out, in] as FP8 with 128x128 block scales (partial edge blocks on both axes).
struct Fp8Matrix {
  std::vector<uint8_t> codes;
  Linear linear;
  std::vector<double> dense;
};

Fp8Matrix MakeFp8(int64_t out, int64_t in, std::mt19937& rng) {
  Fp8Matrix m;
  std::uniform_int_distribution<int> code(0, 0x7E);
  std::uniform_int_distribution<int> sign(0, 1);
  m.codes.resize(out * in);
  for (auto& c : m.codes) c = static_cast<uint8_t>(code(rng) | (sign(rng) << 7));
  m.linear.dtype = DType::kF8E4M3;
  m.linear.out_features = out;
  m.linear.in_features = in;
  m.linear.data = m.codes.data();
  m.linear.block_rows = 128;
  m.linear.block_cols = 128;
  const int64_t sr = (out + 127) / 128, sc = (in + 127) / 128;
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  for (int64_t i = 0; i < sr * sc; ++i) m.linear.scale_inv.push_back(scale(rng));
  m.dense.resize(out * in);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      m.dense[r * in + c] = static_cast<double>(E4M3ToFloat(m.codes[r * in + c])) *
                            m.linear.scale_inv[(r / 128) * sc + c / 128];
    }
  }
  return m;
}

// sum_c x[c] w[c] in f64, and sum_c |x[c] w[c]| (what rounding errors scale with).
void ReferenceDot(const float* x, const double* w, int64_t n, double* ref, double* mag) {
  for (int64_t c = 0; c < n; ++c) {
    const double p = x[c] * w[c];
    *ref += p;
    *mag += std::fabs(p);
  }
}

TEST(LinearTest, Fp8MatMulMatchesDequantisedReference) {
  std::mt19937 rng(1);
  const int64_t out = 300, in = 200;  // 3 x 2 blocks, both partial
  Fp8Matrix w = MakeFp8(out, in, rng);
  std::normal_distribution<float> n(0, 1);
  for (int64_t m : {1, 3, 7, 8, 9, 40}) {  // direct kernel and dequantised tiles + GEMM
    std::vector<float> x(m * in), y(m * out);
    for (auto& v : x) v = n(rng);
    MatMul(x.data(), m, w.linear, y.data());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < out; ++r) {
        double ref = 0;
        for (int64_t c = 0; c < in; ++c) ref += x[i * in + c] * w.dense[r * in + c];
        ASSERT_NEAR(y[i * out + r], ref, 1e-5 * (1 + std::fabs(ref))) << m << " " << i << " " << r;
      }
    }
    // Untransposed product over a row block (the absorbed-attention direction).
    const int64_t rb = 130, rc = 40;
    std::vector<float> xt(m * rc), yt(m * in);
    for (auto& v : xt) v = n(rng);
    MatMulTransposedRows(xt.data(), m, rc, w.linear, rb, rc, yt.data(), in);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t c = 0; c < in; ++c) {
        double ref = 0;
        for (int64_t j = 0; j < rc; ++j) ref += xt[i * rc + j] * w.dense[(rb + j) * in + c];
        ASSERT_NEAR(yt[i * in + c], ref, 1e-5 * (1 + std::fabs(ref)));
      }
    }
  }
}

// A row's result must not depend on the rows batched with it (an expert worker batches the
// tokens of several attention workers; migration replays a stream): FP8 at one row (four weight
// rows at a time) and at several (pairs) give the same bits.
TEST(LinearTest, Fp8RowResultsDoNotDependOnTheBatch) {
  std::mt19937 rng(3);
  Fp8Matrix w = MakeFp8(260, 7 * 128 + 40, rng);  // long rows, a partial last block
  const int64_t in = w.linear.in_features, out = w.linear.out_features;
  std::normal_distribution<float> n(0, 1);
  std::vector<float> x(3 * in);
  for (auto& v : x) v = n(rng);
  std::vector<float> batched(3 * out);
  MatMul(x.data(), 3, w.linear, batched.data());
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<float> alone(out);
    MatMul(x.data() + i * in, 1, w.linear, alone.data());
    for (int64_t r = 0; r < out; ++r) ASSERT_EQ(alone[r], batched[i * out + r]) << i << " " << r;
  }
}

// FP8 weights with bf16 activations (the default, Linear::bf16_activations): up to 8 rows the
// direct kernel's f32 products, as without; more rows take tiles of W dequantised and rounded
// to bf16 with x rounded to bf16 (matmul_bf16.h), within what the two roundings allow (2^-9 of
// each factor, so 2^-8 of sum |x w|, plus f32 sums), threads splitting the rows mid-block.
TEST(LinearTest, Fp8TilesRoundWeightsAndActivationsToBf16) {
  std::mt19937 rng(5);
  Fp8Matrix w = MakeFp8(300, 7 * 128 + 40, rng);
  const int64_t in = w.linear.in_features, out = w.linear.out_features;
  Linear exact = w.linear;
  Linear rounded = w.linear;
  rounded.bf16_activations = true;
  if (!Bf16TilesApply(rounded)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  EXPECT_FALSE(Bf16TilesApply(exact));
  std::normal_distribution<float> n(0, 1);
  for (const int64_t m : {1, 8, 9, 40, 130}) {
    std::vector<float> x(m * in), y(m * out), y_exact(m * out);
    for (auto& v : x) v = n(rng);
    MatMul(x.data(), m, rounded, y.data());
    MatMul(x.data(), m, exact, y_exact.data());
    const bool tiles = Bf16TilesTake(m, rounded);
    EXPECT_EQ(tiles, m > 8) << m;
    double worst = 0;  // the largest error as a share of its bound
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < out; ++r) {
        double ref = 0, mag = 0;
        ReferenceDot(&x[i * in], &w.dense[r * in], in, &ref, &mag);
        if (!tiles) {
          ASSERT_EQ(y[i * out + r], y_exact[i * out + r]) << m << " " << i << " " << r;
          continue;
        }
        const double bound = (std::exp2(-8) + (in / 16.0 + 8) * std::exp2(-23)) * mag;
        ASSERT_LE(std::fabs(y[i * out + r] - ref), bound) << m << " " << i << " " << r;
        worst = std::max(worst, std::fabs(y[i * out + r] - ref) / bound);
      }
    }
    if (tiles) {
      std::printf("[fp8 bf16 tiles] m=%lld: largest error %.3f of its bound\n",
                  static_cast<long long>(m), worst);
      EXPECT_GT(worst, 0.0);  // rounded, not the f32 products
    }
  }
}

// FP8 weights with bf16 activations at 1-16 rows (decode batches) take the FP8 kernel: codes
// decoded exactly to bf16, x rounded to bf16. Each result within x's rounding (2^-9 of
// sum |x w|) plus f32 summation of the reference, and a row's bits the same whatever rows share
// the call, alone too. 301 output rows leave a tail of 1 weight row; 7 x 128 + 64 columns, a
// partial last block.
TEST(LinearTest, Fp8KernelRoundsActivationsUpToSixteenRows) {
  std::mt19937 rng(9);
  Fp8Matrix w = MakeFp8(301, 7 * 128 + 64, rng);
  const int64_t in = w.linear.in_features, out = w.linear.out_features;
  Linear rounded = w.linear;
  rounded.bf16_activations = true;
  if (!Fp8KernelApplies(rounded)) GTEST_SKIP() << "this CPU has no AVX512_BF16 and AVX512_VBMI";
  EXPECT_FALSE(Bf16TilesTake(16, rounded));
  EXPECT_TRUE(Bf16TilesTake(17, rounded));
  std::normal_distribution<float> n(0, 1);
  std::vector<float> x(16 * in);
  for (auto& v : x) v = n(rng);
  std::vector<float> first_row;  // row 0 as the 1-row call computed it
  for (const int64_t m : {1, 2, 3, 4, 5, 8, 13, 16}) {
    std::vector<float> y(m * out);
    MatMul(x.data(), m, rounded, y.data());
    if (first_row.empty()) first_row.assign(y.begin(), y.begin() + out);
    EXPECT_TRUE(std::equal(first_row.begin(), first_row.end(), y.begin())) << m;
    double worst = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < out; ++r) {
        double ref = 0, mag = 0;
        ReferenceDot(&x[i * in], &w.dense[r * in], in, &ref, &mag);
        const double bound = (std::exp2(-9) + (in / 16.0 + 8) * std::exp2(-23)) * mag;
        ASSERT_LE(std::fabs(y[i * out + r] - ref), bound) << m << " " << i << " " << r;
        worst = std::max(worst, std::fabs(y[i * out + r] - ref) / bound);
      }
    }
    std::printf("[fp8 kernel] m=%lld: largest error %.3f of its bound\n", static_cast<long long>(m),
                worst);
    EXPECT_GT(worst, 0.0);  // rounded, not the f32 products
  }
}

// BF16/F16/F32 weights through MatMulRows (direct kernel for few rows, the AVX512_BF16 kernel
// for 2-64 rows of BF16, tiles + library GEMM for many, split between threads), with an in_features
// that leaves a vector tail.
TEST(LinearTest, AllDtypesMatchReferenceOnBothPaths) {
  std::mt19937 rng(2);
  std::normal_distribution<float> n(0, 1);
  const int64_t out = 333, in = 201;
  std::vector<float> dense(out * in);
  for (auto& v : dense) v = n(rng) * 0.1f;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<uint8_t> bytes(out * in * DTypeSize(dtype));
    std::vector<double> ref_w(out * in);
    for (int64_t i = 0; i < out * in; ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(&bytes[4 * i], &dense[i], 4);
        ref_w[i] = dense[i];
      } else {
        const uint16_t h = dtype == DType::kBF16 ? FloatToBF16(dense[i]) : FloatToF16(dense[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
        ref_w[i] = dtype == DType::kBF16 ? BF16ToFloat(h) : F16ToFloat(h);
      }
    }
    Linear w;
    w.dtype = dtype;
    w.out_features = out;
    w.in_features = in;
    w.data = bytes.data();
    for (int64_t m : {1, 2, 5, 8, 9, 33}) {
      std::vector<float> x(m * in), y(m * out);
      for (auto& v : x) v = n(rng);
      MatMul(x.data(), m, w, y.data());
      // 2-64 rows of BF16 weights run the AVX512_BF16 kernel where the CPU has it: x to 16
      // bits (Bf16KernelKeepsActivationsToSixteenBits), an error relative to sum |x w|.
      const bool split = Bf16KernelApplies(w) && m >= 2 && m <= 64;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < out; ++r) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < in; ++c) {
            ref += x[i * in + c] * ref_w[r * in + c];
            mag += std::fabs(x[i * in + c] * ref_w[r * in + c]);
          }
          const double tolerance =
              1e-5 * (1 + std::fabs(ref)) + (split ? std::exp2(-17) * mag : 0.0);
          ASSERT_NEAR(y[i * out + r], ref, tolerance)
              << DTypeName(dtype) << " m=" << m << " " << i << " " << r;
        }
      }
    }
  }
}

// A BF16 projection [out, in] of N(0, 0.1) weights, held in `bytes`.
Linear RandomBf16(int64_t out, int64_t in, std::mt19937& rng, std::vector<uint16_t>* bytes) {
  std::normal_distribution<float> n(0, 1);
  bytes->resize(out * in);
  for (auto& v : *bytes) v = FloatToBF16(n(rng) * 0.1f);
  Linear w;
  w.dtype = DType::kBF16;
  w.out_features = out;
  w.in_features = in;
  w.data = bytes->data();
  return w;
}

// The AVX512_BF16 kernel (2-64 activation rows of BF16 weights) against a float64 reference,
// within what its split of x into two bf16 parts (|x - hi - lo| <= 2^-18 |x|) and f32 sums
// allow: far inside the 2^-9 |x| that bf16 activations alone would cost. Activation counts on
// and off its 6-row blocks, weight rows not a multiple of 4, widths with a partial 32-column
// chunk and more than one block of columns, a share of the rows starting mid-matrix.
TEST(LinearTest, Bf16KernelKeepsActivationsToSixteenBits) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0, 1);
  for (const int64_t in : {64, 201, 1100, 2080}) {
    const int64_t out = 75;
    std::vector<uint16_t> bytes;
    Linear w = RandomBf16(out, in, rng, &bytes);
    if (!Bf16KernelApplies(w)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
    for (const int64_t m : {2, 5, 6, 7, 13, 32, 64}) {
      std::vector<float> x(m * in), y(m * out, -1.0f);
      for (auto& v : x) v = n(rng) * std::exp2(static_cast<float>(rng() % 16) - 8.0f);
      Bf16Activations xs;
      SplitActivations(x.data(), m, in, in, /*split=*/true, &xs);
      const int64_t row_begin = 3, rows = out - row_begin;
      MatMulRowsBf16(xs, w, row_begin, rows, y.data(), out);
      std::vector<float> via_linear(m * out);
      MatMul(x.data(), m, w, via_linear.data());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < rows; ++j) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < in; ++c) {
            const double p =
                static_cast<double>(x[i * in + c]) * BF16ToFloat(bytes[(row_begin + j) * in + c]);
            ref += p;
            mag += std::fabs(p);
          }
          const double bound = (std::exp2(-18) + (in / 16.0 + 8) * std::exp2(-23)) * mag;
          ASSERT_LE(std::fabs(y[i * out + j] - ref), bound)
              << "in=" << in << " m=" << m << " " << i << "," << j << " ref " << ref;
          ASSERT_LE(std::fabs(via_linear[i * out + row_begin + j] - ref), bound)
              << "MatMul: in=" << in << " m=" << m << " " << i << "," << j;
        }
      }
    }
  }
}

// With Linear::bf16_activations, MatMul of any number of rows (1, decode batches, and prefill
// sizes past the split kernel's 64) multiplies x rounded to bf16 (to nearest even): each result
// is the float64 product of the stored weights and the rounded x to f32 summation error, far
// inside the rounding's own effect (2^-9 per column), which the test would see if x stayed
// split or, at 1 row, f32.
TEST(LinearTest, Bf16ActivationsRoundXAtEveryRowCount) {
  std::mt19937 rng(4);
  std::normal_distribution<float> n(0, 1);
  for (const int64_t in : {64, 201, 1100}) {
    const int64_t out = 75;
    std::vector<uint16_t> bytes;
    Linear w = RandomBf16(out, in, rng, &bytes);
    w.bf16_activations = true;
    if (!Bf16KernelApplies(w)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
    for (const int64_t m : {1, 2, 7, 64, 100}) {
      std::vector<float> x(m * in), y(m * out);
      for (auto& v : x) v = n(rng);
      MatMul(x.data(), m, w, y.data());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < out; ++j) {
          double rounded = 0, exact = 0, mag = 0;
          for (int64_t c = 0; c < in; ++c) {
            const double wv = BF16ToFloat(bytes[j * in + c]);
            const float xv = x[i * in + c];
            rounded += wv * BF16ToFloat(FloatToBF16(xv));
            exact += wv * xv;
            mag += std::fabs(wv * xv);
          }
          ASSERT_NEAR(y[i * out + j], rounded, (in / 16.0 + 8) * std::exp2(-23) * mag)
              << "in=" << in << " m=" << m << " " << i << "," << j << " exact " << exact;
        }
      }
    }
  }
}

// Linear::batch_invariant with split activations, and bf16_activations by itself, BF16 on a CPU
// with AVX512_BF16 (the bf16 kernel at every row count): each row of a call is, to the bit, what
// the row alone gives, at widths of several 1,024-column blocks (summed block by block) and with
// a share of the weight rows starting off a block of four.
TEST(LinearTest, BatchInvariantBf16RowsEqualTheRowAloneToTheBit) {
  std::mt19937 rng(6);
  std::normal_distribution<float> n(0, 1);
  for (const bool rounded : {false, true}) {
    for (const int64_t in : {64, 201, 1100, 2080}) {
      const int64_t out = 75;
      std::vector<uint16_t> bytes;
      Linear w = RandomBf16(out, in, rng, &bytes);
      w.bf16_activations = rounded;
      w.batch_invariant = !rounded;
      if (!Bf16KernelApplies(w)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
      for (const int64_t m : {1, 2, 7, 64, 100}) {
        std::vector<float> x(m * in), y(m * out);
        for (auto& v : x) v = n(rng);
        MatMul(x.data(), m, w, y.data());
        for (int64_t i = 0; i < m; ++i) {
          std::vector<float> alone(out), shares(out);
          MatMul(&x[i * in], 1, w, alone.data());
          MatMulRows(&x[i * in], 1, in, w, 0, 3, shares.data(), out);
          MatMulRows(&x[i * in], 1, in, w, 3, out - 3, shares.data() + 3, out);
          for (int64_t j = 0; j < out; ++j) {
            ASSERT_EQ(y[i * out + j], alone[j])
                << "rounded=" << rounded << " in=" << in << " m=" << m << " " << i << "," << j;
            ASSERT_EQ(shares[j], alone[j]) << "rounded=" << rounded << " in=" << in << " " << j;
          }
        }
      }
    }
  }
}

// The query fold's product: a row's sums are the same bits alone or in a block of any size,
// and they match a float64 reference; the columns past 64 take the masked loop.
TEST(AxpyRowsTest, ARowAloneAndAmongOthersGiveTheSameBits) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0, 1);
  for (const int64_t n : {256, 200, 13}) {
    const int64_t k = 37, ldx = k + 3, ldt = n + 5, ldy = n + 2;
    std::vector<float> t(k * ldt);
    for (auto& v : t) v = dist(rng);
    for (const int64_t m : {1, 3, 4, 9}) {
      std::vector<float> x(m * ldx), y(m * ldy);
      for (auto& v : x) v = dist(rng);
      for (auto& v : y) v = dist(rng);
      const std::vector<float> y0 = y;
      AxpyRows(x.data(), m, ldx, t.data(), k, ldt, n, y.data(), ldy);
      for (int64_t i = 0; i < m; ++i) {
        std::vector<float> alone(y0.begin() + i * ldy, y0.begin() + (i + 1) * ldy);
        AxpyRows(&x[i * ldx], 1, ldx, t.data(), k, ldt, n, alone.data(), ldy);
        for (int64_t c = 0; c < n; ++c) {
          ASSERT_EQ(y[i * ldy + c], alone[c]) << "m " << m << " n " << n << ": " << i << "," << c;
          double ref = y0[i * ldy + c];
          for (int64_t r = 0; r < k; ++r) ref += double{x[i * ldx + r]} * t[r * ldt + c];
          ASSERT_NEAR(y[i * ldy + c], ref, 1e-4 * (1 + std::fabs(ref)));
        }
        for (int64_t c = n; c < ldy; ++c) ASSERT_EQ(y[i * ldy + c], y0[i * ldy + c]);  // untouched
      }
    }
  }
}

// The absorbed attention's loops over latent-cache rows (one pass for a group of heads) against
// a float64 reference: every head count of a group, odd row counts, widths with a vector tail.
TEST(LatentAttentionTest, ScoresAndWeightedSumsMatchTheReference) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0, 1);
  for (int64_t heads = 1; heads <= 11; ++heads) {
    for (int64_t n : {1, 2, 3, 37}) {
      for (int64_t width : {320, 200}) {
        const int64_t cols = width - 64;
        std::vector<std::vector<float>> row_data(n, std::vector<float>(width));
        std::vector<const float*> rows(n);
        for (int64_t j = 0; j < n; ++j) {
          for (auto& v : row_data[j]) v = dist(rng);
          rows[j] = row_data[j].data();
        }
        const int64_t q_stride = width + 3, stride = n + 5, out_stride = cols + 7;
        std::vector<float> q(heads * q_stride), p(heads * stride);
        for (auto& v : q) v = dist(rng);
        for (auto& v : p) v = dist(rng);
        std::vector<float> scores(heads * stride, -1.0f), out(heads * out_stride, -1.0f);
        LatentScores(q.data(), q_stride, heads, rows.data(), n, width, 0.25f, scores.data(),
                     stride);
        if (heads <= 8) {
          LatentWeightedSum(p.data(), stride, heads, rows.data(), n, cols, out.data(), out_stride);
        }
        // A query alone, against the first rows alone, scores them to the bit as it did above.
        for (int64_t g = 0; g < heads; g += 3) {
          for (const int64_t first : {int64_t{1}, (n + 1) / 2}) {
            std::vector<float> alone(first);
            LatentScores(&q[g * q_stride], q_stride, 1, rows.data(), first, width, 0.25f,
                         alone.data(), first);
            for (int64_t j = 0; j < first; ++j) ASSERT_EQ(alone[j], scores[g * stride + j]);
          }
        }
        for (int64_t g = 0; g < heads; ++g) {
          for (int64_t j = 0; j < n; ++j) {
            double ref = 0;
            for (int64_t c = 0; c < width; ++c) ref += double{q[g * q_stride + c]} * rows[j][c];
            ASSERT_NEAR(scores[g * stride + j], 0.25 * ref, 1e-4 * (1 + std::fabs(ref)))
                << heads << " heads, n " << n << ", width " << width << ": g " << g << " j " << j;
          }
          EXPECT_EQ(scores[g * stride + n], -1.0f);  // nothing past n written
          if (heads > 8) continue;                   // the weighted sum takes groups of up to 8
          for (int64_t c = 0; c < cols; ++c) {
            double ref = 0;
            for (int64_t j = 0; j < n; ++j) ref += double{p[g * stride + j]} * rows[j][c];
            ASSERT_NEAR(out[g * out_stride + c], ref, 1e-4 * (1 + std::fabs(ref)))
                << heads << " heads, n " << n << ", cols " << cols << ": g " << g << " c " << c;
          }
          EXPECT_EQ(out[g * out_stride + cols], -1.0f);
        }
      }
    }
  }
}

TEST(OpsTest, RmsNormSoftmaxDot) {
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 2, 2}, out(4);
  RmsNorm(x.data(), w.data(), 4, 0.0f, out.data());
  const float inv = 1.0f / std::sqrt(7.5f);
  EXPECT_NEAR(out[3], 8 * inv, 1e-6);
  std::vector<float> s = {1000, 1000};
  SoftmaxInPlace(s.data(), 2);
  EXPECT_FLOAT_EQ(s[0], 0.5f);
  std::vector<float> a(37, 1.0f), b(37, 2.0f);
  EXPECT_FLOAT_EQ(Dot(a.data(), b.data(), 37), 74.0f);
}

// Against a float64 softmax: lengths with and without a vector tail, spreads from 1e-3 to scores
// 200 apart (whose exponentials fall below FLT_MIN and must add nothing).
TEST(OpsTest, SoftmaxMatchesTheFloat64Reference) {
  std::mt19937 rng(8);
  for (const float spread : {1e-3f, 3.0f, 30.0f, 200.0f}) {
    std::uniform_real_distribution<float> dist(-spread, spread);
    for (const int64_t n : {1, 2, 15, 16, 17, 100, 513}) {
      std::vector<float> x(n + 1, 7.0f);
      for (int64_t i = 0; i < n; ++i) x[i] = dist(rng) + 40.0f;
      std::vector<double> ref(x.begin(), x.begin() + n), gap(n);
      const double m = *std::max_element(ref.begin(), ref.end());
      double sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += (ref[i] = std::exp(-(gap[i] = m - ref[i])));
      SoftmaxInPlace(x.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        // 1e-6 for the exponential and the sum; x - max is rounded to f32 first (2^-24 of the
        // gap, relative, in the exponential), as any f32 softmax does.
        const double p = ref[i] / sum, rel = 1e-6 + gap[i] * 0x1p-23;
        ASSERT_NEAR(x[i], p, rel * p + 1e-37) << spread << " " << n << " " << i;
      }
      EXPECT_EQ(x[n], 7.0f);  // nothing past n written
    }
  }
}

// silu(g) * u against float64, over gates from -100 to 100 (e^-g past f32's range both ways).
TEST(OpsTest, SiluMulMatchesTheFloat64Reference) {
  std::mt19937 rng(9);
  for (const float spread : {1.0f, 10.0f, 100.0f}) {
    std::uniform_real_distribution<float> dist(-spread, spread);
    for (const int64_t n : {1, 16, 37, 1000}) {
      std::vector<float> g(n), u(n), out(n + 1, 7.0f);
      for (int64_t i = 0; i < n; ++i) g[i] = dist(rng), u[i] = dist(rng);
      SiluMul(g.data(), u.data(), n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        const double ref = double{g[i]} / (1.0 + std::exp(-double{g[i]})) * u[i];
        ASSERT_NEAR(out[i], ref, 1e-6 * std::fabs(ref) + 1e-30) << g[i] << " " << u[i];
      }
      EXPECT_EQ(out[n], 7.0f);
    }
  }
}

TEST(RopeTest, InterleavedPairsAndYarnFrequencies) {
  ModelConfig c;
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000;
  Rope plain(c);
  EXPECT_DOUBLE_EQ(plain.inv_freq()[1], std::pow(10000.0, -2.0 / 64));
  // Position p rotates pair (0, 1) by p * inv_freq[0] = p radians.
  std::vector<float> cos(32), sin(32), v(64, 0.0f);
  v[0] = 1.0f;
  plain.CosSin(1, cos.data(), sin.data());
  Rope::Apply(cos.data(), sin.data(), 64, v.data(), 1, 0);
  EXPECT_NEAR(v[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(v[1], std::sin(1.0), 1e-6);
  c.rope_yarn = YarnConfig{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
  Rope yarn(c);
  // High frequencies (below the beta_fast correction dim) are kept, low ones divided by factor.
  EXPECT_DOUBLE_EQ(yarn.inv_freq()[0], plain.inv_freq()[0]);
  EXPECT_NEAR(yarn.inv_freq()[31], plain.inv_freq()[31] / 40.0, 1e-18);
  EXPECT_LT(yarn.inv_freq()[16], plain.inv_freq()[16]);
  EXPECT_GT(yarn.inv_freq()[16], plain.inv_freq()[16] / 40.0);
}

}  // namespace
}  // namespace dsv3::engine
