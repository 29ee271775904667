#ifndef DSV3_TOKENIZER_BPE_MODEL_H_
#define DSV3_TOKENIZER_BPE_MODEL_H_

// The byte-level BPE model of a tokenizer.json: vocab (token -> id) and ranked merges. Words
// arrive as raw bytes (already split by the pre-tokenizer); each byte starts as the vocab id
// of its byte-level character and adjacent pairs merge lowest rank first, leftmost first on
// ties, as Hugging Face `tokenizers` does. Results for short words are memoised in a
// thread-safe cache.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace dsv3::tokenizer {

class BpeModel {
 public:
  // Parses `model` (the "model" object of tokenizer.json). Only byte-level BPE without
  // dropout, subword prefixes/suffixes is implemented; anything else is UNIMPLEMENTED.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(
      const nlohmann::json& model);

  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized word given as raw bytes.
  void EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const;

  // Vocab look-ups; tokens are spelled in the byte-level alphabet.
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // Empty view when `id` has no token in the model's vocab.
  absl::string_view IdToToken(int32_t id) const;
  // One past the largest id of the vocab.
  int32_t IdLimit() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  BpeModel() = default;
  absl::Status AddMerge(absl::string_view left, absl::string_view right, int32_t rank);
  void Merge(absl::string_view word, std::vector<int32_t>* ids) const;

  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  absl::flat_hash_map<uint64_t, MergeTarget> merges_;
  std::array<int32_t, 256> byte_ids_{};
  bool ignore_merges_ = false;

  // Memo of word -> ids, sharded to keep lock hold times and contention small.
  using CachedIds = absl::InlinedVector<int32_t, 6>;
  struct CacheShard {
    mutable absl::Mutex mu;
    absl::flat_hash_map<std::string, CachedIds> words ABSL_GUARDED_BY(mu);
  };
  static constexpr int kCacheShards = 16;
  static constexpr size_t kCacheWordsPerShard = 1 << 14;
  static constexpr size_t kMaxCachedWordBytes = 64;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace dsv3::tokenizer

#endif  // DSV3_TOKENIZER_BPE_MODEL_H_
