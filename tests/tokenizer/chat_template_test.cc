// The chat template interpreter against @huggingface/jinja renderings (CTest fixture), plus
// error cases.

#include "tokenizer/chat_template.h"

#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tokenizer/deepseek_tokenizer.h"

namespace dsv3::tokenizer {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

TEST(ChatTemplateReferenceTest, MatchesHuggingFaceJinjaOnEveryConversation) {
  const Tokenizer* tok = testing::DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  absl::StatusOr<std::unique_ptr<ChatTemplate>> deepseek = ChatTemplate::FromConfig(tok->config());
  ASSERT_TRUE(deepseek.ok()) << deepseek.status();
  std::istringstream in(testing::ReadReferenceFile("chat_template_reference.jsonl"));
  std::string line;
  int checked = 0, deepseek_cases = 0;
  while (std::getline(in, line)) {
    const Json ref = Json::parse(line);
    const std::string name = ref["name"].get<std::string>();
    const Json& context = ref["context"];
    std::unique_ptr<ChatTemplate> feature;
    const ChatTemplate* t = deepseek->get();
    if (ref["template"] != "deepseek") {
      absl::StatusOr<std::unique_ptr<ChatTemplate>> c =
          ChatTemplate::Create(ref["template"].get<std::string>(), tok->config());
      ASSERT_TRUE(c.ok()) << c.status();
      feature = *std::move(c);
      t = feature.get();
    } else {
      ++deepseek_cases;
    }
    ChatTemplateOptions options;
    options.add_generation_prompt = context["add_generation_prompt"].get<bool>();
    if (context.contains("tools")) options.tools = context["tools"];
    absl::StatusOr<std::string> rendered = t->Render(context["messages"], options);
    ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.status();
    EXPECT_EQ(*rendered, ref["rendered"].get<std::string>()) << name;
    ++checked;
  }
  EXPECT_GE(checked, 30);
  EXPECT_GE(deepseek_cases, 20);
  std::printf("checked %d chat template renderings (%d with DeepSeek-V3's template)\n", checked,
              deepseek_cases);
}

TEST(ChatTemplateTest, RenderedPromptTokenizesWithoutASecondBos) {
  const Tokenizer* tok = testing::DeepSeekTokenizer();
  ASSERT_NE(tok, nullptr);
  auto t = ChatTemplate::FromConfig(tok->config());
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string prompt = (*t)->Render(Json::parse(R"([{"role": "user", "content": "hi"}])"),
                                          {.add_generation_prompt = true})
                                 .value();
  EXPECT_EQ(prompt, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>");
  const std::vector<int32_t> ids = tok->Encode(prompt, {.add_special_tokens = false}).value();
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 128803, 6366, 128804}));
}

TEST(ChatTemplateTest, UnsupportedConstructsAreErrors) {
  const TokenizerConfig config;
  for (const char* source : {"{% include 'x' %}", "{{ x | nosuchfilter }}", "{% if %}",
                             "{{ 'unterminated }}", "{% for x in y %}no end"}) {
    absl::StatusOr<std::unique_ptr<ChatTemplate>> t = ChatTemplate::Create(source, config);
    if (!t.ok()) {
      EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << source;
      continue;
    }
    // Some errors only show at render time.
    absl::StatusOr<std::string> r = (*t)->Render(Json::array());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << source;
  }
  auto t = ChatTemplate::Create("{{ raise_exception('bad role') }}", config);
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(std::string((*t)->Render(Json::array()).status().message()), HasSubstr("bad role"));
  EXPECT_EQ(ChatTemplate::FromConfig(config).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace dsv3::tokenizer
