#include "structured_output/grammar_matcher.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace dsv3::structured_output {
namespace {

constexpr int kMaxIntegerDigits = 18;
constexpr int kMaxNumberBytes = 24;
constexpr int kMaxExponentDigits = 3;

// String phases.
constexpr uint8_t kOpen = 0, kText = 1, kEscape = 2, kHex = 3, kUtf8 = 7;
// Object phases.
constexpr uint8_t kBrace = 0, kFirstKey = 1, kInKey = 2, kColon = 3, kValue = 4, kAfterValue = 5,
                  kNextKey = 6;

bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }
bool IsHex(uint8_t c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
uint64_t AllBits(size_t n) { return n >= 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1; }

}  // namespace

MatchState CompiledGrammar::Start() const {
  MatchState state;
  Push(state, root_);
  return state;
}

bool CompiledGrammar::Push(MatchState& state, int32_t node) const {
  if (state.stack.size() >= kMaxDepth) return false;
  Frame f;
  f.node = node;
  const Node& n = nodes_[node];
  if (n.kind == Kind::kLiterals || n.kind == Kind::kBranch) f.bits = AllBits(n.literals.size());
  if (n.kind == Kind::kObject) f.count = -1;  // the last property written
  state.stack.push_back(f);
  return true;
}

bool CompiledGrammar::Advance(MatchState& state, uint8_t byte) const {
  // Each kRetry pushes, replaces or pops a frame; a byte never loops for long.
  for (int guard = 0; guard < 4 * static_cast<int>(kMaxDepth); ++guard) {
    if (state.stack.empty()) return false;
    switch (StepFrame(state, byte)) {
      case Step::kConsumed:
        return true;
      case Step::kConsumedDone:
        state.stack.pop_back();
        return true;
      case Step::kRetry:
        break;
      case Step::kDone:
        state.stack.pop_back();
        break;
      case Step::kReject:
        return false;
    }
  }
  return false;
}

CompiledGrammar::Step CompiledGrammar::StepFrame(MatchState& state, uint8_t byte) const {
  Frame& f = state.stack.back();
  const Node& n = nodes_[f.node];
  switch (n.kind) {
    case Kind::kLiterals:
    case Kind::kBranch: {
      uint64_t next = 0;
      bool ended = false;
      for (uint64_t bits = f.bits; bits != 0; bits &= bits - 1) {
        const int k = __builtin_ctzll(bits);
        const std::string& v = n.literals[k];
        if (static_cast<size_t>(f.pos) < v.size()) {
          if (static_cast<uint8_t>(v[f.pos]) == byte) next |= uint64_t{1} << k;
        } else {
          ended = true;
        }
      }
      if (next == 0) return ended && n.kind == Kind::kLiterals ? Step::kDone : Step::kReject;
      f.bits = next;
      ++f.pos;
      bool all_ended = true;
      for (uint64_t bits = next; bits != 0; bits &= bits - 1) {
        const int k = __builtin_ctzll(bits);
        if (static_cast<size_t>(f.pos) < n.literals[k].size()) {
          all_ended = false;
        } else if (n.kind == Kind::kBranch) {  // keys are prefix-free: this one is chosen
          const int32_t target = n.children[k];
          state.stack.pop_back();
          return Push(state, target) ? Step::kConsumed : Step::kReject;
        }
      }
      return all_ended ? Step::kConsumedDone : Step::kConsumed;
    }
    case Kind::kSequence: {
      if (static_cast<size_t>(f.count) >= n.children.size()) return Step::kDone;
      const int32_t child = n.children[f.count++];
      // The last part replaces the sequence (keeps the stack, and cache keys, short).
      if (static_cast<size_t>(f.count) == n.children.size()) state.stack.pop_back();
      return Push(state, child) ? Step::kRetry : Step::kReject;
    }
    case Kind::kChoice: {
      const int k = n.dispatch[byte];
      if (k < 0) return Step::kReject;
      const int32_t alt = n.children[k];
      state.stack.pop_back();
      return Push(state, alt) ? Step::kRetry : Step::kReject;
    }
    case Kind::kRepeat: {
      const bool room = !n.has_max || f.count < n.max;
      if (f.phase == 1 && n.separator >= 0) {
        if (room && nodes_[n.separator].first[byte]) {
          f.phase = 2;
          return Push(state, n.separator) ? Step::kRetry : Step::kReject;
        }
        return f.count >= n.min ? Step::kDone : Step::kReject;
      }
      if (f.phase == 2 || (room && nodes_[n.item].first[byte])) {
        ++f.count;
        f.phase = 1;
        return Push(state, n.item) ? Step::kRetry : Step::kReject;
      }
      return f.count >= n.min ? Step::kDone : Step::kReject;
    }
    case Kind::kObject:
      return StepObject(state, f, n, byte);
    case Kind::kString:
      return StepString(f, n, byte);
    case Kind::kInteger:
      return StepInteger(f, n, byte);
    case Kind::kNumber:
      return StepNumber(f, byte);
  }
  return Step::kReject;
}

CompiledGrammar::Step CompiledGrammar::StepObject(MatchState& state, Frame& f, const Node& n,
                                                  uint8_t byte) const {
  const size_t props = n.literals.size();
  const bool free_keys = n.item >= 0;
  // Properties after the last one written (f.count) must keep their order; none may be
  // skipped past a required one.
  const size_t next = static_cast<size_t>(f.count + 1);
  const bool required_left = !free_keys && n.required_count[std::min(next, props)] > 0;
  switch (f.phase) {
    case kBrace:
      if (byte != '{') return Step::kReject;
      f.phase = kFirstKey;
      return Step::kConsumed;
    case kFirstKey:
    case kNextKey: {
      if (byte == '}' && f.phase == kFirstKey && !required_left) return Step::kConsumedDone;
      if (byte != '"') return Step::kReject;
      if (free_keys) {
        f.phase = kColon;
        return Push(state, key_string_) ? Step::kRetry : Step::kReject;
      }
      uint64_t candidates = 0;
      for (size_t k = next; k < props; ++k) {
        candidates |= uint64_t{1} << k;
        if (n.required[k]) break;
      }
      if (candidates == 0) return Step::kReject;
      f.bits = candidates;
      f.pos = 1;
      f.phase = kInKey;
      return Step::kConsumed;
    }
    case kInKey: {
      uint64_t alive = 0;
      for (uint64_t bits = f.bits; bits != 0; bits &= bits - 1) {
        const int k = __builtin_ctzll(bits);
        const std::string& key = n.literals[k];
        if (static_cast<size_t>(f.pos) < key.size() && static_cast<uint8_t>(key[f.pos]) == byte) {
          alive |= uint64_t{1} << k;
        }
      }
      if (alive == 0) return Step::kReject;
      f.bits = alive;
      ++f.pos;
      for (uint64_t bits = alive; bits != 0; bits &= bits - 1) {
        const int k = __builtin_ctzll(bits);
        if (static_cast<size_t>(f.pos) == n.literals[k].size()) {  // the closing quote
          f.count = k;
          f.bits = 0;
          f.pos = 0;
          f.phase = kColon;
        }
      }
      return Step::kConsumed;
    }
    case kColon:
      if (byte != ':') return Step::kReject;
      f.phase = kValue;
      return Step::kConsumed;
    case kValue: {
      f.phase = kAfterValue;
      const int32_t value = free_keys ? n.item : n.children[f.count];
      return Push(state, value) ? Step::kRetry : Step::kReject;
    }
    case kAfterValue:
      if (byte == '}' && !required_left) return Step::kConsumedDone;
      if (byte == ',' && (free_keys || next < props)) {
        f.phase = kNextKey;
        return Step::kConsumed;
      }
      return Step::kReject;
  }
  return Step::kReject;
}

CompiledGrammar::Step CompiledGrammar::StepString(Frame& f, const Node& n, uint8_t byte) const {
  if (f.phase == kOpen) {
    if (byte != '"') return Step::kReject;
    f.phase = kText;
    return Step::kConsumed;
  }
  if (f.phase == kText) {
    if (byte == '"') return f.count >= n.min ? Step::kConsumedDone : Step::kReject;
    if (byte < 0x20 || (n.has_max && f.count >= n.max)) return Step::kReject;
    ++f.count;
    if (byte == '\\') {
      f.phase = kEscape;
      return Step::kConsumed;
    }
    if (byte < 0x80) return Step::kConsumed;
    // A UTF-8 lead byte: how many continuation bytes, and the range of the first (no
    // overlong forms, no surrogates, nothing above U+10FFFF).
    uint8_t lo = 0x80, hi = 0xBF;
    int more = 0;
    if (byte >= 0xC2 && byte <= 0xDF) {
      more = 1;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      more = 2;
      if (byte == 0xE0) lo = 0xA0;
      if (byte == 0xED) hi = 0x9F;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      more = 3;
      if (byte == 0xF0) lo = 0x90;
      if (byte == 0xF4) hi = 0x8F;
    } else {
      return Step::kReject;
    }
    f.phase = kUtf8;
    f.pos = more;
    f.bits = (uint64_t{lo} << 8) | hi;
    return Step::kConsumed;
  }
  if (f.phase == kUtf8) {
    if (byte < ((f.bits >> 8) & 0xFF) || byte > (f.bits & 0xFF)) return Step::kReject;
    f.bits = (uint64_t{0x80} << 8) | 0xBF;
    if (--f.pos == 0) f.phase = kText;
    return Step::kConsumed;
  }
  if (f.phase == kEscape) {
    if (byte == 'u') {
      f.phase = kHex;
      f.flag = 0;
      return Step::kConsumed;
    }
    static constexpr absl::string_view kEscapes = "\"\\/bfnrt";
    if (kEscapes.find(static_cast<char>(byte)) == absl::string_view::npos) return Step::kReject;
    f.phase = kText;
    return Step::kConsumed;
  }
  // \uXXXX: no surrogate halves (D800-DFFF), which JSON parsers refuse alone.
  if (!IsHex(byte)) return Step::kReject;
  if (f.phase == kHex) f.flag = (byte == 'd' || byte == 'D') ? 1 : 0;
  if (f.phase == kHex + 1 && f.flag == 1 && !(byte >= '0' && byte <= '7')) return Step::kReject;
  f.phase = f.phase == kHex + 3 ? kText : f.phase + 1;
  return Step::kConsumed;
}

bool CompiledGrammar::IntegerInRange(const Node& n, bool negative, uint64_t magnitude) const {
  const int64_t v = negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
  return (!n.has_min || v >= n.min) && (!n.has_max || v <= n.max);
}

int CompiledGrammar::IntegerDigitsToRange(const Node& n, bool negative, uint64_t magnitude,
                                          int digits) const {
  // Appending k digits gives magnitudes [m*10^k, m*10^k + 10^k - 1] (m = 0: only k = 0).
  __int128 lo = magnitude, span = 1;
  for (int k = 0; digits + k <= kMaxIntegerDigits; ++k, lo *= 10, span *= 10) {
    __int128 a = lo, b = lo + span - 1;
    if (negative) std::swap(a, b), a = -a, b = -b;
    const __int128 min = n.has_min ? n.min : std::numeric_limits<int64_t>::min();
    const __int128 max = n.has_max ? n.max : std::numeric_limits<int64_t>::max();
    if (std::max(a, min) <= std::min(b, max)) return k;
    if (magnitude == 0) break;
  }
  return -1;
}

CompiledGrammar::Step CompiledGrammar::StepInteger(Frame& f, const Node& n, uint8_t byte) const {
  // Phases: 0 start, 1 after '-', 3 digits ("0" ends the number at once). flag: negative.
  if (f.phase == 0 && byte == '-') {
    if (n.has_min && n.min >= 0) return Step::kReject;
    f.phase = 1;
    f.flag = 1;
    return Step::kConsumed;
  }
  if (!IsDigit(byte)) {
    return f.phase == 3 && IntegerInRange(n, f.flag, f.bits) ? Step::kDone : Step::kReject;
  }
  const uint64_t d = byte - '0';
  if (f.phase != 3) {
    if (d == 0) return IntegerInRange(n, f.flag, 0) ? Step::kConsumedDone : Step::kReject;
    if (IntegerDigitsToRange(n, f.flag, d, 1) < 0) return Step::kReject;
    f.phase = 3;
    f.bits = d;
    f.count = 1;
    return Step::kConsumed;
  }
  const uint64_t v = f.bits * 10 + d;
  if (f.count + 1 > kMaxIntegerDigits || IntegerDigitsToRange(n, f.flag, v, f.count + 1) < 0) {
    return Step::kReject;
  }
  f.bits = v;
  ++f.count;
  return Step::kConsumed;
}

CompiledGrammar::Step CompiledGrammar::StepNumber(Frame& f, uint8_t byte) const {
  // Phases: 0 start, 1 after '-', 2 after a leading 0, 3 integer digits, 4 after '.',
  // 5 fraction digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits.
  static constexpr bool kCanEnd[9] = {false, false, true, true, false, true, false, false, true};
  const bool digit = IsDigit(byte);
  int next = -1;
  switch (f.phase) {
    case 0:
      if (byte == '-') next = 1;
      [[fallthrough]];
    case 1:
      if (byte == '0') next = 2;
      if (digit && byte != '0') next = 3;
      break;
    case 3:
      if (digit) next = 3;
      [[fallthrough]];
    case 2:
      if (byte == '.') next = 4;
      [[fallthrough]];
    case 5:
      if (f.phase == 5 && digit) next = 5;
      if (byte == 'e' || byte == 'E') next = 6;
      break;
    case 4:
      if (digit) next = 5;
      break;
    case 6:
      if (byte == '+' || byte == '-') next = 7;
      [[fallthrough]];
    case 7:
    case 8:
      if (digit && (f.phase != 8 || f.pos < kMaxExponentDigits)) next = 8;
      break;
  }
  if (next < 0) return kCanEnd[f.phase] ? Step::kDone : Step::kReject;
  if (f.count >= kMaxNumberBytes) return Step::kReject;
  f.pos = next == 8 ? f.pos + 1 : 0;
  f.phase = static_cast<uint8_t>(next);
  ++f.count;
  return Step::kConsumed;
}

std::string CompiledGrammar::MaskKey(const MatchState& state, int64_t longest_token) const {
  std::string key(state.stack.size() * sizeof(Frame), '\0');
  for (size_t i = 0; i < state.stack.size(); ++i) {
    Frame f = state.stack[i];
    const Node& n = nodes_[f.node];
    if (n.kind == Kind::kString && f.phase != kOpen) {
      // A token adds at most `longest_token` characters.
      const bool far_from_max = !n.has_max || n.max - f.count >= longest_token;
      if (far_from_max && f.count >= n.min) {
        f.count = -1;
      } else if (far_from_max && n.min - f.count >= longest_token) {
        f.count = -2;
      }
    } else if (n.kind == Kind::kRepeat && !n.has_max && f.count >= n.min) {
      f.count = static_cast<int32_t>(n.min);  // past the minimum, the count is never checked
    }
    std::memcpy(key.data() + i * sizeof(Frame), &f, sizeof(Frame));
  }
  return key;
}

bool CompiledGrammar::CanEnd(const MatchState& state) const {
  for (const Frame& f : state.stack) {
    if (!FrameCanEnd(f)) return false;
  }
  return true;
}

bool CompiledGrammar::FrameCanEnd(const Frame& f) const {
  const Node& n = nodes_[f.node];
  switch (n.kind) {
    case Kind::kLiterals:
      for (uint64_t bits = f.bits; bits != 0; bits &= bits - 1) {
        if (static_cast<size_t>(f.pos) == n.literals[__builtin_ctzll(bits)].size()) return true;
      }
      return false;
    case Kind::kSequence:
      for (size_t k = static_cast<size_t>(f.count); k < n.children.size(); ++k) {
        if (!nodes_[n.children[k]].nullable) return false;
      }
      return true;
    case Kind::kRepeat:
      return f.phase != 2 && f.count >= n.min;
    case Kind::kInteger:
      return f.phase == 3 && IntegerInRange(n, f.flag, f.bits);
    case Kind::kNumber:
      return f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8;
    default:
      return n.nullable;
  }
}

int64_t CompiledGrammar::MinRemainingBytes(const MatchState& state) const {
  int64_t total = 0;
  for (const Frame& f : state.stack) total = SaturatingAdd(total, FrameMinBytes(f));
  return total;
}

int64_t CompiledGrammar::FrameMinBytes(const Frame& f) const {
  const Node& n = nodes_[f.node];
  switch (n.kind) {
    case Kind::kLiterals:
    case Kind::kBranch: {
      int64_t best = kUnreachable;
      for (uint64_t bits = f.bits; bits != 0; bits &= bits - 1) {
        const int k = __builtin_ctzll(bits);
        int64_t left = static_cast<int64_t>(n.literals[k].size()) - f.pos;
        if (n.kind == Kind::kBranch) left = SaturatingAdd(left, nodes_[n.children[k]].min_length);
        best = std::min(best, left);
      }
      return best;
    }
    case Kind::kSequence: {
      int64_t total = 0;
      for (size_t k = static_cast<size_t>(f.count); k < n.children.size(); ++k) {
        total = SaturatingAdd(total, nodes_[n.children[k]].min_length);
      }
      return total;
    }
    case Kind::kChoice:
      return n.min_length;
    case Kind::kRepeat: {
      const int64_t item = nodes_[n.item].min_length;
      const int64_t sep = n.separator >= 0 ? nodes_[n.separator].min_length : 0;
      int64_t need = std::max<int64_t>(0, n.min - f.count);
      if (f.phase == 2) need = std::max<int64_t>(need, 1);
      if (need == 0) return 0;
      if (f.phase == 0)
        return SaturatingAdd(SaturatingMul(need, item), SaturatingMul(need - 1, sep));
      if (f.phase == 2)
        return SaturatingAdd(item, SaturatingMul(need - 1, SaturatingAdd(sep, item)));
      return SaturatingMul(need, SaturatingAdd(sep, item));
    }
    case Kind::kObject: {
      if (f.phase == kBrace) return n.min_length;
      const size_t props = n.literals.size();
      const bool free_keys = n.item >= 0;
      const int64_t free_value = free_keys ? nodes_[n.item].min_length : 0;
      auto rest = [&](size_t from, bool comma_before_first) {  // required from `from`, '}'
        const int32_t count = n.required_count[std::min(from, props)];
        const int64_t commas = count == 0 ? 0 : count - (comma_before_first ? 0 : 1);
        return SaturatingAdd(n.required_bytes[std::min(from, props)], commas + 1);
      };
      const size_t next = static_cast<size_t>(f.count + 1);
      switch (f.phase) {
        case kFirstKey:
          return free_keys ? 1 : rest(0, false);
        case kInKey: {
          int64_t best = kUnreachable;
          for (uint64_t bits = f.bits; bits != 0; bits &= bits - 1) {
            const int k = __builtin_ctzll(bits);
            const int64_t key = static_cast<int64_t>(n.literals[k].size()) - f.pos;
            best = std::min(best,
                            SaturatingAdd(SaturatingAdd(key + 1, nodes_[n.children[k]].min_length),
                                          rest(static_cast<size_t>(k) + 1, true)));
          }
          return best;
        }
        case kColon:
          return free_keys ? SaturatingAdd(1 + 1, free_value)
                           : SaturatingAdd(SaturatingAdd(1, nodes_[n.children[f.count]].min_length),
                                           rest(next, true));
        case kValue:
          return free_keys
                     ? SaturatingAdd(1, free_value)
                     : SaturatingAdd(nodes_[n.children[f.count]].min_length, rest(next, true));
        case kAfterValue:
          return free_keys ? 1 : rest(next, true);
        case kNextKey: {
          if (free_keys) return SaturatingAdd(2 + 1 + 1, free_value);
          int64_t best = kUnreachable;
          for (size_t k = next; k < props; ++k) {
            best = std::min(
                best, SaturatingAdd(SaturatingAdd(static_cast<int64_t>(n.literals[k].size()) + 1,
                                                  nodes_[n.children[k]].min_length),
                                    rest(k + 1, true)));
            if (n.required[k]) break;
          }
          return best;
        }
      }
      return kUnreachable;
    }
    case Kind::kString: {
      if (f.phase == kOpen) return n.min_length;
      const int64_t chars = std::max<int64_t>(0, n.min - f.count) + 1;
      if (f.phase == kText) return chars;
      if (f.phase == kEscape) return 1 + chars;
      if (f.phase == kUtf8) return f.pos + chars;
      return (kHex + 4 - f.phase) + chars;
    }
    case Kind::kInteger: {
      if (f.phase == 0) return n.min_length;
      if (f.phase == 1) return n.has_max && n.max < 0 ? n.min_length - 1 : 1;
      const int k = IntegerDigitsToRange(n, f.flag, f.bits, f.count);
      return k < 0 ? kUnreachable : k;
    }
    case Kind::kNumber:
      return (f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8) ? 0 : 1;
  }
  return kUnreachable;
}

}  // namespace dsv3::structured_output
