// v3_slice_bench --model DIR [--threads N] [--weights auto|int8|int4] [--json FILE]
//                [--dispatch_us 1:X,8:Y,32:Z] [--decode_batches 1,8,32] [--prefill=false]
//
// What a layer of DeepSeek-V3 costs on this machine, measured on a checkpoint with its real
// widths (`dsv3 make-model --preset v3-slice --dtype fp8`: hidden 7168, 128 heads, 256 routed
// experts top-8 of 2048, dense 18432, vocab 129,280; one dense and one MoE layer), and the
// extrapolation to the whole model (61 layers: 3 dense, 58 MoE):
//   - decode at batch 1, 8 and 32 (32-token contexts): seconds per step of the dense layer, the
//     MoE layer (and its routed experts alone), and the head; at batch 1 the weight bytes each
//     reads and the share of the STREAM roofline (bandwidth measured at the start of the run,
//     and again right before and after the batch-1 figures);
//   - prefill of 512 tokens: seconds per layer;
//   - tokens/s of the 671B model on one such node = batch / (3 dense + 58 MoE + head), and
//     with its routed experts on N expert workers (2, 4, 8) like this node: the routed part
//     divided by N plus the dispatch + combine of one MoE layer (--dispatch_us, from
//     expert_dispatch_bench at hidden 7168, top-8, run beside this one).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/engine_bench_machine.h"
#include "common/status_macros.h"
#include "engine/model.h"
#include "engine/routed_experts.h"
#include "engine/thread_pool.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "a v3-slice checkpoint (dsv3 make-model --preset v3-slice)");
ABSL_FLAG(int, threads, 0, "engine threads (0: all)");
ABSL_FLAG(std::string, weights, "auto", "weight format: auto, int8, int4");
ABSL_FLAG(bool, huge_pages, true, "projections copied into transparent huge pages at load");
ABSL_FLAG(std::vector<std::string>, decode_batches, std::vector<std::string>({"1", "8", "32"}),
          "decode batch sizes to time");
ABSL_FLAG(bool, prefill, true, "also time the prefill of 512 tokens");
ABSL_FLAG(double, min_seconds, 2.0, "time each figure over at least this long");
ABSL_FLAG(std::string, json, "", "also write the figures here");
ABSL_FLAG(std::string, dispatch_us, "",
          "dispatch + combine microseconds of one MoE layer by batch, e.g. 1:310,8:900,32:2900");

namespace {

using Clock = std::chrono::steady_clock;
using dsv3::engine::Linear;
using dsv3::engine::Model;

constexpr int64_t kFullDense = 3;  // DeepSeek-V3: first_k_dense_replace
constexpr int64_t kFullMoe = 58;   // 61 layers in all
constexpr int64_t kContext = 32;

// Times the routed experts of each MoE layer call (not the shared expert `overlapped` runs).
class TimedExperts final : public dsv3::engine::RoutedExpertExecutor {
 public:
  explicit TimedExperts(dsv3::engine::RoutedExpertExecutor* inner) : inner_(inner) {}
  absl::Status Run(int64_t layer, const float* x, int64_t rows, int64_t hidden, int64_t top_k,
                   const int32_t* experts, dsv3::engine::ExpertOutputs* outputs,
                   absl::FunctionRef<void()> overlapped) override {
    Clock::time_point start;
    absl::Status s = inner_->Run(layer, x, rows, hidden, top_k, experts, outputs, [&] {
      overlapped();
      start = Clock::now();
    });
    seconds += std::chrono::duration<double>(Clock::now() - start).count();
    return s;
  }
  double seconds = 0;

 private:
  dsv3::engine::RoutedExpertExecutor* inner_;
};

int64_t Bytes(const Linear& l) { return l.empty() ? 0 : l.weight_bytes(); }

struct Stages {
  double dense = 0, moe = 0, routed = 0, head = 0;  // seconds per step
  int64_t steps = 0;
};

// Steps of `batch` sequences (decode: one token each after a kContext prompt; or one prefill
// of `prefill` tokens), repeated for at least --min_seconds.
absl::StatusOr<Stages> Measure(const Model& model, TimedExperts& timed, int64_t batch,
                               int64_t prefill) {
  const int64_t vocab = model.config().vocab_size;
  const int64_t per_seq = prefill > 0 ? prefill : kContext + 512;
  DSV3_ASSIGN_OR_RETURN(auto pool, dsv3::engine::KvCachePool::Create(
                                       model.KvLayout(batch * ((per_seq + 63) / 64), 64)));
  std::vector<dsv3::engine::KvSequence> seqs(static_cast<size_t>(batch));
  std::vector<std::vector<int32_t>> next(static_cast<size_t>(batch));
  auto prompt = [&](int64_t n, int64_t salt) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      t[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 3) % vocab);
    return t;
  };
  std::vector<double> stage;
  auto step = [&](bool timed_step, Stages* acc) -> absl::Status {
    std::vector<dsv3::engine::SequenceInput> in;
    for (int64_t b = 0; b < batch; ++b) in.push_back({next[b], &seqs[b], false});
    dsv3::engine::ForwardOptions options;
    stage.clear();
    options.stage_seconds = &stage;
    timed.seconds = 0;
    DSV3_ASSIGN_OR_RETURN(auto out, model.Forward(in, *pool, options));
    for (int64_t b = 0; b < batch; ++b) {
      auto row = out.LastLogits(static_cast<size_t>(b));
      next[b] = {static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin())};
    }
    if (timed_step) {
      acc->dense += stage[0];
      acc->moe += stage[1];
      acc->routed += timed.seconds;
      acc->head += stage[2];
      ++acc->steps;
    }
    return absl::OkStatus();
  };
  Stages s;
  const auto t0 = Clock::now();
  if (prefill > 0) {
    do {
      for (auto& q : seqs) pool->Release(q);
      next[0] = prompt(prefill, 99);
      if (auto st = step(true, &s); !st.ok()) return st;
    } while (std::chrono::duration<double>(Clock::now() - t0).count() <
             absl::GetFlag(FLAGS_min_seconds));
  } else {
    for (int64_t b = 0; b < batch; ++b) next[b] = prompt(kContext, b);
    if (auto st = step(false, nullptr); !st.ok()) return st;  // the prompts
    if (auto st = step(false, nullptr); !st.ok()) return st;  // warm-up
    const auto t1 = Clock::now();
    while (s.steps < 512 && std::chrono::duration<double>(Clock::now() - t1).count() <
                                absl::GetFlag(FLAGS_min_seconds)) {
      if (auto st = step(true, &s); !st.ok()) return st;
    }
  }
  for (double* v : {&s.dense, &s.moe, &s.routed, &s.head}) *v /= static_cast<double>(s.steps);
  return s;
}

std::map<int64_t, double> ParseDispatch(const std::string& text) {
  std::map<int64_t, double> m;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(part, ':');
    int64_t b;
    double us;
    if (absl::SimpleAtoi(kv.first, &b) && absl::SimpleAtod(kv.second, &us)) m[b] = us * 1e-6;
  }
  return m;
}

int Run() {
  dsv3::engine::LoadOptions load;
  load.num_threads = absl::GetFlag(FLAGS_threads);
  auto weights = dsv3::engine::ParseWeightFormat(absl::GetFlag(FLAGS_weights));
  if (!weights.ok()) return std::fprintf(stderr, "%s\n", weights.status().ToString().c_str()), 1;
  load.weights = *weights;
  load.huge_pages = absl::GetFlag(FLAGS_huge_pages);
  auto model = Model::Load(absl::GetFlag(FLAGS_model), load);
  if (!model.ok()) return std::fprintf(stderr, "%s\n", model.status().ToString().c_str()), 1;
  const auto& c = (*model)->config();
  const auto& w = (*model)->weights();
  if (c.num_hidden_layers != 2 || w.layers[0].is_moe || !w.layers[1].is_moe) {
    std::fprintf(stderr, "expects a v3-slice checkpoint (one dense, one MoE layer)\n");
    return 1;
  }
  dsv3::engine::LocalExpertExecutor local(&w);
  TimedExperts timed(&local);
  (*model)->set_expert_executor(&timed);
  const int threads = dsv3::engine::ThreadPool::Default().size();
  const double bandwidth = dsv3::bench::StreamTriadGBs(threads, int64_t{40} << 20, 3) * 1e9;

  auto attn = [](const dsv3::engine::MlaWeights& a) {
    return Bytes(a.q_a) + Bytes(a.q_b) + Bytes(a.q_proj) + Bytes(a.kv_a) + Bytes(a.kv_b) +
           Bytes(a.o);
  };
  auto mlp = [](const dsv3::engine::MlpWeights& m) {
    return Bytes(m.gate) + Bytes(m.up) + Bytes(m.down);
  };
  const auto& moe = w.layers[1].moe;
  const double dense_bytes = attn(w.layers[0].attn) + mlp(w.layers[0].mlp);
  const double routed_bytes = c.num_experts_per_tok * mlp(moe.experts[0]);
  const double moe_bytes =
      attn(w.layers[1].attn) + Bytes(moe.router) + mlp(moe.shared) + routed_bytes;
  const double head_bytes = Bytes(w.lm_head) + Bytes(w.embed) / c.vocab_size;

  nlohmann::json j;
  j["weights"] = absl::GetFlag(FLAGS_weights);
  j["threads"] = threads;
  j["stream_triad_gb_s"] = bandwidth / 1e9;
  j["bytes"] = {{"dense_layer", dense_bytes},
                {"moe_layer", moe_bytes},
                {"moe_routed", routed_bytes},
                {"head", head_bytes}};
  // A load can leave part of the weights in 4 KiB pages (weight_residency.h): say how much.
  const dsv3::bench::MemoryUsage mem = dsv3::bench::ReadMemoryUsage();
  j["weight_bytes"] = w.bytes;
  j["anon_huge_bytes"] = mem.anon_huge_bytes;
  std::printf("v3-slice (%s weights, %d threads), STREAM triad %.1f GB/s\n",
              absl::GetFlag(FLAGS_weights).c_str(), threads, bandwidth / 1e9);
  std::printf("weights %.2f GB, %.2f GB of memory in huge pages\n", w.bytes / 1e9,
              mem.anon_huge_bytes / 1e9);
  std::printf(
      "batch-1 weight bytes: dense layer %.0f MB, MoE layer %.0f MB (routed %.0f), head %.0f MB\n",
      dense_bytes / 1e6, moe_bytes / 1e6, routed_bytes / 1e6, head_bytes / 1e6);
  const auto dispatch = ParseDispatch(absl::GetFlag(FLAGS_dispatch_us));
  for (const std::string& batch_flag : absl::GetFlag(FLAGS_decode_batches)) {
    int64_t batch = 0;
    if (!absl::SimpleAtoi(batch_flag, &batch) || batch < 1) {
      return std::fprintf(stderr, "bad --decode_batches entry: %s\n", batch_flag.c_str()), 1;
    }
    // Batch 1 streams memory, and a shared VM's bandwidth moves within minutes: the triad is
    // measured again right before and after it, and the shares are given against their mean.
    const double before = batch == 1 ? dsv3::bench::StreamTriadBesideGBs(threads) * 1e9 : 0;
    auto s = Measure(**model, timed, batch, 0);
    if (!s.ok()) return std::fprintf(stderr, "%s\n", s.status().ToString().c_str()), 1;
    const double beside =
        batch == 1 ? (before + dsv3::bench::StreamTriadBesideGBs(threads) * 1e9) / 2 : 0;
    const double token_s = kFullDense * s->dense + kFullMoe * s->moe + s->head;
    nlohmann::json& d = j["decode"][absl::StrCat(batch)];
    d = {{"dense_ms", s->dense * 1e3}, {"moe_ms", s->moe * 1e3}, {"routed_ms", s->routed * 1e3},
         {"head_ms", s->head * 1e3},   {"steps", s->steps},      {"v3_step_ms", token_s * 1e3},
         {"v3_tok_s", batch / token_s}};
    std::printf("decode batch %2lld: dense %.2f ms, MoE %.2f ms (routed %.2f), head %.2f ms a step",
                static_cast<long long>(batch), s->dense * 1e3, s->moe * 1e3, s->routed * 1e3,
                s->head * 1e3);
    if (batch == 1) {
      const double dense_share = dense_bytes / bandwidth / s->dense;
      const double moe_share = moe_bytes / bandwidth / s->moe;
      d["dense_roofline_share"] = dense_share;
      d["moe_roofline_share"] = moe_share;
      d["triad_beside_gb_s"] = beside / 1e9;
      d["dense_roofline_share_beside"] = dense_bytes / beside / s->dense;
      d["moe_roofline_share_beside"] = moe_bytes / beside / s->moe;
      std::printf(
          " (roofline share: dense %.0f%%, MoE %.0f%%; against the triad beside it, %.1f GB/s: "
          "dense %.0f%%, MoE %.0f%%)",
          100 * dense_share, 100 * moe_share, beside / 1e9, 100 * dense_bytes / beside / s->dense,
          100 * moe_bytes / beside / s->moe);
    }
    std::printf(
        "\n  DeepSeek-V3 (3 dense + 58 MoE + head) on this node: %.1f ms a step, %.2f tok/s\n",
        token_s * 1e3, batch / token_s);
    auto it = dispatch.find(batch);
    if (it == dispatch.end()) continue;
    for (int n : {2, 4, 8}) {
      const double moe_n = s->moe - s->routed + s->routed / n + it->second;
      const double step_n = kFullDense * s->dense + kFullMoe * moe_n + s->head;
      d["experts_on"][absl::StrCat(n)] = {{"v3_step_ms", step_n * 1e3},
                                          {"v3_tok_s", batch / step_n}};
      std::printf(
          "  ... routed experts on %d expert workers (+%.0f us dispatch/combine a layer): %.2f "
          "tok/s\n",
          n, it->second * 1e6, batch / step_n);
    }
  }
  if (absl::GetFlag(FLAGS_prefill)) {
    auto p = Measure(**model, timed, 1, 512);
    if (!p.ok()) return std::fprintf(stderr, "%s\n", p.status().ToString().c_str()), 1;
    const double prefill_s = kFullDense * p->dense + kFullMoe * p->moe + p->head;
    j["prefill_512"] = {
        {"dense_ms", p->dense * 1e3}, {"moe_ms", p->moe * 1e3}, {"routed_ms", p->routed * 1e3},
        {"head_ms", p->head * 1e3},   {"v3_s", prefill_s},      {"v3_tok_s", 512 / prefill_s}};
    std::printf(
        "prefill 512: dense %.0f ms, MoE %.0f ms (routed %.0f), head %.0f ms\n"
        "  DeepSeek-V3 on this node: %.1f s, %.1f tok/s\n",
        p->dense * 1e3, p->moe * 1e3, p->routed * 1e3, p->head * 1e3, prefill_s, 512 / prefill_s);
  }
  if (!absl::GetFlag(FLAGS_json).empty())
    std::ofstream(absl::GetFlag(FLAGS_json)) << j.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}
