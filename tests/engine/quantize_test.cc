// Load-time quantization (kernels/quantize.h, weight_format.h): codes and scales against an
// independent decoding of the documented layout, error bounds that follow from the format,
// the decode and prefill kernels on quantized weights, and whole models against the float64
// golden outputs.

#include "engine/kernels/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/dtype.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/matmul_bf16.h"
#include "engine/kernels/matmul_direct.h"
#include "engine/kernels/matmul_int8.h"
#include "engine/weight_format.h"

namespace dsv3::engine {
namespace {

// W as BF16 bytes, values drawn from `n`, and the exact f64 values stored.
struct Bf16Matrix {
  std::vector<uint8_t> bytes;
  std::vector<double> values;
  Linear linear;
};

Bf16Matrix MakeBf16(int64_t out, int64_t in, std::mt19937& rng) {
  Bf16Matrix m;
  std::normal_distribution<float> n(0, 0.05f);
  m.bytes.resize(out * in * 2);
  m.values.resize(out * in);
  for (int64_t i = 0; i < out * in; ++i) {
    float v = n(rng);
    if (i % 97 == 0) v *= 8;  // outliers, as trained weights have
    if (i % 1000 == 3) v = 0;
    const uint16_t b = FloatToBF16(v);
    std::memcpy(&m.bytes[2 * i], &b, 2);
    m.values[i] = BF16ToFloat(b);
  }
  m.linear.dtype = DType::kBF16;
  m.linear.out_features = out;
  m.linear.in_features = in;
  m.linear.data = m.bytes.data();
  return m;
}

// The documented layout decoded independently of the engine's code: value and scale.
struct Decoded {
  double value;
  double scale;
};

Decoded DecodeQ(const Linear& q, int64_t r, int64_t c) {
  const int64_t groups = q.in_features / kQuantGroup;
  const double scale = F16ToFloat(q.group_scales[r * groups + c / kQuantGroup]);
  const auto* bytes = static_cast<const uint8_t*>(q.data);
  if (q.dtype == DType::kQ8) {
    return {static_cast<int8_t>(bytes[r * q.in_features + c]) * scale, scale};
  }
  // kQ4, kQ6: chunks of W = 64 columns (32 at the end): nibbles, then (kQ6) the top bits.
  const int64_t w = std::min<int64_t>(64, q.in_features - c / 64 * 64), i = c % 64;
  if (q.dtype == DType::kQ6) {
    const uint8_t* chunk = bytes + r * q.in_features * 3 / 4 + c / 64 * 48;
    const int low = i < w / 2 ? chunk[i] & 0xF : chunk[i - w / 2] >> 4;
    const int top = (chunk[w / 2 + i % (w / 4)] >> (2 * (i / (w / 4)))) & 3;
    return {(low + 16 * top - 32) * scale, scale};
  }
  const uint8_t* chunk = bytes + r * q.in_features / 2 + c / 64 * 32;
  const int code = (i < w / 2 ? chunk[i] & 0xF : chunk[i - w / 2] >> 4) - 8;
  return {code * scale, scale};
}

TEST(QuantizeTest, CodesAndScalesFollowTheFormat) {
  std::mt19937 rng(3);
  const int64_t out = 70, in = 256;
  Bf16Matrix w = MakeBf16(out, in, rng);
  for (DType target : {DType::kQ8, DType::kQ4, DType::kQ6}) {
    auto q = QuantizeLinear(w.linear, target);
    ASSERT_TRUE(q.ok()) << q.status();
    ASSERT_EQ(q->group_scales.size(), static_cast<size_t>(out * in / kQuantGroup));
    const double code_bytes = target == DType::kQ8 ? 1 : (target == DType::kQ4 ? 0.5 : 0.75);
    EXPECT_EQ(q->weight_bytes(), out * in * code_bytes + out * in / kQuantGroup * 2);
    EXPECT_EQ(QuantizedCodeBytes(w.linear, target), out * in * code_bytes);
    std::vector<float> row(in);
    for (int64_t r = 0; r < out; ++r) {
      q->DequantRow(r, 0, in, row.data());
      for (int64_t g = 0; g < in / kQuantGroup; ++g) {
        double amax = 0, extreme = 0;
        for (int64_t j = 0; j < kQuantGroup; ++j) {
          const double v = w.values[r * in + g * kQuantGroup + j];
          amax = std::max(amax, std::fabs(v));
          if (std::fabs(v) > std::fabs(extreme)) extreme = v;
        }
        // The stored scale is the f16 of amax/127 (Q8), extreme/-8 (Q4) or extreme/-32 (Q6).
        const double want_scale =
            target == DType::kQ8 ? amax / 127 : extreme / (target == DType::kQ4 ? -8 : -32);
        const double scale = DecodeQ(*q, r, g * kQuantGroup).scale;
        EXPECT_NEAR(scale, want_scale, std::fabs(want_scale) * 1e-3 + 1e-7);
        for (int64_t j = 0; j < kQuantGroup; ++j) {
          const int64_t c = g * kQuantGroup + j;
          const double v = w.values[r * in + c];
          const Decoded d = DecodeQ(*q, r, c);
          ASSERT_EQ(row[c], static_cast<float>(d.value))
              << "DequantRow disagrees at " << r << "," << c;
          // Round to nearest: within half a step, except Q4's clamp at +7 steps and Q6's at
          // +31 (values of the opposite sign to the extreme, up to a whole step).
          const double step = std::fabs(scale);
          const double top = target == DType::kQ4 ? 7.5 : 31.5;
          const double bound = target != DType::kQ8 && std::fabs(v) > top * step ? step : step / 2;
          ASSERT_LE(std::fabs(d.value - v), bound * (1 + 1e-3) + 1e-9)
              << DTypeName(target) << " " << r << "," << c;
        }
      }
    }
  }
}

TEST(QuantizeTest, RefusesWhatItCannotQuantize) {
  std::mt19937 rng(4);
  Bf16Matrix w = MakeBf16(8, 48, rng);  // 48 is not a multiple of 32
  EXPECT_FALSE(CanQuantize(w.linear));
  EXPECT_EQ(QuantizeLinear(w.linear, DType::kQ8).status().code(),
            absl::StatusCode::kInvalidArgument);
  Bf16Matrix ok = MakeBf16(8, 64, rng);
  EXPECT_EQ(QuantizeLinear(ok.linear, DType::kBF16).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto q = QuantizeLinear(ok.linear, DType::kQ8);
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(CanQuantize(*q));  // never twice
  EXPECT_EQ(ParseWeightFormat("int5").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseWeightFormat("int4"), WeightFormat::kInt4);
}

// x W^T on quantized weights, through the direct kernel (few rows) and dequantised tiles +
// the library GEMM (many), split between threads; and the untransposed product. Checked
// against the independently decoded weights (float rounding only), and against the original
// BF16 weights within the bound the format gives: sum_c |x_c| x (error bound of w_c).
TEST(QuantizeTest, MatMulOnQuantizedWeights) {
  std::mt19937 rng(5);
  std::normal_distribution<float> n(0, 1);
  const int64_t out = 203, in = 320;
  Bf16Matrix w = MakeBf16(out, in, rng);
  for (DType target : {DType::kQ8, DType::kQ4, DType::kQ6}) {
    auto q = QuantizeLinear(w.linear, target);
    ASSERT_TRUE(q.ok()) << q.status();
    std::vector<double> deq(out * in), bound(out * in);
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t c = 0; c < in; ++c) {
        const Decoded d = DecodeQ(*q, r, c);
        deq[r * in + c] = d.value;
        bound[r * in + c] = std::fabs(d.scale) * (target == DType::kQ8 ? 0.5 : 1.0) * (1 + 1e-3);
      }
    }
    for (int64_t m : {1, 2, 7, 8, 9, 24, 25, 40}) {
      std::vector<float> x(m * in), y(m * out);
      for (auto& v : x) v = n(rng);
      MatMul(x.data(), m, *q, y.data());
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < out; ++r) {
          double ref = 0, orig = 0, err = 0, mag = 0;
          for (int64_t c = 0; c < in; ++c) {
            const double xv = x[i * in + c];
            ref += xv * deq[r * in + c];
            orig += xv * w.values[r * in + c];
            err += std::fabs(xv) * bound[r * in + c];
            mag += std::fabs(xv * deq[r * in + c]);
          }
          ASSERT_NEAR(y[i * out + r], ref, 1e-5 * (1 + mag))
              << DTypeName(target) << " m=" << m << " " << i << "," << r;
          ASSERT_LE(std::fabs(y[i * out + r] - orig), err + 1e-5 * (1 + mag));
        }
      }
      const int64_t rb = 64, rc = 70;
      std::vector<float> xt(m * rc), yt(m * in);
      for (auto& v : xt) v = n(rng);
      MatMulTransposedRows(xt.data(), m, rc, *q, rb, rc, yt.data(), in);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t c = 0; c < in; ++c) {
          double ref = 0, mag = 0;
          for (int64_t j = 0; j < rc; ++j) {
            ref += xt[i * rc + j] * deq[(rb + j) * in + c];
            mag += std::fabs(xt[i * rc + j] * deq[(rb + j) * in + c]);
          }
          ASSERT_NEAR(yt[i * in + c], ref, 1e-5 * (1 + mag));
        }
      }
    }
  }
}

// Decode-sized batches with int8 activations (matmul_int8.h): x is quantized per group of 32
// as round(x * 127 / absmax) with scale absmax / 127, so the product must be, to float
// rounding, sum over groups of (weight scale x activation scale x the exact integer dot
// product of the codes), computed here from the independently decoded weights; and within
// the activations' rounding (half a step per column) of the f32 product. Widths with and
// without a last half chunk (k % 64 == 32), row counts that are not a multiple of 4, and more
// rows than one block of the kernel's (prefill sizes).
TEST(QuantizeTest, Int8ActivationsComputeTheIntegerProductOfTheCodes) {
  std::mt19937 rng(6);
  std::normal_distribution<float> n(0, 1);
  for (const int64_t in : {320, 352}) {
    const int64_t out = 203;
    Bf16Matrix w = MakeBf16(out, in, rng);
    for (DType target : {DType::kQ8, DType::kQ4, DType::kQ6}) {
      auto q = QuantizeLinear(w.linear, target);
      ASSERT_TRUE(q.ok()) << q.status();
      q->int8_activations = true;
      if (!Int8KernelApplies(*q)) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
      for (int64_t m : {1, 2, 3, 4, 5, 8, 9, 24, 40, 64, 130}) {
        // More rows of kQ4 and kQ8 go to bf16 tiles where the CPU has them (the test below).
        if (Bf16TilesTake(m, *q)) continue;
        std::vector<float> x(m * in), y(m * out);
        for (auto& v : x) v = n(rng);
        x[7] = 0;
        std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero group
        MatMul(x.data(), m, *q, y.data());
        for (int64_t i = 0; i < m; ++i) {
          std::vector<int> xc(in);
          std::vector<double> xs(in / kQuantGroup);
          for (int64_t g = 0; g < in / kQuantGroup; ++g) {
            float amax = 0;
            for (int64_t c = 0; c < kQuantGroup; ++c) {
              amax = std::max(amax, std::fabs(x[i * in + g * kQuantGroup + c]));
            }
            xs[g] = amax / 127.0f;
            for (int64_t c = 0; c < kQuantGroup; ++c) {
              const float v = x[i * in + g * kQuantGroup + c];
              xc[g * kQuantGroup + c] =
                  amax > 0 ? static_cast<int>(std::nearbyint(v * (127.0f / amax))) : 0;
            }
          }
          for (int64_t r = 0; r < out; ++r) {
            double ref = 0, exact = 0, bound = 0, mag = 0;
            for (int64_t g = 0; g < in / kQuantGroup; ++g) {
              int64_t dot = 0;
              double wscale = 0;
              for (int64_t c = g * kQuantGroup; c < (g + 1) * kQuantGroup; ++c) {
                const Decoded d = DecodeQ(*q, r, c);
                wscale = d.scale;
                dot += d.scale == 0 ? 0 : std::lround(d.value / d.scale) * xc[c];
                exact += d.value * x[i * in + c];
                bound += std::fabs(d.value) * xs[g] / 2;
                mag += std::fabs(d.value * x[i * in + c]);
              }
              ref += wscale * xs[g] * static_cast<double>(dot);
            }
            ASSERT_NEAR(y[i * out + r], ref, 1e-5 * (1 + mag))
                << DTypeName(target) << " in=" << in << " m=" << m << " " << i << "," << r;
            ASSERT_LE(std::fabs(y[i * out + r] - exact), bound * (1 + 1e-4) + 1e-5 * (1 + mag));
          }
        }
      }
    }
  }
}

// The activations' codes, lane sums and scales are QuantizeActivations' definition bit for
// bit on every path (the AVX-512 one where the CPU has VNNI): codes round(x * (127 / absmax))
// to nearest even, each lane's offset -offset x the sum of its 4 codes, its scale absmax /
// 127; a last half chunk, an all-zero group and values that round to exact halves included.
TEST(QuantizeTest, Int8ActivationCodesAreTheirDefinitionBitForBit) {
  std::mt19937 rng(8);
  std::normal_distribution<float> n(0, 1);
  for (const int64_t k : {64, 96, 352}) {
    for (DType dtype : {DType::kQ8, DType::kQ4, DType::kQ6}) {
      const int32_t offset = dtype == DType::kQ8 ? 128 : (dtype == DType::kQ4 ? 8 : 32);
      const int64_t m = 5, ldx = k + 32;
      std::vector<float> x(m * ldx);
      for (auto& v : x) v = n(rng);
      std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // row 0's second group
      // Row 1's first group: absmax 127, so its scale is 1 and these are halves to round.
      const float halves[4] = {-126.5f, 2.5f, -3.5f, 0.5f};
      for (int64_t c = 0; c < 32; ++c) x[ldx + c] = c == 0 ? 127.0f : halves[c % 4];
      Int8Activations xq;
      QuantizeActivations(x.data(), m, ldx, k, dtype, &xq);
      ASSERT_EQ(xq.chunks.size(), static_cast<size_t>((k + 63) / 64 * m));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t ch = 0; ch < (k + 63) / 64; ++ch) {
          const Int8Activations::Chunk& got = xq.chunks[ch * m + i];
          for (int64_t h = 0; h < 2; ++h) {
            const int64_t c0 = ch * 64 + h * kQuantGroup;
            const bool exists = c0 < k;
            float amax = 0;
            for (int64_t c = 0; exists && c < kQuantGroup; ++c) {
              amax = std::max(amax, std::fabs(x[i * ldx + c0 + c]));
            }
            const float inv = amax > 0 ? 127.0f / amax : 0.0f;
            for (int64_t l = 0; l < kQuantGroup / 4; ++l) {
              int32_t sum = 0;
              for (int64_t c = l * 4; c < l * 4 + 4; ++c) {
                const int8_t want =
                    exists ? static_cast<int8_t>(std::clamp(
                                 std::nearbyint(x[i * ldx + c0 + c] * inv), -127.0f, 127.0f))
                           : 0;
                ASSERT_EQ(got.codes[h * kQuantGroup + c], want) << "k=" << k << " row " << i;
                sum += want;
              }
              ASSERT_EQ(got.lane_offset[h * 8 + l], -offset * sum);
              const float scale = exists ? amax / 127.0f : 0.0f;
              ASSERT_EQ(std::memcmp(&got.lane_scale[h * 8 + l], &scale, sizeof(float)), 0);
            }
          }
        }
      }
    }
  }
}

// Calls of more than 24 rows of kQ4 weights, or 32 of kQ8, with quantized activations (prefill,
// big batches), where the CPU has AVX512_BF16: weights and x rounded to bf16, each within 2^-9
// of itself, so every result within 2^-8 of sum |w x| (plus f32 sums) of the exact product of
// the decoded weights; inside the weights' own 4- or 8-bit error.
// The bf16 tiles' one-pass dequantisation is the documented decoding rounded to nearest even,
// bit for bit, at widths with and without a last half chunk.
TEST(QuantizeTest, Bf16RowsAreTheDecodedWeightsRounded) {
  std::mt19937 rng(8);
  for (const int64_t in : {320, 352}) {
    Bf16Matrix w = MakeBf16(37, in, rng);
    for (const DType target : {DType::kQ8, DType::kQ4, DType::kQ6}) {
      auto q = QuantizeLinear(w.linear, target);
      ASSERT_TRUE(q.ok()) << q.status();
      std::vector<uint16_t> row(in);
      for (int64_t r = 0; r < q->out_features; ++r) {
        if (!DequantRowBf16(*q, r, row.data())) GTEST_SKIP() << "this CPU has no AVX512_BF16";
        for (int64_t c = 0; c < in; ++c) {
          const auto want = FloatToBF16(static_cast<float>(DecodeQ(*q, r, c).value));
          ASSERT_EQ(row[c], want) << DTypeName(target) << " in=" << in << " " << r << "," << c;
        }
      }
    }
  }
}

TEST(QuantizeTest, BigBatchesRoundWeightsAndActivationsToBf16) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0, 1);
  const int64_t out = 203, in = 352;
  Bf16Matrix w = MakeBf16(out, in, rng);
  for (const DType target : {DType::kQ4, DType::kQ8}) {
    auto q = QuantizeLinear(w.linear, target);
    ASSERT_TRUE(q.ok()) << q.status();
    q->int8_activations = true;
    if (!Bf16TilesApply(*q)) GTEST_SKIP() << "this CPU has no AVX512_BF16";
    int64_t first = 1;  // the fewest rows that take the tiles on this CPU
    while (!Bf16TilesTake(first, *q)) ++first;
    ASSERT_LE(first, 33);
    for (const int64_t m : {first, int64_t{40}, int64_t{65}, int64_t{130}}) {
      std::vector<float> x(m * in), y(m * out);
      for (auto& v : x) v = n(rng);
      MatMul(x.data(), m, *q, y.data());
      double worst = 0;  // the largest error as a share of its bound
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < out; ++r) {
          double exact = 0, mag = 0;
          for (int64_t c = 0; c < in; ++c) {
            const double p = DecodeQ(*q, r, c).value * x[i * in + c];
            exact += p;
            mag += std::fabs(p);
          }
          const double bound = (std::exp2(-8) + (in / 16.0 + 8) * std::exp2(-23)) * mag;
          ASSERT_LE(std::fabs(y[i * out + r] - exact), bound) << "m=" << m << " " << i << "," << r;
          worst = std::max(worst, std::fabs(y[i * out + r] - exact) / bound);
        }
      }
      std::printf("[%s bf16 tiles] m=%lld: largest error %.3f of its bound\n",
                  std::string(DTypeName(target)).c_str(), static_cast<long long>(m), worst);
    }
  }
}

}  // namespace
}  // namespace dsv3::engine
