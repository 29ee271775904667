// The parsers that turn a completion's text into OpenAI's fields: DeepSeek-V3 tool calls and
// DeepSeek-R1 reasoning. The text they parse is what DeepSeek-V3's own chat template writes
// for an assistant turn that calls tools (rendered here by the real template), and they give
// the same result whatever the stream's chunking: every split point, and byte by byte.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/prompt_encoder.h"
#include "router/reasoning/reasoning_parser.h"
#include "router/tool_calls/tool_call_format.h"
#include "structured_output/grammar_matcher.h"
#include "tests/tokenizer/deepseek_tokenizer.h"

namespace dsv3::router {
namespace {

struct Parsed {
  std::string content;
  std::vector<v1::ToolCallDelta> calls;  // merged: one per call
  int headers = 0;                       // deltas that named a call
};

Parsed ParseInChunks(const ToolCallFormat& format, const std::vector<std::string>& chunks) {
  Parsed out;
  auto parser = format.NewParser();
  for (size_t i = 0; i < chunks.size(); ++i) {
    ToolCallParser::Delta d = parser->Add(chunks[i], i + 1 == chunks.size());
    out.content += d.content;
    for (const v1::ToolCallDelta& c : d.calls) {
      if (!c.id().empty()) {
        ++out.headers;
        EXPECT_EQ(c.index(), static_cast<int>(out.calls.size()));
        out.calls.push_back(c);
      } else {
        EXPECT_FALSE(out.calls.empty());
        if (out.calls.empty()) continue;
        EXPECT_EQ(c.index(), static_cast<int>(out.calls.size()) - 1);
        out.calls.back().mutable_arguments()->append(c.arguments());
      }
    }
  }
  return out;
}

// The ways a stream may cut `text`: whole, at every point in two, byte by byte.
std::vector<std::vector<std::string>> Chunkings(const std::string& text) {
  std::vector<std::vector<std::string>> all = {{text}};
  for (size_t cut = 1; cut < text.size(); ++cut) {
    all.push_back({text.substr(0, cut), text.substr(cut)});
  }
  std::vector<std::string> bytes;
  for (char c : text) bytes.push_back(std::string(1, c));
  all.push_back(bytes);
  return all;
}

// What DeepSeek-V3's chat template renders for an assistant turn calling two tools.
std::string TemplateToolTurn() {
  const tokenizer::Tokenizer* t = tokenizer::testing::DeepSeekTokenizer();
  if (t == nullptr) return "";
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> own =
      tokenizer::Tokenizer::Load(tokenizer::testing::DeepSeekTokenizerDir());
  EXPECT_TRUE(own.ok());
  PromptEncoder encoder(std::move(*own));
  v1::ChatPrompt chat;
  chat.set_add_generation_prompt(false);
  v1::ChatMessage* user = chat.add_messages();
  user->set_role("user");
  user->set_content("Weather and time in Paris?");
  v1::ChatMessage* turn = chat.add_messages();
  turn->set_role("assistant");
  for (auto [name, args] :
       {std::pair<std::string, std::string>{"get_weather", R"({"city":"Paris"})"},
        {"get_time", R"({"zone":"CET","h24":true})"}}) {
    v1::ToolCall* call = turn->add_tool_calls();
    call->set_id("call_1");
    call->set_type("function");
    call->set_function_name(name);
    call->set_function_arguments(args);
  }
  absl::StatusOr<std::string> rendered = encoder.RenderChat(chat);
  EXPECT_TRUE(rendered.ok()) << rendered.status();
  return rendered.ok() ? *rendered : "";
}

std::unique_ptr<ToolCallFormat> DeepSeekV3() {
  auto format = ToolCallFormatByName("deepseek_v3");
  EXPECT_TRUE(format.ok());
  return format.ok() ? std::move(*format) : nullptr;
}

TEST(DeepSeekV3ToolCallsTest, ParsesWhatTheChatTemplateWritesInAnyChunking) {
  const std::string rendered = TemplateToolTurn();
  const size_t begin = rendered.find("<｜tool▁calls▁begin｜>");
  ASSERT_NE(begin, std::string::npos) << rendered;
  // The model's turn, with some content before the calls (its end-of-sentence token is
  // special: the detokenizer skips it).
  const std::string eos = "<｜end▁of▁sentence｜>";
  ASSERT_TRUE(std::string_view(rendered).ends_with(eos)) << rendered;
  const std::string text =
      "Let me look. " + rendered.substr(begin, rendered.size() - eos.size() - begin);
  auto format = DeepSeekV3();
  for (const auto& chunks : Chunkings(text)) {
    Parsed p = ParseInChunks(*format, chunks);
    ASSERT_EQ(p.calls.size(), 2u) << text;
    EXPECT_EQ(p.headers, 2);
    EXPECT_EQ(p.content, "Let me look. ");
    EXPECT_EQ(p.calls[0].function_name(), "get_weather");
    EXPECT_EQ(p.calls[0].arguments(), R"({"city":"Paris"})");
    EXPECT_EQ(p.calls[1].function_name(), "get_time");
    EXPECT_EQ(p.calls[1].arguments(), R"({"zone":"CET","h24":true})");
    EXPECT_EQ(p.calls[0].type(), "function");
    EXPECT_NE(p.calls[0].id(), p.calls[1].id());
  }
}

TEST(DeepSeekV3ToolCallsTest, TheForcedCallGrammarAcceptsTheTemplatesCalls) {
  const std::string rendered = TemplateToolTurn();
  const size_t begin = rendered.find("<｜tool▁calls▁begin｜>");
  const std::string end_marker = "<｜tool▁calls▁end｜>";
  const size_t end = rendered.find(end_marker);
  ASSERT_NE(end, std::string::npos) << rendered;
  const std::string calls = rendered.substr(begin, end + end_marker.size() - begin);
  std::vector<v1::Tool> tools(2);
  tools[0].set_name("get_weather");
  tools[0].set_parameters_json(
      R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})");
  tools[1].set_name("get_time");
  tools[1].set_parameters_json(
      R"({"type":"object","properties":{"zone":{"type":"string"},"h24":{"type":"boolean"}}})");
  auto grammar = DeepSeekV3()->ForcedCallGrammar(tools, "", true);
  ASSERT_TRUE(grammar.ok()) << grammar.status();
  auto compiled = structured_output::CompiledGrammar::Compile(*grammar);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  auto accepts = [&](const structured_output::CompiledGrammar& g, const std::string& s) {
    structured_output::MatchState state = g.Start();
    for (char c : s) {
      if (!g.Advance(state, static_cast<uint8_t>(c))) return false;
    }
    return g.CanEnd(state);
  };
  EXPECT_TRUE(accepts(**compiled, calls)) << calls;
  // One call only, and only the named function.
  auto single = structured_output::CompiledGrammar::Compile(
      *DeepSeekV3()->ForcedCallGrammar(tools, "get_time", false));
  ASSERT_TRUE(single.ok());
  EXPECT_FALSE(accepts(**single, calls));
  // The template writes the second call (get_time) after a newline.
  const std::string only_time =
      "<｜tool▁calls▁begin｜>" + calls.substr(calls.find("\n<｜tool▁call▁begin｜>") + 1);
  EXPECT_TRUE(accepts(**single, only_time)) << only_time;
  EXPECT_THAT(DeepSeekV3()->ForcedCallGrammar(tools, "nope", true).status().message(),
              ::testing::HasSubstr("nope"));
}

TEST(DeepSeekV3ToolCallsTest, PlainTextAndACutCallAreKept) {
  auto format = DeepSeekV3();
  for (const auto& chunks : Chunkings("a < b, <｜tool not a marker")) {
    Parsed p = ParseInChunks(*format, chunks);
    EXPECT_EQ(p.content, "a < b, <｜tool not a marker");
    EXPECT_TRUE(p.calls.empty());
  }
  // max_tokens cut the arguments: what came is the call's (as OpenAI returns it).
  const std::string cut =
      "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\":1";
  for (const auto& chunks : Chunkings(cut)) {
    Parsed p = ParseInChunks(*format, chunks);
    ASSERT_EQ(p.calls.size(), 1u);
    EXPECT_EQ(p.calls[0].function_name(), "f");
    EXPECT_EQ(p.calls[0].arguments(), "{\"a\":1");
    EXPECT_EQ(p.content, "");
  }
}

TEST(DeepSeekR1ReasoningTest, SplitsTheThinkingFromTheAnswerInAnyChunking) {
  struct Case {
    std::string text, reasoning, content;
  } cases[] = {
      {"<think>\nLet me see: 2+2.</think>\n\nIt is 4.", "\nLet me see: 2+2.", "\nIt is 4."},
      {"thinking inside the template's <think></think>answer",
       "thinking inside the template's <think>", "answer"},
      {"cut by max_tokens </thi", "cut by max_tokens </thi", ""},
      {"<thin", "<thin", ""},
  };
  for (const Case& c : cases) {
    for (const auto& chunks : Chunkings(c.text)) {
      auto parser = NewReasoningParser("deepseek_r1");
      ASSERT_TRUE(parser.ok() && *parser != nullptr);
      std::string reasoning, content;
      for (size_t i = 0; i < chunks.size(); ++i) {
        ReasoningParser::Delta d = (*parser)->Add(chunks[i], i + 1 == chunks.size());
        reasoning += d.reasoning;
        content += d.content;
      }
      EXPECT_EQ(reasoning, c.reasoning) << c.text;
      EXPECT_EQ(content, c.content) << c.text;
    }
  }
  EXPECT_FALSE(NewReasoningParser("o1").ok());
  EXPECT_EQ(*NewReasoningParser("none"), nullptr);
}

}  // namespace
}  // namespace dsv3::router
