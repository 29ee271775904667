#ifndef DSV3_TESTS_ENGINE_GOLDEN_DATA_H_
#define DSV3_TESTS_ENGINE_GOLDEN_DATA_H_

// Reads the golden cases under tests/data/golden/ (see its README.md).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dsv3::engine::testing {

struct GoldenPrompt {
  std::vector<int32_t> prompt;
  std::vector<float> logits;  // [len, vocab]
  std::vector<int32_t> greedy_tokens;
  std::vector<float> greedy_step_logits;  // [8, vocab]
  std::vector<double> final_hidden_l2;
  std::map<int64_t, std::vector<std::vector<int32_t>>> routing_experts;  // layer -> [len][k]
  std::vector<float> mtp_logits;  // [len - 1, vocab] (tiny-v3-mtp only)
};

struct GoldenCase {
  std::string name;
  std::string dir;
  int64_t vocab = 0;
  std::vector<GoldenPrompt> prompts;
};

std::string GoldenDir(const std::string& name);
// Aborts the test (ADD_FAILURE + empty result) when the files are unreadable.
GoldenCase LoadGolden(const std::string& name);

struct Diff {
  double max_abs_diff = 0;
  double max_abs_ref = 0;
  double relative() const { return max_abs_ref > 0 ? max_abs_diff / max_abs_ref : max_abs_diff; }
};
// Compares `got` to `want` (same size).
Diff Compare(const float* got, const float* want, int64_t n);

// The tolerance: max |d logit| <= 1e-4 * max |logit|.
constexpr double kLogitTolerance = 1e-4;

}  // namespace dsv3::engine::testing

#endif  // DSV3_TESTS_ENGINE_GOLDEN_DATA_H_
