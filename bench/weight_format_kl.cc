// weight_format_kl --model DIR --weights int8|int4|auto --tokens FILE [--ctx 512] [--chunks N]
//                  [--bf16_activations=false]
//
// The accuracy of a load-time weight format (engine/weight_format.h) as llama.cpp's
// `llama-perplexity --kl-divergence` measures a quantization: the token stream is cut into
// chunks of --ctx tokens, each starting with BOS; over the second half of every chunk, the
// KL divergence of the next-token distribution of the model in --weights from the same model
// as stored, and how often both rank the same token first. Prints one JSON line. --step 16
// measures what decoding computes (the decode kernels), 0 what prefill does (int8 activations
// in both; above 24 rows int4, and above 32 int8, round them and the weights to bf16 instead
// where the CPU has AVX512_BF16).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "model directory");
ABSL_FLAG(std::string, weights, "int8", "format to measure against the stored weights");
ABSL_FLAG(std::string, tokens, "", "file of token ids (whitespace or comma separated)");
ABSL_FLAG(int, ctx, 512, "tokens per chunk (the first is replaced by BOS)");
ABSL_FLAG(int, chunks, 16, "chunks to evaluate (at most what the tokens fill)");
ABSL_FLAG(int, threads, 0, "engine threads (0: all)");
ABSL_FLAG(int, step, 0,
          "forward each chunk this many tokens at a time (the KV cache carrying on): up to 24 "
          "runs the decode kernels; 0: the whole chunk at once, "
          "as a prefill");
ABSL_FLAG(bool, int8_activations, true, "the quantized model's int8 activations");
ABSL_FLAG(bool, bf16_activations, dsv3::engine::LoadOptions{}.bf16_activations,
          "the measured model's BF16 projections take activations rounded to bf16, as the "
          "workers do by default (with --weights auto: the cost of that alone; the reference "
          "always splits them)");

namespace {

using dsv3::engine::Model;

// log-softmax of `row` in float64.
std::vector<double> LogSoftmax(std::span<const float> row) {
  const double max = *std::max_element(row.begin(), row.end());
  double sum = 0;
  for (float v : row) sum += std::exp(v - max);
  const double log_z = max + std::log(sum);
  std::vector<double> out(row.size());
  for (size_t i = 0; i < row.size(); ++i) out[i] = row[i] - log_z;
  return out;
}

absl::StatusOr<std::vector<float>> ChunkLogits(const Model& model, std::span<const int32_t> chunk) {
  DSV3_ASSIGN_OR_RETURN(auto pool, dsv3::engine::KvCachePool::Create(model.KvLayout(
                                       static_cast<int64_t>((chunk.size() + 63) / 64), 64)));
  dsv3::engine::KvSequence seq;
  const size_t step = absl::GetFlag(FLAGS_step) > 0 ? absl::GetFlag(FLAGS_step) : chunk.size();
  std::vector<float> logits;
  for (size_t at = 0; at < chunk.size(); at += step) {
    dsv3::engine::SequenceInput in{chunk.subspan(at, std::min(step, chunk.size() - at)), &seq,
                                   /*all_logits=*/true};
    DSV3_ASSIGN_OR_RETURN(auto out, model.Forward({&in, 1}, *pool));
    logits.insert(logits.end(), out.logits.begin(), out.logits.end());
  }
  return logits;
}

int Run() {
  std::ifstream f(absl::GetFlag(FLAGS_tokens));
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<int32_t> tokens;
  for (absl::string_view part :
       absl::StrSplit(text, absl::ByAnyChar(" ,\n\t[]"), absl::SkipEmpty())) {
    int32_t id;
    if (absl::SimpleAtoi(part, &id)) tokens.push_back(id);
  }
  dsv3::engine::LoadOptions load;
  load.num_threads = absl::GetFlag(FLAGS_threads);
  load.bf16_activations = false;  // the reference: BF16 with f32-level products
  auto format = dsv3::engine::ParseWeightFormat(absl::GetFlag(FLAGS_weights));
  auto base = Model::Load(absl::GetFlag(FLAGS_model), load);
  if (!format.ok() || !base.ok()) {
    std::fprintf(stderr, "%s\n",
                 (!format.ok() ? format.status() : base.status()).ToString().c_str());
    return 1;
  }
  load.weights = *format;
  load.int8_activations = absl::GetFlag(FLAGS_int8_activations);
  load.bf16_activations = absl::GetFlag(FLAGS_bf16_activations);
  auto quant = Model::Load(absl::GetFlag(FLAGS_model), load);
  if (!quant.ok()) {
    std::fprintf(stderr, "%s\n", quant.status().ToString().c_str());
    return 1;
  }
  const int64_t ctx = absl::GetFlag(FLAGS_ctx);
  const int64_t vocab = (*base)->config().vocab_size;
  const int64_t chunks =
      std::min<int64_t>(absl::GetFlag(FLAGS_chunks), static_cast<int64_t>(tokens.size()) / ctx);
  std::vector<double> kls;
  int64_t same_top = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    chunk[0] = static_cast<int32_t>((*base)->config().bos_token_id);
    auto p = ChunkLogits(**base, chunk);
    auto q = ChunkLogits(**quant, chunk);
    if (!p.ok() || !q.ok()) {
      std::fprintf(stderr, "%s\n", (!p.ok() ? p.status() : q.status()).ToString().c_str());
      return 1;
    }
    for (int64_t i = ctx / 2; i < ctx - 1; ++i) {
      const std::span<const float> prow(p->data() + i * vocab, static_cast<size_t>(vocab));
      const std::span<const float> qrow(q->data() + i * vocab, static_cast<size_t>(vocab));
      const std::vector<double> lp = LogSoftmax(prow), lq = LogSoftmax(qrow);
      double kl = 0;
      for (int64_t v = 0; v < vocab; ++v) kl += std::exp(lp[v]) * (lp[v] - lq[v]);
      kls.push_back(kl);
      same_top += std::max_element(prow.begin(), prow.end()) - prow.begin() ==
                  std::max_element(qrow.begin(), qrow.end()) - qrow.begin();
    }
  }
  if (kls.empty()) {
    std::fprintf(stderr, "not enough tokens for one chunk of %lld\n", static_cast<long long>(ctx));
    return 1;
  }
  double mean = 0;
  for (double k : kls) mean += k;
  mean /= static_cast<double>(kls.size());
  std::vector<double> sorted = kls;
  std::sort(sorted.begin(), sorted.end());
  nlohmann::json j;
  j["weights"] = absl::GetFlag(FLAGS_weights);
  j["int8_activations"] = absl::GetFlag(FLAGS_int8_activations);
  j["bf16_activations"] = absl::GetFlag(FLAGS_bf16_activations);
  j["step"] = absl::GetFlag(FLAGS_step);
  j["positions"] = kls.size();
  j["mean_kl"] = mean;
  j["median_kl"] = sorted[sorted.size() / 2];
  j["p99_kl"] = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)];
  j["same_top_token"] = static_cast<double>(same_top) / static_cast<double>(kls.size());
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
