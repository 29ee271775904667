// `dsv3 cluster`: the whole cluster on this machine. Starts the workers and a router as
// separate processes on 127.0.0.1, waits until every one is healthy and the router sees
// its workers, writes a status file, prints how to talk to it, and on Ctrl-C (or SIGTERM)
// stops every process it started (drain, then kill what lingers).

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/spawn.h"
#include "common/status_macros.h"
#include "common/tls_config.h"
#include "dsv3/v1/inference.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tools/cluster_tls.h"
#include "tools/command_registry.h"
#include "tools/engine_flags.h"
#include "tools/flag_groups.h"

ABSL_FLAG(int, prefill, 1, "dsv3 cluster: prefill workers to start.");
ABSL_FLAG(int, decode, 1, "dsv3 cluster: decode workers to start.");
ABSL_FLAG(int, experts, 0, "dsv3 cluster: expert workers to start (0: experts run colocated).");
ABSL_FLAG(int, port_base, 50051,
          "dsv3 cluster: router gRPC on P, its HTTP (OpenAI API, /metrics) on P+1, workers "
          "from P+2 on.");
ABSL_FLAG(std::string, status_file, "", "dsv3 cluster: write the processes as JSON here.");
// --tokenizer (defined by the tokenize command): the cluster's tokenizer directory
// (default: --model's, when it has tokenizer.json).
ABSL_DECLARE_FLAG(std::string, tokenizer);
ABSL_FLAG(std::string, ucx_transports, "",
          "dsv3 cluster: UCX transports of the workers. \"\" (default): shared memory "
          "(posix,cma,self: the KV moves at memory speed, and a prefill worker notices a dead "
          "decode worker by its gRPC port) without expert workers; tcp with them (the expert "
          "all-to-all relies on UCX noticing a dead peer, which its shared-memory transports "
          "do not). Or name them: tcp, posix,cma,self, ...");
ABSL_FLAG(int, kv_pool_blocks, 256, "dsv3 cluster: KV blocks per worker pool.");
ABSL_FLAG(int, decode_max_running, 64, "dsv3 cluster: most sequences per decode step.");
ABSL_FLAG(int, local_prefill_chunk_tokens, -1,
          "dsv3 cluster: the decode workers' --local_prefill_chunk_tokens (prompt tokens per "
          "step they compute for --decode_prefill_max_tokens requests); -1: their default.");
ABSL_FLAG(bool, prefix_cache, true,
          "dsv3 cluster: the workers keep the KV of computed prefixes and reuse it (their "
          "--prefix_cache; README \"Prefix caching\").");
ABSL_FLAG(std::string, router_policy, "kv",
          "dsv3 cluster: how the router chooses workers: kv (prefix-cache overlap against "
          "load), load, round_robin (its --router_policy).");
ABSL_FLAG(double, kv_overlap_weight, 3.0,
          "dsv3 cluster: the router's --kv_overlap_weight (kv policy: weight of the prompt "
          "tokens a worker has cached against its queued tokens).");
ABSL_FLAG(int, decode_prefill_max_tokens, 0,
          "dsv3 cluster: the router's --decode_prefill_max_tokens (conditional "
          "disaggregation: a decode worker whose cache leaves at most this many prompt tokens "
          "computes them itself; 0: never).");
ABSL_FLAG(std::string, reasoning_parser, "none",
          "dsv3 cluster: the router's --reasoning_parser (deepseek_r1: the thinking goes to "
          "reasoning_content).");
ABSL_FLAG(std::string, tool_call_parser, "auto",
          "dsv3 cluster: the router's --tool_call_parser (auto, deepseek_v3, none).");
ABSL_FLAG(std::string, api_keys, "",
          "dsv3 cluster: the router's --api_keys (a file of 'NAME KEY [rps=N tpm=N "
          "streams=N]' lines): clients then send 'Authorization: Bearer KEY'.");
ABSL_FLAG(int, migration_limit, 3,
          "dsv3 cluster: the router's --migration_limit (how many times a request whose decode "
          "worker fails is resumed on another; 0: it fails).");
ABSL_FLAG(std::string, worker_down_after, "",
          "dsv3 cluster: the router's --worker_down_after (how long a worker's load stream may "
          "be quiet before it is taken out of routing; \"\": its default, 1.2s).");
ABSL_FLAG(std::string, worker_drain_timeout, "",
          "dsv3 cluster: --drain_timeout of the prefill and decode workers (on SIGTERM, how "
          "long requests in flight run on; a decode worker's then resume elsewhere). \"\": "
          "their default.");
ABSL_FLAG(int, prefix_cache_max_blocks, 0,
          "dsv3 cluster: the workers' --prefix_cache_max_blocks (0: any block not in use).");
ABSL_FLAG(std::string, engine_idle_spin, "",
          "dsv3 cluster: --engine_idle_spin for the workers (\"\": 100us with expert workers, "
          "whose processes wait on each other for every MoE layer on the same cores; the "
          "workers' default, 2ms, otherwise).");
ABSL_FLAG(int, engine_compute_nice, 19,
          "dsv3 cluster: --engine_compute_nice for the workers (0: not passed). Every process "
          "shares this machine's cores, so by default the model's threads run below the "
          "gRPC, UCX and router threads (router overhead p99 at 256 streams: ~8 ms at 0, "
          "~5 ms at 19; bench/RESULTS.md).");
ABSL_FLAG(std::string, log_dir, "", "dsv3 cluster: where process logs go (default: a temp dir).");
ABSL_FLAG(absl::Duration, eplb_interval, absl::ZeroDuration(),
          "dsv3 cluster: the rebalancer moves the routed experts over the expert workers this "
          "often (EPLB; needs --experts); 0: never.");
ABSL_FLAG(std::string, expert_failover_after, "",
          "dsv3 cluster: the rebalancer's --expert_failover_after (\"\": its default).");

namespace dsv3::tools {
namespace {

struct Child {
  std::string role;
  pid_t pid = -1;
  std::string ready_file;
  std::string log;
  int grpc_port = 0;
  int http_port = 0;
  bool exited = false;
};

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

bool Spawn(Child& child, std::vector<std::string> argv, const ClusterTls& tls) {
  argv.insert(argv.end(), tls.process_flags.begin(), tls.process_flags.end());
  SpawnOptions options;
  // Own process group: a Ctrl-C reaches the launcher, which stops the children in order.
  options.own_process_group = true;
  // A launcher killed outright (SIGKILL) still stops its workers.
  options.parent_death_signal = SIGTERM;
  absl::StatusOr<pid_t> pid = SpawnProcess(argv, child.log, options);
  if (!pid.ok()) {
    std::fprintf(stderr, "dsv3 cluster: cannot start %s: %s\n", argv[0].c_str(),
                 std::string(pid.status().message()).c_str());
    return false;
  }
  child.pid = *pid;
  return true;
}

void Reap(std::vector<Child>& children) {
  for (Child& c : children) {
    if (c.exited || c.pid <= 0) continue;
    int status = 0;
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.exited = true;
      std::fprintf(stderr, "dsv3 cluster: %s (pid %d) exited (%s %d); log: %s\n", c.role.c_str(),
                   c.pid, WIFEXITED(status) ? "status" : "signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), c.log.c_str());
    }
  }
}

void StopAll(std::vector<Child>& children) {
  // The router first (no new requests), then the workers.
  for (auto it = children.rbegin(); it != children.rend(); ++it) {
    if (!it->exited && it->pid > 0) kill(it->pid, SIGTERM);
  }
  absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline) {
    Reap(children);
    bool all = true;
    for (const Child& c : children) all = all && (c.exited || c.pid <= 0);
    if (all) return;
    absl::SleepFor(absl::Milliseconds(20));
  }
  for (Child& c : children) {
    if (!c.exited && c.pid > 0) {
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
      c.exited = true;
    }
  }
}

bool ReadReady(Child& c) {
  std::ifstream in(c.ready_file);
  if (!in) return false;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  return !j.is_discarded() && j.contains("grpc");
}

// Workers the router sees up, from its /metrics (dsv3_worker_up{role,address} 1).
int WorkersUp(int http_port, const ClusterTls& tls) {
  httplib::Client client(absl::StrCat(tls.scheme(), "://127.0.0.1:", http_port));
  if (tls.enabled) {
    client.set_ca_cert_path(tls.ca.c_str());
    client.enable_server_certificate_verification(true);
  }
  client.set_connection_timeout(1);
  client.set_read_timeout(2);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return 0;
  int up = 0;
  for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
    if (absl::StartsWith(line, "dsv3_worker_up{") && absl::EndsWith(line, "} 1")) ++up;
  }
  return up;
}

// The router is ready (grpc.health.v1 "readiness": it sees workers for its model) and
// names the model in ListModels; with API keys ListModels wants a key, and the model is
// then named as the workers name it by default, after its directory.
bool RouterServes(const std::string& address, const std::string& model_dir, std::string* model) {
  auto channel = ClientChannel(address);  // TLS as SetUpClusterTls set the flags
  {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("readiness");
    grpc::health::v1::HealthCheckResponse response;
    if (!health->Check(&ctx, request, &response).ok() ||
        response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      return false;
    }
  }
  auto stub = v1::Inference::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  v1::ListModelsResponse response;
  const grpc::Status status = stub->ListModels(&ctx, v1::ListModelsRequest(), &response);
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    std::vector<std::string> parts = absl::StrSplit(model_dir, '/', absl::SkipEmpty());
    *model = parts.empty() ? model_dir : parts.back();
    return true;
  }
  if (!status.ok() || response.models_size() == 0) return false;
  *model = response.models(0).name();
  return true;
}

absl::Status RunCluster(const std::vector<std::string>&) {
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    return UsageError("--model DIR is required");
  }
  const int n_prefill = absl::GetFlag(FLAGS_prefill), n_decode = absl::GetFlag(FLAGS_decode);
  const int n_experts = absl::GetFlag(FLAGS_experts);
  if (n_prefill < 1 || n_decode < 1 || n_experts < 0) {
    return UsageError("--prefill and --decode must be >= 1, --experts >= 0");
  }
  const absl::Duration eplb_interval = absl::GetFlag(FLAGS_eplb_interval);
  if (eplb_interval < absl::ZeroDuration() ||
      (eplb_interval > absl::ZeroDuration() && n_experts == 0)) {
    return UsageError("--eplb_interval must be >= 0 and needs --experts > 0");
  }
  std::string tokenizer = absl::GetFlag(FLAGS_tokenizer);
  if (tokenizer.empty() && std::ifstream(model + "/tokenizer.json").good()) tokenizer = model;

  // SIGINT/SIGTERM are taken synchronously below; children get an unblocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &signals, nullptr);

  std::string log_dir = absl::GetFlag(FLAGS_log_dir);
  if (log_dir.empty()) {
    char templ[] = "/tmp/dsv3-cluster-XXXXXX";
    log_dir = mkdtemp(templ);
  } else {
    // The children's logs are opened in it: a missing directory would read as a missing
    // binary ("cannot start ...: No such file or directory").
    std::error_code error;
    std::filesystem::create_directories(log_dir, error);
    if (error) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create --log_dir ", log_dir, ": ", error.message()));
    }
  }
  DSV3_ASSIGN_OR_RETURN(const ClusterTls tls, SetUpClusterTls(log_dir));
  const std::string bin = SelfDir();
  const int base = absl::GetFlag(FLAGS_port_base);
  int next_port = base + 2;
  std::vector<Child> children;
  std::vector<std::string> prefill_addresses, decode_addresses, expert_addresses;
  std::string ucx = absl::GetFlag(FLAGS_ucx_transports);
  if (ucx.empty()) ucx = n_experts > 0 ? "tcp" : "posix,cma,self";
  std::string idle_spin = absl::GetFlag(FLAGS_engine_idle_spin);
  // Measured on 2 cores (bench/RESULTS.md): spinning engine threads of one process starve
  // the expert workers it waits on; 100us instead of 2ms took decode batch 8 from 0.63x to
  // 0.95x of colocated.
  if (idle_spin.empty() && n_experts > 0) idle_spin = "100us";
  // Expert workers first: attention workers wait at startup until they hold every expert.
  for (int i = 0; i < n_experts; ++i) {
    Child c;
    c.role = "expert";
    c.grpc_port = next_port++;
    c.http_port = next_port++;
    c.ready_file = absl::StrCat(log_dir, "/expert-", i, ".ready");
    c.log = absl::StrCat(log_dir, "/expert-", i, ".log");
    std::vector<std::string> argv = {bin + "/dsv3-expert",
                                     "--model=" + model,
                                     absl::StrCat("--num_shards=", n_experts),
                                     absl::StrCat("--shard_index=", i),
                                     absl::StrCat("--grpc_port=", c.grpc_port),
                                     absl::StrCat("--http_port=", c.http_port),
                                     "--ready_file=" + c.ready_file,
                                     "--ucx_tls=" + ucx};
    if (ucx.find("tcp") != std::string::npos) argv.push_back("--ucx_net_devices=lo");
    if (!idle_spin.empty()) argv.push_back("--engine_idle_spin=" + idle_spin);
    if (absl::GetFlag(FLAGS_engine_compute_nice) > 0) {
      argv.push_back(
          absl::StrCat("--engine_compute_nice=", absl::GetFlag(FLAGS_engine_compute_nice)));
    }
    argv.push_back("--weights=" + absl::GetFlag(FLAGS_weights));
    argv.push_back(absl::StrCat("--bf16_activations=", absl::GetFlag(FLAGS_bf16_activations)));
    argv.push_back(absl::StrCat("--batch_invariant=", absl::GetFlag(FLAGS_batch_invariant)));
    expert_addresses.push_back(absl::StrCat("127.0.0.1:", c.grpc_port));
    if (Spawn(c, argv, tls)) children.push_back(c);
  }
  auto add_worker = [&](const std::string& role, int index) {
    Child c;
    c.role = role;
    c.grpc_port = next_port++;
    c.http_port = next_port++;
    c.ready_file = absl::StrCat(log_dir, "/", role, "-", index, ".ready");
    c.log = absl::StrCat(log_dir, "/", role, "-", index, ".log");
    std::vector<std::string> argv = {
        absl::StrCat(bin, "/dsv3-", role),
        "--model=" + model,
        absl::StrCat("--grpc_port=", c.grpc_port),
        absl::StrCat("--http_port=", c.http_port),
        "--ready_file=" + c.ready_file,
        "--ucx_tls=" + ucx,
        absl::StrCat("--kv_blocks=", absl::GetFlag(FLAGS_kv_pool_blocks)),
        absl::StrCat("--prefix_cache=", absl::GetFlag(FLAGS_prefix_cache) ? "true" : "false"),
        absl::StrCat("--prefix_cache_max_blocks=", absl::GetFlag(FLAGS_prefix_cache_max_blocks)),
        "--weights=" + absl::GetFlag(FLAGS_weights),
        absl::StrCat("--bf16_activations=", absl::GetFlag(FLAGS_bf16_activations)),
        absl::StrCat("--batch_invariant=", absl::GetFlag(FLAGS_batch_invariant))};
    if (ucx.find("tcp") != std::string::npos) argv.push_back("--ucx_net_devices=lo");
    if (!expert_addresses.empty()) {
      argv.push_back("--expert_workers=" + absl::StrJoin(expert_addresses, ","));
    }
    if (!idle_spin.empty()) argv.push_back("--engine_idle_spin=" + idle_spin);
    if (!absl::GetFlag(FLAGS_worker_drain_timeout).empty()) {
      argv.push_back("--drain_timeout=" + absl::GetFlag(FLAGS_worker_drain_timeout));
    }
    if (absl::GetFlag(FLAGS_engine_compute_nice) > 0) {
      argv.push_back(
          absl::StrCat("--engine_compute_nice=", absl::GetFlag(FLAGS_engine_compute_nice)));
    }
    if (role == "decode") {
      argv.push_back(absl::StrCat("--max_running=", absl::GetFlag(FLAGS_decode_max_running)));
      if (absl::GetFlag(FLAGS_local_prefill_chunk_tokens) >= 0) {
        argv.push_back(absl::StrCat("--local_prefill_chunk_tokens=",
                                    absl::GetFlag(FLAGS_local_prefill_chunk_tokens)));
      }
      // Over shared memory only, UCX-allocated pools take one-sided puts (UCX 1.13).
      if (ucx.find("tcp") == std::string::npos) argv.push_back("--kv_pool_memory=ucx");
      if (absl::GetFlag(FLAGS_speculative) == "mtp") {
        argv.push_back("--speculative_mtp");
        argv.push_back(absl::StrCat("--num_draft_tokens=", absl::GetFlag(FLAGS_draft_tokens)));
      }
    }
    (role == "prefill" ? prefill_addresses : decode_addresses)
        .push_back(absl::StrCat("127.0.0.1:", c.grpc_port));
    if (Spawn(c, argv, tls)) children.push_back(c);
  };
  for (int i = 0; i < n_decode; ++i) add_worker("decode", i);
  for (int i = 0; i < n_prefill; ++i) add_worker("prefill", i);
  Child router;
  router.role = "router";
  router.grpc_port = base;
  router.http_port = base + 1;
  router.ready_file = log_dir + "/router.ready";
  router.log = log_dir + "/router.log";
  std::vector<std::string> router_argv = {
      bin + "/dsv3-router",
      absl::StrCat("--grpc_port=", base),
      absl::StrCat("--http_port=", base + 1),
      "--ready_file=" + router.ready_file,
      "--prefill=" + absl::StrJoin(prefill_addresses, ","),
      "--decode=" + absl::StrJoin(decode_addresses, ","),
      "--router_policy=" + absl::GetFlag(FLAGS_router_policy),
      absl::StrCat("--kv_overlap_weight=", absl::GetFlag(FLAGS_kv_overlap_weight)),
      absl::StrCat("--decode_prefill_max_tokens=", absl::GetFlag(FLAGS_decode_prefill_max_tokens)),
      absl::StrCat("--migration_limit=", absl::GetFlag(FLAGS_migration_limit)),
      "--reasoning_parser=" + absl::GetFlag(FLAGS_reasoning_parser),
      "--tool_call_parser=" + absl::GetFlag(FLAGS_tool_call_parser)};
  if (!absl::GetFlag(FLAGS_api_keys).empty()) {
    router_argv.push_back("--api_keys=" + absl::GetFlag(FLAGS_api_keys));
  }
  if (!absl::GetFlag(FLAGS_worker_down_after).empty()) {
    router_argv.push_back("--worker_down_after=" + absl::GetFlag(FLAGS_worker_down_after));
  }
  if (!tokenizer.empty()) router_argv.push_back("--tokenizer=" + tokenizer);
  if (Spawn(router, router_argv, tls)) children.push_back(router);
  // With expert workers, one rebalancer: EPLB every --eplb_interval (when set) and failover.
  const int n_rebalancers = n_experts > 0 ? 1 : 0;
  if (n_rebalancers > 0) {
    Child rebalancer;
    rebalancer.role = "rebalancer";
    rebalancer.grpc_port = next_port++;
    rebalancer.http_port = next_port++;
    rebalancer.ready_file = log_dir + "/rebalancer.ready";
    rebalancer.log = log_dir + "/rebalancer.log";
    std::vector<std::string> argv = {
        bin + "/dsv3-rebalancer", absl::StrCat("--grpc_port=", rebalancer.grpc_port),
        absl::StrCat("--http_port=", rebalancer.http_port), "--ready_file=" + rebalancer.ready_file,
        "--expert_workers=" + absl::StrJoin(expert_addresses, ",")};
    if (eplb_interval > absl::ZeroDuration()) {
      argv.push_back("--eplb_interval=" + absl::FormatDuration(eplb_interval));
    }
    if (!absl::GetFlag(FLAGS_expert_failover_after).empty()) {
      argv.push_back("--expert_failover_after=" + absl::GetFlag(FLAGS_expert_failover_after));
    }
    if (Spawn(rebalancer, argv, tls)) children.push_back(rebalancer);
  }
  if (children.size() !=
      static_cast<size_t>(n_prefill + n_decode + n_experts + 1 + n_rebalancers)) {
    StopAll(children);
    return absl::UnavailableError("a process could not be started (said above)");
  }
  std::fprintf(stderr,
               "dsv3 cluster: starting %d prefill, %d decode, %d expert workers, a router%s "
               "(UCX over %s; logs in %s)\n",
               n_prefill, n_decode, n_experts, n_rebalancers > 0 ? " and a rebalancer" : "",
               ucx.c_str(), log_dir.c_str());

  // Healthy = every process listening and the router serving the model.
  const absl::Time started = absl::Now();
  const absl::Time deadline = started + absl::Minutes(10);
  std::string served;
  std::string last_progress;
  absl::Time last_print = started;
  while (true) {
    Reap(children);
    for (const Child& c : children) {
      if (c.exited) {
        std::fprintf(stderr, "dsv3 cluster: %s failed to start; its log:\n", c.role.c_str());
        std::ifstream in(c.log);
        std::stringstream ss;
        ss << in.rdbuf();
        std::fprintf(stderr, "%s\n", ss.str().c_str());
        StopAll(children);
        return absl::UnavailableError(absl::StrCat("the ", c.role, " failed to start"));
      }
    }
    int listening = 0;
    for (Child& c : children) listening += ReadReady(c) ? 1 : 0;
    const bool ready = listening == static_cast<int>(children.size());
    // Every worker up as the router sees it, and the router serving the model.
    const int workers_up = ready ? WorkersUp(base + 1, tls) : 0;
    if (ready && workers_up == n_prefill + n_decode &&
        RouterServes(absl::StrCat("127.0.0.1:", base), model, &served)) {
      break;
    }
    // Loading a model takes a while on a first run: say where the start-up is, when that
    // changes and at least every 10 s, so a newcomer sees it is not stuck.
    std::string progress =
        ready ? absl::StrCat("all ", listening, " processes listening; the router sees ",
                             workers_up, " of ", n_prefill + n_decode, " workers ready")
              : absl::StrCat(listening, " of ", children.size(),
                             " processes listening (workers load the model first)");
    if (progress != last_progress || absl::Now() - last_print >= absl::Seconds(10)) {
      std::fprintf(stderr, "dsv3 cluster: %s (%.0f s)\n", progress.c_str(),
                   absl::ToDoubleSeconds(absl::Now() - started));
      last_progress = std::move(progress);
      last_print = absl::Now();
    }
    if (absl::Now() > deadline) {
      StopAll(children);
      return absl::DeadlineExceededError("not healthy after 10 minutes; stopped");
    }
    timespec ts{0, 50'000'000};
    if (sigtimedwait(&signals, nullptr, &ts) > 0) {
      StopAll(children);
      return absl::OkStatus();
    }
  }

  nlohmann::json status = nlohmann::json::array();
  for (const Child& c : children) {
    status.push_back({{"role", c.role},
                      {"pid", c.pid},
                      {"grpc", absl::StrCat("127.0.0.1:", c.grpc_port)},
                      {"http", absl::StrCat("127.0.0.1:", c.http_port)}});
  }
  if (!absl::GetFlag(FLAGS_status_file).empty()) {
    const std::string path = absl::GetFlag(FLAGS_status_file);
    std::ofstream(path + ".tmp") << status.dump(2) << "\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  std::fprintf(stderr, "dsv3 cluster: healthy after %.1f s\n",
               absl::ToDoubleSeconds(absl::Now() - started));
  const bool keys = !absl::GetFlag(FLAGS_api_keys).empty();
  const std::string tls_client = tls.enabled ? absl::StrCat("--tls_ca ", tls.ca, " ") : "";
  const std::string curl_tls = tls.enabled ? absl::StrCat("--cacert ", tls.ca, " ") : "";
  std::printf(
      "dsv3 cluster: serving model '%s'%s\n"
      "  gRPC (dsv3.v1.Inference):   127.0.0.1:%d%s\n"
      "  OpenAI HTTP API + /metrics: %s://127.0.0.1:%d\n"
      "Try:\n"
      "  %s%s/dsv3 complete --router 127.0.0.1:%d %s%s\n"
      "  curl -s %s%s://127.0.0.1:%d/v1/completions -H 'Content-Type: application/json' %s\\\n"
      "       -d '{\"model\": \"%s\", \"prompt\": %s, \"max_tokens\": 16}'\n"
      "Ctrl-C stops the cluster.\n",
      served.c_str(), tokenizer.empty() ? " (token ids only: no tokenizer)" : "", base,
      tls.enabled ? " (TLS)" : "", tls.scheme().c_str(), base + 1, keys ? "DSV3_API_KEY=$KEY " : "",
      bin.c_str(), base, tls_client.c_str(),
      tokenizer.empty() ? "--tokens \"0 17 5\" --max-tokens 8"
                        : "--prompt \"Hello\" --max-tokens 16",
      curl_tls.c_str(), tls.scheme().c_str(), base + 1,
      keys ? "-H \"Authorization: Bearer $KEY\" " : "", served.c_str(),
      tokenizer.empty() ? "[0, 17, 5]" : "\"Hello\"");
  std::fflush(stdout);

  while (true) {
    timespec ts{0, 200'000'000};
    int sig = sigtimedwait(&signals, nullptr, &ts);
    if (sig > 0) break;
    Reap(children);
  }
  std::fprintf(stderr, "dsv3 cluster: stopping\n");
  StopAll(children);
  return absl::OkStatus();
}

}  // namespace

DSV3_REGISTER_COMMAND(
    cluster, "cluster", "run router + prefill + decode workers on this machine (--model DIR)",
    RunCluster,
    {"model",
     {"model", "tokenizer", "speculative", "draft_tokens", "weights", "bf16_activations",
      "batch_invariant"}},
    {"processes", {"prefill", "decode", "experts", "port_base", "status_file", "log_dir"}},
    {"workers",
     {"ucx_transports", "kv_pool_blocks", "decode_max_running", "local_prefill_chunk_tokens",
      "prefix_cache", "prefix_cache_max_blocks", "engine_idle_spin", "engine_compute_nice",
      "worker_drain_timeout"}},
    {"router",
     {"router_policy", "kv_overlap_weight", "decode_prefill_max_tokens", "migration_limit",
      "reasoning_parser", "tool_call_parser", "api_keys", "worker_down_after"}},
    {"security", {"tls", "tls_cert", "tls_key", "tls_ca", "tls_refresh_interval"}},
    {"experts", {"eplb_interval", "expert_failover_after"}});

}  // namespace dsv3::tools
