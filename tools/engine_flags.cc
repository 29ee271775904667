#include "tools/engine_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, tokens, "", "input token ids, space or comma separated");
ABSL_FLAG(std::string, output, "", "output file");
ABSL_FLAG(std::string, mtp_output, "", "also write the first MTP layer's logits here");
ABSL_FLAG(int64_t, max_tokens, 16, "tokens to generate");
ABSL_FLAG(std::string, speculative, "", "speculative decoding method: '' (off) or 'mtp'");
ABSL_FLAG(int32_t, draft_tokens, 1, "draft tokens per verification step (--speculative mtp)");
ABSL_FLAG(std::string, preset, "tiny",
          "synthetic model shape: tiny, demo (tiny with the DeepSeek-V3 vocabulary), bench, or "
          "v3-slice (DeepSeek-V3's widths, 1 dense + 1 MoE layer, ~16 GB as fp8)");
ABSL_FLAG(std::string, dtype, "bf16", "synthetic weight dtype: bf16 or fp8");
ABSL_FLAG(int32_t, mtp, 0, "MTP layers of the synthetic model (0 or 1)");
ABSL_FLAG(uint64_t, seed, 0, "random seed (weights for make-model, sampling for generate)");
ABSL_FLAG(std::string, out, "", "output directory");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature; 0 = greedy");
ABSL_FLAG(double, top_p, 1.0, "nucleus sampling threshold");
ABSL_FLAG(int32_t, top_k, 0, "keep the k most likely tokens; 0 = off");
ABSL_FLAG(double, min_p, 0.0, "drop tokens below min_p x the top probability");
ABSL_FLAG(double, repetition_penalty, 1.0, "repetition penalty (1 = off)");
ABSL_FLAG(double, presence_penalty, 0.0, "presence penalty");
ABSL_FLAG(double, frequency_penalty, 0.0, "frequency penalty");
ABSL_FLAG(std::string, stop_token_ids, "", "token ids that end generation");
ABSL_FLAG(int32_t, threads, 0, "engine compute threads; 0 = all hardware threads");
ABSL_FLAG(std::string, weights, "auto",
          "weight format in memory: auto (as the checkpoint stores them), int8, int4 or int8-head "
          "(quantized at load from BF16/FP8; see engine/weight_format.h)");
ABSL_FLAG(bool, int8_activations, true,
          "with --weights int8/int4: decode and prefill quantize activations to int8 for "
          "integer dot products (engine/kernels/matmul_int8.h), and above 24 rows (int4) or 32 "
          "(int8) rounds them and the weights to bf16 on CPUs with AVX512_BF16 (matmul_bf16.h); "
          "false keeps them in f32");

ABSL_FLAG(bool, bf16_activations, dsv3::engine::LoadOptions{}.bf16_activations,
          "BF16 projections multiply activations rounded to bf16 on CPUs with AVX512_BF16, as BF16 "
          "inference in PyTorch and llama.cpp, by one kernel at every batch size; false splits "
          "them into two bf16 parts from 2 rows on (f32-level products, slower at big batches "
          "and prefill). FP8 projections round them too, and past 16 rows their "
          "weights (false: f32 products). The workers' --bf16_activations; part of "
          "the model identity (README)");

ABSL_FLAG(bool, batch_invariant, false,
          "Every projection keeps one kernel at every row count, so that a request's tokens do "
          "not depend on what shares its batches (the workers' --batch_invariant; README). "
          "Part of the model identity");

namespace dsv3::tools {

absl::StatusOr<std::vector<int32_t>> ParseTokenList(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view part :
       absl::StrSplit(text, absl::ByAnyChar(" ,\t\n"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("bad token id '", part, "'"));
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<engine::LoadOptions> LoadOptionsFromFlags() {
  engine::LoadOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  DSV3_ASSIGN_OR_RETURN(options.weights, engine::ParseWeightFormat(absl::GetFlag(FLAGS_weights)));
  options.int8_activations = absl::GetFlag(FLAGS_int8_activations);
  options.bf16_activations = absl::GetFlag(FLAGS_bf16_activations);
  options.batch_invariant = absl::GetFlag(FLAGS_batch_invariant);
  return options;
}

absl::StatusOr<engine::SamplingParams> SamplingParamsFromFlags() {
  engine::SamplingParams p;
  p.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  p.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  p.top_k = absl::GetFlag(FLAGS_top_k);
  p.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
  p.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  p.presence_penalty = static_cast<float>(absl::GetFlag(FLAGS_presence_penalty));
  p.frequency_penalty = static_cast<float>(absl::GetFlag(FLAGS_frequency_penalty));
  p.seed = absl::GetFlag(FLAGS_seed);
  DSV3_ASSIGN_OR_RETURN(p.stop_token_ids, ParseTokenList(absl::GetFlag(FLAGS_stop_token_ids)));
  return p;
}

}  // namespace dsv3::tools
