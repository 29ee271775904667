#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace dsv3::tokenizer {
namespace {

// Words up to this many bytes merge by scanning a rank array (cheap, no heap); longer words
// use a priority queue so a 100 KB "word" stays O(n log n).
constexpr size_t kScanMergeMaxBytes = 48;

struct Symbol {
  int32_t id;
  int32_t prev;  // -1: none
  int32_t next;  // -1: none
};

bool IsNullOrEmpty(const nlohmann::json& v) {
  return v.is_null() || (v.is_string() && v.get_ref<const std::string&>().empty());
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model) {
  try {
    if (!model.is_object())
      return absl::InvalidArgumentError("tokenizer.json: \"model\" is not an object");
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") {
      return absl::UnimplementedError(absl::StrCat("tokenizer.json: model type \"", type,
                                                   "\" is not supported (only byte-level BPE)"));
    }
    if (model.contains("dropout") && !model["dropout"].is_null() &&
        model["dropout"].get<double>() != 0.0) {
      return absl::UnimplementedError("tokenizer.json: BPE dropout is not supported");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(key) && !IsNullOrEmpty(model[key])) {
        return absl::UnimplementedError(
            absl::StrCat("tokenizer.json: BPE option \"", key, "\" is not supported"));
      }
    }
    auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
    bpe->ignore_merges_ = model.value("ignore_merges", false);

    const nlohmann::json& vocab = model.at("vocab");
    if (!vocab.is_object())
      return absl::InvalidArgumentError("tokenizer.json: BPE vocab is not an object");
    bpe->token_to_id_.reserve(vocab.size());
    for (const auto& [token, id_json] : vocab.items()) {
      const int64_t id = id_json.get<int64_t>();
      if (id < 0 || id > INT32_MAX / 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.json: bad id ", id, " for \"", token, "\""));
      }
      if (static_cast<size_t>(id) >= bpe->id_to_token_.size()) bpe->id_to_token_.resize(id + 1);
      bpe->id_to_token_[id] = token;
      bpe->token_to_id_.emplace(token, static_cast<int32_t>(id));
    }

    // Every byte must be a token, or some input could not be encoded at all.
    const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      AppendCodePoint(alphabet.CodePoint(static_cast<uint8_t>(b)), &ch);
      auto it = bpe->token_to_id_.find(ch);
      if (it == bpe->token_to_id_.end()) {
        return absl::UnimplementedError(
            absl::StrCat("tokenizer.json: BPE vocab lacks the byte-level token for byte 0x",
                         absl::Hex(b, absl::kZeroPad2), " (not a byte-level BPE vocab?)"));
      }
      bpe->byte_ids_[b] = it->second;
    }

    const nlohmann::json& merges = model.at("merges");
    bpe->merges_.reserve(merges.size());
    int32_t rank = 0;
    for (const auto& m : merges) {
      absl::Status status;
      if (m.is_string()) {  // "left right"
        const std::string& s = m.get_ref<const std::string&>();
        const size_t space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
          return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: bad merge \"", s, "\""));
        }
        status = bpe->AddMerge(absl::string_view(s).substr(0, space),
                               absl::string_view(s).substr(space + 1), rank);
      } else if (m.is_array() && m.size() == 2) {  // ["left", "right"]
        status = bpe->AddMerge(m[0].get_ref<const std::string&>(),
                               m[1].get_ref<const std::string&>(), rank);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: bad merge ", m.dump()));
      }
      if (!status.ok()) return status;
      ++rank;
    }
    return bpe;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: BPE model: ", e.what()));
  }
}

absl::Status BpeModel::AddMerge(absl::string_view left, absl::string_view right, int32_t rank) {
  auto l = token_to_id_.find(left), r = token_to_id_.find(right);
  auto m = token_to_id_.find(absl::StrCat(left, right));
  if (l == token_to_id_.end() || r == token_to_id_.end() || m == token_to_id_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: merge \"", left, " ", right,
                                                   "\" names a token not in the vocab"));
  }
  // The first (lowest-rank) occurrence of a pair wins, as in `tokenizers`.
  merges_.try_emplace(PairKey(l->second, r->second), MergeTarget{rank, m->second});
  return absl::OkStatus();
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

absl::string_view BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= IdLimit()) return {};
  return id_to_token_[id];
}

void BpeModel::EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    ids->push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    if (auto id = TokenToId(ByteLevelAlphabet::Get().Encode(word))) {
      ids->push_back(*id);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    Merge(word, ids);
    return;
  }
  CacheShard& shard = cache_[absl::Hash<absl::string_view>()(word) % kCacheShards];
  {
    absl::ReaderMutexLock lock(&shard.mu);
    auto it = shard.words.find(word);
    if (it != shard.words.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = ids->size();
  Merge(word, ids);
  CachedIds cached(ids->begin() + start, ids->end());
  absl::MutexLock lock(&shard.mu);
  if (shard.words.size() >= kCacheWordsPerShard) shard.words.clear();
  shard.words.try_emplace(word, std::move(cached));
}

void BpeModel::Merge(absl::string_view word, std::vector<int32_t>* ids) const {
  const int32_t n = static_cast<int32_t>(word.size());
  thread_local std::vector<Symbol> symbols;
  symbols.resize(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  auto pair_target = [&](int32_t i) -> const MergeTarget* {
    if (i < 0 || symbols[i].next < 0) return nullptr;
    auto it = merges_.find(PairKey(symbols[i].id, symbols[symbols[i].next].id));
    return it == merges_.end() ? nullptr : &it->second;
  };
  auto absorb_next = [&](int32_t i, int32_t new_id) {
    const int32_t j = symbols[i].next;
    symbols[i].id = new_id;
    symbols[i].next = symbols[j].next;
    if (symbols[j].next >= 0) symbols[symbols[j].next].prev = i;
  };

  if (static_cast<size_t>(n) <= kScanMergeMaxBytes) {
    // rank[i]: rank of the pair starting at live symbol i (INT_MAX: none).
    thread_local std::vector<int32_t> rank;
    rank.resize(n);
    for (int32_t i = 0; i < n; ++i) {
      const MergeTarget* t = pair_target(i);
      rank[i] = t ? t->rank : INT_MAX;
    }
    for (;;) {
      int32_t best = -1, best_rank = INT_MAX;
      for (int32_t i = 0; i >= 0; i = symbols[i].next) {
        if (rank[i] < best_rank) best_rank = rank[i], best = i;
      }
      if (best < 0) break;
      absorb_next(best, pair_target(best)->id);
      for (int32_t i : {symbols[best].prev, best}) {
        if (i < 0) continue;
        const MergeTarget* t = pair_target(i);
        rank[i] = t ? t->rank : INT_MAX;
      }
    }
  } else {
    // Min-heap of (rank, left symbol); stale entries are skipped when popped.
    thread_local std::vector<std::pair<int32_t, int32_t>> heap;
    heap.clear();
    auto push = [&](int32_t i) {
      if (const MergeTarget* t = pair_target(i)) {
        heap.emplace_back(t->rank, i);
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      }
    };
    for (int32_t i = 0; i < n; ++i) push(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      const auto [r, i] = heap.back();
      heap.pop_back();
      if (symbols[i].id < 0) continue;  // absorbed into its left neighbour
      const MergeTarget* t = pair_target(i);
      if (t == nullptr || t->rank != r) continue;
      const int32_t j = symbols[i].next;
      absorb_next(i, t->id);
      symbols[j].id = -1;
      push(symbols[i].prev);
      push(i);
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace dsv3::tokenizer
