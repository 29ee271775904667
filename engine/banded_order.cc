#include "engine/banded_order.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/kernels/logits.h"

namespace dsv3::engine {
namespace {

struct ThreadBuffers {
  std::vector<uint8_t> band_of;
  std::vector<int32_t> ids;
};

ThreadBuffers& Buffers() {
  thread_local ThreadBuffers buffers;
  return buffers;
}

}  // namespace

BandedOrder::BandedOrder(std::span<const float> l, float max_l, double temperature)
    : l_(l),
      max_l_(max_l),
      temperature_(temperature),
      band_of_(Buffers().band_of),
      ids_(Buffers().ids) {
  band_of_.resize(l.size());
  ids_.clear();
  size_ = BandsOf(l.data(), static_cast<int64_t>(l.size()), max_l,
                  static_cast<float>(1.0 / temperature), kLastBand, band_of_.data());
}

double BandedOrder::Prob(int32_t t) const {
  return std::exp((static_cast<double>(l_[t]) - max_l_) / temperature_);
}

bool BandedOrder::GatherNext() {
  while (next_band_ <= kLastBand) {
    Band band;
    band.begin = static_cast<int64_t>(ids_.size());
    IndicesInBand(band_of_.data(), static_cast<int64_t>(band_of_.size()),
                  static_cast<uint8_t>(next_band_++), &ids_);
    band.end = static_cast<int64_t>(ids_.size());
    if (band.end == band.begin) continue;
    Measure(band);
    bands_.push_back(band);
    return true;
  }
  return false;
}

void BandedOrder::Measure(Band& band) const {
  band.mass = SumExpAt(l_.data(), ids_.data() + band.begin, band.end - band.begin,
                       static_cast<float>(max_l_), static_cast<float>(1.0 / temperature_),
                       &band.min_l, &band.max_l);
  band.min_prob = std::exp((static_cast<double>(band.min_l) - max_l_) / temperature_);
}

bool BandedOrder::Split(size_t j) {
  const Band band = bands_[j];
  const float hi = band.max_l, lo = band.min_l;
  const float step = kSplit / (hi - lo);
  if (!(hi > lo) || !std::isfinite(step)) return false;  // one logit (or a subnormal range)
  // Narrow band of a token: how far below the band's largest, in kSplit steps of its range.
  const int64_t n = band.end - band.begin;
  thread_local std::vector<uint8_t> part;
  thread_local std::vector<int32_t> moved;
  part.resize(static_cast<size_t>(n));
  moved.assign(ids_.begin() + band.begin, ids_.begin() + band.end);
  BandsAt(l_.data(), moved.data(), n, hi, step, kSplit - 1, part.data());
  int64_t count[kSplit] = {};
  for (uint8_t k : part) ++count[k];
  int64_t at[kSplit];
  std::vector<Band> parts;
  for (int k = 0, begin = 0; k < kSplit; begin += static_cast<int>(count[k]), ++k) {
    at[k] = band.begin + begin;
    if (count[k] == 0) continue;
    Band b;
    b.begin = at[k];
    b.end = at[k] + count[k];
    parts.push_back(b);
  }
  for (int64_t i = 0; i < n; ++i) {
    ids_[static_cast<size_t>(at[part[static_cast<size_t>(i)]]++)] = moved[static_cast<size_t>(i)];
  }
  for (Band& b : parts) Measure(b);
  bands_.erase(bands_.begin() + static_cast<std::ptrdiff_t>(j));
  bands_.insert(bands_.begin() + static_cast<std::ptrdiff_t>(j), parts.begin(), parts.end());
  return true;
}

void BandedOrder::Sort(Band& band) {
  if (band.sorted) return;
  // Keys that sort as (logit descending, id ascending) as plain integers: no indirection.
  thread_local std::vector<uint64_t> keys;
  keys.resize(static_cast<size_t>(band.end - band.begin));
  for (int64_t i = band.begin; i < band.end; ++i) {
    const int32_t t = ids_[static_cast<size_t>(i)];
    const float v = l_[t] == 0.0f ? 0.0f : l_[t];  // -0 ties with +0
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    // Ascending in v as unsigned, then inverted for descending.
    const uint32_t up = (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
    keys[static_cast<size_t>(i - band.begin)] =
        (static_cast<uint64_t>(~up) << 32) | static_cast<uint32_t>(t);
  }
  std::sort(keys.begin(), keys.end());
  for (int64_t i = band.begin; i < band.end; ++i) {
    ids_[static_cast<size_t>(i)] = static_cast<int32_t>(keys[static_cast<size_t>(i - band.begin)]);
  }
  band.sorted = true;
}

int32_t BandedOrder::At(int64_t i) {
  for (size_t j = 0;;) {
    if (j == bands_.size() && !GatherNext()) return -1;  // i >= size()
    if (i >= bands_[j].end) {
      ++j;
      continue;
    }
    if (bands_[j].sorted) return ids_[static_cast<size_t>(i)];
    // Big: split, then look again from j (the narrower bands start there).
    if (bands_[j].end - bands_[j].begin > kSortMax && Split(j)) continue;
    Sort(bands_[j]);
    return ids_[static_cast<size_t>(i)];
  }
}

}  // namespace dsv3::engine
