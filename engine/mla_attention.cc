#include "engine/mla_attention.h"

#include <cstring>
#include <vector>

#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"

namespace dsv3::engine {
namespace {

// Slices with at most this many new tokens use the absorbed form under AttentionForm::kAuto.
constexpr int64_t kAbsorbedMaxTokens = 8;

}  // namespace

MlaAttention::MlaAttention(const ModelConfig& config, const Rope& rope)
    : config_(config), rope_(rope), scale_(static_cast<float>(config.SoftmaxScale())) {}

absl::Status MlaAttention::Forward(const MlaWeights& w, int64_t cache_layer, const float* x,
                                   int64_t num_rows, std::span<const SequenceSlice> seqs,
                                   KvCachePool& pool, AttentionForm form, float* out) const {
  const ModelConfig& c = config_;
  const int64_t heads = c.num_attention_heads;
  const int64_t dq = c.qk_head_dim();
  const int64_t latent = c.kv_lora_rank;
  const int64_t rope = c.qk_rope_head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);

  std::vector<float> q(static_cast<size_t>(num_rows * heads * dq));  // {rows, heads, [nope|pe]}
  if (c.q_lora_rank > 0) {
    std::vector<float> qa(static_cast<size_t>(num_rows * c.q_lora_rank));  // {rows, q_lora}
    MatMul(x, num_rows, w.q_a, qa.data());
    RmsNormRows(qa.data(), c.q_lora_rank, w.q_a_norm.data(), c.q_lora_rank, num_rows, eps,
                qa.data(), c.q_lora_rank);
    MatMul(qa.data(), num_rows, w.q_b, q.data());
  } else {
    MatMul(x, num_rows, w.q_proj, q.data());
  }
  std::vector<float> kv(static_cast<size_t>(num_rows * (latent + rope)));  // {rows, [c_kv|k_pe]}
  MatMul(x, num_rows, w.kv_a, kv.data());

  std::vector<float> cos(static_cast<size_t>(rope / 2)), sin(static_cast<size_t>(rope / 2));
  for (const SequenceSlice& s : seqs) {
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      const int64_t t = s.token_begin + i;
      const int64_t pos = s.start_pos + i;
      rope_.CosSin(pos, cos.data(), sin.data());
      float* row = pool.Row(cache_layer, *s.kv, pos);
      const float* src = &kv[static_cast<size_t>(t * (latent + rope))];
      RmsNorm(src, w.kv_a_norm.data(), latent, eps, row);
      std::memcpy(row + latent, src + latent, sizeof(float) * rope);
      Rope::Apply(cos.data(), sin.data(), rope, row + latent, 1, 0);
      Rope::Apply(cos.data(), sin.data(), rope, &q[static_cast<size_t>(t * heads * dq + c.qk_nope_head_dim)],
                  heads, dq);
    }
  }

  std::vector<float> attn(static_cast<size_t>(num_rows * heads * c.v_head_dim));  // {rows, heads, v}
  for (const SequenceSlice& s : seqs) {
    const bool absorbed = form == AttentionForm::kAbsorbed ||
                          (form == AttentionForm::kAuto && s.num_tokens <= kAbsorbedMaxTokens);
    if (absorbed) {
      Absorbed(w, cache_layer, s, pool, q.data(), attn.data());
    } else {
      Expanded(w, cache_layer, s, pool, q.data(), attn.data());
    }
  }
  MatMul(attn.data(), num_rows, w.o, out);
  return absl::OkStatus();
}

void MlaAttention::Expanded(const MlaWeights& w, int64_t cache_layer, const SequenceSlice& s,
                            const KvCachePool& pool, const float* q, float* attn) const {
  const ModelConfig& c = config_;
  const int64_t heads = c.num_attention_heads;
  const int64_t dq = c.qk_head_dim();
  const int64_t nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim;
  const int64_t vdim = c.v_head_dim;
  const int64_t latent = c.kv_lora_rank;
  const int64_t ctx = s.start_pos + s.num_tokens;

  std::vector<float> lat(static_cast<size_t>(ctx * latent));  // {ctx, kv_lora}
  std::vector<float> kpe(static_cast<size_t>(ctx * rope));    // {ctx, rope}
  for (int64_t j = 0; j < ctx; ++j) {
    const float* row = pool.Row(cache_layer, *s.kv, j);
    std::memcpy(&lat[static_cast<size_t>(j * latent)], row, sizeof(float) * latent);
    std::memcpy(&kpe[static_cast<size_t>(j * rope)], row + latent, sizeof(float) * rope);
  }
  const int64_t kvw = nope + vdim;
  std::vector<float> kvb(static_cast<size_t>(ctx * heads * kvw));  // {ctx, heads, [k_nope|v]}
  MatMul(lat.data(), ctx, w.kv_b, kvb.data());

  std::vector<float> scores(static_cast<size_t>(ctx));
  for (int64_t i = 0; i < s.num_tokens; ++i) {
    const int64_t t = s.token_begin + i;
    const int64_t visible = s.start_pos + i + 1;
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q + (t * heads + h) * dq;
      for (int64_t j = 0; j < visible; ++j) {
        const float* k = &kvb[static_cast<size_t>((j * heads + h) * kvw)];
        scores[j] = (Dot(qh, k, nope) + Dot(qh + nope, &kpe[static_cast<size_t>(j * rope)], rope)) *
                    scale_;
      }
      SoftmaxInPlace(scores.data(), visible);
      float* o = attn + (t * heads + h) * vdim;
      std::memset(o, 0, sizeof(float) * vdim);
      for (int64_t j = 0; j < visible; ++j) {
        Axpy(scores[j], &kvb[static_cast<size_t>((j * heads + h) * kvw + nope)], o, vdim);
      }
    }
  }
}

void MlaAttention::Absorbed(const MlaWeights& w, int64_t cache_layer, const SequenceSlice& s,
                            const KvCachePool& pool, const float* q, float* attn) const {
  const ModelConfig& c = config_;
  const int64_t heads = c.num_attention_heads;
  const int64_t dq = c.qk_head_dim();
  const int64_t nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim;
  const int64_t vdim = c.v_head_dim;
  const int64_t latent = c.kv_lora_rank;
  const int64_t width = latent + rope;  // a cache row
  const int64_t n = s.num_tokens;
  const int64_t ctx = s.start_pos + n;

  std::vector<const float*> rows(static_cast<size_t>(ctx));
  for (int64_t j = 0; j < ctx; ++j) rows[j] = pool.Row(cache_layer, *s.kv, j);
  std::vector<float> qcat(static_cast<size_t>(n * width));  // {n, [q_nope W_UK | q_pe]}
  std::vector<float> olat(static_cast<size_t>(n * latent));  // {n, kv_lora}
  std::vector<float> scores(static_cast<size_t>(ctx));
  for (int64_t h = 0; h < heads; ++h) {
    const float* qh = q + (s.token_begin * heads + h) * dq;  // row stride heads * dq
    MatMulTransposedRows(qh, n, heads * dq, w.kv_b, h * (nope + vdim), nope, qcat.data(), width);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&qcat[static_cast<size_t>(i * width + latent)], qh + i * heads * dq + nope,
                  sizeof(float) * rope);
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t visible = s.start_pos + i + 1;
      const float* qi = &qcat[static_cast<size_t>(i * width)];
      for (int64_t j = 0; j < visible; ++j) scores[j] = Dot(qi, rows[j], width) * scale_;
      SoftmaxInPlace(scores.data(), visible);
      float* o = &olat[static_cast<size_t>(i * latent)];
      std::memset(o, 0, sizeof(float) * latent);
      for (int64_t j = 0; j < visible; ++j) Axpy(scores[j], rows[j], o, latent);
    }
    // {n, v} = olat W_UV^T, W_UV = kv_b rows of this head's v part.
    MatMulRows(olat.data(), n, latent, w.kv_b, h * (nope + vdim) + nope, vdim,
               attn + (s.token_begin * heads + h) * vdim, heads * vdim);
  }
}

}  // namespace dsv3::engine
