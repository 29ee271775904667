// Prefix caching through the whole cluster (real router, prefill and decode processes):
// greedy output with the cache is token for token what the single-process engine gives
// without one, for prompts that share nothing, part of a block, whole blocks, the whole
// prompt, and a chat's next turn (the previous prompt and its answer); across two prefill
// and two decode workers; under eviction pressure; with MTP speculation; BF16 and FP8. The
// workers' books balance afterwards (every block free or cached), and the cached-token
// count reaches the client.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster_fixture.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::Cluster;
using ::dsv3::testing::Generate;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::kGolden;
using ::dsv3::testing::MetricSum;
using ::dsv3::testing::WorkerLoad;
using Proc = ::dsv3::testing::ClusterProc;

constexpr int kBlock = 64;  // the workers' default --kv_block_size

std::vector<int32_t> RandomTokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& t : out) t = 1 + static_cast<int32_t>(rng() % 1000);
  return out;
}

std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

std::vector<int32_t> Head(const std::vector<int32_t>& v, int n) {
  return std::vector<int32_t>(v.begin(), v.begin() + n);
}

// Prompts that share nothing, part of a block, whole blocks, and all of an earlier prompt.
std::vector<std::vector<int32_t>> SharingPrompts() {
  const std::vector<int32_t> base = RandomTokens(200, 1);
  return {
      base,
      base,                                                  // the whole prompt again
      Concat({Head(base, 30), RandomTokens(150, 2)}),        // part of the first block
      Concat({Head(base, 128), RandomTokens(70, 3)}),        // two whole blocks
      Concat({Head(base, 192), RandomTokens(5, 4)}),         // three blocks, a short tail
      RandomTokens(130, 5),                                  // nothing
      Concat({Head(base, 2 * kBlock), RandomTokens(1, 6)}),  // blocks and one token
  };
}

// Every worker's blocks are free or cached again (no lease or sequence holds one), and at
// least one worker of each role kept some.
void ExpectBooksBalanced(const Cluster& cluster, int wait_tenths = 40) {
  for (const std::string role : {"prefill", "decode"}) {
    int cached = 0;
    for (int i = 0; i < cluster.Count(role); ++i) {
      const std::string address = cluster.Get(role, i).grpc;
      std::optional<v1::LoadReport> load;
      // Reports come every 250 ms; a sequence that just ended may still hold its blocks.
      for (int tries = 0; tries < wait_tenths; ++tries) {
        load = WorkerLoad(address);
        if (load.has_value() && load->kv_blocks_free() == load->kv_blocks_total()) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ASSERT_TRUE(load.has_value()) << role << " " << address;
      EXPECT_EQ(load->kv_blocks_free(), load->kv_blocks_total())
          << role << " " << address << " still holds blocks";
      EXPECT_LE(load->kv_blocks_cached(), load->kv_blocks_free());
      cached += load->kv_blocks_cached();
    }
    EXPECT_GT(cached, 0) << "no " << role << " worker kept a cached block";
  }
}

void ExpectGreedyMatchesEngine(const Cluster& cluster, const std::string& model,
                               const std::vector<int32_t>& prompt, int max_tokens,
                               std::vector<int32_t>* answer = nullptr) {
  GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(prompt, max_tokens));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids, Generate(model, prompt, max_tokens)) << "prompt of " << prompt.size();
  if (answer != nullptr) *answer = r.ids;
}

TEST(PrefixCacheClusterTest, GreedyWithTheCacheEqualsTheEngineOnTwoPrefillAndTwoDecodeWorkers) {
  auto cluster = Cluster::Start(kGolden, 2, 2, 17600, 64);
  ASSERT_NE(cluster, nullptr);
  // Twice each, so that the second round finds what the first computed.
  for (int round = 0; round < 2; ++round) {
    for (const auto& prompt : SharingPrompts()) {
      ExpectGreedyMatchesEngine(*cluster, kGolden, prompt, 12);
    }
  }
  // A chat: the next turn is the previous prompt, its answer and a new message.
  std::vector<int32_t> turn = SharingPrompts()[0];
  for (int t = 0; t < 3; ++t) {
    std::vector<int32_t> answer;
    ExpectGreedyMatchesEngine(*cluster, kGolden, turn, 40, &answer);
    turn = Concat({turn, answer, RandomTokens(30, 100 + t)});
  }
  EXPECT_GT(
      MetricSum(*cluster, "prefill", "dsv3_prefix_cache_hit_tokens_total{model=\"tiny-v3-bf16\"}"),
      0);
  EXPECT_GT(
      MetricSum(*cluster, "decode", "dsv3_prefix_cache_hit_tokens_total{model=\"tiny-v3-bf16\"}"),
      0);
  ExpectBooksBalanced(*cluster);
}

TEST(PrefixCacheClusterTest, CachedTokensReachTheClientOverGrpcAndHttp) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 17620, 64);
  ASSERT_NE(cluster, nullptr);
  const std::vector<int32_t> prompt = RandomTokens(200, 7);
  GrpcResult first = GenerateGrpc(cluster->router(), IdsRequest(prompt, 4));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_EQ(first.usage.cached_prompt_tokens(), 0);
  GrpcResult second = GenerateGrpc(cluster->router(), IdsRequest(prompt, 4));
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  // Whole blocks, and never the last token (its logits give the first new one).
  EXPECT_EQ(second.usage.cached_prompt_tokens(), 3 * kBlock);
  EXPECT_EQ(second.ids, first.ids);

  nlohmann::json body = {
      {"model", "tiny-v3-bf16"}, {"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
  auto res = cluster->Http().Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << "no answer";
  ASSERT_EQ(res->status, 200) << res->body;
  const nlohmann::json reply = nlohmann::json::parse(res->body);
  EXPECT_EQ(reply["usage"]["prompt_tokens"], 200);
  EXPECT_EQ(reply["usage"]["prompt_tokens_details"]["cached_tokens"], 3 * kBlock);
}

// With two prefill and two decode workers, the kv policy sends a prompt seen before to the
// prefill worker whose cache holds it (every repeat finds all its whole blocks cached),
// where round robin finds them only on the worker it happens to pick.
TEST(PrefixCacheClusterTest, KvAwareRoutingFindsTheWorkerThatHoldsThePrefix) {
  std::vector<std::vector<int32_t>> prompts;
  for (uint32_t seed = 20; seed < 25; ++seed) prompts.push_back(RandomTokens(200, seed));
  auto cached_in_repeats = [&](Cluster& cluster) {
    for (const auto& prompt : prompts) {
      GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(prompt, 2));
      EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    }
    // The workers' next load reports carry their new blocks to the router.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    int cached = 0;
    for (const auto& prompt : prompts) {
      GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(prompt, 2));
      EXPECT_TRUE(r.status.ok()) << r.status.error_message();
      cached += r.usage.cached_prompt_tokens();
    }
    return cached;
  };
  {
    auto cluster = Cluster::Start(kGolden, 2, 2, 17700, 64);
    ASSERT_NE(cluster, nullptr);
    EXPECT_EQ(cached_in_repeats(*cluster), static_cast<int>(prompts.size()) * 3 * kBlock);
    EXPECT_GE(MetricSum(*cluster, "router",
                        "dsv3_router_decisions_total{role=\"prefill\",reason=\"prefix_overlap\"}"),
              static_cast<double>(prompts.size()));
    EXPECT_GE(MetricSum(*cluster, "router",
                        "dsv3_router_decisions_total{role=\"decode\",reason=\"prefix_overlap\"}"),
              static_cast<double>(prompts.size()));
  }
  {
    auto cluster = Cluster::Start(kGolden, 2, 2, 17720, 64, {"--router_policy=round_robin"});
    ASSERT_NE(cluster, nullptr);
    // Round robin alternates, and an odd number of prompts puts each repeat on the other
    // prefill worker.
    EXPECT_EQ(cached_in_repeats(*cluster), 0);
  }
}

// Requests that end early (the router's deadline passes before or during the prefill, or
// during the decode; the client leaves mid-decode) leave no block held, and a later request
// that hits the cache still gets the engine's tokens.
TEST(PrefixCacheClusterTest, RequestsEndingEarlyLeakNothingAndCorruptNothing) {
  auto cluster = Cluster::Start(kGolden, 1, 1, 17740, 256);
  ASSERT_NE(cluster, nullptr);
  const std::vector<int32_t> shared = RandomTokens(300, 30);
  ExpectGreedyMatchesEngine(*cluster, kGolden, Concat({shared, RandomTokens(20, 29)}), 4);
  auto stub = v1::Inference::NewStub(
      grpc::CreateChannel(cluster->router(), grpc::InsecureChannelCredentials()));
  std::vector<std::thread> clients;
  for (int i = 0; i < 6; ++i) {
    clients.emplace_back([&, i] {
      // 1,690 tokens take far longer than any of these deadlines.
      v1::GenerateRequest request =
          IdsRequest(Concat({shared, RandomTokens(40 + i, 31 + i)}), 1690);
      if (i % 3 == 0) request.set_timeout_ms(3);
      if (i % 3 == 1) request.set_timeout_ms(150);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(i % 3 == 2 ? 150 : 60000));
      auto reader = stub->Generate(&ctx, request);
      v1::GenerateResponse response;
      while (reader->Read(&response)) {
      }
      const grpc::Status status = reader->Finish();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
          << "request " << i << ": " << status.error_message();
    });
  }
  for (auto& t : clients) t.join();
  // A Reserve whose answer arrives after the request's deadline is a lease the router never
  // saw: the decode worker frees it at its expiry (--lease_timeout, 30 s).
  ExpectBooksBalanced(*cluster, /*wait_tenths=*/350);
  // What they and the first request left in the caches serves a new prompt with the same
  // prefix, correctly.
  const std::vector<int32_t> prompt = Concat({shared, RandomTokens(50, 40)});
  GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(prompt, 16));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids, Generate(kGolden, prompt, 16));
  EXPECT_EQ(r.usage.cached_prompt_tokens(), 4 * kBlock);
  ExpectBooksBalanced(*cluster);
}

// A prefill worker killed while it holds a request whose prompt the decode worker has
// cached: the router retries on the other prefill worker, the output is the engine's, the
// decode worker's books balance, and its cached prefix (which the dead worker was never
// allowed to write) still serves later requests correctly.
TEST(PrefixCacheClusterTest, PrefillWorkerKilledMidRequestLeavesTheCacheIntact) {
  auto cluster = Cluster::Start(kGolden, 2, 1, 17760, 64);
  ASSERT_NE(cluster, nullptr);
  const std::vector<int32_t> shared = RandomTokens(260, 50);
  ExpectGreedyMatchesEngine(*cluster, kGolden, Concat({shared, RandomTokens(30, 51)}), 8);
  const Proc& p0 = cluster->Get("prefill", 0);
  const Proc& p1 = cluster->Get("prefill", 1);
  // Freeze both so the request is surely inside one, then kill -9 p0 and resume p1.
  kill(p0.pid, SIGSTOP);
  kill(p1.pid, SIGSTOP);
  const std::vector<int32_t> prompt = Concat({shared, RandomTokens(40, 52)});
  GrpcResult result;
  std::thread client([&] { result = GenerateGrpc(cluster->router(), IdsRequest(prompt, 8)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(p0.pid, SIGKILL);
  kill(p1.pid, SIGCONT);
  client.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.ids, Generate(kGolden, prompt, 8));
  // The decode worker holds nothing but its cache.
  const std::string decode = cluster->Get("decode").grpc;
  std::optional<v1::LoadReport> load;
  for (int tries = 0; tries < 60; ++tries) {
    load = WorkerLoad(decode);
    if (load.has_value() && load->kv_blocks_free() == load->kv_blocks_total()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(load.has_value());
  EXPECT_EQ(load->kv_blocks_free(), load->kv_blocks_total());
  EXPECT_GT(load->kv_blocks_cached(), 0);
  // Later requests over the same prefix, through the surviving prefill worker.
  for (uint32_t seed = 53; seed < 56; ++seed) {
    ExpectGreedyMatchesEngine(*cluster, kGolden, Concat({shared, RandomTokens(35, seed)}), 8);
  }
  EXPECT_GT(
      MetricSum(*cluster, "decode", "dsv3_prefix_cache_hit_tokens_total{model=\"tiny-v3-bf16\"}"),
      0);
}

// Conditional disaggregation: the next turn of a chat begins with the previous prompt and
// its answer, which only the decode worker has; with --decode_prefill_max_tokens it
// computes the short rest itself (no prefill worker), a chunk per step: same tokens as the
// engine, the cached count from the decode worker, and the decision counted.
TEST(PrefixCacheClusterTest, TheDecodeWorkerComputesAShortUncachedSuffixItself) {
  for (const std::string& model :
       {std::string(kGolden), std::string(DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-mtp")}) {
    const bool mtp = model != kGolden;
    // 16 tokens a step: the suffixes below take several steps (chunked local prefill).
    std::vector<std::string> flags = {"--decode_prefill_max_tokens=128",
                                      "--local_prefill_chunk_tokens=16"};
    if (mtp) flags.push_back("--speculative=mtp");
    auto cluster = Cluster::Start(model, 1, 1, mtp ? 17800 : 17780, 64, flags);
    ASSERT_NE(cluster, nullptr);
    const std::vector<int32_t> first = RandomTokens(200, 60);
    std::vector<int32_t> answer;
    ExpectGreedyMatchesEngine(*cluster, model, first, 100, &answer);
    // The decode worker's next load report carries the blocks of the prompt and answer.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const std::vector<int32_t> second = Concat({first, answer, RandomTokens(20, 61)});
    GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(second, 24));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, Generate(model, second, 24)) << model;
    const std::string decided =
        "dsv3_router_decisions_total{role=\"prefill\",reason=\"decode_worker\"}";
    if (!mtp) {
      // 299 tokens of KV kept: 4 whole blocks; the prefill worker has 3 (the first prompt).
      EXPECT_EQ(r.usage.cached_prompt_tokens(), 4 * kBlock);
      EXPECT_EQ(MetricSum(*cluster, "router", decided), 1);
    }
    // A third turn, and the books.
    const std::vector<int32_t> third = Concat({second, r.ids, RandomTokens(10, 62)});
    ExpectGreedyMatchesEngine(*cluster, model, third, 16);
    ExpectBooksBalanced(*cluster);
  }
}

TEST(PrefixCacheClusterTest, EvictionPressureKeepsOutputsAndBooksRight) {
  // 6 blocks per pool: each prompt below needs 4 of them, so every new prompt evicts.
  auto cluster = Cluster::Start(kGolden, 1, 1, 17640, 6);
  ASSERT_NE(cluster, nullptr);
  std::vector<std::vector<int32_t>> prompts;
  for (uint32_t seed = 10; seed < 16; ++seed) prompts.push_back(RandomTokens(200, seed));
  for (int round = 0; round < 2; ++round) {
    for (const auto& prompt : prompts) ExpectGreedyMatchesEngine(*cluster, kGolden, prompt, 8);
  }
  EXPECT_GT(
      MetricSum(*cluster, "decode", "dsv3_prefix_cache_evictions_total{model=\"tiny-v3-bf16\"}"),
      0);
  EXPECT_GT(
      MetricSum(*cluster, "prefill", "dsv3_prefix_cache_evictions_total{model=\"tiny-v3-bf16\"}"),
      0);
  ExpectBooksBalanced(*cluster);
}

TEST(PrefixCacheClusterTest, MtpSpeculationAndFp8GiveTheSameTokensWithTheCache) {
  {
    const std::string model = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-mtp";
    auto cluster = Cluster::Start(model, 1, 1, 17660, 64, {"--speculative=mtp"});
    ASSERT_NE(cluster, nullptr);
    for (int round = 0; round < 2; ++round) {
      for (const auto& prompt : SharingPrompts())
        ExpectGreedyMatchesEngine(*cluster, model, prompt, 12);
    }
    std::vector<int32_t> answer;
    const std::vector<int32_t> turn = SharingPrompts()[3];
    ExpectGreedyMatchesEngine(*cluster, model, turn, 70, &answer);
    ExpectGreedyMatchesEngine(*cluster, model, Concat({turn, answer, RandomTokens(20, 9)}), 12);
    ExpectBooksBalanced(*cluster);
  }
  {
    const std::string model = DSV3_SOURCE_DIR "/tests/data/golden/tiny-v3-fp8";
    auto cluster = Cluster::Start(model, 1, 1, 17680, 64);
    ASSERT_NE(cluster, nullptr);
    for (int round = 0; round < 2; ++round) {
      for (const auto& prompt : SharingPrompts())
        ExpectGreedyMatchesEngine(*cluster, model, prompt, 12);
    }
    ExpectBooksBalanced(*cluster);
  }
}

}  // namespace
}  // namespace dsv3
