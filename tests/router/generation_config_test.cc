// A checkpoint's generation_config.json as the router reads it for the OpenAI API's
// defaults: the fields it uses, do_sample false as greedy, errors that name the field.

#include "router/generation_config.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/subprocess.h"

namespace dsv3::router {
namespace {

using ::testing::HasSubstr;

std::string DirWith(const std::string& json) {
  const std::string dir = ::dsv3::testing::MakeTempDir("generation-config");
  if (!json.empty()) std::ofstream(dir + "/generation_config.json") << json;
  return dir;
}

TEST(GenerationConfigTest, DeepSeekV3sDefaultsAreRead) {
  // As deepseek-ai/DeepSeek-V3 ships it.
  auto d = LoadGenerationDefaults(DirWith(
      R"({"_from_model_config": true, "bos_token_id": 0, "eos_token_id": 1,
          "do_sample": true, "temperature": 0.6, "top_p": 0.95, "transformers_version": "4.46.3"})"));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FLOAT_EQ(*d->temperature, 0.6f);
  EXPECT_FLOAT_EQ(*d->top_p, 0.95f);
  EXPECT_FALSE(d->top_k.has_value());
}

TEST(GenerationConfigTest, NoFileNoDefaultsAndDoSampleFalseIsGreedy) {
  auto none = LoadGenerationDefaults(DirWith(""));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->temperature.has_value());
  auto greedy =
      LoadGenerationDefaults(DirWith(R"({"do_sample": false, "temperature": 0.6, "top_k": 20})"));
  ASSERT_TRUE(greedy.ok());
  EXPECT_FLOAT_EQ(*greedy->temperature, 0.0f);
  EXPECT_EQ(*greedy->top_k, 20);
}

TEST(GenerationConfigTest, ABrokenFileStopsTheRouterNamingTheField) {
  auto bad = LoadGenerationDefaults(DirWith(R"({"temperature": 7})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'temperature'"));
  EXPECT_FALSE(LoadGenerationDefaults(DirWith("{not json")).ok());
  EXPECT_FALSE(LoadGenerationDefaults(DirWith(R"({"top_p": "high"})")).ok());
}

}  // namespace
}  // namespace dsv3::router
