#include "engine/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "engine/synthetic_checkpoint.h"
#include "nlohmann/json.hpp"
#include "tests/engine/golden_data.h"

namespace dsv3::engine {
namespace {

nlohmann::json BaseConfig() {
  return nlohmann::json::parse(R"({
    "model_type": "deepseek_v3", "vocab_size": 1024, "hidden_size": 256,
    "intermediate_size": 384, "moe_intermediate_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "q_lora_rank": 96, "kv_lora_rank": 64, "qk_nope_head_dim": 32,
    "qk_rope_head_dim": 16, "v_head_dim": 32, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4,
    "topk_group": 2, "topk_method": "noaux_tc", "scoring_func": "sigmoid",
    "norm_topk_prob": true, "routed_scaling_factor": 2.5, "rms_norm_eps": 1e-6,
    "rope_theta": 10000, "rope_scaling": null, "max_position_embeddings": 2048,
    "num_nextn_predict_layers": 0, "tie_word_embeddings": false, "hidden_act": "silu"})");
}

absl::Status ParseWith(const std::string& field, const nlohmann::json& value) {
  nlohmann::json j = BaseConfig();
  if (value.is_discarded()) {
    j.erase(field);
  } else {
    j[field] = value;
  }
  return ParseModelConfig(j.dump()).status();
}

void ExpectFieldError(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("'" + field + "'"), std::string::npos) << s;
}

TEST(ModelConfigTest, ParsesGoldenConfigs) {
  auto c = LoadModelConfig(testing::GoldenDir("tiny-v3-fp8"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 256);
  EXPECT_EQ(c->q_lora_rank, 96);
  EXPECT_EQ(c->kv_lora_rank, 64);
  EXPECT_EQ(c->n_group, 4);
  EXPECT_EQ(c->topk_method, TopkMethod::kNoauxTc);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSigmoid);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 2.5);
  EXPECT_EQ(c->weight_block_rows, 128);
  EXPECT_FALSE(c->rope_yarn.has_value());
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  EXPECT_DOUBLE_EQ(c->SoftmaxScale(), 1.0 / std::sqrt(48.0));
  auto mtp = LoadModelConfig(testing::GoldenDir("tiny-v3-mtp"));
  ASSERT_TRUE(mtp.ok());
  EXPECT_EQ(mtp->num_nextn_predict_layers, 1);
}

TEST(ModelConfigTest, YarnAndSoftmaxScale) {
  nlohmann::json j = BaseConfig();
  j["rope_scaling"] = {
      {"type", "yarn"},       {"factor", 40},   {"original_max_position_embeddings", 4096},
      {"beta_fast", 32},      {"beta_slow", 1}, {"mscale", 1.0},
      {"mscale_all_dim", 1.0}};
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->rope_yarn.has_value());
  EXPECT_DOUBLE_EQ(c->rope_yarn->factor, 40);
  const double m = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c->SoftmaxScale(), m * m / std::sqrt(48.0), 1e-12);
}

TEST(ModelConfigTest, PlainQProjAndV2Defaults) {
  nlohmann::json j = BaseConfig();
  j["q_lora_rank"] = nullptr;
  j["model_type"] = "deepseek_v2";
  j.erase("topk_method");
  j.erase("scoring_func");
  j.erase("norm_topk_prob");
  j["n_group"] = 1;
  j["topk_group"] = 1;
  auto c = ParseModelConfig(j.dump());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_EQ(c->topk_method, TopkMethod::kGreedy);
  EXPECT_EQ(c->scoring_func, ScoringFunc::kSoftmax);
  EXPECT_FALSE(c->norm_topk_prob);
  j["model_type"] = "kimi_k2";
  EXPECT_TRUE(ParseModelConfig(j.dump()).ok());
}

TEST(ModelConfigTest, UnsupportedValuesNameTheField) {
  ExpectFieldError(ParseWith("model_type", "llama"), "model_type");
  ExpectFieldError(ParseWith("topk_method", "random"), "topk_method");
  ExpectFieldError(ParseWith("scoring_func", "relu"), "scoring_func");
  ExpectFieldError(ParseWith("hidden_act", "gelu"), "hidden_act");
  ExpectFieldError(ParseWith("hidden_size", nlohmann::json::value_t::discarded), "hidden_size");
  ExpectFieldError(ParseWith("hidden_size", "big"), "hidden_size");
  ExpectFieldError(ParseWith("kv_lora_rank", 0), "kv_lora_rank");
  ExpectFieldError(ParseWith("qk_rope_head_dim", 15), "qk_rope_head_dim");
  ExpectFieldError(ParseWith("topk_group", 5), "topk_group");
  ExpectFieldError(ParseWith("n_group", 3), "n_group");
  ExpectFieldError(ParseWith("num_experts_per_tok", 17), "num_experts_per_tok");
  ExpectFieldError(ParseWith("rope_scaling", {{"type", "linear"}, {"factor", 2}}),
                   "rope_scaling.type");
  ExpectFieldError(ParseWith("rope_scaling", {{"type", "yarn"}, {"factor", 2}}),
                   "original_max_position_embeddings");
  ExpectFieldError(ParseWith("quantization_config", {{"quant_method", "awq"}}),
                   "quantization_config.quant_method");
  ExpectFieldError(
      ParseWith("quantization_config",
                {{"quant_method", "fp8"}, {"fmt", "e5m2"}, {"weight_block_size", {128, 128}}}),
      "quantization_config.fmt");
  ExpectFieldError(ParseWith("quantization_config", {{"quant_method", "fp8"}}),
                   "quantization_config.weight_block_size");
  ExpectFieldError(ParseWith("attention_bias", true), "attention_bias");
  EXPECT_FALSE(ParseModelConfig("{not json").ok());
  EXPECT_FALSE(ParseModelConfig("[1, 2]").ok());
}

// Found by engine/fuzz/model_config_fuzzer.cc: sizes whose products wrap int64, and a float
// beyond int64 (casting it is undefined), are refused naming the field.
TEST(ModelConfigTest, IntegersOutOfRangeNameTheField) {
  ExpectFieldError(ParseWith("hidden_size", int64_t{1} << 40), "hidden_size");
  ExpectFieldError(ParseWith("vocab_size", uint64_t{1} << 63), "vocab_size");
  ExpectFieldError(ParseWith("num_hidden_layers", 1e300), "num_hidden_layers");
  ExpectFieldError(ParseWith("eos_token_id", -1e300), "eos_token_id");
  EXPECT_TRUE(ParseWith("max_position_embeddings", 163840).ok());
  EXPECT_TRUE(ParseWith("vocab_size", 129280.0).ok());
}

TEST(ModelConfigTest, JsonRoundTripAndStableHash) {
  auto c = LoadModelConfig(testing::GoldenDir("tiny-v3-fp8"));
  ASSERT_TRUE(c.ok());
  auto again = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(ModelConfigHash(*c), ModelConfigHash(*again));
  EXPECT_EQ(ModelConfigHash(*c).size(), 16u);
  ModelConfig changed = *c;
  changed.routed_scaling_factor = 2.0;
  EXPECT_NE(ModelConfigHash(*c), ModelConfigHash(changed));
  auto bf16 = LoadModelConfig(testing::GoldenDir("tiny-v3-bf16"));
  ASSERT_TRUE(bf16.ok());
  EXPECT_NE(ModelConfigHash(*c), ModelConfigHash(*bf16));  // FP8 block size differs
  ModelConfig rounded = *bf16;
  rounded.bf16_activations = true;  // other numerics: KV and experts must not mix
  EXPECT_NE(ModelConfigHash(*bf16), ModelConfigHash(rounded));
}

}  // namespace
}  // namespace dsv3::engine

namespace dsv3::engine {
namespace {

// The v3-slice preset is DeepSeek-V3's config.json with two layers: one dense, one MoE.
TEST(ModelConfigTest, V3SlicePresetHasDeepSeekV3Widths) {
  auto c = PresetConfig("v3-slice");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 7168);
  EXPECT_EQ(c->num_attention_heads, 128);
  EXPECT_EQ(c->q_lora_rank, 1536);
  EXPECT_EQ(c->kv_lora_rank, 512);
  EXPECT_EQ(c->qk_nope_head_dim + c->qk_rope_head_dim, 192);
  EXPECT_EQ(c->n_routed_experts, 256);
  EXPECT_EQ(c->num_experts_per_tok, 8);
  EXPECT_EQ(c->moe_intermediate_size, 2048);
  EXPECT_EQ(c->intermediate_size, 18432);
  EXPECT_EQ(c->vocab_size, 129280);
  ASSERT_TRUE(c->rope_yarn.has_value());
  EXPECT_EQ(c->rope_yarn->factor, 40.0);
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_TRUE(c->IsMoeLayer(1));
  c->weight_block_rows = c->weight_block_cols = 128;  // --dtype fp8
  int64_t bytes = 0;
  for (const TensorSpec& s : CheckpointTensorSpecs(*c)) bytes += s.nbytes();
  EXPECT_GT(bytes, int64_t{15000000000});  // 15.8 GB: 11.3 of routed experts, 3.7 BF16 embed+head
  EXPECT_LT(bytes, int64_t{17000000000});
  auto round = ParseModelConfig(ModelConfigToJson(*c));
  ASSERT_TRUE(round.ok()) << round.status();
  EXPECT_EQ(ModelConfigHash(*round), ModelConfigHash(*c));
}

}  // namespace
}  // namespace dsv3::engine
