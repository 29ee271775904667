#ifndef DSV3_COMMON_KV_BLOCK_HASH_H_
#define DSV3_COMMON_KV_BLOCK_HASH_H_

// Content addresses of KV blocks, shared by the router (its prefix index) and the prefill
// and decode workers (their prefix caches). They must agree bit for bit, so the function is
// fixed here and never seeded per process.
//
// A full block of a sequence is named by a hash chained from its parent block's hash and
// its token ids; the chain starts from the identity of the model and the KV layout, so
// different models or layouts never share a block. When the pool holds MTP layers, the MTP
// row of a block's last slot was computed with the token after the block, so that token is
// part of the block's name too (a block is shareable only once its successor token is
// known). The last, partial block of a sequence is never named.
//
// 64-bit names: with a million cached blocks in a cluster the chance that any two of them
// collide is about 3e-8.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "dsv3/v1/worker.pb.h"

namespace dsv3 {

// What makes two pools' blocks interchangeable: the model's config hash and the row layout.
// The number of blocks in a pool is not part of it.
struct KvCacheIdentity {
  std::string config_hash;
  int block_size = 0;
  int num_layers = 0;      // main layers
  int num_mtp_layers = 0;  // > 0: names include the token after each block
  int kv_lora_rank = 0;
  int qk_rope_head_dim = 0;
  std::string dtype;  // "f32", ...

  uint64_t Seed() const;
};

// The identity of a pool as a worker describes it (its config hash and WorkerInfo.kv_layout):
// workers and the router derive it the same way.
KvCacheIdentity KvCacheIdentityOf(absl::string_view config_hash, const v1::KvLayout& layout);

// Names of the shareable full blocks of `tokens`: block k covers tokens
// [k * block_size, (k + 1) * block_size) and, with MTP layers, token (k + 1) * block_size,
// which must be among `tokens`.
std::vector<uint64_t> KvBlockHashes(const KvCacheIdentity& identity,
                                    std::span<const int32_t> tokens);
// How many blocks of a sequence of `num_tokens` known tokens can be named.
int64_t NamedBlockCount(const KvCacheIdentity& identity, int64_t num_tokens);

}  // namespace dsv3

#endif  // DSV3_COMMON_KV_BLOCK_HASH_H_
