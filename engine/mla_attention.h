#ifndef DSV3_ENGINE_MLA_ATTENTION_H_
#define DSV3_ENGINE_MLA_ATTENTION_H_

// Multi-head latent attention (DeepSeek-V2/V3) over the paged latent cache.
//
// Per token: q = q_b(RMSNorm(q_a(x))) (or q_proj(x)), per head [q_nope | q_pe];
// kv_a(x) = [c_kv | k_pe]; c_kv = RMSNorm(c_kv) and k_pe = RoPE(k_pe) go into the cache row.
// Expanded form: kv_b(c_kv) gives per-head [k_nope | v]; score = q_nope.k_nope + q_pe.k_pe.
// Absorbed form: W_UK (kv_b's k_nope rows of a head) is folded into the query,
// score = (q_nope W_UK).c_kv + q_pe.k_pe, the head output is (P c_kv) W_UV^T.
// AttentionForm::kAuto takes the absorbed form for a few new tokens (decode) and wherever it
// takes fewer multiply-adds (a short chunk over a long cached context), else the expanded one.

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/batch.h"
#include "engine/kv_cache.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/rope.h"

namespace dsv3::engine {

class MlaAttention {
 public:
  MlaAttention(const ModelConfig& config, const Rope& rope);

  // x: [num_rows, hidden] (already input_layernorm-ed); out: [num_rows, hidden].
  // Writes each new token's latent row into `cache_layer` of `pool`, then attends causally
  // over positions 0..p of its sequence.
  absl::Status Forward(const MlaWeights& w, int64_t cache_layer, const float* x, int64_t num_rows,
                       std::span<const SequenceSlice> seqs, KvCachePool& pool, AttentionForm form,
                       float* out) const;

 private:
  void Expanded(const MlaWeights& w, int64_t cache_layer, const SequenceSlice& s,
                const KvCachePool& pool, const float* q, float* attn) const;
  // Heads [h_begin, h_end) of every slice in `slices` in the absorbed form: the rows of all
  // slices go through each head's W_UK and W_UV together (one pass over its kv_b rows), and
  // each cache row is read once for all the heads (scores, then P.V), not once per head.
  // Thread-safe: one call per group of heads.
  void AbsorbedHeads(const MlaWeights& w, int64_t cache_layer,
                     std::span<const SequenceSlice* const> slices, int64_t h_begin, int64_t h_end,
                     const KvCachePool& pool, const float* q, float* attn) const;

  // One slice of many new tokens in the absorbed form, as GEMMs per head over the slice's
  // cache rows gathered once: scores = [q_nope W_UK | q_pe] rows^T, out = (P c_kv) W_UV^T.
  // Cheaper than the expanded form for a short chunk over a long cached context (a prompt's
  // suffix after a cached prefix): no per-position up-projection of the whole context.
  void AbsorbedSlice(const MlaWeights& w, int64_t cache_layer, const SequenceSlice& s,
                     const KvCachePool& pool, const float* q, float* attn) const;
  // Whether the absorbed form takes fewer multiply-adds than the expanded one for `s`.
  bool AbsorbedIsCheaper(const SequenceSlice& s) const;

  const ModelConfig& config_;
  const Rope& rope_;
  float scale_;
};

}  // namespace dsv3::engine

#endif  // DSV3_ENGINE_MLA_ATTENTION_H_
