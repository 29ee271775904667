// The serving metrics catalog: every family exposed, valid for the real promtool (with and
// without samples), documented in docs/metrics.md, named by the Prometheus conventions.

#include "common/serving_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/subprocess.h"

namespace dsv3 {
namespace {

using ::dsv3::testing::MakeTempDir;
using ::dsv3::testing::RunCommand;
using ::testing::HasSubstr;

// Runs `promtool check metrics` on `exposition`; returns {exit code, output}.
std::pair<int, std::string> PromtoolCheck(const std::string& exposition) {
  std::string dir = MakeTempDir("promtool");
  std::string path = dir + "/metrics.txt";
  std::ofstream(path) << exposition;
  return RunCommand("promtool check metrics < " + path);
}

// One child in every family, so every sample line form (_bucket/_sum/_count, labels) shows.
void PopulateEveryFamily(const ServingMetrics& m) {
  const std::string model = "deepseek-ai/DeepSeek-V3";
  m.requests.WithLabels({model, "ok"}).Increment();
  m.requests.WithLabels({model, StatusLabel(absl::StatusCode::kResourceExhausted)}).Increment();
  m.prompt_tokens.WithLabels({model}).Increment(17);
  m.generation_tokens.WithLabels({model}).Increment(5);
  m.ttft_seconds.WithLabels({model}).Observe(0.2);
  m.inter_token_latency_seconds.WithLabels({model}).Observe(0.02);
  m.e2e_latency_seconds.WithLabels({model}).Observe(3.5);
  m.worker_up.WithLabels({"decode", "10.0.0.7:50051"}).Set(1);
  m.queue_time_seconds.WithLabels({model}).Observe(0.001);
  m.requests_running.WithLabels({model}).Set(3);
  m.requests_waiting.WithLabels({model}).Set(1);
  m.prefill_batch_tokens.WithLabels({model}).Observe(4096);
  m.decode_batch_size.WithLabels({model}).Observe(32);
  RecordKvBlocks(m, model, 30, 120);
  m.kv_transfer_bytes.WithLabels({model}).Increment(1 << 20);
  m.kv_transfer_seconds.WithLabels({model}).Observe(0.004);
  m.spec_drafts.WithLabels({model}).Increment();
  m.spec_draft_tokens.WithLabels({model}).Increment(1);
  m.spec_accepted_tokens.WithLabels({model}).Increment(1);
  ExpertTokenCounter(m, 3, 17)->Increment(8);
  m.expert_tokens_dropped.Get().Increment(0);
  m.expert_dispatch_seconds.WithLabels({"ucx"}).Observe(0.0007);
}

TEST(ServingMetricsTest, EmptyCatalogPassesPromtool) {
  metrics::Registry registry;
  ServingMetrics::Register(registry);
  std::string text = registry.Expose();
  for (const MetricSpec& spec : ServingMetricSpecs()) {
    EXPECT_THAT(text, HasSubstr("# TYPE " + spec.name + " ")) << spec.name;
    EXPECT_THAT(text, HasSubstr("# HELP " + spec.name + " ")) << spec.name;
  }
  auto [rc, out] = PromtoolCheck(text);
  EXPECT_EQ(rc, 0) << out << "\n" << text;
}

TEST(ServingMetricsTest, PopulatedCatalogPassesPromtool) {
  metrics::Registry registry;
  const ServingMetrics m = ServingMetrics::Register(registry);
  PopulateEveryFamily(m);
  std::string text = registry.Expose();
  EXPECT_THAT(text, HasSubstr("dsv3_requests_total{model=\"deepseek-ai/"
                              "DeepSeek-V3\",status=\"resource_exhausted\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("dsv3_kv_cache_usage_ratio{model=\"deepseek-ai/DeepSeek-V3\"} 0.25\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_expert_tokens_total{layer=\"3\",expert=\"17\"} 8\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_time_to_first_token_seconds_bucket{model=\"deepseek-ai/"
                              "DeepSeek-V3\",le=\"+Inf\"} 1\n"));
  auto [rc, out] = PromtoolCheck(text);
  EXPECT_EQ(rc, 0) << out << "\n" << text;
}

// The check above can fail: promtool rejects a counter named without _total (lint, exit 3)
// and a malformed line (exit 1).
TEST(ServingMetricsTest, PromtoolRejectsBrokenExpositions) {
  metrics::Registry registry;
  ServingMetrics::Register(registry);
  registry.AddCounter("dsv3_bad_requests", "A counter without _total.").Get().Increment();
  auto [lint_rc, lint_out] = PromtoolCheck(registry.Expose());
  EXPECT_NE(lint_rc, 0) << lint_out;
  EXPECT_THAT(lint_out, HasSubstr("dsv3_bad_requests"));

  auto [parse_rc, parse_out] = PromtoolCheck("# TYPE dsv3_x_total counter\ndsv3_x_total{a=1} 1\n");
  EXPECT_NE(parse_rc, 0) << parse_out;
}

TEST(ServingMetricsTest, NamesFollowPrometheusConventions) {
  std::set<std::string> names;
  for (const MetricSpec& spec : ServingMetricSpecs()) {
    EXPECT_TRUE(names.insert(spec.name).second) << "duplicate " << spec.name;
    EXPECT_TRUE(absl::StartsWith(spec.name, "dsv3_")) << spec.name;
    EXPECT_FALSE(spec.emitted_by.empty()) << spec.name;
    bool is_total = absl::EndsWith(spec.name, "_total");
    EXPECT_EQ(is_total, spec.type == metrics::MetricType::kCounter) << spec.name;
    // Time is in seconds, never milliseconds.
    EXPECT_FALSE(absl::StrContains(spec.name, "_ms")) << spec.name;
    if (absl::StrContains(spec.name, "latency") || absl::StrContains(spec.name, "time")) {
      EXPECT_TRUE(absl::EndsWith(spec.name, "_seconds")) << spec.name;
    }
    for (const std::string& label : spec.labels) {
      EXPECT_TRUE(metrics::IsValidLabelName(label)) << spec.name << " " << label;
    }
  }
  EXPECT_GE(names.size(), 20u);
}

TEST(ServingMetricsTest, EveryFamilyIsDocumented) {
  std::ifstream in(std::string(DSV3_SOURCE_DIR) + "/docs/metrics.md");
  ASSERT_TRUE(in) << "docs/metrics.md missing";
  std::stringstream doc;
  doc << in.rdbuf();
  for (const MetricSpec& spec : ServingMetricSpecs()) {
    EXPECT_THAT(doc.str(), HasSubstr("`" + spec.name + "`")) << spec.name;
  }
}

TEST(ServingMetricsTest, DefaultRegistryHoldsTheCatalogOnce) {
  const ServingMetrics& a = Metrics();
  const ServingMetrics& b = Metrics();
  EXPECT_EQ(&a, &b);
  // Registering again returns the same families.
  ServingMetrics again = ServingMetrics::Register(metrics::Registry::Default());
  EXPECT_EQ(&again.ttft_seconds, &a.ttft_seconds);
  EXPECT_THAT(metrics::Registry::Default().Expose(),
              HasSubstr("# TYPE dsv3_time_to_first_token_seconds histogram\n"));
}

TEST(ServingMetricsTest, StatusLabelsAreLowerCaseCodeNames) {
  EXPECT_EQ(StatusLabel(absl::StatusCode::kOk), "ok");
  EXPECT_EQ(StatusLabel(absl::StatusCode::kCancelled), "cancelled");
  EXPECT_EQ(StatusLabel(absl::StatusCode::kInvalidArgument), "invalid_argument");
  EXPECT_EQ(StatusLabel(absl::StatusCode::kDeadlineExceeded), "deadline_exceeded");
  EXPECT_EQ(StatusLabel(absl::StatusCode::kUnavailable), "unavailable");
  EXPECT_EQ(StatusLabel(static_cast<absl::StatusCode>(1234)), "unknown");
}

TEST(ServingMetricsTest, KvBlocksRatio) {
  metrics::Registry registry;
  const ServingMetrics m = ServingMetrics::Register(registry);
  RecordKvBlocks(m, "m", 0, 0);
  EXPECT_EQ(m.kv_usage_ratio.WithLabels({"m"}).Value(), 0.0);
  RecordKvBlocks(m, "m", 96, 128);
  EXPECT_EQ(m.kv_blocks_used.WithLabels({"m"}).Value(), 96.0);
  EXPECT_EQ(m.kv_blocks_total.WithLabels({"m"}).Value(), 128.0);
  EXPECT_EQ(m.kv_usage_ratio.WithLabels({"m"}).Value(), 0.75);
}

TEST(ServingMetricsTest, ExpertSeriesAreBounded) {
  metrics::Registry registry;
  const ServingMetrics m = ServingMetrics::Register(registry);
  metrics::Counter* first = ExpertTokenCounter(m, 0, 0);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(ExpertTokenCounter(m, 0, 0), first);  // cached
  EXPECT_EQ(ExpertTokenCounter(m, -1, 0), nullptr);
  const int experts = 256;
  for (int i = 1; i < kMaxExpertTokenSeries; ++i) {
    ASSERT_NE(ExpertTokenCounter(m, i / experts, i % experts), nullptr) << i;
  }
  EXPECT_EQ(ExpertTokenCounter(m, 1000, 0), nullptr);  // one past the bound
  EXPECT_EQ(m.expert_tokens_dropped.Get().Value(), 1.0);
  EXPECT_NE(ExpertTokenCounter(m, 5, 5), nullptr);  // existing pairs still resolve
  std::string text = registry.Expose();
  size_t series = 0;
  for (size_t pos = 0; (pos = text.find("\ndsv3_expert_tokens_total{", pos)) != std::string::npos;
       ++pos) {
    ++series;
  }
  EXPECT_EQ(series, static_cast<size_t>(kMaxExpertTokenSeries));
}

}  // namespace
}  // namespace dsv3
