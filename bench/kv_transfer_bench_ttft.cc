// kv_transfer_bench_ttft: disaggregated vs colocated TTFT for one long prompt (issue 5:
// "TTFT for a 2,000-token prompt through the cluster at most 1.10x the single-process
// prefill time").
//
//   kv_transfer_bench_ttft --model DIR [--prompt_tokens 2000] [--reps 3]
//                          [--transports tcp,posix,cma,self] [--port_base 17600] [--json FILE]
//
// 1. Colocated: this process loads the model (engine::Model::Load) and times Forward over
//    the whole prompt (one call, as `dsv3 generate` does; and in --chunk_tokens chunks, as
//    the prefill worker does), median of --reps, after one warm-up pass.
// 2. Disaggregated: for each UCX transport, `dsv3 cluster` (router + 1 prefill + 1 decode)
//    is started; after one warm-up request, --reps times: one colocated prefill (the model
//    of step 1, still loaded), then one `dsv3 bench --router` Generate request of the same
//    length with max_tokens 1 (TTFT = time to the first streamed token). Alternating keeps
//    both under the same load on a shared machine; only one of them runs at a time (2
//    cores). Then the cluster is stopped (SIGTERM to its process group).

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/kv_transfer_bench_proc.h"
#include "common/status_macros.h"
#include "engine/kv_cache.h"
#include "engine/model.h"

ABSL_FLAG(std::string, model, "/tmp/dsv3-bench-model", "model directory");
ABSL_FLAG(int, prompt_tokens, 2000, "prompt length");
ABSL_FLAG(int, chunk_tokens, 512,
          "chunk size of the chunked colocated run (the prefill "
          "worker's --prefill_chunk_tokens default)");
ABSL_FLAG(int, reps, 3, "measured prompts per mode (after one warm-up)");
ABSL_FLAG(int, threads, 0, "engine threads in the colocated run (0: all)");
ABSL_FLAG(std::string, transports, "tcp;posix,cma,self",
          "UCX transports for the cluster runs, ';'-separated (dsv3 cluster --ucx_transports)");
ABSL_FLAG(int, port_base, 17600, "dsv3 cluster --port-base");
ABSL_FLAG(std::string, dsv3, "", "the dsv3 binary (default: beside this one's build dir)");
ABSL_FLAG(std::string, json, "", "write the results as JSON here");
ABSL_FLAG(bool, skip_colocated, false, "only run the cluster");
ABSL_FLAG(bool, skip_cluster, false, "only run the colocated prefill");

namespace dsv3::bench {
namespace {

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

std::vector<int32_t> Prompt(int n, int64_t vocab) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> p(n);
  for (auto& t : p) t = d(rng);
  return p;
}

// Seconds of one prefill of `prompt`, in chunks of `chunk` tokens (0: one Forward).
absl::StatusOr<double> Prefill(const engine::Model& model, engine::KvCachePool& pool,
                               const std::vector<int32_t>& prompt, int chunk) {
  engine::KvSequence seq;
  const absl::Time start = absl::Now();
  size_t pos = 0;
  while (pos < prompt.size()) {
    const size_t n = chunk > 0 ? std::min<size_t>(chunk, prompt.size() - pos) : prompt.size();
    engine::SequenceInput in{std::span<const int32_t>(prompt).subspan(pos, n), &seq, false};
    auto out = model.Forward({&in, 1}, pool);
    if (!out.ok()) {
      pool.Release(seq);
      return out.status();
    }
    pos += n;
  }
  const double s = absl::ToDoubleSeconds(absl::Now() - start);
  pool.Release(seq);
  return s;
}

// The colocated model, kept loaded so its prefills can alternate with cluster requests.
struct Colocated {
  std::unique_ptr<engine::Model> model;
  std::unique_ptr<engine::KvCachePool> pool;
  std::vector<int32_t> prompt;
};

absl::Status RunColocated(nlohmann::json& j, Colocated& c) {
  engine::LoadOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  const absl::Time load_start = absl::Now();
  DSV3_ASSIGN_OR_RETURN(auto model, engine::Model::Load(absl::GetFlag(FLAGS_model), options));
  std::fprintf(stderr, "colocated: model loaded in %.1f s\n",
               absl::ToDoubleSeconds(absl::Now() - load_start));
  const int n = absl::GetFlag(FLAGS_prompt_tokens);
  DSV3_ASSIGN_OR_RETURN(auto pool, engine::KvCachePool::Create(model->KvLayout((n + 63) / 64 + 1)));
  c.model = std::move(model);
  c.pool = std::move(pool);
  c.prompt = Prompt(n, c.model->config().vocab_size);
  for (int chunk : {0, absl::GetFlag(FLAGS_chunk_tokens)}) {
    auto warm = Prefill(*c.model, *c.pool, c.prompt, chunk);
    if (!warm.ok()) return warm.status();
    std::vector<double> times;
    for (int i = 0; i < absl::GetFlag(FLAGS_reps); ++i) {
      DSV3_ASSIGN_OR_RETURN(double s, Prefill(*c.model, *c.pool, c.prompt, chunk));
      std::fprintf(stderr, "colocated (chunk %d): %.3f s\n", chunk, s);
      times.push_back(s);
    }
    const std::string key = chunk == 0 ? "colocated_one_forward" : "colocated_chunked";
    j[key] = {{"chunk_tokens", chunk}, {"seconds", times}, {"median_s", Median(times)}};
  }
  return absl::OkStatus();
}

std::string DefaultDsv3() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  std::string self = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  const size_t slash = self.rfind("/bench/");
  return slash == std::string::npos ? "dsv3" : self.substr(0, slash) + "/bin/dsv3";
}

// One `dsv3 bench` run of `requests` prompts, one at a time: its JSON report.
absl::StatusOr<nlohmann::json> BenchRequests(const std::string& dsv3, const std::string& dir,
                                             int port, int requests, int index) {
  const std::string json_path = absl::StrCat(dir, "/bench-", index, ".json");
  auto bench = ChildProcess::Start(
      {dsv3, "bench", absl::StrCat("--router=127.0.0.1:", port),
       absl::StrCat("--bench_requests=", requests), "--bench_concurrency=1",
       absl::StrCat("--bench_prompt_tokens=", absl::GetFlag(FLAGS_prompt_tokens)),
       "--bench_output_tokens=1", "--bench_json=" + json_path, "--timeout_s=300"},
      {}, dir + "/bench.err");
  if (!bench.ok()) return bench.status();
  auto out = bench->ReadAll(absl::Now() + absl::Minutes(10));
  auto rc = bench->Wait(absl::Now() + absl::Seconds(10));
  bench->Stop(absl::Seconds(1));
  if (!out.ok()) return out.status();
  if (!rc.ok() || *rc != 0) {
    return absl::InternalError(absl::StrCat("dsv3 bench failed; see ", dir, "/bench.err"));
  }
  std::ifstream in(json_path);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return absl::InternalError("unreadable dsv3 bench JSON");
  return j;
}

// Starts the cluster; then, --reps times: one colocated prefill (when `colocated`), one
// request through the cluster. Alternating keeps both under the same machine load.
absl::StatusOr<nlohmann::json> RunCluster(const std::string& tls, Colocated* colocated) {
  const std::string dsv3 =
      absl::GetFlag(FLAGS_dsv3).empty() ? DefaultDsv3() : absl::GetFlag(FLAGS_dsv3);
  const int port = absl::GetFlag(FLAGS_port_base);
  const std::string dir = absl::StrCat("/tmp/kv_transfer_bench_ttft.", getpid());
  std::filesystem::create_directories(dir);
  auto cluster = ChildProcess::Start(
      {dsv3, "cluster", "--model=" + absl::GetFlag(FLAGS_model), "--prefill=1", "--decode=1",
       absl::StrCat("--port_base=", port), "--status_file=" + dir + "/status.json",
       "--log_dir=" + dir, "--ucx_transports=" + tls},
      {}, dir + "/cluster.err");
  if (!cluster.ok()) return cluster.status();
  const absl::Time deadline = absl::Now() + absl::Minutes(8);
  bool ready = false;
  while (!ready) {
    auto line = cluster->ReadLine(deadline);
    if (!line.ok()) {
      return absl::UnavailableError(absl::StrCat("cluster not ready (", line.status().message(),
                                                 "); see ", dir, "/cluster.err"));
    }
    ready = absl::StrContains(*line, "serving model");
  }
  std::fprintf(stderr, "cluster (%s) ready\n", tls.c_str());
  if (auto warm = BenchRequests(dsv3, dir, port, 1, 0); !warm.ok()) return warm.status();
  nlohmann::json result;
  std::vector<double> ttft, local;
  for (int i = 0; i < absl::GetFlag(FLAGS_reps); ++i) {
    if (colocated != nullptr) {
      DSV3_ASSIGN_OR_RETURN(double s,
                            Prefill(*colocated->model, *colocated->pool, colocated->prompt, 0));
      local.push_back(s);
    }
    DSV3_ASSIGN_OR_RETURN(nlohmann::json r, BenchRequests(dsv3, dir, port, 1, i + 1));
    ttft.push_back(r["ttft_ms"]["p50"].get<double>() / 1e3);
    std::fprintf(stderr, "  %s: colocated %.3f s, cluster TTFT %.3f s\n", tls.c_str(),
                 local.empty() ? 0.0 : local.back(), ttft.back());
  }
  cluster->Stop(absl::Seconds(20));
  result["ttft_s"] = ttft;
  result["ttft_median_s"] = Median(ttft);
  result["ttft_min_s"] = *std::min_element(ttft.begin(), ttft.end());
  if (!local.empty()) {
    result["colocated_interleaved_s"] = local;
    result["colocated_interleaved_median_s"] = Median(local);
    result["colocated_interleaved_min_s"] = *std::min_element(local.begin(), local.end());
    result["ratio_median"] = Median(ttft) / Median(local);
    result["ratio_min"] =
        result["ttft_min_s"].get<double>() / result["colocated_interleaved_min_s"].get<double>();
  }
  return result;
}

int Main() {
  nlohmann::json j;
  j["model"] = absl::GetFlag(FLAGS_model);
  j["prompt_tokens"] = absl::GetFlag(FLAGS_prompt_tokens);
  Colocated colocated;
  if (!absl::GetFlag(FLAGS_skip_colocated)) {
    if (absl::Status s = RunColocated(j, colocated); !s.ok()) {
      std::fprintf(stderr, "colocated: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!absl::GetFlag(FLAGS_skip_cluster)) {
    for (absl::string_view tls : absl::StrSplit(absl::GetFlag(FLAGS_transports), ';')) {
      auto r = RunCluster(std::string(tls), colocated.model ? &colocated : nullptr);
      if (!r.ok()) {
        std::fprintf(stderr, "cluster %s: %s\n", std::string(tls).c_str(),
                     r.status().ToString().c_str());
        j["cluster"][std::string(tls)] = {{"error", r.status().ToString()}};
        continue;
      }
      j["cluster"][std::string(tls)] = *r;
    }
  }
  // Table: TTFT p50 through the cluster vs the colocated medians.
  const double one = j.contains("colocated_one_forward")
                         ? j["colocated_one_forward"]["median_s"].get<double>()
                         : 0;
  const double chunked =
      j.contains("colocated_chunked") ? j["colocated_chunked"]["median_s"].get<double>() : 0;
  std::printf("prompt %d tokens, model %s\n", absl::GetFlag(FLAGS_prompt_tokens),
              absl::GetFlag(FLAGS_model).c_str());
  if (one > 0) std::printf("colocated, one Forward:      %8.3f s\n", one);
  if (chunked > 0) {
    std::printf("colocated, %d-token chunks: %8.3f s\n", absl::GetFlag(FLAGS_chunk_tokens),
                chunked);
  }
  if (j.contains("cluster")) {
    for (auto& [tls, r] : j["cluster"].items()) {
      if (!r.contains("ttft_median_s")) continue;
      const double ttft = r["ttft_median_s"].get<double>();
      std::printf("cluster (%s) TTFT median:  %8.3f s (min %.3f)", tls.c_str(), ttft,
                  r["ttft_min_s"].get<double>());
      if (r.contains("ratio_median")) {
        std::printf(
            "; colocated alternating with it: median %.3f s (min %.3f); ratio x%.3f "
            "(of minima x%.3f)",
            r["colocated_interleaved_median_s"].get<double>(),
            r["colocated_interleaved_min_s"].get<double>(), r["ratio_median"].get<double>(),
            r["ratio_min"].get<double>());
      }
      std::printf("\n");
    }
  }
  std::fflush(stdout);
  if (!absl::GetFlag(FLAGS_json).empty()) std::ofstream(absl::GetFlag(FLAGS_json)) << j.dump(2);
  return 0;
}

}  // namespace
}  // namespace dsv3::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return dsv3::bench::Main();
}
