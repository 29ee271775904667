// engine_bench: the engine's speed and memory on the bench preset (issue 3), against this
// machine's ceilings measured in the same run.
//
//   engine_bench [--model DIR | --workdir DIR] [--threads N] [--reps N] [--json FILE]
//
// Without --model it uses (and, when missing, writes) the bench preset model under --workdir
// (default /tmp/dsv3-bench-model, ~2 GB, ~20 s to write). Prints, in one run: decode tok/s at
// batch 1, 8 and 32; prefill tok/s of a 512-token prompt (--prefill_tokens); STREAM triad bandwidth
// (all threads) and f32 GEMM peak (oneDNN); the batch-1 bandwidth roofline and the share of it
// reached; resident memory against the bytes of weights plus the KV pool.

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/engine_bench_machine.h"
#include "bench/engine_bench_roles.h"
#include "common/status_macros.h"
#include "engine/kernels/logits.h"
#include "engine/model.h"
#include "engine/synthetic_checkpoint.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "model directory; default: the bench preset in --workdir");
ABSL_FLAG(std::string, workdir, "/tmp/dsv3-bench-model",
          "where the bench preset model is cached (written when missing)");
ABSL_FLAG(int32_t, threads, 0, "engine threads; 0 = all hardware threads");
ABSL_FLAG(std::string, weights, "auto", "weight format in memory: auto, int8, int4 or int8-head");
ABSL_FLAG(bool, int8_activations, true, "int8 activations for quantized weights");
ABSL_FLAG(bool, bf16_activations, dsv3::engine::LoadOptions{}.bf16_activations,
          "BF16 weights take activations rounded to bf16 (false: split in two from 2 rows on; the "
          "workers' --bf16_activations), and FP8 weights too (false: f32)");
ABSL_FLAG(bool, batch_invariant, false,
          "int8/int4 keep the integer kernel at every batch size, FP8 the direct one, split "
          "BF16 the bf16 kernel (the workers' --batch_invariant)");
ABSL_FLAG(bool, huge_pages, true,
          "projections left in the file mapping copied into transparent huge pages at load");
ABSL_FLAG(double, min_seconds, 0,
          "time each decode and prefill figure over at least this long (more steps, more "
          "prefills); 0: the fixed 32/16/8 steps and one prefill");
ABSL_FLAG(int32_t, reps, 3, "repetitions of each measurement (the best is reported)");
ABSL_FLAG(std::string, json, "", "also write the figures as JSON to this file ('-' = stdout)");
ABSL_FLAG(bool, ceilings, true, "measure STREAM bandwidth and GEMM peak");
ABSL_FLAG(bool, gemm_peak, true, "with --ceilings: also the GEMM peak (else the triad alone)");
ABSL_FLAG(bool, triad_beside, false,
          "measure the STREAM triad right before and after each batch-1 decode figure and give "
          "its roofline share against their mean (a shared VM's bandwidth moves within minutes)");
ABSL_FLAG(bool, speed, true, "measure decode and prefill speed");
ABSL_FLAG(std::vector<std::string>, decode_batches, std::vector<std::string>({"1", "8", "32"}),
          "decode batch sizes to measure (e.g. 1 alone, to profile it)");
ABSL_FLAG(bool, prefill, true, "measure prefill speed");
ABSL_FLAG(int64_t, prefill_tokens, 512, "tokens of the prefill prompt (1..65536)");
ABSL_FLAG(std::string, attention, "auto",
          "attention form: auto (the engine's choice), expanded or absorbed (every slice)");
ABSL_FLAG(bool, roles, true, "measure resident memory per load role (child processes)");
ABSL_FLAG(std::string, role_child, "", "internal: load one role and print its figures");

namespace dsv3::bench {
namespace {

using Clock = std::chrono::steady_clock;
using engine::ForwardResult;
using engine::KvCachePool;
using engine::KvSequence;
using engine::Model;
using engine::SequenceInput;

constexpr int64_t kDecodePrompt = 32;  // context each decoding sequence starts from
constexpr int64_t kPoolBlocks = 64;    // 4096 positions at least: batch 32 x 64, or the prefill
constexpr int64_t kPoolBlockSize = 64;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// Greedy, as the engine's sampler picks it (RequestSampler's greedy step).
int32_t Argmax(std::span<const float> row) {
  return static_cast<int32_t>(engine::ArgmaxFirst(row.data(), static_cast<int64_t>(row.size())));
}

std::vector<int32_t> PromptTokens(int64_t n, int64_t vocab, int64_t salt) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 3) % vocab);
  return t;
}

// Sum of `size` over the weights one decode token at batch 1 streams: every attention
// projection, the dense MLPs, per MoE layer the router, the shared expert and top_k routed
// experts, the embedding row, the LM head.
int64_t DecodeTokenWeights(const Model& model,
                           const std::function<int64_t(const engine::Linear&)>& size) {
  const engine::ModelWeights& w = model.weights();
  const engine::ModelConfig& c = model.config();
  auto mlp = [&](const engine::MlpWeights& m) { return size(m.gate) + size(m.up) + size(m.down); };
  int64_t bytes = size(w.embed) / c.vocab_size + size(w.lm_head);
  for (const engine::LayerWeights& l : w.layers) {
    const engine::MlaWeights& a = l.attn;
    bytes += size(a.q_a) + size(a.q_b) + size(a.q_proj) + size(a.kv_a) + size(a.kv_b) + size(a.o);
    if (!l.is_moe) {
      bytes += mlp(l.mlp);
      continue;
    }
    bytes += size(l.moe.router) + mlp(l.moe.shared);
    if (!l.moe.experts.empty()) bytes += c.num_experts_per_tok * mlp(l.moe.experts[0]);
  }
  return bytes;
}

int64_t DecodeTokenWeightBytes(const Model& model) {
  return DecodeTokenWeights(model, [](const engine::Linear& l) { return l.weight_bytes(); });
}

int64_t Params(const engine::Linear& l) { return l.out_features * l.in_features; }

// Matrix FLOPs of one prefill of n tokens from position 0 (projections of every token, the
// expanded attention, the LM head for the last token only).
double PrefillFlops(const Model& model, int64_t n) {
  const engine::ModelConfig& c = model.config();
  const int64_t head = Params(model.weights().lm_head);
  const int64_t per_token_params = DecodeTokenWeights(model, Params) - head;
  double flops = 2.0 * static_cast<double>(per_token_params) * n + 2.0 * head;
  const double pairs = static_cast<double>(n) * (n + 1) / 2;
  const double heads = static_cast<double>(c.num_attention_heads);
  flops += c.num_hidden_layers * 2.0 * pairs * heads * (c.qk_head_dim() + c.v_head_dim);
  return flops;
}

struct DecodeFigure {
  int64_t batch = 0;
  int64_t steps = 0;
  double tokens_per_s = 0;
};

// `batch` sequences prefilled with kDecodePrompt tokens, then `steps` timed decode steps of one
// token each (greedy), all sequences in one Forward per step.
absl::StatusOr<DecodeFigure> MeasureDecode(const Model& model, KvCachePool& pool, int64_t batch,
                                           int64_t steps, const engine::ForwardOptions& options) {
  std::vector<KvSequence> seqs(static_cast<size_t>(batch));
  std::vector<std::vector<int32_t>> next(static_cast<size_t>(batch));
  std::vector<SequenceInput> in(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b)
    next[b] = PromptTokens(kDecodePrompt, model.config().vocab_size, b);
  auto step = [&]() -> absl::Status {
    for (int64_t b = 0; b < batch; ++b) in[b] = SequenceInput{next[b], &seqs[b], false};
    DSV3_ASSIGN_OR_RETURN(ForwardResult out, model.Forward(in, pool, options));
    for (int64_t b = 0; b < batch; ++b) next[b] = {Argmax(out.LastLogits(b))};
    return absl::OkStatus();
  };
  DSV3_RETURN_IF_ERROR(step());  // prefill
  DSV3_RETURN_IF_ERROR(step());  // warm-up decode step
  // --min_seconds: more steps until that much time is measured, as far as the pool holds.
  const int64_t max_steps = (kPoolBlocks / batch) * kPoolBlockSize - kDecodePrompt - 2;
  const double min_seconds = absl::GetFlag(FLAGS_min_seconds);
  const auto t0 = Clock::now();
  int64_t done = 0;
  while (done < steps || (Seconds(t0) < min_seconds && done < max_steps)) {
    DSV3_RETURN_IF_ERROR(step());
    ++done;
  }
  const double secs = Seconds(t0);
  for (KvSequence& s : seqs) pool.Release(s);
  return DecodeFigure{batch, done, static_cast<double>(batch * done) / secs};
}

absl::StatusOr<double> MeasurePrefillSeconds(const Model& model, KvCachePool& pool, int64_t tokens,
                                             const engine::ForwardOptions& options) {
  const std::vector<int32_t> prompt = PromptTokens(tokens, model.config().vocab_size, 99);
  const auto t0 = Clock::now();
  int64_t done = 0;
  do {  // --min_seconds: the mean over as many prefills as fill it
    KvSequence seq;
    SequenceInput in{prompt, &seq, false};
    DSV3_ASSIGN_OR_RETURN(ForwardResult out, model.Forward({&in, 1}, pool, options));
    pool.Release(seq);
    ++done;
  } while (Seconds(t0) < absl::GetFlag(FLAGS_min_seconds));
  return Seconds(t0) / static_cast<double>(done);
}

absl::Status EnsureModel(std::string* dir) {
  if (!absl::GetFlag(FLAGS_model).empty()) {
    *dir = absl::GetFlag(FLAGS_model);
    return absl::OkStatus();
  }
  *dir = absl::GetFlag(FLAGS_workdir);
  struct stat st;
  if (::stat((*dir + "/config.json").c_str(), &st) == 0) return absl::OkStatus();
  std::fprintf(stderr, "engine_bench: writing the bench preset model to %s (~2 GB)\n",
               dir->c_str());
  engine::SyntheticOptions options;
  options.preset = "bench";
  return engine::WriteSyntheticCheckpoint(*dir, options);
}

// Decode and prefill speed, and the process's resident memory at the end (weights + pool).
absl::Status MeasureSpeed(const std::string& dir, int threads, int reps, double bandwidth,
                          double peak, nlohmann::json& j) {
  auto t0 = Clock::now();
  engine::LoadOptions load;
  load.num_threads = threads;
  DSV3_ASSIGN_OR_RETURN(load.weights, engine::ParseWeightFormat(absl::GetFlag(FLAGS_weights)));
  load.int8_activations = absl::GetFlag(FLAGS_int8_activations);
  load.bf16_activations = absl::GetFlag(FLAGS_bf16_activations);
  load.batch_invariant = absl::GetFlag(FLAGS_batch_invariant);
  load.huge_pages = absl::GetFlag(FLAGS_huge_pages);
  DSV3_ASSIGN_OR_RETURN(auto model, Model::Load(dir, load));
  j["huge_pages"] = load.huge_pages;
  j["weights"] = absl::GetFlag(FLAGS_weights);
  j["int8_activations"] = load.int8_activations;
  j["bf16_activations"] = load.bf16_activations;
  j["batch_invariant"] = load.batch_invariant;
  j["load_s"] = Seconds(t0);
  const int64_t prefill_tokens = absl::GetFlag(FLAGS_prefill_tokens);
  if (prefill_tokens < 1 || prefill_tokens > 65536) {
    return absl::InvalidArgumentError("--prefill_tokens must be 1..65536");
  }
  engine::ForwardOptions forward;
  const std::string form = absl::GetFlag(FLAGS_attention);
  if (form == "expanded") {
    forward.attention = engine::AttentionForm::kExpanded;
  } else if (form == "absorbed") {
    forward.attention = engine::AttentionForm::kAbsorbed;
  } else if (form != "auto") {
    return absl::InvalidArgumentError("--attention must be auto, expanded or absorbed");
  }
  j["attention"] = form;
  const int64_t blocks =
      std::max(kPoolBlocks, (prefill_tokens + kPoolBlockSize - 1) / kPoolBlockSize);
  DSV3_ASSIGN_OR_RETURN(auto pool, KvCachePool::Create(model->KvLayout(blocks, kPoolBlockSize)));
  const double weight_bytes = static_cast<double>(model->weights().bytes);
  const double token_bytes = static_cast<double>(DecodeTokenWeightBytes(*model));
  j["weights_bytes"] = weight_bytes;
  j["kv_pool_bytes"] = pool->size_bytes();
  j["decode_token_weight_bytes"] = token_bytes;
  std::printf(
      "model: %s, weights %.2f GB, KV pool %.1f MB, load %.2f s; a batch-1 decode token "
      "streams %.1f MB of weights\n",
      dir.c_str(), weight_bytes / 1e9, pool->size_bytes() / 1e6, j["load_s"].get<double>(),
      token_bytes / 1e6);

  struct DecodeRun {
    int64_t batch, steps;
  };
  std::vector<DecodeRun> runs;
  for (const std::string& b : absl::GetFlag(FLAGS_decode_batches)) {
    int64_t batch;
    if (!absl::SimpleAtoi(b, &batch) || batch < 1 || batch * 2 * kDecodePrompt > kPoolBlocks * 64) {
      return absl::InvalidArgumentError(absl::StrCat("bad --decode_batches entry '", b, "'"));
    }
    runs.push_back({batch, batch == 1 ? 32 : (batch <= 8 ? 16 : 8)});
  }
  const bool beside = absl::GetFlag(FLAGS_triad_beside);
  const int hw_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (const DecodeRun& d : runs) {
    DecodeFigure best;
    double best_triad = 0;  // --triad_beside: the mean of the triads around the best rep
    for (int r = 0; r < reps; ++r) {
      const bool bracket = beside && d.batch == 1;
      const double before = bracket ? StreamTriadBesideGBs(hw_threads) : 0;
      DSV3_ASSIGN_OR_RETURN(DecodeFigure f,
                            MeasureDecode(*model, *pool, d.batch, d.steps, forward));
      const double after = bracket ? StreamTriadBesideGBs(hw_threads) : 0;
      if (f.tokens_per_s > best.tokens_per_s) {
        best = f;
        best_triad = (before + after) / 2;
      }
    }
    j[absl::StrCat("decode_b", d.batch, "_tok_s")] = best.tokens_per_s;
    std::printf("decode batch %2lld: %7.1f tok/s", static_cast<long long>(d.batch),
                best.tokens_per_s);
    if (d.batch == 1 && bandwidth > 0) {
      const double roofline = bandwidth * 1e9 / token_bytes;
      j["decode_b1_roofline_tok_s"] = roofline;
      j["decode_b1_roofline_share"] = best.tokens_per_s / roofline;
      std::printf("  (roofline %.1f tok/s at %.1f GB/s: %.0f%%)", roofline, bandwidth,
                  100.0 * best.tokens_per_s / roofline);
    }
    if (d.batch == 1 && best_triad > 0) {
      const double share = best.tokens_per_s * token_bytes / (best_triad * 1e9);
      j["decode_b1_triad_beside_gb_s"] = best_triad;
      j["decode_b1_roofline_share_beside"] = share;
      std::printf("  (triad beside it %.1f GB/s: %.0f%% of that roofline)", best_triad,
                  100.0 * share);
    }
    std::printf("\n");
  }

  if (absl::GetFlag(FLAGS_prefill)) {
    double best_prefill = 1e30;
    for (int r = 0; r < reps; ++r) {
      DSV3_ASSIGN_OR_RETURN(double s,
                            MeasurePrefillSeconds(*model, *pool, prefill_tokens, forward));
      best_prefill = std::min(best_prefill, s);
    }
    const double flops = PrefillFlops(*model, prefill_tokens);
    const double tok_s = static_cast<double>(prefill_tokens) / best_prefill;
    j[absl::StrCat("prefill_", prefill_tokens, "_tok_s")] = tok_s;
    j[absl::StrCat("prefill_", prefill_tokens, "_gflop_s")] = flops / best_prefill / 1e9;
    std::printf("prefill %lld: %7.1f tok/s, %.1f GFLOP/s", static_cast<long long>(prefill_tokens),
                tok_s, flops / best_prefill / 1e9);
    if (peak > 0) {
      j["prefill_peak_share"] = flops / best_prefill / 1e9 / peak;
      std::printf(" (%.0f%% of the measured GEMM peak)", 100.0 * flops / best_prefill / 1e9 / peak);
    }
    std::printf("\n");
  }

  const MemoryUsage mem = ReadMemoryUsage();
  const double held = weight_bytes + static_cast<double>(pool->size_bytes());
  j["rss_bytes"] = mem.rss_bytes;
  j["rss_file_bytes"] = mem.rss_file_bytes;
  j["rss_anon_bytes"] = mem.rss_anon_bytes;
  j["rss_ratio"] = mem.rss_bytes / held;
  j["anon_huge_bytes"] = mem.anon_huge_bytes;
  std::printf(
      "memory: RSS %.2f GB (file %.2f, anon %.2f, %.2f of it in huge pages) vs weights + KV pool "
      "%.2f GB: %.3fx\n",
      mem.rss_bytes / 1e9, mem.rss_file_bytes / 1e9, mem.rss_anon_bytes / 1e9,
      mem.anon_huge_bytes / 1e9, held / 1e9, mem.rss_bytes / held);

  return absl::OkStatus();
}

absl::Status Run() {
  nlohmann::json j;
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));
  const int hw_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads) : hw_threads;
  j["threads"] = threads;
  double bandwidth = 0, peak = 0;
  if (absl::GetFlag(FLAGS_ceilings)) {
    bandwidth = StreamTriadGBs(hw_threads, int64_t{40} << 20, 5);
    j["stream_triad_gb_s"] = bandwidth;
    std::printf("machine: STREAM triad %.1f GB/s (%d threads)", bandwidth, hw_threads);
    if (absl::GetFlag(FLAGS_gemm_peak)) {
      peak = GemmPeakGflops(256, 4096, 4096, 5);
      j["gemm_f32_peak_gflop_s"] = peak;
      std::printf(", f32 GEMM peak %.1f GFLOP/s (oneDNN, M=256 N=K=4096)", peak);
    }
    std::printf("\n");
  }

  std::string dir;
  DSV3_RETURN_IF_ERROR(EnsureModel(&dir));
  if (absl::GetFlag(FLAGS_speed)) {
    DSV3_RETURN_IF_ERROR(MeasureSpeed(dir, threads, reps, bandwidth, peak, j));
  }
  if (absl::GetFlag(FLAGS_roles)) {
    DSV3_ASSIGN_OR_RETURN(
        j["roles"],
        MeasureRoles(std::filesystem::read_symlink("/proc/self/exe").string(), dir, threads));
  }
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (json_path == "-") {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!json_path.empty()) {
    std::ofstream(json_path) << j.dump(2) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace dsv3::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (!absl::GetFlag(FLAGS_role_child).empty()) {
    return dsv3::bench::RunRoleChild(absl::GetFlag(FLAGS_model), absl::GetFlag(FLAGS_role_child),
                                     absl::GetFlag(FLAGS_threads));
  }
  const absl::Status status = dsv3::bench::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
