// Router prefix lookup: what the router does per request for KV-aware routing on a long
// prompt: name its full blocks (KvBlockHashes) and count, for every worker, how many leading
// names that worker's prefix cache holds (KvIndex::Overlap). Worst case: every worker holds
// the whole prompt (the longest walk), beside 100,000 other names each.
// usage: router_prefix_lookup_bench [PROMPT_TOKENS=32768] [WORKERS=32] [REPS=51]
// Prints the median of REPS runs of each part; the target is the total under 1 ms.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/kv_block_hash.h"
#include "router/kv_index.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int prompt_tokens = argc > 1 ? std::atoi(argv[1]) : 32768;
  const int workers = argc > 2 ? std::atoi(argv[2]) : 32;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 51;
  using Clock = std::chrono::steady_clock;
  std::mt19937_64 rng(7);
  std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % 129280);
  // DeepSeek-V3's cache: 61 main layers and one MTP layer, 64-token blocks.
  dsv3::KvCacheIdentity identity;
  identity.config_hash = "deepseek-v3";
  identity.block_size = 64;
  identity.num_layers = 61;
  identity.num_mtp_layers = 1;
  identity.kv_lora_rank = 512;
  identity.qk_rope_head_dim = 64;
  identity.dtype = "KV_DTYPE_F32";
  const std::vector<uint64_t> names = dsv3::KvBlockHashes(identity, prompt);

  dsv3::router::KvIndex index;
  std::vector<std::string> addresses;
  for (int w = 0; w < workers; ++w) {
    addresses.push_back("10.0.0." + std::to_string(w) + ":50061");
    dsv3::v1::KvCacheEvents events;
    events.set_reset(true);
    for (uint64_t n : names) events.add_stored(n);
    for (int i = 0; i < 100000; ++i) events.add_stored(rng());
    index.Apply(addresses.back(), events);
  }

  std::vector<double> hash_us, overlap_us, total_us;
  int64_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    const std::vector<uint64_t> n = dsv3::KvBlockHashes(identity, prompt);
    const auto t1 = Clock::now();
    for (const std::string& a : addresses) sink += index.Overlap(a, n);
    const auto t2 = Clock::now();
    hash_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    overlap_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    total_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
  }
  // The floor of the walk: the same number of lookups in one plain hash set.
  std::vector<double> floor_us;
  {
    std::vector<uint64_t> keys(names);
    std::sort(keys.begin(), keys.end());
    for (int r = 0; r < reps; ++r) {
      const auto t0 = Clock::now();
      for (int w = 0; w < workers; ++w) {
        for (uint64_t n : names) sink += std::binary_search(keys.begin(), keys.end(), n);
      }
      floor_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
  }
  std::printf(
      "prompt %d tokens = %zu named blocks, %d workers holding all of them + 100000 "
      "other names each (median of %d)\n",
      prompt_tokens, names.size(), workers, reps);
  std::printf("  name the blocks (KvBlockHashes)        %8.1f us\n", Median(hash_us));
  std::printf("  overlap with every worker (KvIndex)    %8.1f us  (%zu lookups)\n",
              Median(overlap_us), names.size() * static_cast<size_t>(workers));
  std::printf("  total                                  %8.1f us  (target < 1000 us)\n",
              Median(total_us));
  std::printf(
      "  reference: binary search in a sorted array of the prompt's names, same "
      "lookups %8.1f us\n",
      Median(floor_us));
  return sink == 42 ? 1 : 0;
}
