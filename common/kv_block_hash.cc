#include "common/kv_block_hash.h"

#include "absl/strings/str_cat.h"

namespace dsv3 {
namespace {

// A 64-bit multiply-xorshift mixer (the finaliser of MurmurHash3 / splitmix64): every input
// bit affects every output bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t Combine(uint64_t h, uint64_t word) {
  return Mix(h ^ (word + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

}  // namespace

uint64_t KvCacheIdentity::Seed() const {
  const std::string text = absl::StrCat(
      "dsv3-kv-v1|", config_hash, "|bs=", block_size, "|l=", num_layers, "|mtp=", num_mtp_layers,
      "|r=", kv_lora_rank, "|rope=", qk_rope_head_dim, "|", dtype);
  uint64_t h = 0x84222325cbf29ce4ULL;
  for (unsigned char c : text) h = Combine(h, c);
  return h;
}

KvCacheIdentity KvCacheIdentityOf(absl::string_view config_hash, const v1::KvLayout& layout) {
  KvCacheIdentity id;
  id.config_hash = std::string(config_hash);
  id.block_size = layout.block_size();
  id.num_layers = layout.num_layers();
  id.num_mtp_layers = layout.num_mtp_layers();
  id.kv_lora_rank = layout.kv_lora_rank();
  id.qk_rope_head_dim = layout.qk_rope_head_dim();
  id.dtype = v1::KvDtype_Name(layout.dtype());
  return id;
}

int64_t NamedBlockCount(const KvCacheIdentity& identity, int64_t num_tokens) {
  if (identity.block_size <= 0 || num_tokens <= 0) return 0;
  const int64_t usable = identity.num_mtp_layers > 0 ? num_tokens - 1 : num_tokens;
  return usable / identity.block_size;
}

std::vector<uint64_t> KvBlockHashes(const KvCacheIdentity& identity,
                                    std::span<const int32_t> tokens) {
  const int64_t count = NamedBlockCount(identity, static_cast<int64_t>(tokens.size()));
  std::vector<uint64_t> out;
  out.reserve(static_cast<size_t>(count));
  const int64_t bs = identity.block_size;
  uint64_t h = identity.Seed();
  for (int64_t k = 0; k < count; ++k) {
    for (int64_t i = k * bs; i < (k + 1) * bs; ++i) {
      h = Combine(h, static_cast<uint32_t>(tokens[static_cast<size_t>(i)]));
    }
    uint64_t named = h;
    if (identity.num_mtp_layers > 0) {
      named = Combine(
          h, 0x100000000ULL | static_cast<uint32_t>(tokens[static_cast<size_t>((k + 1) * bs)]));
    }
    out.push_back(named);
    h = Combine(named, 0xb10cULL);  // the chain goes on from this block's name
  }
  return out;
}

}  // namespace dsv3
