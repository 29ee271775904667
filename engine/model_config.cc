#include "engine/model_config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace dsv3::engine {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: field '", field, "': ", why));
}

// No integer of a config is larger (DeepSeek-V3's largest is 163,840 positions): the engine
// multiplies dimensions when it sizes weights and buffers, and any two of these multiply
// within int64 (found by engine/fuzz/model_config_fuzzer.cc).
constexpr int64_t kMaxConfigInteger = int64_t{1} << 24;

// Reads an integer field; `required` fields must be present and non-null.
absl::Status GetInt(const Json& j, absl::string_view field, bool required, int64_t* out) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(field, "missing") : absl::OkStatus();
  }
  const auto out_of_range = [&] {
    return FieldError(field, absl::StrCat(it->dump(), " is out of range (at most ",
                                          kMaxConfigInteger, " in magnitude)"));
  };
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(kMaxConfigInteger)) return out_of_range();
    *out = static_cast<int64_t>(it->get<uint64_t>());
    return absl::OkStatus();
  }
  if (it->is_number_integer()) {
    const int64_t v = it->get<int64_t>();
    if (v > kMaxConfigInteger || v < -kMaxConfigInteger) return out_of_range();
    *out = v;
    return absl::OkStatus();
  }
  if (it->is_number_float()) {
    const double d = it->get<double>();
    if (d == std::floor(d)) {
      // Compared as a double first: casting one outside int64 is undefined.
      if (!(std::fabs(d) <= static_cast<double>(kMaxConfigInteger))) return out_of_range();
      *out = static_cast<int64_t>(d);
      return absl::OkStatus();
    }
  }
  return FieldError(field, absl::StrCat("expected an integer, got ", it->dump()));
}

absl::Status GetDouble(const Json& j, absl::string_view field, bool required, double* out) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(field, "missing") : absl::OkStatus();
  }
  if (!it->is_number())
    return FieldError(field, absl::StrCat("expected a number, got ", it->dump()));
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const Json& j, absl::string_view field, bool* out) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean())
    return FieldError(field, absl::StrCat("expected a boolean, got ", it->dump()));
  *out = it->get<bool>();
  return absl::OkStatus();
}

// Returns "" when absent or null.
absl::StatusOr<std::string> GetString(const Json& j, absl::string_view field) {
  auto it = j.find(std::string(field));
  if (it == j.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return FieldError(field, absl::StrCat("expected a string, got ", it->dump()));
  return it->get<std::string>();
}

absl::Status RequirePositive(absl::string_view field, int64_t v) {
  if (v <= 0) return FieldError(field, absl::StrCat("must be positive, got ", v));
  return absl::OkStatus();
}

absl::Status ParseRopeScaling(const Json& rs, ModelConfig* c) {
  if (rs.is_null()) return absl::OkStatus();
  if (!rs.is_object()) return FieldError("rope_scaling", "expected an object or null");
  DSV3_ASSIGN_OR_RETURN(std::string type, GetString(rs, "type"));
  if (type.empty()) {
    DSV3_ASSIGN_OR_RETURN(type, GetString(rs, "rope_type"));
  }
  if (type != "yarn") {
    return FieldError("rope_scaling.type",
                      absl::StrCat("unsupported value '", type, "' (supported: yarn or null)"));
  }
  YarnConfig y;
  DSV3_RETURN_IF_ERROR(GetDouble(rs, "factor", true, &y.factor));
  if (!(y.factor >= 1.0)) return FieldError("rope_scaling.factor", "must be >= 1");
  DSV3_RETURN_IF_ERROR(
      GetInt(rs, "original_max_position_embeddings", true, &y.original_max_position_embeddings));
  DSV3_RETURN_IF_ERROR(RequirePositive("rope_scaling.original_max_position_embeddings",
                                       y.original_max_position_embeddings));
  DSV3_RETURN_IF_ERROR(GetDouble(rs, "beta_fast", false, &y.beta_fast));
  DSV3_RETURN_IF_ERROR(GetDouble(rs, "beta_slow", false, &y.beta_slow));
  DSV3_RETURN_IF_ERROR(GetDouble(rs, "mscale", false, &y.mscale));
  DSV3_RETURN_IF_ERROR(GetDouble(rs, "mscale_all_dim", false, &y.mscale_all_dim));
  c->rope_yarn = y;
  return absl::OkStatus();
}

absl::Status ParseQuantization(const Json& q, ModelConfig* c) {
  if (q.is_null()) return absl::OkStatus();
  if (!q.is_object()) return FieldError("quantization_config", "expected an object");
  DSV3_ASSIGN_OR_RETURN(std::string method, GetString(q, "quant_method"));
  if (method != "fp8") {
    return FieldError("quantization_config.quant_method",
                      absl::StrCat("unsupported value '", method, "' (supported: fp8)"));
  }
  DSV3_ASSIGN_OR_RETURN(std::string fmt, GetString(q, "fmt"));
  if (!fmt.empty() && fmt != "e4m3") {
    return FieldError("quantization_config.fmt",
                      absl::StrCat("unsupported value '", fmt, "' (supported: e4m3)"));
  }
  DSV3_ASSIGN_OR_RETURN(std::string act, GetString(q, "activation_scheme"));
  if (!act.empty() && act != "dynamic") {
    return FieldError("quantization_config.activation_scheme",
                      absl::StrCat("unsupported value '", act,
                                   "' (supported: dynamic; activations stay unquantised)"));
  }
  auto it = q.find("weight_block_size");
  if (it == q.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_number_integer() ||
      !(*it)[1].is_number_integer() || (*it)[0].get<int64_t>() <= 0 ||
      (*it)[1].get<int64_t>() <= 0) {
    return FieldError("quantization_config.weight_block_size",
                      "expected two positive integers [rows, cols]");
  }
  c->weight_block_rows = (*it)[0].get<int64_t>();
  c->weight_block_cols = (*it)[1].get<int64_t>();
  return absl::OkStatus();
}

absl::Status ParseMoe(const Json& j, bool v2, ModelConfig* c) {
  DSV3_RETURN_IF_ERROR(GetInt(j, "n_routed_experts", false, &c->n_routed_experts));
  if (c->n_routed_experts < 0) return FieldError("n_routed_experts", "must not be negative");
  DSV3_RETURN_IF_ERROR(GetInt(j, "n_shared_experts", false, &c->n_shared_experts));
  DSV3_RETURN_IF_ERROR(GetInt(j, "first_k_dense_replace", false, &c->first_k_dense_replace));
  DSV3_RETURN_IF_ERROR(GetInt(j, "moe_layer_freq", false, &c->moe_layer_freq));
  DSV3_RETURN_IF_ERROR(RequirePositive("moe_layer_freq", c->moe_layer_freq));
  if (c->first_k_dense_replace < 0) return FieldError("first_k_dense_replace", "must be >= 0");
  if (c->n_shared_experts < 0) return FieldError("n_shared_experts", "must be >= 0");
  DSV3_ASSIGN_OR_RETURN(std::string method, GetString(j, "topk_method"));
  if (method.empty()) method = v2 ? "greedy" : "noaux_tc";
  if (method == "noaux_tc") {
    c->topk_method = TopkMethod::kNoauxTc;
  } else if (method == "greedy") {
    c->topk_method = TopkMethod::kGreedy;
  } else if (method == "group_limited_greedy") {
    c->topk_method = TopkMethod::kGroupLimitedGreedy;
  } else {
    return FieldError("topk_method", absl::StrCat("unsupported value '", method,
                                                  "' (supported: noaux_tc, greedy, "
                                                  "group_limited_greedy)"));
  }
  DSV3_ASSIGN_OR_RETURN(std::string scoring, GetString(j, "scoring_func"));
  if (scoring.empty()) scoring = v2 ? "softmax" : "sigmoid";
  if (scoring == "sigmoid") {
    c->scoring_func = ScoringFunc::kSigmoid;
  } else if (scoring == "softmax") {
    c->scoring_func = ScoringFunc::kSoftmax;
  } else {
    return FieldError("scoring_func", absl::StrCat("unsupported value '", scoring,
                                                   "' (supported: sigmoid, softmax)"));
  }
  c->norm_topk_prob = !v2;
  DSV3_RETURN_IF_ERROR(GetBool(j, "norm_topk_prob", &c->norm_topk_prob));
  DSV3_RETURN_IF_ERROR(GetDouble(j, "routed_scaling_factor", false, &c->routed_scaling_factor));
  if (c->n_routed_experts == 0) return absl::OkStatus();

  DSV3_RETURN_IF_ERROR(GetInt(j, "moe_intermediate_size", true, &c->moe_intermediate_size));
  DSV3_RETURN_IF_ERROR(RequirePositive("moe_intermediate_size", c->moe_intermediate_size));
  DSV3_RETURN_IF_ERROR(GetInt(j, "num_experts_per_tok", true, &c->num_experts_per_tok));
  DSV3_RETURN_IF_ERROR(RequirePositive("num_experts_per_tok", c->num_experts_per_tok));
  if (c->num_experts_per_tok > c->n_routed_experts) {
    return FieldError("num_experts_per_tok", "exceeds n_routed_experts");
  }
  DSV3_RETURN_IF_ERROR(GetInt(j, "n_group", false, &c->n_group));
  DSV3_RETURN_IF_ERROR(GetInt(j, "topk_group", false, &c->topk_group));
  DSV3_RETURN_IF_ERROR(RequirePositive("n_group", c->n_group));
  DSV3_RETURN_IF_ERROR(RequirePositive("topk_group", c->topk_group));
  if (c->n_routed_experts % c->n_group != 0) {
    return FieldError("n_group", "must divide n_routed_experts");
  }
  if (c->topk_group > c->n_group) return FieldError("topk_group", "exceeds n_group");
  if (c->topk_method == TopkMethod::kGreedy && c->n_group > 1 && c->topk_group < c->n_group) {
    return FieldError("topk_method",
                      "greedy does not limit groups; use group_limited_greedy "
                      "with n_group/topk_group");
  }
  if (c->topk_method == TopkMethod::kNoauxTc && c->n_group > 1 &&
      c->n_routed_experts / c->n_group < 2) {
    return FieldError("n_group", "noaux_tc scores a group by its top-2 experts; groups need >= 2");
  }
  if (c->topk_method != TopkMethod::kGreedy &&
      c->num_experts_per_tok > c->topk_group * (c->n_routed_experts / c->n_group)) {
    return FieldError("num_experts_per_tok", "exceeds the experts in topk_group groups");
  }
  return absl::OkStatus();
}

}  // namespace

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

double ModelConfig::SoftmaxScale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
  if (rope_yarn.has_value() && rope_yarn->mscale_all_dim != 0.0 && rope_yarn->factor > 1.0) {
    const double m = 0.1 * rope_yarn->mscale_all_dim * std::log(rope_yarn->factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text) {
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");
  ModelConfig c;
  DSV3_ASSIGN_OR_RETURN(c.model_type, GetString(j, "model_type"));
  if (c.model_type != "deepseek_v3" && c.model_type != "deepseek_v2" && c.model_type != "kimi_k2") {
    return FieldError("model_type", absl::StrCat("unsupported value '", c.model_type,
                                                 "' (supported: deepseek_v3, kimi_k2, "
                                                 "deepseek_v2)"));
  }
  const bool v2 = c.model_type == "deepseek_v2";
  DSV3_ASSIGN_OR_RETURN(std::string act, GetString(j, "hidden_act"));
  if (!act.empty() && act != "silu") {
    return FieldError("hidden_act",
                      absl::StrCat("unsupported value '", act, "' (supported: silu)"));
  }
  bool attention_bias = false;
  DSV3_RETURN_IF_ERROR(GetBool(j, "attention_bias", &attention_bias));
  if (attention_bias) return FieldError("attention_bias", "unsupported value true");

  struct IntField {
    const char* name;
    int64_t* dst;
  };
  for (const IntField& f :
       {IntField{"vocab_size", &c.vocab_size}, IntField{"hidden_size", &c.hidden_size},
        IntField{"intermediate_size", &c.intermediate_size},
        IntField{"num_hidden_layers", &c.num_hidden_layers},
        IntField{"num_attention_heads", &c.num_attention_heads},
        IntField{"kv_lora_rank", &c.kv_lora_rank},
        IntField{"qk_nope_head_dim", &c.qk_nope_head_dim},
        IntField{"qk_rope_head_dim", &c.qk_rope_head_dim}, IntField{"v_head_dim", &c.v_head_dim},
        IntField{"max_position_embeddings", &c.max_position_embeddings}}) {
    DSV3_RETURN_IF_ERROR(GetInt(j, f.name, true, f.dst));
    DSV3_RETURN_IF_ERROR(RequirePositive(f.name, *f.dst));
  }
  if (c.qk_rope_head_dim % 2 != 0) return FieldError("qk_rope_head_dim", "must be even");
  DSV3_RETURN_IF_ERROR(GetInt(j, "q_lora_rank", false, &c.q_lora_rank));
  if (c.q_lora_rank < 0) return FieldError("q_lora_rank", "must be positive or null");
  DSV3_RETURN_IF_ERROR(ParseMoe(j, v2, &c));
  DSV3_RETURN_IF_ERROR(GetDouble(j, "rms_norm_eps", false, &c.rms_norm_eps));
  if (!(c.rms_norm_eps > 0)) return FieldError("rms_norm_eps", "must be positive");
  DSV3_RETURN_IF_ERROR(GetDouble(j, "rope_theta", false, &c.rope_theta));
  if (!(c.rope_theta > 0)) return FieldError("rope_theta", "must be positive");
  if (auto it = j.find("rope_scaling"); it != j.end()) {
    DSV3_RETURN_IF_ERROR(ParseRopeScaling(*it, &c));
  }
  DSV3_RETURN_IF_ERROR(GetInt(j, "num_nextn_predict_layers", false, &c.num_nextn_predict_layers));
  if (c.num_nextn_predict_layers < 0) return FieldError("num_nextn_predict_layers", "must be >= 0");
  DSV3_RETURN_IF_ERROR(GetBool(j, "tie_word_embeddings", &c.tie_word_embeddings));
  if (auto it = j.find("quantization_config"); it != j.end()) {
    DSV3_RETURN_IF_ERROR(ParseQuantization(*it, &c));
  }
  DSV3_RETURN_IF_ERROR(GetInt(j, "bos_token_id", false, &c.bos_token_id));
  if (auto it = j.find("eos_token_id"); it != j.end() && it->is_array()) {
    if (!it->empty() && (*it)[0].is_number_integer()) c.eos_token_id = (*it)[0].get<int64_t>();
  } else {
    DSV3_RETURN_IF_ERROR(GetInt(j, "eos_token_id", false, &c.eos_token_id));
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto config = ParseModelConfig(ss.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  Json j;
  j["architectures"] = {c.model_type == "deepseek_v2" ? "DeepseekV2ForCausalLM"
                                                      : "DeepseekV3ForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_attention_heads;
  j["q_lora_rank"] = c.q_lora_rank > 0 ? Json(c.q_lora_rank) : Json(nullptr);
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["n_routed_experts"] = c.n_routed_experts > 0 ? Json(c.n_routed_experts) : Json(nullptr);
  j["n_shared_experts"] = c.n_shared_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["topk_method"] = c.topk_method == TopkMethod::kNoauxTc  ? "noaux_tc"
                     : c.topk_method == TopkMethod::kGreedy ? "greedy"
                                                            : "group_limited_greedy";
  j["scoring_func"] = c.scoring_func == ScoringFunc::kSigmoid ? "sigmoid" : "softmax";
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_yarn.has_value()) {
    const YarnConfig& y = *c.rope_yarn;
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", y.factor},
                         {"original_max_position_embeddings", y.original_max_position_embeddings},
                         {"beta_fast", y.beta_fast},
                         {"beta_slow", y.beta_slow},
                         {"mscale", y.mscale},
                         {"mscale_all_dim", y.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["torch_dtype"] = "bfloat16";
  if (c.quantized()) {
    j["quantization_config"] = {{"quant_method", "fp8"},
                                {"fmt", "e4m3"},
                                {"activation_scheme", "dynamic"},
                                {"weight_block_size", {c.weight_block_rows, c.weight_block_cols}}};
  }
  return j.dump(2) + "\n";
}

std::string ModelConfigHash(const ModelConfig& c) {
  std::string s = absl::StrFormat(
      "type=%s;vocab=%d;hidden=%d;inter=%d;moe_inter=%d;layers=%d;heads=%d;q_lora=%d;kv_lora=%d;"
      "nope=%d;rope=%d;v=%d;dense=%d;freq=%d;routed=%d;shared=%d;topk=%d;groups=%d/%d;method=%d;"
      "scoring=%d;norm=%d;scale=%.17g;eps=%.17g;theta=%.17g;maxpos=%d;mtp=%d;tie=%d;block=%dx%d",
      c.model_type, c.vocab_size, c.hidden_size, c.intermediate_size, c.moe_intermediate_size,
      c.num_hidden_layers, c.num_attention_heads, c.q_lora_rank, c.kv_lora_rank, c.qk_nope_head_dim,
      c.qk_rope_head_dim, c.v_head_dim, c.first_k_dense_replace, c.moe_layer_freq,
      c.n_routed_experts, c.n_shared_experts, c.num_experts_per_tok, c.n_group, c.topk_group,
      static_cast<int>(c.topk_method), static_cast<int>(c.scoring_func), c.norm_topk_prob ? 1 : 0,
      c.routed_scaling_factor, c.rms_norm_eps, c.rope_theta, c.max_position_embeddings,
      c.num_nextn_predict_layers, c.tie_word_embeddings ? 1 : 0, c.weight_block_rows,
      c.weight_block_cols);
  if (c.rope_yarn.has_value()) {
    const YarnConfig& y = *c.rope_yarn;
    absl::StrAppendFormat(&s, ";yarn=%.17g/%d/%.17g/%.17g/%.17g/%.17g", y.factor,
                          y.original_max_position_embeddings, y.beta_fast, y.beta_slow, y.mscale,
                          y.mscale_all_dim);
  }
  if (!c.weight_format.empty()) absl::StrAppend(&s, ";weights=", c.weight_format);
  if (c.bf16_activations) absl::StrAppend(&s, ";activations=bf16");
  if (c.batch_invariant) absl::StrAppend(&s, ";batch_invariant");
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace dsv3::engine
