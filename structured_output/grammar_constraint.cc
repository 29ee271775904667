#include "structured_output/grammar_constraint.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv3::structured_output {
namespace {

constexpr size_t kMaxGrammars = 64;           // compiled grammars kept per worker
constexpr size_t kMaxMasksPerGrammar = 1024;  // cached masks per grammar (16 KiB each)

struct Mask {
  std::vector<uint64_t> bits;
  // The most bytes any allowed token leaves to finish (for the room-to-finish check); in
  // the cache, less the state's own (states that share a key share the difference).
  int64_t worst_remaining = 0;
  int64_t allowed = 0;  // tokens set in `bits` (0: the grammar is stuck)
};

// Depth-first over the trie, one matcher state per depth. With `budget` >= 0, a token is
// allowed only when what it leaves can finish within `budget` bytes.
Mask WalkTrie(const CompiledGrammar& grammar, const TokenVocabulary& vocabulary,
              const MatchState& start, int64_t budget) {
  Mask mask;
  mask.bits.assign(static_cast<size_t>((vocabulary.size() + 63) / 64), 0);
  const auto& nodes = vocabulary.nodes();
  const auto& order = vocabulary.token_order();
  std::vector<MatchState> states(1, start);
  struct Visit {
    int32_t node;
    int32_t next_child;
  };
  std::vector<Visit> path = {{0, nodes[0].children_begin}};
  while (!path.empty()) {
    Visit& v = path.back();
    if (v.next_child >= nodes[v.node].children_end) {
      path.pop_back();
      continue;
    }
    const int32_t child = v.next_child++;
    const size_t depth = path.size();
    if (states.size() <= depth) states.resize(depth + 1);
    states[depth] = states[depth - 1];
    if (!grammar.Advance(states[depth], nodes[child].byte)) continue;
    const auto& c = nodes[child];
    if (c.tokens_begin < c.tokens_end) {
      const int64_t remaining = grammar.MinRemainingBytes(states[depth]);
      if (budget < 0 || remaining <= budget) {
        mask.worst_remaining = std::max(mask.worst_remaining, remaining);
        mask.allowed += c.tokens_end - c.tokens_begin;
        for (int32_t k = c.tokens_begin; k < c.tokens_end; ++k) {
          const int32_t id = order[k];
          mask.bits[id / 64] |= uint64_t{1} << (id % 64);
        }
      }
    }
    if (c.children_begin < c.children_end) path.push_back({child, c.children_begin});
  }
  if (grammar.CanEnd(start)) {
    for (int32_t id : vocabulary.end_ids()) mask.bits[id / 64] |= uint64_t{1} << (id % 64);
    mask.allowed += static_cast<int64_t>(vocabulary.end_ids().size());
  }
  return mask;
}

}  // namespace

// --- vocabulary -------------------------------------------------------------------------

TokenVocabulary::TokenVocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids)
    : token_bytes_(std::move(token_bytes)) {
  for (int32_t id : end_ids) {
    if (id >= 0 && id < size()) end_ids_.push_back(id);
  }
  for (int32_t id = 0; id < size(); ++id) {
    if (!token_bytes_[id].empty() && !IsEnd(id)) order_.push_back(id);
    longest_token_ = std::max<int64_t>(longest_token_, token_bytes_[id].size());
  }
  std::sort(order_.begin(), order_.end(), [&](int32_t a, int32_t b) {
    return token_bytes_[a] != token_bytes_[b] ? token_bytes_[a] < token_bytes_[b] : a < b;
  });
  nodes_.emplace_back();
  BuildNode(0, 0, order_.size(), 0);
}

bool TokenVocabulary::IsEnd(int32_t id) const {
  return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

// order_[lo, hi) share their first `depth` bytes (the path to `node`).
void TokenVocabulary::BuildNode(int32_t node, size_t lo, size_t hi, size_t depth) {
  size_t i = lo;
  while (i < hi && token_bytes_[order_[i]].size() == depth) ++i;
  nodes_[node].tokens_begin = static_cast<int32_t>(lo);
  nodes_[node].tokens_end = static_cast<int32_t>(i);
  // The children first (contiguous), then each child's subtree.
  std::vector<std::pair<size_t, size_t>> groups;
  for (size_t start = i; start < hi;) {
    const char b = token_bytes_[order_[start]][depth];
    size_t end = start;
    while (end < hi && token_bytes_[order_[end]][depth] == b) ++end;
    groups.emplace_back(start, end);
    start = end;
  }
  const int32_t first = static_cast<int32_t>(nodes_.size());
  nodes_[node].children_begin = first;
  nodes_[node].children_end = first + static_cast<int32_t>(groups.size());
  for (const auto& [start, end] : groups) {
    TrieNode child;
    child.byte = static_cast<uint8_t>(token_bytes_[order_[start]][depth]);
    nodes_.push_back(child);
  }
  for (size_t k = 0; k < groups.size(); ++k) {
    BuildNode(first + static_cast<int32_t>(k), groups[k].first, groups[k].second, depth + 1);
  }
}

std::shared_ptr<const TokenVocabulary> VocabularyFromTokenizer(
    const tokenizer::Tokenizer& tokenizer, int64_t vocab_size, std::vector<int32_t> end_ids) {
  std::vector<std::string> bytes(static_cast<size_t>(std::max<int64_t>(0, vocab_size)));
  tokenizer::DecodeOptions options;
  options.skip_special_tokens = true;  // BOS, EOS, padding: never inside the output
  for (int32_t id = 0; id < static_cast<int32_t>(bytes.size()) && id < tokenizer.IdLimit(); ++id) {
    absl::StatusOr<absl::string_view> b = tokenizer.TokenBytes(id, options);
    if (b.ok()) bytes[id] = std::string(*b);
  }
  return std::make_shared<const TokenVocabulary>(std::move(bytes), std::move(end_ids));
}

std::vector<uint64_t> ComputeTokenMask(const CompiledGrammar& grammar,
                                       const TokenVocabulary& vocabulary, const MatchState& state) {
  return WalkTrie(grammar, vocabulary, state, -1).bits;
}

// --- constraints --------------------------------------------------------------------------

struct StructuredOutputs::Entry {
  std::shared_ptr<const CompiledGrammar> grammar;
  std::shared_ptr<const TokenVocabulary> vocabulary;
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<const Mask>> masks ABSL_GUARDED_BY(mu);

  // The mask of `state`, and the most bytes an allowed token leaves to finish.
  std::shared_ptr<const Mask> MaskFor(const MatchState& state, int64_t* worst_remaining) {
    const std::string key = grammar->MaskKey(state, vocabulary->longest_token());
    const int64_t own = grammar->MinRemainingBytes(state);
    {
      absl::MutexLock lock(&mu);
      auto it = masks.find(key);
      if (it != masks.end()) {
        *worst_remaining = own + it->second->worst_remaining;
        return it->second;
      }
    }
    Mask walked = WalkTrie(*grammar, *vocabulary, state, -1);
    *worst_remaining = walked.worst_remaining;
    walked.worst_remaining -= own;
    auto mask = std::make_shared<const Mask>(std::move(walked));
    absl::MutexLock lock(&mu);
    if (masks.size() >= kMaxMasksPerGrammar) masks.clear();
    masks.emplace(key, mask);
    return mask;
  }
};

namespace {

class GrammarConstraint : public engine::TokenConstraint {
 public:
  explicit GrammarConstraint(std::shared_ptr<StructuredOutputs::Entry> entry)
      : entry_(std::move(entry)), state_(entry_->grammar->Start()) {}

  absl::Status Mask(std::span<float> logits, int64_t tokens_left) override {
    if (!failure_.ok()) return failure_;
    const TokenVocabulary& vocab = *entry_->vocabulary;
    int64_t worst_remaining = 0;
    std::shared_ptr<const structured_output::Mask> mask = entry_->MaskFor(state_, &worst_remaining);
    // This token and `tokens_left - 1` more: the ones after it must be able to finish.
    const int64_t budget = tokens_left - 1;
    if (worst_remaining > budget && budget >= 0) {
      auto tight = std::make_shared<structured_output::Mask>(
          WalkTrie(*entry_->grammar, vocab, state_, budget));
      if (tight->allowed > 0) mask = std::move(tight);
    }
    if (mask->allowed == 0) {
      return absl::FailedPreconditionError("the structured output's grammar allows no token here");
    }
    const size_t n = std::min(logits.size(), static_cast<size_t>(vocab.size()));
    constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
    for (size_t w = 0; w * 64 < n; ++w) {
      const uint64_t word = mask->bits[w];
      if (word == ~uint64_t{0}) continue;
      const size_t end = std::min(n, (w + 1) * 64);
      if (word == 0) {
        std::fill(logits.begin() + static_cast<std::ptrdiff_t>(w * 64),
                  logits.begin() + static_cast<std::ptrdiff_t>(end), kMinusInf);
        continue;
      }
      for (size_t t = w * 64; t < end; ++t) {
        if (((word >> (t % 64)) & 1) == 0) logits[t] = kMinusInf;
      }
    }
    for (size_t t = n; t < logits.size(); ++t) logits[t] = kMinusInf;  // beyond the tokenizer
    return absl::OkStatus();
  }

  absl::Status Accept(int32_t token) override {
    if (!failure_.ok()) return failure_;
    const TokenVocabulary& vocab = *entry_->vocabulary;
    bool ok = token >= 0 && token < vocab.size();
    if (ok && vocab.IsEnd(token)) {
      ok = entry_->grammar->CanEnd(state_);
    } else if (ok) {
      const std::string& bytes = vocab.bytes(token);
      ok = !bytes.empty();
      for (size_t i = 0; ok && i < bytes.size(); ++i) {
        ok = entry_->grammar->Advance(state_, static_cast<uint8_t>(bytes[i]));
      }
    }
    if (!ok) {
      failure_ = absl::InvalidArgumentError(
          absl::StrCat("token ", token, " does not follow the structured output's grammar"));
    }
    return failure_;
  }

 private:
  std::shared_ptr<StructuredOutputs::Entry> entry_;
  MatchState state_;
  absl::Status failure_;
};

}  // namespace

StructuredOutputs::StructuredOutputs(std::shared_ptr<const TokenVocabulary> vocabulary)
    : vocabulary_(std::move(vocabulary)) {}

absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> StructuredOutputs::NewConstraint(
    const v1::Grammar& grammar) {
  std::string key = grammar.SerializeAsString();
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = grammars_.find(key);
    if (it != grammars_.end()) entry = it->second;
  }
  if (entry == nullptr) {
    DSV3_ASSIGN_OR_RETURN(std::shared_ptr<const CompiledGrammar> compiled,
                          CompiledGrammar::Compile(grammar));
    entry = std::make_shared<Entry>();
    entry->grammar = std::move(compiled);
    entry->vocabulary = vocabulary_;
    absl::MutexLock lock(&mu_);
    if (grammars_.size() >= kMaxGrammars) grammars_.clear();
    grammars_.emplace(std::move(key), entry);
  }
  return std::unique_ptr<engine::TokenConstraint>(new GrammarConstraint(std::move(entry)));
}

}  // namespace dsv3::structured_output
