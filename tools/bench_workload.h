#ifndef DSV3_TOOLS_BENCH_WORKLOAD_H_
#define DSV3_TOOLS_BENCH_WORKLOAD_H_

// What `dsv3 bench` sends: synthetic prompts of random token ids (repeatable for a seed) or
// the lines of a JSONL dataset.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv3::tools::bench {

// One request of a synthetic or dataset workload.
struct Prompt {
  std::string text;                // when non-empty: a text prompt
  std::vector<int32_t> token_ids;  // otherwise: ids
  int max_tokens = 0;
};

// Reads a JSONL file of {"prompt": "..." | "token_ids": [...], "max_tokens": N} lines;
// INVALID_ARGUMENT naming file:line for a malformed one.
absl::StatusOr<std::vector<Prompt>> ReadDataset(const std::string& path, int default_max_tokens);

class Workload {
 public:
  Workload(std::vector<Prompt> dataset, int prompt_tokens, int output_tokens, int token_min,
           int token_max, uint64_t seed)
      : dataset_(std::move(dataset)),
        prompt_tokens_(prompt_tokens),
        output_tokens_(output_tokens),
        token_min_(token_min),
        token_max_(token_max),
        seed_(seed) {}

  Prompt Get(int64_t index) const {
    if (!dataset_.empty()) return dataset_[static_cast<size_t>(index) % dataset_.size()];
    Prompt p;
    p.max_tokens = output_tokens_;
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(index));
    std::uniform_int_distribution<int32_t> id(token_min_, token_max_);
    for (int i = 0; i < prompt_tokens_; ++i) p.token_ids.push_back(id(rng));
    return p;
  }

 private:
  std::vector<Prompt> dataset_;
  int prompt_tokens_, output_tokens_, token_min_, token_max_;
  uint64_t seed_;
};

}  // namespace dsv3::tools::bench

#endif  // DSV3_TOOLS_BENCH_WORKLOAD_H_
