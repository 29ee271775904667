#ifndef DSV3_STRUCTURED_OUTPUT_GRAMMAR_CONSTRAINT_H_
#define DSV3_STRUCTURED_OUTPUT_GRAMMAR_CONSTRAINT_H_

// Structured output on a worker: a request's grammar (dsv3.v1.Grammar, compiled by the
// router from a JSON schema or a forced tool call) becomes an engine::TokenConstraint that
// masks, at every sampling step, the tokens whose bytes would leave the grammar.
//
// The mask walks the vocabulary's byte trie with the grammar matcher, pruning a subtree at
// the first byte the grammar refuses. Masks are cached per grammar by matcher state: most
// of a JSON output is spent in a few states (inside a string, between digits), so after the
// first request with a schema, most steps cost a lookup and the logits pass. Grammars are
// compiled once per distinct grammar (the cache keys on its bytes).
//
// Room to finish: when few tokens are left (max_tokens), only tokens after which the
// grammar can still be completed within the tokens that remain are allowed, so an output
// cut by max_tokens still parses whenever the budget allows (one byte per token at worst:
// every byte is a token of a byte-level BPE vocabulary).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dsv3/v1/common.pb.h"
#include "engine/token_constraint.h"
#include "structured_output/grammar_matcher.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::structured_output {

// The model's vocabulary as bytes, in a trie.
class TokenVocabulary {
 public:
  // token_bytes[id]: the bytes id decodes to; empty: never allowed in structured output
  // (special tokens, ids the tokenizer lacks). end_ids: the tokens that end the output.
  TokenVocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> end_ids);

  int64_t size() const { return static_cast<int64_t>(token_bytes_.size()); }
  const std::string& bytes(int32_t id) const { return token_bytes_[id]; }
  bool IsEnd(int32_t id) const;
  const std::vector<int32_t>& end_ids() const { return end_ids_; }
  // Bytes of the longest token.
  int64_t longest_token() const { return longest_token_; }

  struct TrieNode {
    uint8_t byte = 0;
    int32_t children_begin = 0, children_end = 0;  // into nodes()
    int32_t tokens_begin = 0, tokens_end = 0;      // into token_order(): ids ending here
  };
  // nodes()[0] is the root (the empty prefix).
  const std::vector<TrieNode>& nodes() const { return nodes_; }
  const std::vector<int32_t>& token_order() const { return order_; }

 private:
  void BuildNode(int32_t node, size_t lo, size_t hi, size_t depth);

  std::vector<std::string> token_bytes_;
  std::vector<int32_t> end_ids_;
  std::vector<int32_t> order_;  // ids with bytes, sorted by bytes
  std::vector<TrieNode> nodes_;
  int64_t longest_token_ = 0;
};

// The vocabulary of a model's tokenizer: ids up to `vocab_size` (the model's; ids beyond
// the tokenizer's get no bytes), special tokens excluded, `end_ids` ending the output.
std::shared_ptr<const TokenVocabulary> VocabularyFromTokenizer(
    const tokenizer::Tokenizer& tokenizer, int64_t vocab_size, std::vector<int32_t> end_ids);

// One worker's structured-output state: the vocabulary, and compiled grammars with their
// mask caches. Thread-safe.
class StructuredOutputs {
 public:
  explicit StructuredOutputs(std::shared_ptr<const TokenVocabulary> vocabulary);

  // A constraint for one request (INVALID_ARGUMENT for a malformed grammar).
  absl::StatusOr<std::unique_ptr<engine::TokenConstraint>> NewConstraint(
      const v1::Grammar& grammar);

  // A grammar and the masks computed for it so far.
  struct Entry;

 private:
  const std::shared_ptr<const TokenVocabulary> vocabulary_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Entry>> grammars_ ABSL_GUARDED_BY(mu_);
};

// The allowed next tokens of `state` (bit t of word t/64), for tests and benchmarks; ignores
// the room to finish.
std::vector<uint64_t> ComputeTokenMask(const CompiledGrammar& grammar,
                                       const TokenVocabulary& vocabulary, const MatchState& state);

}  // namespace dsv3::structured_output

#endif  // DSV3_STRUCTURED_OUTPUT_GRAMMAR_CONSTRAINT_H_
