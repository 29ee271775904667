#ifndef DSV3_TOOLS_BENCH_MULTI_TURN_H_
#define DSV3_TOOLS_BENCH_MULTI_TURN_H_

// `dsv3 bench --bench_conversations N`: multi-turn chats, the workload prefix caching is for.
// Every conversation starts with the same system prompt and its own first user message;
// each later turn sends the whole history (the previous prompt, the answer the cluster gave,
// and a new user message). Conversations are interleaved across the concurrent clients: a
// client takes the conversation that has waited longest for its next turn.
//
// Besides the usual figures it reports TTFT by turn number and the prompt-token hit rate
// (cached prompt tokens the cluster reports / prompt tokens) beside the ideal one: the
// tokens of each prompt that the cluster had already computed somewhere (a whole-block
// prefix of an earlier prompt plus its answer), counted in whole blocks as a cache can.

#include <cstdint>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "tools/bench_report.h"

namespace dsv3::tools::bench {

struct MultiTurnOptions {
  int conversations = 0;
  int turns = 1;
  int system_tokens = 0;  // shared by every conversation
  int user_tokens = 64;   // each user message
  int block_size = 64;    // the workers' --kv_block_size, for the ideal hit rate
  int token_min = 0, token_max = 0;
  uint64_t seed = 0;
};

// The conversations and their histories. Thread-safe.
class Conversations {
 public:
  explicit Conversations(MultiTurnOptions options);

  struct Turn {
    int conversation = -1;
    int turn = 0;  // 0-based
    std::vector<int32_t> prompt;
    int ideal_cached_tokens = 0;
  };
  // The next turn of the conversation that has waited longest; conversation -1 when none
  // is ready (all in flight or done).
  Turn Next();
  // The turn ended with `answer` (empty when it failed): the conversation's next prompt is
  // its history plus the answer plus a new user message.
  void Done(const Turn& turn, const std::vector<int32_t>& answer);
  int64_t total_turns() const {
    return static_cast<int64_t>(options_.conversations) * options_.turns;
  }

 private:
  std::vector<int32_t> UserMessage(int conversation, int turn) const;
  std::vector<uint64_t> BlockNames(const std::vector<int32_t>& tokens) const;

  const MultiTurnOptions options_;
  absl::Mutex mu_;
  std::vector<std::vector<int32_t>> history_ ABSL_GUARDED_BY(mu_);
  std::vector<int> next_turn_ ABSL_GUARDED_BY(mu_);
  std::deque<int> ready_ ABSL_GUARDED_BY(mu_);
  // Names of every whole block any finished turn computed (prompt and answer).
  absl::flat_hash_set<uint64_t> computed_ ABSL_GUARDED_BY(mu_);
};

// The multi-turn section of the report: TTFT by turn, hit rates. Appends to the table.
nlohmann::json MultiTurnReport(const std::vector<Result>& results, const MultiTurnOptions& options,
                               std::string* table);

}  // namespace dsv3::tools::bench

#endif  // DSV3_TOOLS_BENCH_MULTI_TURN_H_
