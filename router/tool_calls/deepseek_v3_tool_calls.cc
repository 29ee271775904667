// DeepSeek-V3's tool-call format, as its chat template renders an assistant turn that
// calls tools (tokenizer_config.json of deepseek-ai/DeepSeek-V3):
//
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
//   ```json
//   ARGUMENTS
//   ```<｜tool▁call▁end｜>
//   <｜tool▁call▁begin｜>...<｜tool▁call▁end｜><｜tool▁calls▁end｜>
//
// (calls separated by a newline; the markers are single tokens of the vocabulary).

#include "router/tool_calls/deepseek_v3_tool_calls.h"

#include <algorithm>
#include <random>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "router/text_markers.h"
#include "structured_output/grammar_builder.h"

namespace dsv3::router {
namespace {

constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kCallBegin = "<｜tool▁call▁begin｜>";
constexpr std::string_view kCallEnd = "<｜tool▁call▁end｜>";
constexpr std::string_view kSep = "<｜tool▁sep｜>";
constexpr std::string_view kFenceOpen = "```json\n";
constexpr std::string_view kFenceClose = "\n```";

// (Debian's Abseil has its own string_view, which absl::StrCat does not take from std's.)
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out.append(p);
  return out;
}

std::string NewCallId() {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id.push_back(kAlphabet[rng() % (sizeof(kAlphabet) - 1)]);
  return id;
}

class DeepSeekV3Parser : public ToolCallParser {
 public:
  Delta Add(absl::string_view text, bool final) override {
    pending_.append(text.data(), text.size());
    Delta out;
    while (Step(out, final)) {
    }
    return out;
  }
  int calls() const override { return calls_; }

 private:
  enum class State { kContent, kBetweenCalls, kHeader, kFence, kArguments, kDone };

  // Handles what it can of pending_; true when it made progress and may make more.
  bool Step(Delta& out, bool final) {
    switch (state_) {
      case State::kContent: {
        const size_t at = pending_.find(kCallsBegin);
        if (at != std::string::npos) {
          out.content.append(pending_, 0, at);
          pending_.erase(0, at + kCallsBegin.size());
          state_ = State::kBetweenCalls;
          return true;
        }
        const size_t keep = final ? 0 : PartialMarkerSuffix(pending_, kCallsBegin);
        out.content.append(pending_, 0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return false;
      }
      case State::kBetweenCalls: {
        const size_t start = pending_.find_first_not_of(" \n");
        pending_.erase(0, start == std::string::npos ? pending_.size() : start);
        if (std::string_view(pending_).starts_with(kCallBegin)) {
          pending_.erase(0, kCallBegin.size());
          state_ = State::kHeader;
          return true;
        }
        if (std::string_view(pending_).starts_with(kCallsEnd)) {
          pending_.erase(0, kCallsEnd.size());
          state_ = State::kDone;
          return true;
        }
        const bool partial = kCallBegin.starts_with(pending_) || kCallsEnd.starts_with(pending_);
        if (pending_.empty() || (partial && !final)) return false;
        state_ = State::kDone;  // not the format: the rest is content
        return true;
      }
      case State::kHeader: {
        // TYPE<｜tool▁sep｜>NAME\n
        const size_t sep = pending_.find(kSep);
        const size_t newline =
            sep == std::string::npos ? std::string::npos : pending_.find('\n', sep);
        if (newline == std::string::npos) {
          if (final) state_ = State::kDone;
          return final;
        }
        v1::ToolCallDelta call;
        call.set_index(calls_++);
        call.set_id(NewCallId());
        call.set_type("function");
        call.set_function_name(pending_.substr(sep + kSep.size(), newline - sep - kSep.size()));
        out.calls.push_back(std::move(call));
        pending_.erase(0, newline + 1);
        state_ = State::kFence;
        return true;
      }
      case State::kFence:
        if (std::string_view(pending_).starts_with(kFenceOpen)) {
          pending_.erase(0, kFenceOpen.size());
        } else if (kFenceOpen.starts_with(pending_) && !final) {
          return false;  // may still be the fence
        }
        state_ = State::kArguments;
        return true;
      case State::kArguments: {
        const size_t end = pending_.find(kCallEnd);
        size_t take = end;
        if (end == std::string::npos) {
          // Hold back what may be the start of "\n```<｜tool▁call▁end｜>".
          const std::string closing = Cat({kFenceClose, kCallEnd});
          take = final ? pending_.size()
                       : pending_.size() - std::max(PartialMarkerSuffix(pending_, closing),
                                                    PartialMarkerSuffix(pending_, kCallEnd));
        } else if (std::string_view(pending_).substr(0, end).ends_with(kFenceClose)) {
          take = end - kFenceClose.size();
        }
        if (take > 0) Arguments(out).append(pending_, 0, take);
        if (end == std::string::npos) {
          pending_.erase(0, take);
          return false;
        }
        pending_.erase(0, end + kCallEnd.size());
        state_ = State::kBetweenCalls;
        return true;
      }
      case State::kDone: {
        // After the calls: nothing is expected; keep anything else as content.
        const size_t start = pending_.find_first_not_of(" \n");
        if (start != std::string::npos) out.content.append(pending_, start);
        pending_.clear();
        return false;
      }
    }
    return false;
  }

  // The arguments of the current call in this delta (a new delta entry when needed).
  std::string& Arguments(Delta& out) {
    if (out.calls.empty() || out.calls.back().index() != calls_ - 1) {
      v1::ToolCallDelta more;
      more.set_index(calls_ - 1);
      out.calls.push_back(std::move(more));
    }
    return *out.calls.back().mutable_arguments();
  }

  State state_ = State::kContent;
  std::string pending_;
  int calls_ = 0;
};

class DeepSeekV3Format : public ToolCallFormat {
 public:
  std::string name() const override { return "deepseek_v3"; }

  absl::StatusOr<v1::Grammar> ForcedCallGrammar(const std::vector<v1::Tool>& tools,
                                                const std::string& function,
                                                bool parallel) const override {
    structured_output::GrammarBuilder b;
    std::vector<std::string> keys;
    std::vector<int32_t> next;
    const int32_t call_end = b.Literals({Cat({kFenceClose, kCallEnd})});
    for (const v1::Tool& tool : tools) {
      if (!function.empty() && tool.name() != function) continue;
      if (tool.name().empty() || tool.name().find('\n') != std::string::npos ||
          std::find(keys.begin(), keys.end(), Cat({tool.name(), "\n", kFenceOpen})) != keys.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tool names must be distinct, non-empty and on one line: '", tool.name(), "'"));
      }
      int32_t arguments = -1;
      if (tool.parameters_json().empty()) {
        arguments = b.AnyObject();
      } else {
        nlohmann::ordered_json schema =
            nlohmann::ordered_json::parse(tool.parameters_json(), nullptr, false);
        if (schema.is_discarded()) {
          return absl::InvalidArgumentError(
              absl::StrCat("tool '", tool.name(), "': its parameters are not valid JSON"));
        }
        absl::StatusOr<int32_t> node = b.JsonSchema(schema);
        if (!node.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("tool '", tool.name(), "': ", node.status().message()));
        }
        arguments = *node;
      }
      keys.push_back(Cat({tool.name(), "\n", kFenceOpen}));
      next.push_back(b.Sequence({arguments, call_end}));
    }
    if (keys.empty()) {
      return absl::InvalidArgumentError(
          function.empty()
              ? "tool_choice forces a call, but there are no tools"
              : absl::StrCat("tool_choice names '", function, "', which is not a tool"));
    }
    const int32_t call =
        b.Sequence({b.Literals({Cat({kCallBegin, "function", kSep})}), b.Branch(keys, next)});
    const int32_t turn = b.Sequence({b.Literals({std::string(kCallsBegin)}),
                                     b.Repeat(call, "\n", 1, parallel ? -1 : 1),
                                     b.Literals({std::string(kCallsEnd)})});
    return b.Build(turn);
  }

  std::unique_ptr<ToolCallParser> NewParser() const override {
    return std::make_unique<DeepSeekV3Parser>();
  }
};

}  // namespace

std::unique_ptr<ToolCallFormat> NewDeepSeekV3ToolCalls() {
  return std::make_unique<DeepSeekV3Format>();
}

}  // namespace dsv3::router
