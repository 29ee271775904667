// Compiling a wire grammar (dsv3.v1.Grammar) for matching: every node checked, then the
// first bytes, emptiness and shortest length of each, to a fixed point.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "structured_output/grammar_matcher.h"

namespace dsv3::structured_output {
namespace {

constexpr size_t kMaxNodes = 1 << 16;
constexpr size_t kMaxAlternatives = 64;  // literals, keys, properties: one bit each

absl::Status Bad(size_t node, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("grammar node ", node, ": ", why));
}

// Digits of a non-negative integer.
int64_t Digits(uint64_t v) {
  int64_t d = 1;
  while (v >= 10) v /= 10, ++d;
  return d;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CompiledGrammar>> CompiledGrammar::Compile(
    const v1::Grammar& grammar) {
  std::shared_ptr<CompiledGrammar> g(new CompiledGrammar());
  absl::Status status = g->Build(grammar);
  if (status.ok()) status = g->Analyze();
  if (!status.ok()) return status;
  return std::shared_ptr<const CompiledGrammar>(std::move(g));
}

absl::Status CompiledGrammar::Build(const v1::Grammar& grammar) {
  const size_t count = static_cast<size_t>(grammar.nodes_size());
  if (count == 0 || count > kMaxNodes) {
    return absl::InvalidArgumentError(absl::StrCat("a grammar has 1 to ", kMaxNodes, " nodes"));
  }
  if (grammar.root() < 0 || static_cast<size_t>(grammar.root()) >= count) {
    return absl::InvalidArgumentError("the grammar's root is not one of its nodes");
  }
  root_ = grammar.root();
  auto valid = [&](int64_t i) { return i >= 0 && static_cast<size_t>(i) < count; };
  nodes_.resize(count);
  std::vector<std::pair<size_t, std::string>> separators;
  for (size_t i = 0; i < count; ++i) {
    const v1::GrammarNode& in = grammar.nodes(static_cast<int>(i));
    Node& n = nodes_[i];
    auto set_literals = [&](const auto& values) -> absl::Status {
      if (values.empty() || static_cast<size_t>(values.size()) > kMaxAlternatives) {
        return Bad(i, absl::StrCat("needs 1 to ", kMaxAlternatives, " literals"));
      }
      for (const std::string& v : values) {
        if (v.empty()) return Bad(i, "an empty literal");
        n.literals.push_back(v);
      }
      return absl::OkStatus();
    };
    switch (in.kind_case()) {
      case v1::GrammarNode::kLiterals:
        n.kind = Kind::kLiterals;
        if (auto s = set_literals(in.literals().values()); !s.ok()) return s;
        break;
      case v1::GrammarNode::kSequence:
        n.kind = Kind::kSequence;
        n.children.assign(in.sequence().nodes().begin(), in.sequence().nodes().end());
        break;
      case v1::GrammarNode::kChoice:
        n.kind = Kind::kChoice;
        n.children.assign(in.choice().nodes().begin(), in.choice().nodes().end());
        if (n.children.empty() || n.children.size() > kMaxAlternatives) {
          return Bad(i, "a choice needs 1 to 64 alternatives");
        }
        break;
      case v1::GrammarNode::kBranch: {
        n.kind = Kind::kBranch;
        if (auto s = set_literals(in.branch().keys()); !s.ok()) return s;
        n.children.assign(in.branch().next().begin(), in.branch().next().end());
        if (n.children.size() != n.literals.size()) return Bad(i, "one next node per key");
        for (const std::string& a : n.literals) {
          for (const std::string& b : n.literals) {
            if (&a != &b && b.compare(0, a.size(), a) == 0) {
              return Bad(i, "a branch key is a prefix of another");
            }
          }
        }
        break;
      }
      case v1::GrammarNode::kRepeat: {
        const v1::GrammarRepeat& r = in.repeat();
        n.kind = Kind::kRepeat;
        n.item = r.item();
        n.min = r.min();
        n.has_max = r.has_max();
        n.max = r.max();
        if (!valid(n.item)) return Bad(i, "the repeated item is not a node");
        if (n.min < 0 || (n.has_max && (n.max < n.min || n.max < 1))) {
          return Bad(i, "repeat counts must satisfy 0 <= min <= max, max >= 1");
        }
        // Its separator becomes a node after the wire's (appending now would move `n`).
        if (!r.separator().empty()) separators.emplace_back(i, r.separator());
        break;
      }
      case v1::GrammarNode::kObject: {
        const v1::GrammarObject& o = in.object();
        n.kind = Kind::kObject;
        if (static_cast<size_t>(o.properties_size()) > kMaxAlternatives) {
          return Bad(i, "an object has at most 64 properties");
        }
        for (const auto& p : o.properties()) {
          const std::string& key = p.key();
          if (key.size() < 2 || key.front() != '"' || key.back() != '"') {
            return Bad(i, "an object key must be a JSON string, quotes included");
          }
          if (!valid(p.value())) return Bad(i, "a property's value is not a node");
          n.literals.push_back(key);
          n.children.push_back(p.value());
          n.required.push_back(p.required() ? 1 : 0);
        }
        n.item = o.has_additional() ? o.additional() : -1;
        if (o.has_additional() && (!valid(n.item) || o.properties_size() > 0)) {
          return Bad(i, "`additional` is a node, and only for objects without properties");
        }
        break;
      }
      case v1::GrammarNode::kString:
        n.kind = Kind::kString;
        n.min = in.string().min_length();
        n.has_max = in.string().has_max_length();
        n.max = in.string().max_length();
        if (n.min < 0 || (n.has_max && n.max < n.min)) {
          return Bad(i, "string lengths must satisfy 0 <= min_length <= max_length");
        }
        break;
      case v1::GrammarNode::kInteger:
        n.kind = Kind::kInteger;
        n.has_min = in.integer().has_minimum();
        n.min = in.integer().minimum();
        n.has_max = in.integer().has_maximum();
        n.max = in.integer().maximum();
        if (n.has_min && n.has_max && n.max < n.min) return Bad(i, "integer maximum < minimum");
        break;
      case v1::GrammarNode::kNumber:
        n.kind = Kind::kNumber;
        break;
      default:
        return Bad(i, "no kind set");
    }
    for (int32_t c : n.children) {
      if (!valid(c)) return Bad(i, absl::StrCat("refers to node ", c, ", which does not exist"));
    }
  }
  for (const auto& [repeat, separator] : separators) {
    Node sep;
    sep.kind = Kind::kLiterals;
    sep.literals.push_back(separator);
    nodes_[repeat].separator = static_cast<int32_t>(nodes_.size());
    nodes_.push_back(std::move(sep));
  }
  Node key;
  key.kind = Kind::kString;
  key_string_ = static_cast<int32_t>(nodes_.size());
  nodes_.push_back(std::move(key));
  return absl::OkStatus();
}

// First bytes, nullability and fewest bytes of every node, to a fixed point (the graph may
// be recursive); then the rules that keep matching lookahead-free.
absl::Status CompiledGrammar::Analyze() {
  for (Node& n : nodes_) n.min_length = kUnreachable;
  for (bool changed = true; changed;) {
    changed = false;
    for (Node& n : nodes_) {
      std::bitset<256> first;
      bool nullable = false;
      int64_t min_length = kUnreachable;
      switch (n.kind) {
        case Kind::kLiterals:
          for (const std::string& v : n.literals) {
            first.set(static_cast<uint8_t>(v[0]));
            min_length = std::min<int64_t>(min_length, static_cast<int64_t>(v.size()));
          }
          break;
        case Kind::kSequence:
          nullable = true;
          min_length = 0;
          for (int32_t c : n.children) {
            if (nullable) first |= nodes_[c].first;
            nullable = nullable && nodes_[c].nullable;
            min_length = SaturatingAdd(min_length, nodes_[c].min_length);
          }
          break;
        case Kind::kChoice:
          for (int32_t c : n.children) {
            first |= nodes_[c].first;
            nullable = nullable || nodes_[c].nullable;
            min_length = std::min(min_length, nodes_[c].min_length);
          }
          break;
        case Kind::kBranch:
          for (size_t k = 0; k < n.literals.size(); ++k) {
            first.set(static_cast<uint8_t>(n.literals[k][0]));
            min_length =
                std::min(min_length, SaturatingAdd(static_cast<int64_t>(n.literals[k].size()),
                                                   nodes_[n.children[k]].min_length));
          }
          break;
        case Kind::kRepeat: {
          first = nodes_[n.item].first;
          nullable = n.min == 0;
          const int64_t sep = n.separator >= 0 ? nodes_[n.separator].min_length : 0;
          min_length = n.min == 0 ? 0
                                  : SaturatingAdd(SaturatingMul(n.min, nodes_[n.item].min_length),
                                                  SaturatingMul(n.min - 1, sep));
          break;
        }
        case Kind::kObject: {
          first.set('{');
          const size_t p = n.literals.size();
          n.required_bytes.assign(p + 1, 0);
          n.required_count.assign(p + 1, 0);
          for (size_t k = p; k-- > 0;) {
            n.required_bytes[k] = n.required_bytes[k + 1];
            n.required_count[k] = n.required_count[k + 1];
            if (n.required[k]) {
              n.required_bytes[k] = SaturatingAdd(
                  n.required_bytes[k], SaturatingAdd(static_cast<int64_t>(n.literals[k].size()) + 1,
                                                     nodes_[n.children[k]].min_length));
              ++n.required_count[k];
            }
          }
          min_length = SaturatingAdd(n.required_bytes[0], 2 + std::max(0, n.required_count[0] - 1));
          break;
        }
        case Kind::kString:
          first.set('"');
          min_length = 2 + n.min;
          break;
        case Kind::kInteger:
        case Kind::kNumber: {
          first.set('-');
          for (int d = '0'; d <= '9'; ++d) first.set(d);
          min_length = 1;
          if (n.kind == Kind::kInteger) {
            if (n.has_min && n.min > 0) min_length = Digits(static_cast<uint64_t>(n.min));
            // -(max + 1) + 1 = |max| without overflow at INT64_MIN.
            if (n.has_max && n.max < 0) {
              min_length = 1 + Digits(static_cast<uint64_t>(-(n.max + 1)) + 1);
            }
          }
          break;
        }
      }
      if (first != n.first || nullable != n.nullable || min_length != n.min_length) {
        n.first = first;
        n.nullable = nullable;
        n.min_length = min_length;
        changed = true;
      }
    }
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    if (n.min_length >= kUnreachable) return Bad(i, "can never end (recursion with no way out)");
    if (n.kind == Kind::kChoice) {
      n.dispatch.fill(-1);
      for (size_t k = 0; k < n.children.size(); ++k) {
        const Node& alt = nodes_[n.children[k]];
        if (alt.nullable) return Bad(i, "a choice's alternative may be empty");
        for (int b = 0; b < 256; ++b) {
          if (!alt.first[b]) continue;
          if (n.dispatch[b] >= 0) {
            return Bad(i, "two alternatives of a choice may start with the same byte");
          }
          n.dispatch[b] = static_cast<int8_t>(k);
        }
      }
    }
    if (n.kind == Kind::kRepeat && nodes_[n.item].nullable) {
      return Bad(i, "a repeated item may be empty");
    }
  }
  return absl::OkStatus();
}

}  // namespace dsv3::structured_output
