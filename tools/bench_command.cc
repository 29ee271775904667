// `dsv3 bench --router ADDR`: a load generator for a router's gRPC Generate stream.
//
// Requests arrive at a fixed concurrency (a new one starts when one ends) or as a Poisson
// process at --bench_rate requests per second; the run is bounded by a request count and/or
// a duration, and every request has a deadline (--timeout_s), so the command always ends.
// Each request is a gRPC callback reactor (ClientReadReactor): hundreds of streams run from
// one process on gRPC's own threads, none of them blocked per stream.
//
// Measured per request: time to first token (TTFT), the gaps between streamed chunks
// (inter-token latency, ITL, as vLLM's benchmark counts them), time per output token after
// the first (TPOT) and end-to-end latency. Reported: p50/p90/p99 and mean of each, request
// and token throughput, errors by gRPC status code; a table on stdout, JSON with
// --bench_json, a progress bar on stderr.
//
// With --bench_direct_prefill and --bench_direct_decode it skips the router and does what
// the router does before its first token (decode Reserve, then prefill Prefill, then Release
// instead of Decode): TTFT through the router minus this TTFT estimates the router's own
// overhead; the prefill worker's queue and compute times are reported beside it.
//
// With --bench_probe HOST:PORT it also measures the machine's floor for one gRPC hop under
// the run's load (bench_probe.h): a figure that includes a call to a worker, like the
// router's overhead, is compared against it from the same run.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/tls_config.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "dsv3/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/bench_driver.h"
#include "tools/bench_multi_turn.h"
#include "tools/bench_probe.h"
#include "tools/bench_report.h"
#include "tools/bench_workload.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"
#include "tools/router_client.h"

// Defined by complete_command.cc: the router address and the per-request deadline.
ABSL_DECLARE_FLAG(std::string, router);
ABSL_DECLARE_FLAG(int, timeout_s);

ABSL_FLAG(int, bench_concurrency, 0,
          "dsv3 bench: requests in flight. Fixed-concurrency mode: this many (0 = 1). With "
          "--bench_rate: a cap on requests in flight (0 = no cap).");
ABSL_FLAG(double, bench_rate, 0,
          "dsv3 bench: Poisson arrivals at this many requests per second (0 = fixed "
          "concurrency).");
ABSL_FLAG(int, bench_requests, 0,
          "dsv3 bench: requests to send (0 = unbounded when --bench_duration is set, else 100).");
ABSL_FLAG(double, bench_duration, 0,
          "dsv3 bench: stop sending new requests after this many seconds (0 = no time bound); "
          "requests in flight then finish.");
ABSL_FLAG(int, bench_prompt_tokens, 128, "dsv3 bench: prompt length of synthetic requests.");
ABSL_FLAG(int, bench_output_tokens, 32, "dsv3 bench: max_tokens of each request.");
ABSL_FLAG(int, bench_token_min, 0, "dsv3 bench: smallest random prompt token id.");
ABSL_FLAG(int, bench_token_max, 0,
          "dsv3 bench: largest random prompt token id (0 = vocab_size - 1). Prompts are drawn "
          "from --seed, so runs repeat.");
ABSL_FLAG(bool, bench_ignore_eos, true,
          "dsv3 bench: generate past EOS so every request gives its max_tokens.");
ABSL_FLAG(std::string, bench_dataset, "",
          "dsv3 bench: JSONL prompts instead of random ids, one per line: {\"prompt\": TEXT} "
          "or {\"token_ids\": [...]}, optional \"max_tokens\"; used in order, cyclically.");
ABSL_FLAG(std::string, bench_json, "", "dsv3 bench: write the results as JSON to this file.");
ABSL_FLAG(int, bench_channels, 1, "dsv3 bench: gRPC connections to spread the streams over.");
ABSL_FLAG(std::string, bench_direct_prefill, "",
          "dsv3 bench: prefill worker HOST:PORT; with --bench_direct_decode, bench Reserve + "
          "Prefill against the workers directly (no router).");
ABSL_FLAG(int64_t, bench_warmup_requests, 0,
          "dsv3 bench: the first N requests are sent but not counted (with a fixed "
          "concurrency they all start at once: the ramp, not the steady state).");
ABSL_FLAG(std::string, bench_probe, "",
          "dsv3 bench: a worker's HOST:PORT to call GetInfo on every --bench_probe_interval "
          "during the run; reports those round trips (one gRPC hop's floor under this load).");
ABSL_FLAG(absl::Duration, bench_probe_interval, absl::Milliseconds(5),
          "dsv3 bench: time between --bench_probe calls.");
ABSL_FLAG(std::string, bench_direct_decode, "",
          "dsv3 bench: decode worker HOST:PORT for --bench_direct_prefill.");
ABSL_FLAG(int, bench_conversations, 0,
          "dsv3 bench: multi-turn mode with this many chats (0: off): each turn sends the "
          "chat's whole history, the previous answer and a new user message; TTFT by turn and "
          "the prefix-cache hit rate beside the ideal one.");
ABSL_FLAG(int, bench_turns, 4, "dsv3 bench: turns per conversation (multi-turn mode).");
ABSL_FLAG(int, bench_system_tokens, 256,
          "dsv3 bench: system prompt every conversation starts with (multi-turn mode).");
ABSL_FLAG(int, bench_user_tokens, 64, "dsv3 bench: tokens of each user message (multi-turn).");
ABSL_FLAG(int, bench_block_size, 64,
          "dsv3 bench: the workers' --kv_block_size, for the ideal hit rate (multi-turn).");

namespace dsv3::tools {
namespace {

using bench::CodeName;
using bench::Driver;
using bench::Prompt;
using bench::ReadDataset;
using bench::Report;
using bench::Result;
using bench::ResultSink;
using bench::RunOptions;
using bench::Workload;

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::chrono::system_clock::time_point DeadlineIn(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

// --- Requests in flight ----------------------------------------------------------------

// A Generate stream through the router. Deletes itself when done.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  // `on_done` (may be empty) sees the result before the sink does.
  GenerateCall(ResultSink* sink, v1::GenerateRequest request, int prompt_tokens, int64_t index,
               std::function<void(Result&)> on_done = nullptr)
      : sink_(sink), request_(std::move(request)), on_done_(std::move(on_done)) {
    result_.prompt_tokens = prompt_tokens;
    result_.index = index;
  }

  void Start(v1::Inference::Stub* stub, int timeout_s) {
    ctx_.set_deadline(DeadlineIn(timeout_s));
    AddApiKey(ctx_);
    start_ = last_ = Clock::now();
    result_.start = Seconds(start_.time_since_epoch());
    stub->async()->Generate(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    const Clock::time_point now = Clock::now();
    const int n = response_.token_ids_size();
    if (n > 0) {
      if (result_.output_tokens == 0) {
        result_.ttft = Seconds(now - start_);
        result_.prefill_worker = response_.prefill_worker_ns() * 1e-9;
      } else {
        result_.itl.push_back(Seconds(now - last_));
      }
      last_ = now;
      result_.output_tokens += n;
      if (on_done_) {
        result_.output_ids.insert(result_.output_ids.end(), response_.token_ids().begin(),
                                  response_.token_ids().end());
      }
    }
    if (response_.has_usage() && response_.usage().prompt_tokens() > 0) {
      result_.prompt_tokens = response_.usage().prompt_tokens();
      result_.cached_prompt_tokens = response_.usage().cached_prompt_tokens();
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    result_.e2e = Seconds(Clock::now() - start_);
    result_.code = status.error_code();
    result_.error = status.error_message();
    if (on_done_) on_done_(result_);
    // This call's gRPC objects go before the sink hears of it: the sink's last Add lets the
    // command return and drop its channels (and gRPC), which a live ClientContext outlived.
    ResultSink* sink = sink_;
    Result result = std::move(result_);
    delete this;
    sink->Add(std::move(result));
  }

 private:
  ResultSink* const sink_;
  const v1::GenerateRequest request_;
  const std::function<void(Result&)> on_done_;
  grpc::ClientContext ctx_;
  v1::GenerateResponse response_;
  Clock::time_point start_, last_;
  Result result_;
};

// Reserve on a decode worker, Prefill on a prefill worker, Release the lease: the router's
// path up to the first token, without the router. Deletes itself when done.
class DirectPrefillCall {
 public:
  DirectPrefillCall(ResultSink* sink, v1::PrefillWorker::Stub* prefill,
                    v1::DecodeWorker::Stub* decode, const std::string& config_hash,
                    const Prompt& prompt, int timeout_s, int64_t index)
      : sink_(sink), prefill_(prefill), decode_(decode), timeout_s_(timeout_s) {
    result_.index = index;
    reserve_request_.set_prompt_tokens(static_cast<int32_t>(prompt.token_ids.size()));
    reserve_request_.set_max_new_tokens(prompt.max_tokens);
    reserve_request_.set_config_hash(config_hash);
    for (int32_t t : prompt.token_ids) prefill_request_.add_prompt_token_ids(t);
    prefill_request_.mutable_sampling()->set_max_tokens(prompt.max_tokens);
    prefill_request_.mutable_sampling()->set_ignore_eos(true);
    result_.prompt_tokens = static_cast<int>(prompt.token_ids.size());
  }

  void Start() {
    start_ = Clock::now();
    result_.start = Seconds(start_.time_since_epoch());
    reserve_ctx_.set_deadline(DeadlineIn(timeout_s_));
    decode_->async()->Reserve(&reserve_ctx_, &reserve_request_, &reserve_response_,
                              [this](grpc::Status status) { OnReserved(status); });
  }

 private:
  void OnReserved(const grpc::Status& status) {
    if (!status.ok()) return Finish(status);
    *prefill_request_.mutable_destination() = reserve_response_.destination();
    prefill_ctx_.set_deadline(DeadlineIn(timeout_s_));
    prefill_->async()->Prefill(&prefill_ctx_, &prefill_request_, &prefill_response_,
                               [this](grpc::Status s) { OnPrefilled(s); });
  }

  void OnPrefilled(const grpc::Status& status) {
    result_.ttft = Seconds(Clock::now() - start_);
    prefill_status_ = status;
    if (status.ok()) {
      result_.output_tokens = 1;
      result_.prefill_queue = prefill_response_.queue_ns() * 1e-9;
      result_.prefill_compute = prefill_response_.compute_ns() * 1e-9;
      result_.kv_transfer = prefill_response_.kv_transfer_ns() * 1e-9;
    }
    release_request_.set_lease_id(reserve_response_.destination().lease_id());
    release_request_.set_lease_secret(reserve_response_.destination().lease_secret());
    release_request_.set_reason("dsv3 bench: direct prefill");
    release_ctx_.set_deadline(DeadlineIn(timeout_s_));
    decode_->async()->Release(
        &release_ctx_, &release_request_, &release_response_,
        [this](grpc::Status s) { Finish(prefill_status_.ok() ? s : prefill_status_); });
  }

  void Finish(const grpc::Status& status) {
    result_.e2e = Seconds(Clock::now() - start_);
    result_.code = status.error_code();
    result_.error = status.error_message();
    ResultSink* sink = sink_;  // as GenerateCall::OnDone: delete first, then tell the sink
    Result result = std::move(result_);
    delete this;
    sink->Add(std::move(result));
  }

  ResultSink* const sink_;
  v1::PrefillWorker::Stub* const prefill_;
  v1::DecodeWorker::Stub* const decode_;
  const int timeout_s_;
  grpc::ClientContext reserve_ctx_, prefill_ctx_, release_ctx_;
  v1::ReserveRequest reserve_request_;
  v1::ReserveResponse reserve_response_;
  v1::PrefillRequest prefill_request_;
  v1::PrefillResponse prefill_response_;
  v1::ReleaseRequest release_request_;
  v1::ReleaseResponse release_response_;
  grpc::Status prefill_status_;
  Clock::time_point start_;
  Result result_;
};

// --- The command --------------------------------------------------------------------------

std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& address, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < std::max(1, n); ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments give each channel its own connection.
    args.SetInt("dsv3.bench_channel", i);
    channels.push_back(ClientChannel(address, args));
  }
  return channels;
}

absl::Status RunBench(const std::vector<std::string>&) {
  RunOptions options;
  options.concurrency = absl::GetFlag(FLAGS_bench_concurrency);
  options.rate = absl::GetFlag(FLAGS_bench_rate);
  options.requests = absl::GetFlag(FLAGS_bench_requests);
  options.duration = absl::GetFlag(FLAGS_bench_duration);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.warmup = absl::GetFlag(FLAGS_bench_warmup_requests);
  if (options.concurrency < 0 || options.rate < 0 || options.requests < 0 || options.duration < 0 ||
      options.warmup < 0) {
    return UsageError("concurrency, rate, requests, duration and warmup must be >= 0");
  }
  if (options.requests == 0 && options.duration == 0) options.requests = 100;
  const int timeout_s = absl::GetFlag(FLAGS_timeout_s);
  const int output_tokens = absl::GetFlag(FLAGS_bench_output_tokens);
  const int prompt_tokens = absl::GetFlag(FLAGS_bench_prompt_tokens);
  if (timeout_s <= 0 || output_tokens < 1 || prompt_tokens < 1) {
    return UsageError("--timeout_s, --bench_output_tokens and --bench_prompt_tokens must be >= 1");
  }

  bench::MultiTurnOptions multi;
  multi.conversations = absl::GetFlag(FLAGS_bench_conversations);
  multi.turns = absl::GetFlag(FLAGS_bench_turns);
  multi.system_tokens = absl::GetFlag(FLAGS_bench_system_tokens);
  multi.user_tokens = absl::GetFlag(FLAGS_bench_user_tokens);
  multi.block_size = absl::GetFlag(FLAGS_bench_block_size);
  multi.seed = options.seed;
  const bool multi_turn = multi.conversations > 0;
  if (multi_turn) {
    if (multi.turns < 1 || multi.system_tokens < 0 || multi.user_tokens < 1 ||
        multi.block_size < 1 || options.rate > 0 || options.duration > 0 ||
        !absl::GetFlag(FLAGS_bench_dataset).empty()) {
      return UsageError(
          "multi-turn mode needs --bench_turns >= 1, --bench_user_tokens >= 1, a fixed "
          "concurrency, and no --bench_rate, --bench_duration or --bench_dataset");
    }
    options.requests = static_cast<int64_t>(multi.conversations) * multi.turns;
    // A conversation has one turn in flight at a time.
    options.concurrency = std::min(std::max(1, options.concurrency), multi.conversations);
  }

  std::vector<Prompt> dataset;
  const std::string dataset_path = absl::GetFlag(FLAGS_bench_dataset);
  std::string workload;
  if (!dataset_path.empty()) {
    DSV3_ASSIGN_OR_RETURN(dataset, ReadDataset(dataset_path, output_tokens));
    workload = absl::StrCat("dataset ", dataset_path, " (", dataset.size(), " prompts)");
  } else if (multi_turn) {
    workload = absl::StrCat(multi.conversations, " conversations x ", multi.turns,
                            " turns (system ", multi.system_tokens, ", user ", multi.user_tokens,
                            ", output ", output_tokens, " tokens)");
  } else {
    workload = absl::StrCat("prompt ", prompt_tokens, " tokens, output ", output_tokens, " tokens");
  }

  const std::string direct_prefill = absl::GetFlag(FLAGS_bench_direct_prefill);
  const std::string direct_decode = absl::GetFlag(FLAGS_bench_direct_decode);
  const bool direct = !direct_prefill.empty() || !direct_decode.empty();
  if (direct && multi_turn) {
    return UsageError("multi-turn mode goes through a router");
  }
  if (direct && (direct_prefill.empty() || direct_decode.empty())) {
    return UsageError("--bench_direct_prefill and --bench_direct_decode go together");
  }

  // What the target serves: vocabulary (random ids), tokenizer (text), config hash (direct).
  int vocab_size = 0;
  bool has_tokenizer = false;
  std::string config_hash;
  const std::string target =
      direct ? absl::StrCat("prefill ", direct_prefill, " + decode ", direct_decode, " (no router)")
             : absl::StrCat("router ", absl::GetFlag(FLAGS_router));
  auto router_channels = Channels(absl::GetFlag(FLAGS_router), absl::GetFlag(FLAGS_bench_channels));
  std::vector<std::unique_ptr<v1::Inference::Stub>> router_stubs;
  std::unique_ptr<v1::PrefillWorker::Stub> prefill_stub;
  std::unique_ptr<v1::DecodeWorker::Stub> decode_stub;
  if (direct) {
    prefill_stub = v1::PrefillWorker::NewStub(ClientChannel(direct_prefill));
    decode_stub = v1::DecodeWorker::NewStub(ClientChannel(direct_decode));
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(10));
    v1::WorkerInfo info;
    grpc::Status s = v1::WorkerStatus::NewStub(ClientChannel(direct_decode))
                         ->GetInfo(&ctx, v1::GetInfoRequest(), &info);
    if (!s.ok()) {
      return absl::Status(FromGrpcStatus(s).code(),
                          absl::StrCat("decode worker ", direct_decode, ": ", s.error_message()));
    }
    vocab_size = info.vocab_size();
    config_hash = info.config_hash();
    for (const Prompt& p : dataset) {
      if (!p.text.empty()) return UsageError("direct mode takes token ids only (no tokenizer)");
    }
  } else {
    for (const auto& channel : router_channels)
      router_stubs.push_back(v1::Inference::NewStub(channel));
    grpc::ClientContext ctx;
    ctx.set_deadline(DeadlineIn(10));
    AddApiKey(ctx);
    v1::GetModelInfoRequest request;
    request.set_model(absl::GetFlag(FLAGS_model));
    v1::ModelInfo info;
    grpc::Status s = router_stubs[0]->GetModelInfo(&ctx, request, &info);
    if (!s.ok()) {
      return absl::Status(
          FromGrpcStatus(s).code(),
          absl::StrCat("router ", absl::GetFlag(FLAGS_router), ": ", s.error_message()));
    }
    vocab_size = info.vocab_size();
    has_tokenizer = info.has_tokenizer();
  }
  const int token_min = absl::GetFlag(FLAGS_bench_token_min);
  const int token_max = absl::GetFlag(FLAGS_bench_token_max) > 0
                            ? absl::GetFlag(FLAGS_bench_token_max)
                            : vocab_size - 1;
  if (dataset.empty() && (token_min < 0 || token_max < token_min)) {
    return UsageError(absl::StrCat("bad token id range [", token_min, ", ", token_max, "]"));
  }
  const Workload work(std::move(dataset), prompt_tokens, output_tokens, token_min, token_max,
                      options.seed);
  multi.token_min = token_min;
  multi.token_max = token_max;
  std::unique_ptr<bench::Conversations> conversations;
  if (multi_turn) conversations = std::make_unique<bench::Conversations>(multi);
  const bool ignore_eos = absl::GetFlag(FLAGS_bench_ignore_eos);

  Driver* driver_ptr = nullptr;
  auto launch = [&](int64_t index) {
    Prompt p;
    std::function<void(Result&)> on_done;
    if (multi_turn) {
      // Near the end every unfinished conversation may be in flight: wait for one.
      bench::Conversations::Turn turn = conversations->Next();
      while (turn.conversation < 0) {
        absl::SleepFor(absl::Milliseconds(1));
        turn = conversations->Next();
      }
      p.token_ids = turn.prompt;
      p.max_tokens = output_tokens;
      on_done = [&conversations, turn](Result& r) {
        r.turn = turn.turn;
        r.ideal_cached_tokens = turn.ideal_cached_tokens;
        conversations->Done(turn,
                            r.code == grpc::StatusCode::OK ? r.output_ids : std::vector<int32_t>());
        r.output_ids.clear();
      };
    } else {
      p = work.Get(index);
    }
    if (direct) {
      (new DirectPrefillCall(driver_ptr, prefill_stub.get(), decode_stub.get(), config_hash, p,
                             timeout_s, index))
          ->Start();
      return;
    }
    v1::GenerateRequest request;
    request.set_request_id(absl::StrCat("bench-", index));
    request.set_model(absl::GetFlag(FLAGS_model));
    const int n_prompt = p.text.empty() ? static_cast<int>(p.token_ids.size()) : 0;
    if (!p.text.empty()) {
      request.set_text(p.text);
    } else {
      for (int32_t t : p.token_ids) request.mutable_token_ids()->add_ids(t);
    }
    // Text back when the router can make it (it is part of what a router does per token).
    request.set_return_text(has_tokenizer);
    v1::SamplingParams* s = request.mutable_sampling();
    s->set_max_tokens(p.max_tokens);
    s->set_ignore_eos(ignore_eos);
    s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
    request.set_timeout_ms(static_cast<int64_t>(timeout_s) * 1000);
    auto* call = new GenerateCall(driver_ptr, std::move(request), n_prompt, index, on_done);
    call->Start(router_stubs[static_cast<size_t>(index) % router_stubs.size()].get(), timeout_s);
  };
  Driver driver(options, launch);
  driver_ptr = &driver;
  const std::string probe_address = absl::GetFlag(FLAGS_bench_probe);
  std::unique_ptr<bench::RttProbe> probe;
  if (!probe_address.empty()) {
    probe =
        std::make_unique<bench::RttProbe>(probe_address, absl::GetFlag(FLAGS_bench_probe_interval));
    probe->Start();
  }
  double wall = 0;
  std::vector<Result> results = driver.Run(&wall);
  bench::ProbeResult probe_result;
  if (probe != nullptr) {
    probe_result.target = probe_address;
    probe_result.rtts = probe->Stop(&probe_result.failures);
  }

  Report report = bench::BuildReport(results, wall, options, target, workload, direct,
                                     probe != nullptr ? &probe_result : nullptr);
  if (multi_turn) report.json["multi_turn"] = MultiTurnReport(results, multi, &report.table);
  std::fputs(report.table.c_str(), stdout);
  std::fflush(stdout);
  const std::string json_path = absl::GetFlag(FLAGS_bench_json);
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << report.json.dump(2) << "\n";
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", json_path));
  }
  const int64_t errors =
      report.json["errors"].get<int64_t>() + report.json["warmup_errors"].get<int64_t>();
  if (errors == 0) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(errors, " request(s) failed (errors_by_code above)"));
}

}  // namespace

DSV3_REGISTER_COMMAND(bench, "bench",
                      "load-test a router: fixed concurrency or Poisson arrivals; TTFT, ITL, "
                      "throughput (--router ADDR)",
                      RunBench,
                      {"load",
                       {"bench_concurrency", "bench_rate", "bench_requests", "bench_duration",
                        "bench_warmup_requests"}},
                      {"requests",
                       {"bench_prompt_tokens", "bench_output_tokens", "bench_token_min",
                        "bench_token_max", "bench_ignore_eos", "bench_dataset", "model",
                        "temperature", "seed"}},
                      {"where requests go",
                       {"bench_channels", "bench_direct_prefill", "bench_direct_decode",
                        "bench_probe", "bench_probe_interval"}},
                      {"multi-turn",
                       {"bench_conversations", "bench_turns", "bench_system_tokens",
                        "bench_user_tokens", "bench_block_size"}},
                      {"output", {"bench_json"}}, RouterClientFlags());

}  // namespace dsv3::tools
