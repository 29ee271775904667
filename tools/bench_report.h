#ifndef DSV3_TOOLS_BENCH_REPORT_H_
#define DSV3_TOOLS_BENCH_REPORT_H_

// `dsv3 bench`'s measurements and what it reports from them: per-request results, latency
// summaries (mean and percentiles), the table for people and the JSON for machines.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace dsv3::tools::bench {

// What one request measured. Times in seconds.
struct Result {
  int64_t index = 0;  // the order in which the request was sent
  double start = 0;   // when it was sent (steady clock, seconds)
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string error;
  double ttft = 0;
  double e2e = 0;
  int prompt_tokens = 0;
  int output_tokens = 0;
  std::vector<double> itl;
  // Direct mode: what the prefill worker reports about itself.
  double prefill_queue = 0;
  double prefill_compute = 0;
  double kv_transfer = 0;
  // Router mode: the prefill worker's own time for this request (from the response).
  double prefill_worker = 0;
  // Prompt tokens the cluster served from its prefix cache (usage.cached_prompt_tokens).
  int cached_prompt_tokens = 0;
  // Multi-turn mode: the turn (0-based), the tokens an ideal cache would have had, and the
  // answer's ids (the next turn's history).
  int turn = -1;
  int ideal_cached_tokens = 0;
  std::vector<int32_t> output_ids;
};

struct RunOptions {
  int concurrency = 1;   // fixed mode: in flight; Poisson: cap (0 = none)
  double rate = 0;       // > 0: Poisson arrivals
  int64_t requests = 0;  // 0 = unbounded (then duration > 0)
  double duration = 0;   // 0 = unbounded (then requests > 0)
  uint64_t seed = 0;
  // The first this many requests (the ramp: with a fixed concurrency they all start at once)
  // are sent but left out of every figure; throughput is over the rest's window.
  int64_t warmup = 0;
};

// Round trips of the --bench_probe calls during the run (seconds).
struct ProbeResult {
  std::string target;
  std::vector<double> rtts;
  int64_t failures = 0;
};

struct Report {
  nlohmann::json json;
  std::string table;
};

Report BuildReport(const std::vector<Result>& results, double wall, const RunOptions& options,
                   const std::string& target, const std::string& workload, bool direct,
                   const ProbeResult* probe = nullptr);

// Upper-case gRPC code name ("UNAVAILABLE").
const char* CodeName(grpc::StatusCode code);

}  // namespace dsv3::tools::bench

#endif  // DSV3_TOOLS_BENCH_REPORT_H_
