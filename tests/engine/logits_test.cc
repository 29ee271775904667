#include "engine/kernels/logits.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace dsv3::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every length from 0 to 70 (all vector tails) and a vocabulary's, with ties and masked
// (-inf) entries.
std::vector<std::vector<float>> Rows() {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<std::vector<float>> rows;
  for (int n : {0, 1, 2, 15, 16, 17, 31, 33, 64, 70, 129280}) {
    std::vector<float> r(static_cast<size_t>(n));
    for (float& v : r) v = std::round(normal(rng) * 2.0f) / 2.0f;  // many ties
    for (size_t i = 3; i < r.size(); i += 7) r[i] = -kInf;
    rows.push_back(r);
  }
  return rows;
}

TEST(LogitsTest, ArgmaxIsTheFirstLargestEntry) {
  for (const auto& r : Rows()) {
    const int64_t n = static_cast<int64_t>(r.size());
    int64_t want = 0;
    for (int64_t i = 1; i < n; ++i) {
      if (r[i] > r[want]) want = i;
    }
    EXPECT_EQ(ArgmaxFirst(r.data(), n), want) << "n " << n;
    EXPECT_EQ(MaxOf(r.data(), n), n == 0 ? -kInf : r[want]) << "n " << n;
  }
  // The largest entry at every lane of the last, partial vector; a tie keeps the first.
  for (int n = 1; n <= 40; ++n) {
    for (int at = 0; at < n; ++at) {
      std::vector<float> r(static_cast<size_t>(n), -1.0f);
      r[at] = 2.0f;
      if (at + 1 < n) r[n - 1] = 2.0f;
      ASSERT_EQ(ArgmaxFirst(r.data(), n), at) << "n " << n;
    }
  }
  // NaN never wins; all masked: the first.
  const std::vector<float> nan = {std::nanf(""), 1.0f, std::nanf(""), 3.0f, 2.0f};
  EXPECT_EQ(ArgmaxFirst(nan.data(), 5), 3);
  const std::vector<float> masked(20, -kInf);
  EXPECT_EQ(ArgmaxFirst(masked.data(), 20), 0);
}

TEST(LogitsTest, SumExpIsTheDoubleSumWithinFloatPrecision) {
  for (const auto& r : Rows()) {
    const int64_t n = static_cast<int64_t>(r.size());
    const float max = MaxOf(r.data(), n);
    for (float scale : {1.0f, 1.0f / 0.7f, 0.5f, 10.0f}) {
      double want = 0.0;
      for (float v : r) {
        const double e = (static_cast<double>(v) - max) * scale;
        if (e >= -87.0) want += std::exp(e);
      }
      const double got = SumExp(r.data(), n, max, scale);
      EXPECT_NEAR(got, want, 2e-6 * want) << "n " << n << " scale " << scale;
    }
  }
  // Exponents across float's range, one at a time.
  for (float v = -86.5f; v <= 80.0f; v += 0.37f) {
    const double got = SumExp(&v, 1, 0.0f, 1.0f);
    EXPECT_NEAR(got, std::exp(static_cast<double>(v)), 3e-7 * std::exp(static_cast<double>(v)))
        << v;
  }
  const float below = -90.0f;
  EXPECT_EQ(SumExp(&below, 1, 0.0f, 1.0f), 0.0);
}

// The gathering kernels against their definitions, over index lists of every tail length.
TEST(LogitsTest, SumExpAtAndBandsAtFollowTheIndices) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(5000);
  for (float& v : x) v = normal(rng);
  const float max = MaxOf(x.data(), static_cast<int64_t>(x.size()));
  std::uniform_int_distribution<int32_t> pick(0, 4999);
  for (int n : {0, 1, 15, 16, 17, 40, 1000}) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (int32_t& id : ids) id = pick(rng);
    double want = 0.0;
    float lo = INFINITY, hi = -INFINITY;
    for (int32_t id : ids) {
      want += std::exp((static_cast<double>(x[id]) - max) * 0.5);
      lo = std::min(lo, x[id]);
      hi = std::max(hi, x[id]);
    }
    float got_lo = 0.0f, got_hi = 0.0f;
    const double got = SumExpAt(x.data(), ids.data(), n, max, 0.5f, &got_lo, &got_hi);
    EXPECT_NEAR(got, want, 2e-6 * want) << n;
    EXPECT_EQ(got_lo, lo) << n;
    EXPECT_EQ(got_hi, hi) << n;
    std::vector<uint8_t> band(static_cast<size_t>(n) + 1, 77);  // one past the end: untouched
    BandsAt(x.data(), ids.data(), n, max, 4.0f, 40, band.data());
    for (int i = 0; i < n; ++i) {
      const auto b = static_cast<uint8_t>(std::min((max - x[ids[i]]) * 4.0f, 40.0f));
      ASSERT_EQ(band[i], b) << n << " at " << i;
    }
    EXPECT_EQ(band[n], 77);
  }
}

}  // namespace
}  // namespace dsv3::engine
