#include "engine/synthetic_checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/kernels/quantize.h"

namespace dsv3::engine {
namespace {

enum class Init { kProjection, kEmbedding, kNorm, kBias, kScale };

struct Gaussian {
  explicit Gaussian(uint64_t seed) : state(seed) {}
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }
  void Fill(float* out, int64_t n, double stddev, double mean) {
    for (int64_t i = 0; i < n; i += 2) {
      const double r = std::sqrt(-2.0 * std::log(Uniform()));
      const double a = 2.0 * 3.14159265358979323846 * Uniform();
      out[i] = static_cast<float>(mean + stddev * r * std::cos(a));
      if (i + 1 < n) out[i + 1] = static_cast<float>(mean + stddev * r * std::sin(a));
    }
  }
  uint64_t state;
};

uint64_t NameSeed(uint64_t seed, absl::string_view name) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

bool IsQuantisedProjection(absl::string_view name) {
  if (!absl::EndsWith(name, ".weight")) return false;
  for (absl::string_view p : {"q_a_proj", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_b_proj",
                              "o_proj", "gate_proj", "up_proj", "down_proj"}) {
    if (absl::StrContains(name, absl::StrCat(".", p, "."))) return true;
  }
  return false;
}

class SpecBuilder {
 public:
  explicit SpecBuilder(const ModelConfig& c) : c_(c) {}
  void Vector(const std::string& name, int64_t n, DType dtype = DType::kBF16) {
    specs_.push_back({name, dtype, {n}});
  }
  void Proj(const std::string& prefix, int64_t out, int64_t in) {
    const std::string name = prefix + ".weight";
    if (c_.quantized() && IsQuantisedProjection(name)) {
      specs_.push_back({name, DType::kF8E4M3, {out, in}});
      specs_.push_back({name + "_scale_inv",
                        DType::kF32,
                        {(out + c_.weight_block_rows - 1) / c_.weight_block_rows,
                         (in + c_.weight_block_cols - 1) / c_.weight_block_cols}});
    } else {
      specs_.push_back({name, DType::kBF16, {out, in}});
    }
  }
  void Mlp(const std::string& p, int64_t inter) {
    Proj(p + ".gate_proj", inter, c_.hidden_size);
    Proj(p + ".up_proj", inter, c_.hidden_size);
    Proj(p + ".down_proj", c_.hidden_size, inter);
  }
  void Layer(int64_t index, bool moe) {
    const ModelConfig& c = c_;
    const std::string p = absl::StrCat("model.layers.", index, ".");
    const int64_t h = c.hidden_size;
    Vector(p + "input_layernorm.weight", h);
    if (c.q_lora_rank > 0) {
      Proj(p + "self_attn.q_a_proj", c.q_lora_rank, h);
      Vector(p + "self_attn.q_a_layernorm.weight", c.q_lora_rank);
      Proj(p + "self_attn.q_b_proj", c.num_attention_heads * c.qk_head_dim(), c.q_lora_rank);
    } else {
      Proj(p + "self_attn.q_proj", c.num_attention_heads * c.qk_head_dim(), h);
    }
    Proj(p + "self_attn.kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, h);
    Vector(p + "self_attn.kv_a_layernorm.weight", c.kv_lora_rank);
    Proj(p + "self_attn.kv_b_proj", c.num_attention_heads * (c.qk_nope_head_dim + c.v_head_dim),
         c.kv_lora_rank);
    Proj(p + "self_attn.o_proj", h, c.num_attention_heads * c.v_head_dim);
    Vector(p + "post_attention_layernorm.weight", h);
    if (!moe) {
      Mlp(p + "mlp", c.intermediate_size);
      return;
    }
    Proj(p + "mlp.gate", c.n_routed_experts, h);
    if (c.topk_method == TopkMethod::kNoauxTc) {
      Vector(p + "mlp.gate.e_score_correction_bias", c.n_routed_experts, DType::kF32);
    }
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      Mlp(absl::StrCat(p, "mlp.experts.", e), c.moe_intermediate_size);
    }
    if (c.n_shared_experts > 0) {
      Mlp(p + "mlp.shared_experts", c.n_shared_experts * c.moe_intermediate_size);
    }
  }
  std::vector<TensorSpec> Take() { return std::move(specs_); }

 private:
  const ModelConfig& c_;
  std::vector<TensorSpec> specs_;
};

Init InitFor(const TensorSpec& s) {
  if (absl::EndsWith(s.name, "_scale_inv")) return Init::kScale;
  if (absl::EndsWith(s.name, "e_score_correction_bias")) return Init::kBias;
  if (absl::EndsWith(s.name, "embed_tokens.weight")) return Init::kEmbedding;
  if (s.shape.size() == 1) return Init::kNorm;
  return Init::kProjection;
}

// Fills tensors; remembers the FP8 block scales of the last quantised projection for its
// weight_scale_inv, which follows it.
class Filler {
 public:
  Filler(const ModelConfig& c, uint64_t seed, double router_skew)
      : c_(c), seed_(seed), router_skew_(router_skew) {}

  absl::Status Fill(const TensorSpec& s, std::span<uint8_t> out) {
    const int64_t n = s.nbytes() / DTypeSize(s.dtype);
    std::string key = s.name;
    // The MTP layer's embedding is the main embedding's copy, bit for bit.
    if (absl::EndsWith(key, ".embed_tokens.weight")) key = "model.embed_tokens.weight";
    const Init init = InitFor(s);
    if (init == Init::kScale) {
      const std::string weight = s.name.substr(0, s.name.size() - std::strlen("_scale_inv"));
      auto it = scales_.find(weight);
      if (it == scales_.end() || static_cast<int64_t>(it->second.size()) != n) {
        return absl::InternalError(absl::StrCat("no scales for ", weight));
      }
      std::memcpy(out.data(), it->second.data(), out.size());
      scales_.erase(it);
      return absl::OkStatus();
    }
    std::vector<float> v(static_cast<size_t>(n));
    Gaussian g(NameSeed(seed_, key));
    switch (init) {
      case Init::kEmbedding:
        g.Fill(v.data(), n, 1.0, 0.0);
        break;
      case Init::kNorm:
        g.Fill(v.data(), n, 0.1, 1.0);
        break;
      case Init::kBias:
        g.Fill(v.data(), n, 0.1, 0.0);
        if (router_skew_ != 0) AddRouterSkew(key, v);
        break;
      default:
        g.Fill(v.data(), n, 1.0 / std::sqrt(static_cast<double>(s.shape[1])), 0.0);
        break;
    }
    switch (s.dtype) {
      case DType::kF32:
        std::memcpy(out.data(), v.data(), out.size());
        break;
      case DType::kBF16:
      case DType::kF16:
        for (int64_t i = 0; i < n; ++i) {
          const uint16_t b = s.dtype == DType::kBF16 ? FloatToBF16(v[i]) : FloatToF16(v[i]);
          std::memcpy(out.data() + 2 * i, &b, 2);
        }
        break;
      case DType::kF8E4M3:
        Quantise(s, v, out);
        break;
      case DType::kQ8:
      case DType::kQ4:
      case DType::kQ6:
        return absl::InvalidArgumentError("checkpoints hold no load-time quantized tensors");
    }
    return absl::OkStatus();
  }

 private:
  // Bias of the expert of rank k += -router_skew * ln(k); the ranks come from their own
  // generator, so the other tensors do not change.
  void AddRouterSkew(const std::string& key, std::vector<float>& bias) const {
    std::vector<size_t> rank(bias.size());  // expert -> rank - 1
    for (size_t e = 0; e < rank.size(); ++e) rank[e] = e;
    Gaussian g(NameSeed(seed_, key + "#router_skew"));
    for (size_t j = rank.size(); j > 1; --j) std::swap(rank[j - 1], rank[g.Next() % j]);
    for (size_t e = 0; e < bias.size(); ++e) {
      bias[e] -= static_cast<float>(router_skew_ * std::log(static_cast<double>(rank[e] + 1)));
    }
  }

  void Quantise(const TensorSpec& s, const std::vector<float>& v, std::span<uint8_t> out) {
    scales_[s.name] = QuantizeE4M3Blocks(v.data(), s.shape[0], s.shape[1], c_.weight_block_rows,
                                         c_.weight_block_cols, out.data());
  }

  const ModelConfig& c_;
  uint64_t seed_;
  double router_skew_;
  std::map<std::string, std::vector<float>> scales_;
};

absl::Status MakeDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat(dir, ": cannot create directory: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset) {
  ModelConfig c;
  c.model_type = "deepseek_v3";
  c.topk_method = TopkMethod::kNoauxTc;
  c.scoring_func = ScoringFunc::kSigmoid;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.first_k_dense_replace = 1;
  c.n_shared_experts = 1;
  if (preset == "tiny" || preset == "demo") {
    // "demo": the tiny shape with DeepSeek-V3's vocabulary, so the real tokenizer fits it
    // (the embedded default model of `scripts/run.sh`).
    c.vocab_size = preset == "demo" ? 129280 : 1024;
    c.hidden_size = 256;
    c.intermediate_size = 384;
    c.moe_intermediate_size = 64;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.q_lora_rank = 96;
    c.kv_lora_rank = 64;
    c.qk_nope_head_dim = 32;
    c.qk_rope_head_dim = 16;
    c.v_head_dim = 32;
    c.n_routed_experts = 16;
    c.num_experts_per_tok = 4;
    c.n_group = 4;
    c.topk_group = 2;
    c.max_position_embeddings = preset == "demo" ? 4096 : 2048;
    return c;
  }
  if (preset == "bench") {
    c.vocab_size = 129280;
    c.hidden_size = 1024;
    c.intermediate_size = 2816;
    c.moe_intermediate_size = 512;
    c.num_hidden_layers = 8;
    c.num_attention_heads = 16;
    c.q_lora_rank = 384;
    c.kv_lora_rank = 256;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.n_routed_experts = 64;
    c.num_experts_per_tok = 6;
    c.n_group = 8;
    c.topk_group = 4;
    c.max_position_embeddings = 4096;
    return c;
  }
  if (preset == "v3-slice") {
    // DeepSeek-V3's own widths (its config.json) with one dense and one MoE layer: what a
    // layer of the 671B model costs on this machine (bench/v3_slice_bench.cc), ~16 GB in FP8.
    c.vocab_size = 129280;
    c.hidden_size = 7168;
    c.intermediate_size = 18432;
    c.moe_intermediate_size = 2048;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 128;
    c.q_lora_rank = 1536;
    c.kv_lora_rank = 512;
    c.qk_nope_head_dim = 128;
    c.qk_rope_head_dim = 64;
    c.v_head_dim = 128;
    c.n_routed_experts = 256;
    c.num_experts_per_tok = 8;
    c.n_group = 8;
    c.topk_group = 4;
    c.max_position_embeddings = 163840;
    c.rope_yarn = YarnConfig{40.0, 4096, 32.0, 1.0, 1.0, 1.0};
    return c;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown preset '", preset, "' (supported: tiny, demo, bench, v3-slice)"));
}

std::vector<TensorSpec> CheckpointTensorSpecs(const ModelConfig& c) {
  SpecBuilder b(c);
  b.Proj("model.embed_tokens", c.vocab_size, c.hidden_size);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) b.Layer(l, c.IsMoeLayer(l));
  b.Vector("model.norm.weight", c.hidden_size);
  if (!c.tie_word_embeddings) b.Proj("lm_head", c.vocab_size, c.hidden_size);
  for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
    const int64_t index = c.num_hidden_layers + k;
    const std::string p = absl::StrCat("model.layers.", index, ".");
    b.Proj(p + "embed_tokens", c.vocab_size, c.hidden_size);
    b.Vector(p + "enorm.weight", c.hidden_size);
    b.Vector(p + "hnorm.weight", c.hidden_size);
    b.Proj(p + "eh_proj", c.hidden_size, 2 * c.hidden_size);
    b.Layer(index, c.n_routed_experts > 0);
    b.Vector(p + "shared_head.norm.weight", c.hidden_size);
    b.Proj(p + "shared_head.head", c.vocab_size, c.hidden_size);
  }
  return b.Take();
}

absl::Status WriteSyntheticCheckpoint(const std::string& dir, const SyntheticOptions& options) {
  DSV3_ASSIGN_OR_RETURN(ModelConfig c, PresetConfig(options.preset));
  if (options.mtp_layers < 0) return absl::InvalidArgumentError("mtp layers must be >= 0");
  if (!(options.router_skew >= 0) || !std::isfinite(options.router_skew)) {
    return absl::InvalidArgumentError(
        absl::StrCat("router skew must be finite and >= 0, got ", options.router_skew));
  }
  c.num_nextn_predict_layers = options.mtp_layers;
  if (options.fp8) {
    c.weight_block_rows = 128;
    c.weight_block_cols = 128;
  }
  DSV3_RETURN_IF_ERROR(MakeDir(dir));
  {
    std::ofstream f(dir + "/config.json", std::ios::binary);
    f << ModelConfigToJson(c);
    if (!f) return absl::InternalError(absl::StrCat(dir, "/config.json: write failed"));
  }
  int64_t shard = options.max_shard_bytes;
  if (shard <= 0) shard = options.preset == "tiny" ? (2 << 20) : (int64_t{1} << 30);
  Filler filler(c, options.seed, options.router_skew);
  return WriteShardedCheckpoint(
      dir, CheckpointTensorSpecs(c), shard,
      [&](const TensorSpec& s, std::span<uint8_t> out) { return filler.Fill(s, out); });
}

}  // namespace dsv3::engine
