// EPLB in a live cluster: `dsv3 cluster --experts 3 --eplb_interval 2s` serving a tiny model
// whose expert choice is skewed (make-model --router_skew). Under load the router's
// rebalancer moves and replicates the hot experts: every expert worker ends up on a newer
// placement, the tokens per expert worker (as the workers themselves report them) become
// more even, no request fails or changes its tokens during the switch, and greedy tokens
// before and after equal `dsv3 generate`'s.

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <numeric>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::BinaryPath;
using ::dsv3::testing::Cluster;
using ::dsv3::testing::Generate;
using ::dsv3::testing::GenerateGrpc;
using ::dsv3::testing::GrpcResult;
using ::dsv3::testing::IdsRequest;
using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::RunCommand;

constexpr int kExpertWorkers = 3;

std::unique_ptr<v1::Expert::Stub> ExpertStub(const std::string& address) {
  return v1::Expert::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

// The placement version an expert worker holds (-1: no answer).
int64_t PlacementVersion(const std::string& address) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ExpertPlacement p;
  if (!ExpertStub(address)->GetPlacement(&ctx, v1::GetPlacementRequest(), &p).ok()) return -1;
  return p.version();
}

// Max over mean of the tokens per worker (1 = even).
double Imbalance(const std::vector<int64_t>& tokens) {
  const double sum = static_cast<double>(std::accumulate(tokens.begin(), tokens.end(), 0LL));
  if (sum <= 0) return 1.0;
  return static_cast<double>(*std::max_element(tokens.begin(), tokens.end())) * tokens.size() / sum;
}

// Every expert worker's WatchExpertLoad stream, as the workers report their own tokens.
class LoadRecorder {
 public:
  explicit LoadRecorder(const Cluster& cluster) {
    for (int w = 0; w < kExpertWorkers; ++w) {
      threads_.emplace_back([this, address = cluster.Get("expert", w).grpc] { Watch(address); });
    }
  }
  ~LoadRecorder() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      for (grpc::ClientContext* c : contexts_) c->TryCancel();
    }
    for (std::thread& t : threads_) t.join();
  }

  // Starts a window: from now on, tokens per worker index.
  void Reset() {
    absl::MutexLock lock(&mu_);
    window_.assign(kExpertWorkers, 0);
    newest_seen_ = 0;
  }
  std::vector<int64_t> Window() const {
    absl::MutexLock lock(&mu_);
    return window_;
  }
  // Freezes the window at the first report of a placement newer than `version`.
  void FreezeAbove(int64_t version) {
    absl::MutexLock lock(&mu_);
    freeze_above_ = version;
  }
  int64_t NewestSeen() const {
    absl::MutexLock lock(&mu_);
    return newest_seen_;
  }

 private:
  void Watch(const std::string& address) {
    grpc::ClientContext ctx;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      contexts_.push_back(&ctx);
    }
    v1::WatchExpertLoadRequest request;
    request.set_interval_ms(200);
    auto reader = ExpertStub(address)->WatchExpertLoad(&ctx, request);
    v1::ExpertLoadReport report;
    bool first = true;
    while (reader->Read(&report)) {
      // The first report covers everything since the worker started.
      if (std::exchange(first, false)) continue;
      absl::MutexLock lock(&mu_);
      newest_seen_ = std::max(newest_seen_, report.placement_version());
      if (freeze_above_ > 0 && newest_seen_ > freeze_above_) continue;
      const size_t w = static_cast<size_t>(report.worker_index());
      if (w >= window_.size()) continue;
      for (const v1::ExpertTokenCount& c : report.counts()) window_[w] += c.tokens();
    }
    (void)reader->Finish();
  }

  mutable absl::Mutex mu_;
  std::vector<int64_t> window_ ABSL_GUARDED_BY(mu_) = std::vector<int64_t>(kExpertWorkers, 0);
  int64_t newest_seen_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t freeze_above_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// Clients sending greedy requests back to back until stopped; every answer must be OK and
// equal the single-process engine's.
class Load {
 public:
  struct Job {
    std::vector<int32_t> prompt;
    int max_tokens;
    std::vector<int32_t> expected;
  };
  Load(const std::string& router, std::vector<Job> jobs, int clients) : jobs_(std::move(jobs)) {
    for (int c = 0; c < clients; ++c) {
      threads_.emplace_back([this, router, c] {
        for (size_t i = static_cast<size_t>(c); !stop_.load(); ++i) {
          const Job& job = jobs_[i % jobs_.size()];
          GrpcResult r = GenerateGrpc(router, IdsRequest(job.prompt, job.max_tokens), 60);
          absl::MutexLock lock(&mu_);
          ++done_;
          if (!r.status.ok()) {
            failures_.push_back(absl::StrCat("request failed: ", r.status.error_message()));
          } else if (r.ids != job.expected) {
            failures_.push_back(
                absl::StrCat("tokens differ from dsv3 generate's (job ", i % jobs_.size(), ")"));
          }
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  std::vector<std::string> failures() const {
    absl::MutexLock lock(&mu_);
    return failures_;
  }

 private:
  const std::vector<Job> jobs_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// The value of one sample of the rebalancer's /metrics (-1 when absent).
double MetricValue(const Cluster& cluster, const std::string& series) {
  return dsv3::testing::MetricSum(cluster, "rebalancer", series);
}

void ExpectGreedyEqualsGenerate(const Cluster& cluster, const std::vector<Load::Job>& jobs) {
  for (const Load::Job& job : jobs) {
    GrpcResult r = GenerateGrpc(cluster.router(), IdsRequest(job.prompt, job.max_tokens));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, job.expected);
  }
}

// A tiny model with skewed expert choice, and greedy requests with dsv3 generate's tokens.
std::string SkewedModel() {
  const std::string model = MakeTempDir("skewed") + "/model";
  auto [rc, out] = RunCommand(absl::StrCat(
      BinaryPath("dsv3"), " make-model --preset tiny --router_skew 0.3 --out ", model, " 2>&1"));
  EXPECT_EQ(rc, 0) << out;
  return model;
}
std::vector<Load::Job> Jobs(const std::string& model) {
  std::vector<Load::Job> jobs;
  for (int j = 0; j < 3; ++j) {
    Load::Job job;
    for (int t = 0; t < 12 + 10 * j; ++t) job.prompt.push_back((37 * t + 101 * j + 5) % 1024);
    job.max_tokens = 16;
    job.expected = Generate(model, job.prompt, job.max_tokens);
    EXPECT_EQ(job.expected.size(), 16u);
    jobs.push_back(std::move(job));
  }
  return jobs;
}

std::vector<std::string> ExpertAddresses(const Cluster& cluster) {
  std::vector<std::string> out;
  for (int w = 0; w < kExpertWorkers; ++w) out.push_back(cluster.Get("expert", w).grpc);
  return out;
}

// The version every expert worker holds once they agree on one >= `at_least` (0: not
// within the timeout).
int64_t WaitForCommonVersion(const std::vector<std::string>& experts, int64_t at_least,
                             absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::vector<int64_t> versions;
    for (const std::string& e : experts) versions.push_back(PlacementVersion(e));
    if (versions[0] >= at_least && std::count(versions.begin(), versions.end(), versions[0]) ==
                                       static_cast<int64_t>(versions.size())) {
      return versions[0];
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

// Until both attention workers log `version` in effect (they switch at a step boundary).
bool WaitForAttentionWorkers(const Cluster& cluster, int64_t version) {
  const std::string in_effect = absl::StrCat("expert placement version ", version, " in effect");
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    if (absl::StrContains(testing::ReadFile(cluster.dir() + "/prefill-0.log"), in_effect) &&
        absl::StrContains(testing::ReadFile(cluster.dir() + "/decode-0.log"), in_effect)) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

TEST(ExpertRebalanceTest, SkewedLoadIsRebalancedWithoutFailingARequest) {
  const absl::Time start = absl::Now();
  const std::string model = SkewedModel();
  const std::vector<Load::Job> jobs = Jobs(model);
  auto cluster = Cluster::Start(model, 1, 1, 17980, 128,
                                {absl::StrCat("--experts=", kExpertWorkers), "--eplb_interval=2s"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<std::string> experts = ExpertAddresses(*cluster);
  for (const std::string& e : experts) ASSERT_EQ(PlacementVersion(e), 1) << e;
  // Too little load for the rebalancer (it needs 1000 routed tokens per window).
  ExpectGreedyEqualsGenerate(*cluster, jobs);

  // Load on the default placement until the rebalancer's first change reaches a worker.
  LoadRecorder recorder(*cluster);
  recorder.FreezeAbove(1);
  recorder.Reset();
  Load load(cluster->router(), jobs, 3);
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (recorder.NewestSeen() <= 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_GT(recorder.NewestSeen(), 1) << "no rebalance within 30 s\n"
                                      << testing::ReadFile(cluster->dir() + "/rebalancer.log");
  const std::vector<int64_t> before = recorder.Window();

  // Every expert worker on the same, newer placement, and the attention workers on it.
  const int64_t version = WaitForCommonVersion(experts, 2, absl::Seconds(30));
  ASSERT_GE(version, 2) << testing::ReadFile(cluster->dir() + "/rebalancer.log");
  ASSERT_TRUE(WaitForAttentionWorkers(*cluster, version));

  // A window on the new placement.
  recorder.FreezeAbove(0);
  recorder.Reset();
  absl::SleepFor(absl::Seconds(3));  // the measurement window itself, not a synchronisation
  const std::vector<int64_t> after = recorder.Window();
  load.Stop();

  const double imbalance_before = Imbalance(before);
  const double imbalance_after = Imbalance(after);
  std::printf(
      "EPLB live: placement 1 -> %lld; tokens per expert worker before [%lld %lld %lld] "
      "max/mean %.3f, after [%lld %lld %lld] max/mean %.3f; %lld requests\n",
      static_cast<long long>(version), static_cast<long long>(before[0]),
      static_cast<long long>(before[1]), static_cast<long long>(before[2]), imbalance_before,
      static_cast<long long>(after[0]), static_cast<long long>(after[1]),
      static_cast<long long>(after[2]), imbalance_after, static_cast<long long>(load.done()));
  EXPECT_GT(std::accumulate(before.begin(), before.end(), 0LL), 1000);
  EXPECT_GT(std::accumulate(after.begin(), after.end(), 0LL), 1000);
  EXPECT_GT(imbalance_before, 1.2);  // the skew shows on the default placement
  EXPECT_LT(imbalance_after, 0.85 * imbalance_before);
  const std::vector<std::string> failures = load.failures();
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << load.done()
                                << " requests went wrong, first: " << failures.front();

  // The router's view: one change at least, the version the workers hold (or a later one),
  // and the placement in effect measured on a window of its own.
  EXPECT_GE(MetricValue(*cluster, "dsv3_eplb_rebalances_total{status=\"ok\"}"), 1);
  EXPECT_GE(MetricValue(*cluster, "dsv3_expert_placement_version"), version);
  const double router_current =
      MetricValue(*cluster, "dsv3_eplb_imbalance_ratio{placement=\"current\"}");
  EXPECT_GE(router_current, 1.0);
  EXPECT_LT(router_current, imbalance_before);
  EXPECT_GE(MetricValue(*cluster, "dsv3_eplb_imbalance_ratio{placement=\"proposed\"}"), 1.0);

  ExpectGreedyEqualsGenerate(*cluster, jobs);
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
}

// An expert worker that restarts comes back on the default placement; the rebalancer gives
// it the placement in effect again, and the cluster serves the same tokens.
TEST(ExpertRebalanceTest, RestartedExpertWorkerGetsThePlacementBack) {
  const std::string model = SkewedModel();
  const std::vector<Load::Job> jobs = Jobs(model);
  auto cluster = Cluster::Start(model, 1, 1, 18200, 128,
                                {absl::StrCat("--experts=", kExpertWorkers), "--eplb_interval=2s"});
  ASSERT_NE(cluster, nullptr);
  const std::vector<std::string> experts = ExpertAddresses(*cluster);
  int64_t version = 0;
  {
    Load load(cluster->router(), jobs, 3);
    version = WaitForCommonVersion(experts, 2, absl::Seconds(30));
    ASSERT_GE(version, 2) << testing::ReadFile(cluster->dir() + "/rebalancer.log");
  }

  const testing::ClusterProc victim = cluster->Get("expert", 1);
  kill(victim.pid, SIGKILL);
  // Its ports are free only once it has exited (tearing down its memory first can take a
  // while on a busy machine: the restart below once found its port still in use).
  ASSERT_TRUE(testing::WaitForProcessEnd(victim.pid, absl::Seconds(20)));
  const std::vector<std::string> grpc_hp = absl::StrSplit(victim.grpc, ':');
  const std::vector<std::string> http_hp = absl::StrSplit(victim.http, ':');
  auto back = testing::Subprocess::Start(
      {BinaryPath("dsv3-expert"), "--model=" + model, absl::StrCat("--num_shards=", kExpertWorkers),
       "--shard_index=1", "--grpc_port=" + grpc_hp[1], "--http_port=" + http_hp[1], "--ucx_tls=tcp",
       "--ucx_net_devices=lo"},
      cluster->dir() + "/expert-1-restarted.log");
  ASSERT_TRUE(back.ok()) << back.status();
  // Back on version 1 at first, then on the placement in effect (or a later one).
  EXPECT_GE(WaitForCommonVersion(experts, version, absl::Seconds(30)), version)
      << testing::ReadFile(cluster->dir() + "/rebalancer.log")
      << "\nthe restarted expert worker's log:\n"
      << back->ReadLog();
  EXPECT_TRUE(
      absl::StrContains(testing::ReadFile(cluster->dir() + "/rebalancer.log"), "(restarted?)"));

  // The attention workers re-join it in the background; then the tokens are the same.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  GrpcResult r = GenerateGrpc(cluster->router(), IdsRequest(jobs[0].prompt, jobs[0].max_tokens));
  while (!r.status.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));  // polling, up to the deadline
    r = GenerateGrpc(cluster->router(), IdsRequest(jobs[0].prompt, jobs[0].max_tokens));
  }
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ExpectGreedyEqualsGenerate(*cluster, jobs);
  back->Signal(SIGTERM);
  EXPECT_EQ(*back->Wait(absl::Seconds(20)), 0);
}

}  // namespace
}  // namespace dsv3
