// sampler_bench [--vocab 129280] [--tokens 200] [--seed 1]
//
// What RequestSampler::Sample costs per token, single-threaded, for the sampling settings
// clients send (greedy; OpenAI's default temperature 1; temperature with top_p or top_k;
// penalties; logprobs) and three kinds of logits row: "peaked" (a confident model: a few
// tokens 14-20 above a normal spread of scale 2 hold almost all the probability), "flat"
// (a spread of scale 3 holds most of it: a draw at temperature 1 walks deep into the order)
// and "random" (a spread of scale 0.5 and nothing above it: a model with random weights, as
// the synthetic checkpoints are). A decode step samples one row per sequence: at batch B a
// step pays B times these figures on top of its Forward, or less on the engine's thread pool
// (the last line of each kind: batch 32 on one thread, then on the pool).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/sampler.h"
#include "engine/thread_pool.h"

ABSL_FLAG(int64_t, vocab, 129280, "Vocabulary size (DeepSeek-V3's by default).");
ABSL_FLAG(int, tokens, 200, "Tokens sampled per setting.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the logits and of the samplers.");

namespace {

using dsv3::engine::RequestSampler;
using dsv3::engine::SamplingParams;
using Clock = std::chrono::steady_clock;

struct Setting {
  std::string name;
  SamplingParams params;
};

std::vector<Setting> Settings(uint64_t seed) {
  auto with = [seed](auto edit) {
    SamplingParams p;
    p.seed = seed;
    edit(p);
    return p;
  };
  return {
      {"greedy", with([](SamplingParams&) {})},
      {"greedy, top_logprobs 5", with([](SamplingParams& p) { p.top_logprobs = 5; })},
      {"temperature 1", with([](SamplingParams& p) { p.temperature = 1.0f; })},
      {"temperature 0.7, top_p 0.9", with([](SamplingParams& p) {
         p.temperature = 0.7f;
         p.top_p = 0.9f;
       })},
      {"temperature 0.7, top_k 40", with([](SamplingParams& p) {
         p.temperature = 0.7f;
         p.top_k = 40;
       })},
      {"temperature 1, min_p 0.05", with([](SamplingParams& p) {
         p.temperature = 1.0f;
         p.min_p = 0.05f;
       })},
      {"temperature 0.7, frequency 0.5, presence 0.5", with([](SamplingParams& p) {
         p.temperature = 0.7f;
         p.frequency_penalty = 0.5f;
         p.presence_penalty = 0.5f;
       })},
  };
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int64_t vocab = absl::GetFlag(FLAGS_vocab);
  const int tokens = absl::GetFlag(FLAGS_tokens);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  constexpr int kRows = 16;  // distinct rows, cycled
  const std::vector<int32_t> prompt(64, 7);
  std::printf("sampler_bench: vocab %lld, %d tokens per setting, one thread\n",
              static_cast<long long>(vocab), tokens);
  for (const char* kind : {"peaked", "flat", "random"}) {
    const std::string k(kind);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, k == "peaked" ? 2.0f : k == "flat" ? 3.0f : 0.5f);
    std::vector<float> logits(static_cast<size_t>(kRows * vocab));
    for (float& v : logits) v = normal(rng);
    std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
    for (int r = 0; r < kRows && k != "random"; ++r) {
      for (int j = 0; j < 8; ++j) {
        logits[static_cast<size_t>(r * vocab + pick(rng))] += (k == "peaked" ? 20.0f : 12.0f) - j;
      }
    }
    for (const Setting& s : Settings(seed)) {
      auto sampler = RequestSampler::Create(s.params, vocab, prompt);
      if (!sampler.ok()) {
        std::fprintf(stderr, "%s: %s\n", s.name.c_str(), sampler.status().ToString().c_str());
        return 1;
      }
      const auto t0 = Clock::now();
      for (int t = 0; t < tokens; ++t) {
        const float* row = &logits[static_cast<size_t>((t % kRows) * vocab)];
        auto token = sampler->Sample({row, static_cast<size_t>(vocab)});
        if (!token.ok()) {
          std::fprintf(stderr, "%s: %s\n", s.name.c_str(), token.status().ToString().c_str());
          return 1;
        }
      }
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      std::printf("%-7s %-46s %9.1f us a token\n", kind, s.name.c_str(), us / tokens);
    }
    // A decode step's sampling at batch 32 (temperature 0.7, top_p 0.9): one thread, then the
    // engine's pool taking the sequences in turn, as the decode worker's step does.
    std::vector<RequestSampler> batch;
    for (int b = 0; b < 32; ++b)
      batch.push_back(*RequestSampler::Create(Settings(seed)[3].params, vocab, prompt));
    auto step = [&](bool pooled) {
      auto one = [&](int64_t b) {
        const float* row = &logits[static_cast<size_t>((b % kRows) * vocab)];
        (void)batch[static_cast<size_t>(b)].Sample({row, static_cast<size_t>(vocab)});
      };
      const auto t0 = Clock::now();
      for (int rep = 0; rep < 8; ++rep) {
        if (pooled) {
          dsv3::engine::ThreadPool::Default().ParallelForDynamic(32,
                                                                 [&](int64_t b, int) { one(b); });
        } else {
          for (int64_t b = 0; b < 32; ++b) one(b);
        }
      }
      return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / 8;
    };
    const double serial = step(false), pooled = step(true);
    std::printf("%-7s %-46s %9.1f us a step; %d pool threads: %.1f us\n", kind,
                "batch 32, temperature 0.7, top_p 0.9", serial,
                dsv3::engine::ThreadPool::Default().size(), pooled);
  }
  return 0;
}
