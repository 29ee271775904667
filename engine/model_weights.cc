#include "engine/model_weights.h"

#include <cstdio>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/weight_residency.h"

namespace dsv3::engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Which tensors a LoadOptions role binds.
class RoleFilter {
 public:
  RoleFilter(const ModelConfig& config, const LoadOptions& options) : role_(options.role) {
    for (const ExpertKey& k : options.experts) experts_.insert(k);
    for (int64_t e : options.expert_ids) {
      const int64_t layers = config.num_hidden_layers + config.num_nextn_predict_layers;
      for (int64_t l = 0; l < layers; ++l) experts_.insert({l, e});
    }
  }
  bool AttentionSide() const { return role_ != LoadRole::kRoutedExperts; }
  bool Expert(int64_t layer, int64_t expert) const {
    switch (role_) {
      case LoadRole::kEverything:
        return true;
      case LoadRole::kAttentionSide:
        return false;
      case LoadRole::kRoutedExperts:
        return experts_.count({layer, expert}) > 0;
    }
    return false;
  }

 private:
  LoadRole role_;
  std::set<ExpertKey> experts_;
};

class Binder {
 public:
  Binder(const Checkpoint& ckpt, const ModelConfig& config, const RoleFilter& filter)
      : ckpt_(ckpt), config_(config), filter_(filter) {}

  // While a SkipScope lives, Proj/Vector/Mlp only record their tensor names as part of the
  // model (so CheckAllUsed accepts them) and bind nothing.
  class SkipScope {
   public:
    SkipScope(Binder& b, bool skip) : b_(b), saved_(b.skipping_) { b.skipping_ |= skip; }
    ~SkipScope() { b_.skipping_ = saved_; }

   private:
    Binder& b_;
    bool saved_;
  };

  absl::StatusOr<TensorView> Take(const std::string& name, const std::vector<int64_t>& shape) {
    DSV3_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name));
    if (v.shape() != shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(*v.file, ": tensor '", name, "': shape ", ShapeString(v.shape()),
                       " disagrees with config.json (expected ", ShapeString(shape), ")"));
    }
    used_.insert(name);
    bytes_ += v.info->nbytes;
    regions_.push_back({v.data, v.info->nbytes});
    return v;
  }

  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n) {
    if (skipping_) {
      skipped_.insert(name);
      return std::vector<float>();
    }
    DSV3_ASSIGN_OR_RETURN(TensorView v, Take(name, {n}));
    if (v.dtype() == DType::kF8E4M3) {
      return absl::InvalidArgumentError(
          absl::StrCat(*v.file, ": tensor '", name, "': FP8 is not supported for vectors"));
    }
    std::vector<float> out(static_cast<size_t>(n));
    ConvertToFloat(v.dtype(), v.data, 0, n, out.data());
    return out;
  }

  // `<prefix>.weight` [out, in] plus, for FP8, `<prefix>.weight_scale_inv`.
  absl::StatusOr<Linear> Proj(const std::string& prefix, int64_t out, int64_t in) {
    const std::string name = prefix + ".weight";
    if (skipping_) {
      skipped_.insert(name);
      skipped_.insert(name + "_scale_inv");
      return Linear();
    }
    DSV3_ASSIGN_OR_RETURN(TensorView v, Take(name, {out, in}));
    Linear l;
    l.dtype = v.dtype();
    l.out_features = out;
    l.in_features = in;
    l.data = v.data;
    if (l.dtype != DType::kF8E4M3) return l;
    if (!config_.quantized()) {
      return absl::InvalidArgumentError(absl::StrCat(
          *v.file, ": tensor '", name,
          "' is F8_E4M3 but config.json has no quantization_config.weight_block_size"));
    }
    l.block_rows = config_.weight_block_rows;
    l.block_cols = config_.weight_block_cols;
    const int64_t sr = (out + l.block_rows - 1) / l.block_rows;
    const int64_t sc = (in + l.block_cols - 1) / l.block_cols;
    auto scale = Take(name + "_scale_inv", {sr, sc});
    if (!scale.ok()) {
      return absl::Status(scale.status().code(),
                          absl::StrCat("FP8 tensor '", name,
                                       "' needs its block scales: ", scale.status().message()));
    }
    if (scale->dtype() == DType::kF8E4M3) {
      return absl::InvalidArgumentError(
          absl::StrCat(*scale->file, ": tensor '", name, "_scale_inv': must not be FP8"));
    }
    l.scale_inv.resize(static_cast<size_t>(sr * sc));
    ConvertToFloat(scale->dtype(), scale->data, 0, sr * sc, l.scale_inv.data());
    return l;
  }

  absl::StatusOr<MlpWeights> Mlp(const std::string& prefix, int64_t inter) {
    const int64_t h = config_.hidden_size;
    MlpWeights m;
    DSV3_ASSIGN_OR_RETURN(m.gate, Proj(prefix + ".gate_proj", inter, h));
    DSV3_ASSIGN_OR_RETURN(m.up, Proj(prefix + ".up_proj", inter, h));
    DSV3_ASSIGN_OR_RETURN(m.down, Proj(prefix + ".down_proj", h, inter));
    return m;
  }

  absl::StatusOr<LayerWeights> Layer(int64_t index, bool is_moe) {
    const ModelConfig& c = config_;
    const std::string p = absl::StrCat("model.layers.", index, ".");
    const int64_t h = c.hidden_size;
    const int64_t heads = c.num_attention_heads;
    LayerWeights w;
    w.is_moe = is_moe;
    SkipScope attention_side(*this, !filter_.AttentionSide());
    DSV3_ASSIGN_OR_RETURN(w.attn_norm, Vector(p + "input_layernorm.weight", h));
    DSV3_ASSIGN_OR_RETURN(w.ffn_norm, Vector(p + "post_attention_layernorm.weight", h));
    const std::string a = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      DSV3_ASSIGN_OR_RETURN(w.attn.q_a, Proj(a + "q_a_proj", c.q_lora_rank, h));
      DSV3_ASSIGN_OR_RETURN(w.attn.q_a_norm, Vector(a + "q_a_layernorm.weight", c.q_lora_rank));
      DSV3_ASSIGN_OR_RETURN(w.attn.q_b,
                            Proj(a + "q_b_proj", heads * c.qk_head_dim(), c.q_lora_rank));
    } else {
      DSV3_ASSIGN_OR_RETURN(w.attn.q_proj, Proj(a + "q_proj", heads * c.qk_head_dim(), h));
    }
    DSV3_ASSIGN_OR_RETURN(w.attn.kv_a,
                          Proj(a + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, h));
    DSV3_ASSIGN_OR_RETURN(w.attn.kv_a_norm, Vector(a + "kv_a_layernorm.weight", c.kv_lora_rank));
    DSV3_ASSIGN_OR_RETURN(
        w.attn.kv_b,
        Proj(a + "kv_b_proj", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank));
    DSV3_ASSIGN_OR_RETURN(w.attn.o, Proj(a + "o_proj", h, heads * c.v_head_dim));
    if (!is_moe) {
      DSV3_ASSIGN_OR_RETURN(w.mlp, Mlp(p + "mlp", c.intermediate_size));
      return w;
    }
    DSV3_ASSIGN_OR_RETURN(w.moe.router, Proj(p + "mlp.gate", c.n_routed_experts, h));
    if (c.topk_method == TopkMethod::kNoauxTc) {
      DSV3_ASSIGN_OR_RETURN(w.moe.score_bias,
                            Vector(p + "mlp.gate.e_score_correction_bias", c.n_routed_experts));
    }
    for (int64_t e = 0; e < c.n_routed_experts; ++e) {
      SkipScope expert(*this, false);
      skipping_ = !filter_.Expert(index, e);  // restored by `expert`
      DSV3_ASSIGN_OR_RETURN(MlpWeights ew,
                            Mlp(absl::StrCat(p, "mlp.experts.", e), c.moe_intermediate_size));
      w.moe.experts.push_back(std::move(ew));
    }
    if (c.n_shared_experts > 0) {
      DSV3_ASSIGN_OR_RETURN(w.moe.shared, Mlp(p + "mlp.shared_experts",
                                              c.n_shared_experts * c.moe_intermediate_size));
    }
    return w;
  }

  absl::Status CheckAllUsed(const std::set<std::string>& ignored_prefixes) const {
    for (const std::string& name : ckpt_.Names()) {
      if (used_.count(name) || skipped_.count(name)) continue;
      bool ignored = false;
      for (const std::string& p : ignored_prefixes) ignored |= absl::StartsWith(name, p);
      if (ignored) continue;
      auto v = ckpt_.Get(name);
      return absl::InvalidArgumentError(
          absl::StrCat(v.ok() ? *v->file : ckpt_.dir(), ": unexpected tensor '", name,
                       "' (not part of the model config.json describes)"));
    }
    return absl::OkStatus();
  }

  int64_t bytes() const { return bytes_; }
  int64_t tensors() const { return static_cast<int64_t>(used_.size()); }
  bool skipping() const { return skipping_; }
  const std::vector<MappedRegion>& regions() const { return regions_; }

 private:
  const Checkpoint& ckpt_;
  const ModelConfig& config_;
  const RoleFilter& filter_;
  bool skipping_ = false;
  std::set<std::string> used_;
  std::set<std::string> skipped_;  // part of the model, outside the role
  std::vector<MappedRegion> regions_;
  int64_t bytes_ = 0;
};

}  // namespace

void ForEachProjection(ModelWeights* w, const std::function<void(Linear*, ProjectionKind)>& fn) {
  const ProjectionKind body = ProjectionKind::kBody;
  auto mlp = [&](MlpWeights& m) {
    fn(&m.gate, body);
    fn(&m.up, body);
    fn(&m.down, body);
  };
  auto layer = [&](LayerWeights& l) {
    for (Linear* p :
         {&l.attn.q_a, &l.attn.q_b, &l.attn.q_proj, &l.attn.kv_a, &l.attn.kv_b, &l.attn.o}) {
      fn(p, body);
    }
    if (!l.is_moe) {
      mlp(l.mlp);
      return;
    }
    fn(&l.moe.router, ProjectionKind::kRouter);
    for (MlpWeights& e : l.moe.experts) mlp(e);
    mlp(l.moe.shared);
  };
  fn(&w->embed, ProjectionKind::kEmbedding);
  for (LayerWeights& l : w->layers) layer(l);
  fn(&w->lm_head, ProjectionKind::kHead);
  for (MtpWeights& m : w->mtp) {
    fn(&m.embed, ProjectionKind::kEmbedding);
    fn(&m.eh_proj, body);
    layer(m.block);
    fn(&m.head, ProjectionKind::kHead);
  }
}

const LayerWeights& ModelWeights::Layer(int64_t index) const {
  const int64_t n = static_cast<int64_t>(layers.size());
  return index < n ? layers[static_cast<size_t>(index)] : mtp[static_cast<size_t>(index - n)].block;
}

absl::StatusOr<ModelWeights> LoadModelWeights(const Checkpoint& checkpoint,
                                              const ModelConfig& config,
                                              const LoadOptions& options) {
  const RoleFilter filter(config, options);
  Binder b(checkpoint, config, filter);
  ModelWeights w;
  w.role = options.role;
  const int64_t h = config.hidden_size;
  {
    Binder::SkipScope attention_side(b, !filter.AttentionSide());
    DSV3_ASSIGN_OR_RETURN(w.embed, b.Proj("model.embed_tokens", config.vocab_size, h));
  }
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    DSV3_ASSIGN_OR_RETURN(LayerWeights lw, b.Layer(l, config.IsMoeLayer(l)));
    w.layers.push_back(std::move(lw));
  }
  {
    Binder::SkipScope attention_side(b, !filter.AttentionSide());
    DSV3_ASSIGN_OR_RETURN(w.final_norm, b.Vector("model.norm.weight", h));
    if (config.tie_word_embeddings) {
      w.lm_head = w.embed;
    } else {
      DSV3_ASSIGN_OR_RETURN(w.lm_head, b.Proj("lm_head", config.vocab_size, h));
    }
  }
  std::set<std::string> ignored;
  for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k) {
    const int64_t index = config.num_hidden_layers + k;
    const std::string p = absl::StrCat("model.layers.", index, ".");
    if (!options.load_mtp) {
      ignored.insert(p);
      continue;
    }
    MtpWeights m;
    {
      Binder::SkipScope attention_side(b, !filter.AttentionSide());
      DSV3_ASSIGN_OR_RETURN(m.embed, b.Proj(p + "embed_tokens", config.vocab_size, h));
      DSV3_ASSIGN_OR_RETURN(m.enorm, b.Vector(p + "enorm.weight", h));
      DSV3_ASSIGN_OR_RETURN(m.hnorm, b.Vector(p + "hnorm.weight", h));
      DSV3_ASSIGN_OR_RETURN(m.eh_proj, b.Proj(p + "eh_proj", h, 2 * h));
    }
    // The MTP block is MoE exactly when the main model's last layers are.
    DSV3_ASSIGN_OR_RETURN(m.block, b.Layer(index, config.n_routed_experts > 0));
    {
      Binder::SkipScope attention_side(b, !filter.AttentionSide());
      DSV3_ASSIGN_OR_RETURN(m.head_norm, b.Vector(p + "shared_head.norm.weight", h));
      DSV3_ASSIGN_OR_RETURN(m.head, b.Proj(p + "shared_head.head", config.vocab_size, h));
    }
    w.mtp.push_back(std::move(m));
  }
  DSV3_RETURN_IF_ERROR(b.CheckAllUsed(ignored));
  w.bytes = b.bytes();
  w.tensors = b.tensors();
  DSV3_ASSIGN_OR_RETURN(const QuantizeReport quantized,
                        QuantizeModelWeights(options.weights, &w, options.int8_activations));
  if (options.bf16_activations) {
    ForEachProjection(&w, [](Linear* p, ProjectionKind) { p->bf16_activations = true; });
  }
  if (options.batch_invariant) {
    ForEachProjection(&w, [](Linear* p, ProjectionKind) { p->batch_invariant = true; });
  }
  std::vector<MappedRegion> resident;
  const std::set<const void*> released(quantized.released.begin(), quantized.released.end());
  for (const MappedRegion& r : b.regions()) {
    if (released.count(r.data)) {
      w.bytes -= r.bytes;
    } else {
      resident.push_back(r);
    }
  }
  w.bytes += quantized.quantized_bytes;
  if (quantized.projections > 0 && options.progress != ProgressMode::kOff) {
    std::fprintf(stderr, "dsv3: quantized %lld projections to %s: %.2f GB as stored -> %.2f GB\n",
                 static_cast<long long>(quantized.projections),
                 std::string(WeightFormatName(options.weights)).c_str(),
                 quantized.source_bytes / 1e9, quantized.quantized_bytes / 1e9);
  }
  if (options.prefault) {
    int64_t bytes = 0;
    for (const MappedRegion& r : resident) bytes += r.bytes;
    LoadProgress progress(checkpoint.dir(), bytes, static_cast<int64_t>(resident.size()),
                          options.progress);
    std::vector<MappedRegion> copied;  // projections still in the mapping, into huge pages
    if (options.huge_pages) {
      std::set<const void*> mapped;
      ForEachProjection(&w, [&](Linear* p, ProjectionKind) {
        if (!p->empty() && p->owner == nullptr) mapped.insert(p->data);
      });
      std::vector<MappedRegion> rest;
      for (const MappedRegion& r : resident) (mapped.count(r.data) ? copied : rest).push_back(r);
      const HugePageCopy copy = CopyToHugePages(copied, &progress);
      if (copy.block != nullptr) {
        std::map<const void*, const void*> moved;
        for (size_t i = 0; i < copied.size(); ++i) moved[copied[i].data] = copy.copies[i];
        ForEachProjection(&w, [&](Linear* p, ProjectionKind) {
          auto it = p->owner == nullptr ? moved.find(p->data) : moved.end();
          if (it == moved.end()) return;
          p->data = it->second;
          p->owner = copy.block;
        });
        resident = std::move(rest);
      }
    }
    MakeResident(resident, &progress);
    progress.Finish();
  }
  return w;
}

}  // namespace dsv3::engine
