#include "tools/bench_report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv3::tools::bench {

const char* CodeName(grpc::StatusCode code) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int i = static_cast<int>(code);
  return i >= 0 && i < 17 ? kNames[i] : "UNKNOWN";
}

namespace {

struct Summary {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0, min = 0, max = 0;
  size_t count = 0;
};

// Percentiles by linear interpolation between closest ranks (numpy's default).
Summary Summarize(std::vector<double> v) {
  Summary s;
  s.count = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(rank));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
  };
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.p50 = pct(50);
  s.p90 = pct(90);
  s.p99 = pct(99);
  s.min = v.front();
  s.max = v.back();
  return s;
}

nlohmann::json SummaryJsonMs(const Summary& s) {
  return {{"count", s.count},   {"mean", s.mean * 1e3}, {"p50", s.p50 * 1e3}, {"p90", s.p90 * 1e3},
          {"p99", s.p99 * 1e3}, {"min", s.min * 1e3},   {"max", s.max * 1e3}};
}

}  // namespace

Report BuildReport(const std::vector<Result>& all_results, double wall, const RunOptions& options,
                   const std::string& target, const std::string& workload, bool direct,
                   const ProbeResult* probe) {
  std::vector<Result> results;
  int64_t warmup_errors = 0;
  if (options.warmup > 0) {
    double first = 0, last = 0;
    for (const Result& r : all_results) {
      if (r.index < options.warmup) {
        if (r.code != grpc::StatusCode::OK) ++warmup_errors;
        continue;
      }
      if (results.empty() || r.start < first) first = r.start;
      last = std::max(last, r.start + r.e2e);
      results.push_back(r);
    }
    wall = results.empty() ? 0 : last - first;
  } else {
    results = all_results;
  }
  std::vector<double> ttft, itl, tpot, e2e, queue, compute, transfer, overhead, router_share;
  int64_t ok = 0, prompt_tokens = 0, output_tokens = 0;
  std::map<std::string, int64_t> errors;
  std::string first_error;
  for (const Result& r : results) {
    if (r.code != grpc::StatusCode::OK) {
      ++errors[CodeName(r.code)];
      if (first_error.empty()) first_error = absl::StrCat(CodeName(r.code), ": ", r.error);
      continue;
    }
    ++ok;
    prompt_tokens += r.prompt_tokens;
    output_tokens += r.output_tokens;
    ttft.push_back(r.ttft);
    e2e.push_back(r.e2e);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
    if (r.output_tokens > 1) tpot.push_back((r.e2e - r.ttft) / (r.output_tokens - 1));
    if (!direct && r.prefill_worker > 0) router_share.push_back(r.ttft - r.prefill_worker);
    if (direct) {
      queue.push_back(r.prefill_queue);
      compute.push_back(r.prefill_compute);
      transfer.push_back(r.kv_transfer);
      overhead.push_back(r.ttft - r.prefill_queue - r.prefill_compute);
    }
  }
  const int64_t n_errors = static_cast<int64_t>(results.size()) - ok;
  const double secs = std::max(wall, 1e-9);

  Report report;
  nlohmann::json& j = report.json;
  j["target"] = target;
  j["mode"] = direct ? "direct_prefill" : "router";
  j["arrivals"] = options.rate > 0 ? "poisson" : "concurrency";
  j["concurrency"] = options.rate > 0 ? options.concurrency : std::max(1, options.concurrency);
  j["rate"] = options.rate;
  j["workload"] = workload;
  j["requests"] = results.size();
  j["warmup_requests"] = options.warmup;
  j["warmup_errors"] = warmup_errors;
  j["completed"] = ok;
  j["errors"] = n_errors;
  j["errors_by_code"] = errors;
  if (!first_error.empty()) j["first_error"] = first_error;
  j["duration_s"] = wall;
  j["prompt_tokens"] = prompt_tokens;
  j["output_tokens"] = output_tokens;
  j["request_throughput"] = ok / secs;
  j["output_token_throughput"] = output_tokens / secs;
  j["total_token_throughput"] = (prompt_tokens + output_tokens) / secs;
  const Summary s_ttft = Summarize(ttft), s_itl = Summarize(itl), s_tpot = Summarize(tpot),
                s_e2e = Summarize(e2e);
  j["ttft_ms"] = SummaryJsonMs(s_ttft);
  j["itl_ms"] = SummaryJsonMs(s_itl);
  j["tpot_ms"] = SummaryJsonMs(s_tpot);
  j["e2e_ms"] = SummaryJsonMs(s_e2e);

  std::string& t = report.table;
  absl::StrAppend(
      &t, "dsv3 bench: ", target, ", ",
      options.rate > 0
          ? absl::StrCat(absl::StrFormat("Poisson %.2f req/s", options.rate),
                         options.concurrency > 0
                             ? absl::StrCat(" (at most ", options.concurrency, " in flight)")
                             : "")
          : absl::StrCat("concurrency ", std::max(1, options.concurrency)),
      ", ", workload, "\n");
  absl::StrAppend(&t, absl::StrFormat("requests     %d sent, %d ok, %d errors\n", results.size(),
                                      ok, n_errors));
  if (options.warmup > 0) {
    absl::StrAppend(&t, "  (after ", options.warmup, " warm-up requests, not counted; ",
                    warmup_errors, " of them failed)\n");
  }
  for (const auto& [code, n] : errors) absl::StrAppend(&t, "  ", code, ": ", n, "\n");
  if (!first_error.empty()) absl::StrAppend(&t, "  first error: ", first_error, "\n");
  absl::StrAppend(&t, absl::StrFormat("duration     %.3f s\n", wall));
  absl::StrAppend(
      &t, absl::StrFormat("throughput   %.2f req/s, %.1f output tok/s, %.1f total tok/s\n",
                          ok / secs, output_tokens / secs, (prompt_tokens + output_tokens) / secs));
  absl::StrAppend(&t, absl::StrFormat("%-22s %9s %9s %9s %9s %9s\n", "latency (ms)", "mean", "p50",
                                      "p90", "p99", "max"));
  auto row = [&](const char* name, const Summary& s) {
    if (s.count == 0) return;
    absl::StrAppend(&t, absl::StrFormat("%-22s %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, s.mean * 1e3,
                                        s.p50 * 1e3, s.p90 * 1e3, s.p99 * 1e3, s.max * 1e3));
  };
  row(direct ? "TTFT (reserve+prefill)" : "TTFT", s_ttft);
  row("ITL", s_itl);
  row("TPOT", s_tpot);
  if (!router_share.empty()) {
    // What the router (and the network) added to TTFT: TTFT minus the prefill worker's own
    // queue + compute + KV flush time, per request.
    const Summary s_share = Summarize(router_share);
    j["ttft_minus_prefill_worker_ms"] = SummaryJsonMs(s_share);
    row("TTFT - prefill worker", s_share);
  }
  row(direct ? "end-to-end (+release)" : "end-to-end", s_e2e);
  if (direct) {
    const Summary s_queue = Summarize(queue), s_compute = Summarize(compute),
                  s_transfer = Summarize(transfer), s_overhead = Summarize(overhead);
    j["prefill_queue_ms"] = SummaryJsonMs(s_queue);
    j["prefill_compute_ms"] = SummaryJsonMs(s_compute);
    j["kv_transfer_ms"] = SummaryJsonMs(s_transfer);
    j["ttft_minus_worker_ms"] = SummaryJsonMs(s_overhead);
    row("prefill queue", s_queue);
    row("prefill compute", s_compute);
    row("KV transfer", s_transfer);
    row("TTFT - queue - compute", s_overhead);
  }
  if (probe != nullptr) {
    // One gRPC hop's round trip on this machine under this run's load: the floor of any
    // figure that holds a call to a worker.
    const Summary s_probe = Summarize(probe->rtts);
    j["probe_target"] = probe->target;
    j["probe_rtt_ms"] = SummaryJsonMs(s_probe);
    j["probe_failures"] = probe->failures;
    row("gRPC RTT (probe)", s_probe);
    absl::StrAppend(&t, "  probe: GetInfo round trips to ", probe->target, " during the run (",
                    s_probe.count, " calls, ", probe->failures, " failed)\n");
  }
  return report;
}

}  // namespace dsv3::tools::bench
