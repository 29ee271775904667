// structured_output_bench --model DIR --tokenizer DIR [--batch 32] [--steps 48]
//
// What constrained decoding costs per decode step (issue 18's target: the token mask under
// 10% of a decode step at batch 32 on the bench model). In one run, on one model: `batch`
// sequences decode greedily, one Forward per step, and each step's tokens are sampled three
// ways from the same logits: free (RequestSampler), constrained by a JSON schema with an
// empty mask cache (the first requests with a schema), and constrained again with the cache
// the first pass filled (later requests with that schema). A sequence whose JSON is complete
// starts a new request (a new constraint), so the batch stays full of live constraints.
// Reported per step: Forward seconds, sampling seconds each way, and the constraint's share
// of a step ((constrained - free sampling) / (Forward + free sampling)).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "nlohmann/json.hpp"
#include "structured_output/grammar_builder.h"
#include "structured_output/grammar_constraint.h"

ABSL_FLAG(std::string, model, "", "Model directory (the bench preset).");
ABSL_FLAG(std::string, tokenizer, "", "Tokenizer directory (tokenizer.json).");
ABSL_FLAG(int, batch, 32, "Sequences per step.");
ABSL_FLAG(int, steps, 48, "Decode steps timed.");
ABSL_FLAG(int, threads, 0, "Engine threads (0: all cores).");

namespace {

using namespace dsv3;  // NOLINT: a bench's main file
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr char kSchema[] = R"({
  "type": "object",
  "properties": {
    "city": {"type": "string", "maxLength": 24},
    "days": {"type": "integer", "minimum": 1, "maximum": 14},
    "unit": {"enum": ["celsius", "fahrenheit"]},
    "hourly": {"type": "boolean"},
    "notes": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4}
  },
  "required": ["city", "days", "unit"]})";

// One way of sampling the batch: a sampler per sequence, renewed when its request ends.
struct Lane {
  std::unique_ptr<engine::RequestSampler> sampler;
  int64_t generated = 0;
  int requests = 0;
};

int Run() {
  engine::LoadOptions load;
  load.num_threads = absl::GetFlag(FLAGS_threads);
  auto model = engine::Model::Load(absl::GetFlag(FLAGS_model), load);
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().ToString().c_str()), 1;
  auto tok = tokenizer::Tokenizer::Load(absl::GetFlag(FLAGS_tokenizer));
  if (!tok.ok()) return std::fprintf(stderr, "%s\n", tok.status().ToString().c_str()), 1;
  const int64_t vocab = (*model)->config().vocab_size;
  const int32_t eos = static_cast<int32_t>((*model)->config().eos_token_id);
  auto vocabulary = structured_output::VocabularyFromTokenizer(**tok, vocab, {eos});
  auto grammar = structured_output::JsonSchemaGrammar(nlohmann::ordered_json::parse(kSchema));
  if (!grammar.ok()) return std::fprintf(stderr, "%s\n", grammar.status().ToString().c_str()), 1;
  structured_output::StructuredOutputs outputs(vocabulary);

  const int batch = absl::GetFlag(FLAGS_batch);
  const int steps = absl::GetFlag(FLAGS_steps);
  constexpr int64_t kBudget = 64;  // max_tokens of each constrained request
  auto new_sampler = [&](bool constrained) {
    auto s = engine::RequestSampler::Create(engine::SamplingParams(), vocab, {});
    auto sampler = std::make_unique<engine::RequestSampler>(std::move(*s));
    if (constrained) (void)sampler->Constrain(*outputs.NewConstraint(*grammar), kBudget);
    return sampler;
  };
  // Free and constrained with an empty cache; the warm lanes replay the same logits after.
  std::vector<Lane> free_lanes(batch), cold(batch);
  for (int b = 0; b < batch; ++b) {
    free_lanes[b].sampler = new_sampler(false);
    cold[b].sampler = new_sampler(true);
  }
  auto pool = engine::KvCachePool::Create((*model)->KvLayout(2 * batch));  // 64 positions a block
  if (!pool.ok()) return std::fprintf(stderr, "%s\n", pool.status().ToString().c_str()), 1;
  std::vector<engine::KvSequence> seqs(batch);
  std::vector<std::vector<int32_t>> next(batch);
  for (int b = 0; b < batch; ++b) next[b] = {static_cast<int32_t>(1000 + b), 2000, 3000, 4000};
  std::vector<engine::SequenceInput> in(batch);
  std::vector<std::vector<float>> kept;  // every step's logits, for the warm pass
  double forward_s = 0, free_s = 0, cold_s = 0;
  auto sample_all = [&](std::vector<Lane>& lanes, const engine::ForwardResult* out,
                        const std::vector<float>* rows, bool constrained,
                        std::vector<int32_t>* ids) {
    const auto t0 = Clock::now();
    for (int b = 0; b < batch; ++b) {
      std::span<const float> logits =
          out != nullptr ? out->LastLogits(b)
                         : std::span<const float>(rows->data() + static_cast<size_t>(b) * vocab,
                                                  static_cast<size_t>(vocab));
      auto t = lanes[b].sampler->Sample(logits);
      if (!t.ok()) {
        std::fprintf(stderr, "sample: %s\n", t.status().ToString().c_str());
        std::exit(1);
      }
      if (ids != nullptr) (*ids)[b] = t->token;
      if (constrained && (t->token == eos || ++lanes[b].generated >= kBudget)) {
        lanes[b].sampler = new_sampler(true);
        lanes[b].generated = 0;
        ++lanes[b].requests;
      }
    }
    return Since(t0);
  };
  for (int s = -2; s < steps; ++s) {  // two untimed steps: the prompt, a warm-up
    for (int b = 0; b < batch; ++b) in[b] = engine::SequenceInput{next[b], &seqs[b], false};
    const auto t0 = Clock::now();
    auto out = (*model)->Forward(in, **pool);
    if (!out.ok()) return std::fprintf(stderr, "%s\n", out.status().ToString().c_str()), 1;
    const double f = Since(t0);
    std::vector<int32_t> ids(batch);
    const double free_t = sample_all(free_lanes, &*out, nullptr, false, &ids);
    const double cold_t = sample_all(cold, &*out, nullptr, true, nullptr);
    std::vector<float> rows(static_cast<size_t>(batch) * vocab);
    for (int b = 0; b < batch; ++b) {
      auto l = out->LastLogits(b);
      std::copy(l.begin(), l.end(), rows.begin() + static_cast<size_t>(b) * vocab);
    }
    kept.push_back(std::move(rows));
    for (int b = 0; b < batch; ++b) next[b] = {ids[b]};
    if (s >= 0) forward_s += f, free_s += free_t, cold_s += cold_t;
  }
  // The warm pass: the same logits again, on the cache the cold pass filled.
  std::vector<Lane> warm(batch);
  for (int b = 0; b < batch; ++b) warm[b].sampler = new_sampler(true);
  double warm_s = 0;
  for (size_t s = 0; s < kept.size(); ++s) {
    const double t = sample_all(warm, nullptr, &kept[s], true, nullptr);
    if (s >= 2) warm_s += t;
  }
  int requests = 0;
  for (const Lane& l : cold) requests += l.requests;
  const double step = (forward_s + free_s) / steps;
  std::printf("batch %d, %d steps; %d constrained requests completed per pass\n", batch, steps,
              requests);
  std::printf(
      "per step: Forward %.1f ms, free sampling %.2f ms, constrained sampling %.2f ms "
      "(cold cache) / %.2f ms (warm)\n",
      1e3 * forward_s / steps, 1e3 * free_s / steps, 1e3 * cold_s / steps, 1e3 * warm_s / steps);
  std::printf("the constraint's share of a decode step: %.1f%% cold, %.1f%% warm\n",
              100.0 * (cold_s - free_s) / steps / step, 100.0 * (warm_s - free_s) / steps / step);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
