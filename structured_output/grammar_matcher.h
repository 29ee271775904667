#ifndef DSV3_STRUCTURED_OUTPUT_GRAMMAR_MATCHER_H_
#define DSV3_STRUCTURED_OUTPUT_GRAMMAR_MATCHER_H_

// Matching output bytes against a dsv3.v1.Grammar, one byte at a time, with no lookahead:
// the grammar's alternatives are told apart by their next byte (a repetition or an optional
// part goes on while the next byte can continue it). The state is a small stack of frames,
// cheap to copy, so the token mask (grammar_constraint.h) walks the vocabulary's byte trie
// with one state per trie depth. A grammar from the wire is checked when compiled
// (grammar_compile.cc: indices, prefix-free keys, disjoint alternatives, every node able
// to end) before anything matches it.

#include <algorithm>
#include <array>
#include <bitset>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "dsv3/v1/common.pb.h"

namespace dsv3::structured_output {

// Where a match is inside one node. Plain data (hashed as bytes for the mask cache): every
// field is set, padding included.
struct Frame {
  int32_t node = 0;
  uint8_t phase = 0;
  uint8_t flag = 0;
  uint16_t unused = 0;
  int32_t pos = 0;
  int32_t count = 0;
  uint64_t bits = 0;
};
static_assert(sizeof(Frame) == 24);

struct MatchState {
  // The innermost node last. Empty: the whole output matched and nothing may follow.
  absl::InlinedVector<Frame, 8> stack;
};

class CompiledGrammar {
 public:
  // INVALID_ARGUMENT naming the node and the rule it breaks.
  static absl::StatusOr<std::shared_ptr<const CompiledGrammar>> Compile(const v1::Grammar& grammar);

  MatchState Start() const;
  // Consumes one byte; false (and `state` unspecified) when the grammar does not allow it.
  bool Advance(MatchState& state, uint8_t byte) const;
  // Whether the output may end here.
  bool CanEnd(const MatchState& state) const;
  // The fewest bytes that complete the output from here.
  int64_t MinRemainingBytes(const MatchState& state) const;
  // A key equal for states no token of at most `longest_token` bytes can tell apart (the
  // token mask cache's): counts that are far from every bound they are checked against
  // are folded (a string's length far from its minimum and maximum, an unbounded
  // repetition past its minimum), so a long free string is one state, not one per byte.
  std::string MaskKey(const MatchState& state, int64_t longest_token) const;

  // Deepest nesting a match may reach (deeper input is refused, not stored).
  static constexpr size_t kMaxDepth = 48;

 private:
  enum class Kind : uint8_t {
    kLiterals,
    kSequence,
    kChoice,
    kBranch,
    kRepeat,
    kObject,
    kString,
    kInteger,
    kNumber
  };
  struct Node {
    Kind kind = Kind::kLiterals;
    std::vector<std::string> literals;  // values, branch keys, object keys
    std::vector<int32_t> children;      // sequence, choice, branch next, object values
    std::vector<uint8_t> required;      // object
    int32_t item = -1;                  // repeat item; object: the value of any key
    int32_t separator = -1;             // repeat: a literals node
    bool has_min = false, has_max = false;
    int64_t min = 0, max = 0;  // repeat counts, string lengths, integer bounds
    // Object: fewest bytes of the required properties from index i on, and their count.
    std::vector<int64_t> required_bytes;
    std::vector<int32_t> required_count;
    std::array<int8_t, 256> dispatch{};  // choice: byte -> alternative, -1 none
    std::bitset<256> first;
    bool nullable = false;
    int64_t min_length = 0;
  };
  enum class Step { kConsumed, kConsumedDone, kRetry, kDone, kReject };
  // Byte counts saturate here: "cannot end" (and no overflow on long repetitions).
  static constexpr int64_t kUnreachable = std::numeric_limits<int64_t>::max() / 4;
  static int64_t SaturatingAdd(int64_t a, int64_t b) { return std::min(kUnreachable, a + b); }
  // Overflow-checked: a count of 24 times an unreachable item once overflowed (fuzzer).
  static int64_t SaturatingMul(int64_t a, int64_t b) {
    int64_t product;
    if (a == 0 || b == 0) return 0;
    if (__builtin_mul_overflow(a, b, &product)) return kUnreachable;
    return std::min(kUnreachable, product);
  }

  CompiledGrammar() = default;
  absl::Status Build(const v1::Grammar& grammar);
  absl::Status Analyze();
  bool Push(MatchState& state, int32_t node) const;
  Step StepFrame(MatchState& state, uint8_t byte) const;
  Step StepObject(MatchState& state, Frame& f, const Node& n, uint8_t byte) const;
  Step StepString(Frame& f, const Node& n, uint8_t byte) const;
  Step StepInteger(Frame& f, const Node& n, uint8_t byte) const;
  Step StepNumber(Frame& f, uint8_t byte) const;
  bool FrameCanEnd(const Frame& f) const;
  int64_t FrameMinBytes(const Frame& f) const;
  bool IntegerInRange(const Node& n, bool negative, uint64_t magnitude) const;
  // Whether appending digits to `magnitude` can reach a value in range (0 extra digits
  // included); the fewest digits that do, or -1.
  int IntegerDigitsToRange(const Node& n, bool negative, uint64_t magnitude, int digits) const;

  std::vector<Node> nodes_;
  int32_t root_ = 0;
  int32_t key_string_ = -1;  // a plain string node for the keys of free-form objects
};

}  // namespace dsv3::structured_output

#endif  // DSV3_STRUCTURED_OUTPUT_GRAMMAR_MATCHER_H_
