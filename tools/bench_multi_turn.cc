#include "tools/bench_multi_turn.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/kv_block_hash.h"

namespace dsv3::tools::bench {

Conversations::Conversations(MultiTurnOptions options) : options_(options) {
  std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull + 17);
  std::uniform_int_distribution<int32_t> id(options_.token_min, options_.token_max);
  std::vector<int32_t> system(static_cast<size_t>(options_.system_tokens));
  for (int32_t& t : system) t = id(rng);
  absl::MutexLock lock(&mu_);
  for (int c = 0; c < options_.conversations; ++c) {
    std::vector<int32_t> h = system;
    const std::vector<int32_t> first = UserMessage(c, 0);
    h.insert(h.end(), first.begin(), first.end());
    history_.push_back(std::move(h));
    next_turn_.push_back(0);
    ready_.push_back(c);
  }
}

std::vector<int32_t> Conversations::UserMessage(int conversation, int turn) const {
  std::mt19937_64 rng(options_.seed * 0x9E3779B97F4A7C15ull +
                      static_cast<uint64_t>(conversation) * 1000003ull +
                      static_cast<uint64_t>(turn) + 1);
  std::uniform_int_distribution<int32_t> id(options_.token_min, options_.token_max);
  std::vector<int32_t> out(static_cast<size_t>(options_.user_tokens));
  for (int32_t& t : out) t = id(rng);
  return out;
}

std::vector<uint64_t> Conversations::BlockNames(const std::vector<int32_t>& tokens) const {
  KvCacheIdentity identity;
  identity.block_size = options_.block_size;
  return KvBlockHashes(identity, tokens);
}

Conversations::Turn Conversations::Next() {
  absl::MutexLock lock(&mu_);
  Turn t;
  if (ready_.empty()) return t;
  t.conversation = ready_.front();
  ready_.pop_front();
  t.turn = next_turn_[static_cast<size_t>(t.conversation)];
  t.prompt = history_[static_cast<size_t>(t.conversation)];
  // Whole blocks computed before, never the last token (its logits give the first new one).
  const std::vector<uint64_t> names = BlockNames(t.prompt);
  const int64_t usable = (static_cast<int64_t>(t.prompt.size()) - 1) / options_.block_size;
  int64_t hit = 0;
  while (hit < usable && hit < static_cast<int64_t>(names.size()) &&
         computed_.contains(names[static_cast<size_t>(hit)])) {
    ++hit;
  }
  t.ideal_cached_tokens = static_cast<int>(hit * options_.block_size);
  return t;
}

void Conversations::Done(const Turn& turn, const std::vector<int32_t>& answer) {
  std::vector<int32_t> computed = turn.prompt;
  computed.insert(computed.end(), answer.begin(), answer.end());
  const std::vector<uint64_t> names = BlockNames(computed);
  const std::vector<int32_t> next_user = UserMessage(turn.conversation, turn.turn + 1);
  absl::MutexLock lock(&mu_);
  computed_.insert(names.begin(), names.end());
  const size_t c = static_cast<size_t>(turn.conversation);
  history_[c] = std::move(computed);
  history_[c].insert(history_[c].end(), next_user.begin(), next_user.end());
  if (++next_turn_[c] < options_.turns) ready_.push_back(turn.conversation);
}

namespace {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace

nlohmann::json MultiTurnReport(const std::vector<Result>& results, const MultiTurnOptions& options,
                               std::string* table) {
  std::map<int, std::vector<double>> ttft_by_turn;
  int64_t prompt = 0, cached = 0, ideal = 0;
  for (const Result& r : results) {
    if (r.code != grpc::StatusCode::OK) continue;
    ttft_by_turn[r.turn].push_back(r.ttft);
    prompt += r.prompt_tokens;
    cached += r.cached_prompt_tokens;
    ideal += r.ideal_cached_tokens;
  }
  nlohmann::json j;
  j["conversations"] = options.conversations;
  j["turns"] = options.turns;
  j["system_tokens"] = options.system_tokens;
  j["user_tokens"] = options.user_tokens;
  j["prompt_tokens"] = prompt;
  j["cached_prompt_tokens"] = cached;
  j["ideal_cached_prompt_tokens"] = ideal;
  const double hit = prompt > 0 ? static_cast<double>(cached) / static_cast<double>(prompt) : 0;
  const double ideal_hit =
      prompt > 0 ? static_cast<double>(ideal) / static_cast<double>(prompt) : 0;
  j["hit_rate"] = hit;
  j["ideal_hit_rate"] = ideal_hit;
  j["hit_rate_of_ideal"] = ideal > 0 ? static_cast<double>(cached) / static_cast<double>(ideal) : 0;
  absl::StrAppend(table, "\nmulti-turn: ", options.conversations, " conversations x ",
                  options.turns, " turns, system prompt ", options.system_tokens,
                  " tokens, user messages ", options.user_tokens, " tokens\n");
  absl::StrAppend(table, absl::StrFormat("  prompt-token hit rate %.1f%% (ideal %.1f%%: %.1f%% "
                                         "of the ideal)\n",
                                         hit * 100, ideal_hit * 100,
                                         j["hit_rate_of_ideal"].get<double>() * 100));
  absl::StrAppend(table, "  TTFT by turn (ms):   turn      p50      p99    count\n");
  nlohmann::json by_turn = nlohmann::json::array();
  for (const auto& [turn, v] : ttft_by_turn) {
    const double p50 = Percentile(v, 50) * 1e3, p99 = Percentile(v, 99) * 1e3;
    by_turn.push_back({{"turn", turn + 1}, {"p50_ms", p50}, {"p99_ms", p99}, {"count", v.size()}});
    absl::StrAppend(table, absl::StrFormat("                     %4d %8.1f %8.1f %8d\n", turn + 1,
                                           p50, p99, v.size()));
  }
  j["ttft_by_turn"] = std::move(by_turn);
  return j;
}

}  // namespace dsv3::tools::bench
