#ifndef DSV3_ENGINE_BANDED_ORDER_H_
#define DSV3_ENGINE_BANDED_ORDER_H_

// The tokens of a logits row in descending order (ties by ascending id), as sampling walks
// them, without sorting the vocabulary. One vector pass puts each finite token into the band
// of its distance below the largest logit, scaled by 1 / temperature: one band per factor e
// of probability. Bands are gathered by a vector scan when a walk reaches them, each with its
// probability mass (sum of exp((l - max) / temperature) over its tokens, a float exponential);
// a walk passes a whole band by its mass and sorts only a band it stops in. A band of more
// than 256 tokens is first split into 64 narrower ones (by its own range of logits), and so
// on, so that what is sorted stays small. A draw, top_p, top_k or min_p at DeepSeek-V3's
// 129,280 tokens touches a few bands; a flat row (a model with random weights) costs a few
// passes over it rather than a sort of it.
//
// Its buffers are the calling thread's own: one BandedOrder alive per thread at a time.

#include <cstdint>
#include <span>
#include <vector>

namespace dsv3::engine {

class BandedOrder {
 public:
  // `max_l` is the largest entry of `l`; temperature > 0.
  BandedOrder(std::span<const float> l, float max_l, double temperature);
  BandedOrder(const BandedOrder&) = delete;
  BandedOrder& operator=(const BandedOrder&) = delete;

  // Finite tokens (-inf and NaN are in no band).
  int64_t size() const { return size_; }
  // The unnormalised probability of token t: exp((l[t] - max_l) / temperature).
  double Prob(int32_t t) const;
  // The token at position i of the order (-1 when i >= size()).
  int32_t At(int64_t i);

  // Walks positions 0.. of the order, cum the sum of Prob over the positions before, and
  // returns the first position i < limit where stop(cum + Prob(token i), Prob(token i)) holds,
  // or min(limit, size()) when none does. *cum_before: cum at that position. `stop` must be
  // monotone along the order (false, then true: a function of the growing cum or of the
  // falling probability), so that a band where it holds nowhere is passed by its mass alone.
  template <typename Stop>
  int64_t Walk(int64_t limit, Stop stop, double* cum_before);

 private:
  struct Band {
    int64_t begin = 0;  // positions [begin, end) of the order
    int64_t end = 0;
    double mass = 0.0;
    double min_prob = 0.0;
    float min_l = 0.0f;  // the band's smallest and largest logits
    float max_l = 0.0f;
    bool sorted = false;
  };
  static constexpr int kLastBand = 63;      // everything e^63 or more below the largest
  static constexpr int64_t kSortMax = 256;  // a bigger band is split before it is sorted
  static constexpr int kSplit = 64;
  // Gathers the next non-empty band; false when every band is gathered.
  bool GatherNext();
  // The band's mass, least probability and smallest and largest logits.
  void Measure(Band& band) const;
  // Band j (unsorted, more than kSortMax tokens) replaced by up to kSplit narrower bands in
  // order; false when its tokens all have one logit (then it sorts by id alone).
  bool Split(size_t j);
  void Sort(Band& band);

  std::span<const float> l_;
  double max_l_;
  double temperature_;
  std::vector<uint8_t>& band_of_;
  std::vector<int32_t>& ids_;
  std::vector<Band> bands_;
  int64_t size_ = 0;
  int next_band_ = 0;
};

template <typename Stop>
int64_t BandedOrder::Walk(int64_t limit, Stop stop, double* cum_before) {
  double cum = 0.0;
  int64_t pos = 0;
  for (size_t j = 0; pos < limit; ++j) {
    if (j == bands_.size() && !GatherNext()) break;
    const Band& band = bands_[j];
    if (band.end <= limit && !stop(cum + band.mass, band.min_prob)) {
      cum += band.mass;
      pos = band.end;
      continue;
    }
    if (!band.sorted && band.end - band.begin > kSortMax && Split(j)) {
      --j;  // the same position again: now the first of the narrower bands
      continue;
    }
    Sort(bands_[j]);
    const int64_t end = bands_[j].end;
    for (; pos < end && pos < limit; ++pos) {
      const double p = Prob(ids_[static_cast<size_t>(pos)]);
      if (stop(cum + p, p)) {
        *cum_before = cum;
        return pos;
      }
      cum += p;
    }
  }
  *cum_before = cum;
  return pos;
}

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_BANDED_ORDER_H_
