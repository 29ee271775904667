#include "engine/mla_attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/kernels/gemm.h"
#include "engine/kernels/latent_attention.h"
#include "engine/kernels/linear.h"
#include "engine/kernels/ops.h"
#include "engine/scratch.h"
#include "engine/thread_pool.h"

namespace dsv3::engine {
namespace {

// scores {n, ctx} of new rows at positions start_pos..: scale, softmax over the positions a row
// may see (causal), zero the rest.
void CausalSoftmax(float* scores, int64_t n, int64_t ctx, int64_t start_pos, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    float* row = scores + i * ctx;
    const int64_t visible = start_pos + i + 1;
    for (int64_t j = 0; j < visible; ++j) row[j] *= scale;
    SoftmaxInPlace(row, visible);
    std::fill(row + visible, row + ctx, 0.0f);
  }
}

// Slices with at most this many new tokens use the absorbed form under AttentionForm::kAuto.
constexpr int64_t kAbsorbedMaxTokens = 8;
// Heads that share a pass over the latent cache in decode: their queries and outputs (8 x
// (576 + 512) floats at DeepSeek-V3's widths) stay in L1 while each cache row is read once.
constexpr int64_t kHeadGroup = 8;

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

  thread_local ScratchSite q_site, qa_site, kv_site, attn_site;
  Scratch q(q_site, static_cast<size_t>(num_rows * heads * dq));  // {rows, heads, [nope|pe]}
  if (c.q_lora_rank > 0) {
    Scratch qa(qa_site, static_cast<size_t>(num_rows * c.q_lora_rank));  // {rows, q_lora}
    MatMul(x, num_rows, w.q_a, qa.data());
    RmsNormRows(qa.data(), c.q_lora_rank, w.q_a_norm.data(), c.q_lora_rank, num_rows, eps,
                qa.data(), c.q_lora_rank);
    MatMul(qa.data(), num_rows, w.q_b, q.data());
  } else {
    MatMul(x, num_rows, w.q_proj, q.data());
  }
  Scratch kv(kv_site, static_cast<size_t>(num_rows * (latent + rope)));  // {rows, [c_kv|k_pe]}
  MatMul(x, num_rows, w.kv_a, kv.data());

  std::vector<float> cos(static_cast<size_t>(rope / 2)), sin(static_cast<size_t>(rope / 2));
  for (const SequenceSlice& s : seqs) {
    for (int64_t i = 0; i < s.num_tokens; ++i) {
      const int64_t t = s.token_begin + i;
      const int64_t pos = s.start_pos + i;
      rope_.CosSin(pos, cos.data(), sin.data());
      float* row = pool.Row(cache_layer, *s.kv, pos);
      const float* src = kv.data() + t * (latent + rope);
      RmsNorm(src, w.kv_a_norm.data(), latent, eps, row);
      std::memcpy(row + latent, src + latent, sizeof(float) * rope);
      Rope::Apply(cos.data(), sin.data(), rope, row + latent, 1, 0);
      Rope::Apply(cos.data(), sin.data(), rope, q.data() + t * heads * dq + c.qk_nope_head_dim,
                  heads, dq);
    }
  }

  Scratch attn(attn_site,
               static_cast<size_t>(num_rows * heads * c.v_head_dim));  // {rows, heads, v}
  std::vector<const SequenceSlice*> absorbed;
  // Where every projection computes rows alike (ModelConfig::rows_alike), every slice takes
  // decode's path too: a prompt's rows then equal, to the bit, those of its tokens decoded one a
  // step (a moved stream's KV recomputed by a prefill, a prefix cached from another prompt).
  // With rounded activations that matters: the expanded form's last-bit differences became
  // other tokens in 7 of the cluster's migration and prefix-cache tests (RESULTS.md, session 27).
  const bool one_path = form == AttentionForm::kAuto && c.rows_alike;
  for (const SequenceSlice& s : seqs) {
    const bool use_absorbed = form == AttentionForm::kAbsorbed || one_path ||
                              (form == AttentionForm::kAuto &&
                               (s.num_tokens <= kAbsorbedMaxTokens || AbsorbedIsCheaper(s)));
    if (!use_absorbed) {
      Expanded(w, cache_layer, s, pool, q.data(), attn.data());
    } else if (s.num_tokens <= kAbsorbedMaxTokens || one_path) {
      absorbed.push_back(&s);  // a few rows: batched with the other short slices below
    } else {
      AbsorbedSlice(w, cache_layer, s, pool, q.data(), attn.data());
    }
  }
  // Decode: heads are independent; within a head, all absorbed rows share W_UK and W_UV, and
  // a group of heads shares each pass over the cache.
  if (!absorbed.empty()) {
    const int64_t groups = (heads + kHeadGroup - 1) / kHeadGroup;
    ThreadPool::Default().ParallelForDynamic(groups, [&](int64_t g, int) {
      AbsorbedHeads(w, cache_layer, absorbed, g * kHeadGroup, std::min(heads, (g + 1) * kHeadGroup),
                    pool, q.data(), attn.data());
    });
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
  const int64_t n = s.num_tokens;

  thread_local ScratchSite lat_site, kpe_site, kvb_site;
  Scratch lat(lat_site, static_cast<size_t>(ctx * latent));  // {ctx, kv_lora}
  Scratch kpe(kpe_site, static_cast<size_t>(ctx * rope));    // {ctx, rope}
  for (int64_t j = 0; j < ctx; ++j) {
    const float* row = pool.Row(cache_layer, *s.kv, j);
    std::memcpy(lat.data() + j * latent, row, sizeof(float) * latent);
    std::memcpy(kpe.data() + j * rope, row + latent, sizeof(float) * rope);
  }
  const int64_t kvw = nope + vdim;
  Scratch kvb(kvb_site, static_cast<size_t>(ctx * heads * kvw));  // {ctx, heads, [k_nope|v]}
  MatMul(lat.data(), ctx, w.kv_b, kvb.data());

  // Per head, as GEMMs: scores {n, ctx} = q_nope k_nope^T + q_pe k_pe^T; causal softmax
  // (positions after a query's own get probability 0); out {n, v} = P v.
  ThreadPool::Default().ParallelForDynamic(heads, [&](int64_t h, int) {
    thread_local std::vector<float> scores;
    scores.resize(static_cast<size_t>(n * ctx));
    const float* qh = q + (s.token_begin * heads + h) * dq;  // row stride heads * dq
    Gemm(qh, heads * dq, kvb.data() + h * kvw, heads * kvw, BLayout::kNK, scores.data(), ctx, n,
         ctx, nope, GemmOutput::kOverwrite);
    Gemm(qh + nope, heads * dq, kpe.data(), rope, BLayout::kNK, scores.data(), ctx, n, ctx, rope,
         GemmOutput::kAccumulate);
    CausalSoftmax(scores.data(), n, ctx, s.start_pos, scale_);
    Gemm(scores.data(), ctx, kvb.data() + h * kvw + nope, heads * kvw, BLayout::kKN,
         attn + (s.token_begin * heads + h) * vdim, heads * vdim, n, vdim, ctx,
         GemmOutput::kOverwrite);
  });
}

bool MlaAttention::AbsorbedIsCheaper(const SequenceSlice& s) const {
  const ModelConfig& c = config_;
  const double heads = static_cast<double>(c.num_attention_heads);
  const double n = static_cast<double>(s.num_tokens);
  const double ctx = static_cast<double>(s.start_pos + s.num_tokens);
  const double latent = static_cast<double>(c.kv_lora_rank);
  const double nope = static_cast<double>(c.qk_nope_head_dim);
  const double vdim = static_cast<double>(c.v_head_dim);
  const double dq = static_cast<double>(c.qk_head_dim());
  const double width = latent + static_cast<double>(c.qk_rope_head_dim);
  // Expanded: kv_b over every context row, then scores and P.V per head.
  const double expanded = ctx * latent * heads * (nope + vdim) + n * ctx * heads * (dq + vdim);
  // Absorbed: W_UK and W_UV per new row and head, scores and P.c_kv over latent rows.
  const double absorbed =
      n * heads * (nope * latent + latent * vdim) + n * ctx * heads * (width + latent);
  return absorbed < expanded;
}

void MlaAttention::AbsorbedSlice(const MlaWeights& w, int64_t cache_layer, const SequenceSlice& s,
                                 const KvCachePool& pool, const float* q, float* attn) const {
  const ModelConfig& c = config_;
  const int64_t heads = c.num_attention_heads;
  const int64_t dq = c.qk_head_dim();
  const int64_t nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim;
  const int64_t vdim = c.v_head_dim;
  const int64_t latent = c.kv_lora_rank;
  const int64_t width = latent + rope;
  const int64_t ctx = s.start_pos + s.num_tokens;
  const int64_t n = s.num_tokens;
  thread_local ScratchSite rows_site;
  Scratch rows(rows_site, static_cast<size_t>(ctx * width));  // {ctx, [c_kv | k_pe]}
  for (int64_t j = 0; j < ctx; ++j) {
    std::memcpy(rows.data() + j * width, pool.Row(cache_layer, *s.kv, j), sizeof(float) * width);
  }
  ThreadPool::Default().ParallelForDynamic(heads, [&](int64_t h, int) {
    thread_local std::vector<float> qh, qcat, scores, olat, vout;
    qh.resize(static_cast<size_t>(n * dq));
    qcat.resize(static_cast<size_t>(n * width));
    scores.resize(static_cast<size_t>(n * ctx));
    olat.resize(static_cast<size_t>(n * latent));
    vout.resize(static_cast<size_t>(n * vdim));
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&qh[static_cast<size_t>(i * dq)], q + ((s.token_begin + i) * heads + h) * dq,
                  sizeof(float) * dq);
    }
    // [q_nope W_UK | q_pe] {n, width}.
    MatMulTransposedRows(qh.data(), n, dq, w.kv_b, h * (nope + vdim), nope, qcat.data(), width);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&qcat[static_cast<size_t>(i * width + latent)],
                  &qh[static_cast<size_t>(i * dq + nope)], sizeof(float) * rope);
    }
    Gemm(qcat.data(), width, rows.data(), width, BLayout::kNK, scores.data(), ctx, n, ctx, width,
         GemmOutput::kOverwrite);
    CausalSoftmax(scores.data(), n, ctx, s.start_pos, scale_);
    // P c_kv {n, latent}, then W_UV^T.
    Gemm(scores.data(), ctx, rows.data(), width, BLayout::kKN, olat.data(), latent, n, latent, ctx,
         GemmOutput::kOverwrite);
    MatMulRows(olat.data(), n, latent, w.kv_b, h * (nope + vdim) + nope, vdim, vout.data(), vdim);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(attn + ((s.token_begin + i) * heads + h) * vdim,
                  &vout[static_cast<size_t>(i * vdim)], sizeof(float) * vdim);
    }
  });
}

void MlaAttention::AbsorbedHeads(const MlaWeights& w, int64_t cache_layer,
                                 std::span<const SequenceSlice* const> slices, int64_t h_begin,
                                 int64_t h_end, const KvCachePool& pool, const float* q,
                                 float* attn) const {
  const ModelConfig& c = config_;
  const int64_t heads = c.num_attention_heads;
  const int64_t dq = c.qk_head_dim();
  const int64_t nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim;
  const int64_t vdim = c.v_head_dim;
  const int64_t latent = c.kv_lora_rank;
  const int64_t width = latent + rope;  // a cache row
  const int64_t hg = h_end - h_begin;
  int64_t n = 0;  // rows of all slices
  int64_t max_ctx = 0;
  for (const SequenceSlice* s : slices) {
    n += s->num_tokens;
    max_ctx = std::max(max_ctx, s->start_pos + s->num_tokens);
  }

  // Per head of the group: qh {n, [q_nope | q_pe]}, qcat {n, [q_nope W_UK | q_pe]}, olat
  // {n, kv_lora}; scores {hg, ctx} for one row at a time; vout {n, v}.
  thread_local std::vector<float> qh, qcat, olat, vout, scores;
  qh.resize(static_cast<size_t>(n * dq));
  qcat.resize(static_cast<size_t>(hg * n * width));
  olat.resize(static_cast<size_t>(hg * n * latent));
  vout.resize(static_cast<size_t>(n * vdim));
  scores.resize(static_cast<size_t>(hg * max_ctx));
  for (int64_t h = h_begin; h < h_end; ++h) {
    float* qcat_h = &qcat[static_cast<size_t>((h - h_begin) * n * width)];
    int64_t r = 0;
    for (const SequenceSlice* s : slices) {
      for (int64_t i = 0; i < s->num_tokens; ++i, ++r) {
        std::memcpy(&qh[static_cast<size_t>(r * dq)], q + ((s->token_begin + i) * heads + h) * dq,
                    sizeof(float) * dq);
      }
    }
    MatMulTransposedRows(qh.data(), n, dq, w.kv_b, h * (nope + vdim), nope, qcat_h, width);
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(qcat_h + i * width + latent, &qh[static_cast<size_t>(i * dq + nope)],
                  sizeof(float) * rope);
    }
  }
  // The latent-cache rows of a slice (pages of the pool), gathered once for all its tokens.
  thread_local std::vector<const float*> rows;
  int64_t r = 0;
  for (const SequenceSlice* s : slices) {
    const int64_t ctx = s->start_pos + s->num_tokens;
    rows.resize(static_cast<size_t>(ctx));
    for (int64_t j = 0; j < ctx; ++j)
      rows[static_cast<size_t>(j)] = pool.Row(cache_layer, *s->kv, j);
    for (int64_t i = 0; i < s->num_tokens; ++i, ++r) {
      const int64_t visible = s->start_pos + i + 1;
      LatentScores(&qcat[static_cast<size_t>(r * width)], n * width, hg, rows.data(), visible,
                   width, scale_, scores.data(), max_ctx);
      for (int64_t g = 0; g < hg; ++g)
        SoftmaxInPlace(&scores[static_cast<size_t>(g * max_ctx)], visible);
      LatentWeightedSum(scores.data(), max_ctx, hg, rows.data(), visible, latent,
                        &olat[static_cast<size_t>(r * latent)], n * latent);
    }
  }
  for (int64_t h = h_begin; h < h_end; ++h) {
    // {n, v} = olat W_UV^T, W_UV = kv_b rows of this head's v part.
    MatMulRows(&olat[static_cast<size_t>((h - h_begin) * n * latent)], n, latent, w.kv_b,
               h * (nope + vdim) + nope, vdim, vout.data(), vdim);
    r = 0;
    for (const SequenceSlice* s : slices) {
      for (int64_t i = 0; i < s->num_tokens; ++i, ++r) {
        std::memcpy(attn + ((s->token_begin + i) * heads + h) * vdim,
                    &vout[static_cast<size_t>(r * vdim)], sizeof(float) * vdim);
      }
    }
  }
}

}  // namespace dsv3::engine
