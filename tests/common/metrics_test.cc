#include "common/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "tests/support/subprocess.h"

namespace dsv3::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsTest, CounterGaugeExposition) {
  Registry r;
  r.AddCounter("dsv3_requests_total", "Requests by status.", {"status"})
      .WithLabels({"ok"})
      .Increment(3);
  r.AddCounter("dsv3_requests_total", "Requests by status.", {"status"})
      .WithLabels({"error"})
      .Increment();
  r.AddGauge("dsv3_kv_blocks_used", "Blocks in use.").Get().Set(7.5);
  std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("# HELP dsv3_requests_total Requests by status.\n"
                              "# TYPE dsv3_requests_total counter\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_requests_total{status=\"ok\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_requests_total{status=\"error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE dsv3_kv_blocks_used gauge\ndsv3_kv_blocks_used 7.5\n"));
}

TEST(MetricsTest, CounterIgnoresNegativeIncrements) {
  Registry r;
  Counter& c = r.AddCounter("dsv3_x_total", "x").Get();
  c.Increment(2);
  c.Increment(-5);
  c.Increment(std::nan(""));
  EXPECT_EQ(c.Value(), 2);
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry r;
  Histogram& h = r.AddHistogram("dsv3_latency_seconds", "Latency.", {0.1, 1, 10}).Get();
  for (double v : {0.05, 0.1, 0.5, 2.0, 20.0}) h.Observe(v);
  std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_bucket{le=\"0.1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_bucket{le=\"1\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_bucket{le=\"10\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_bucket{le=\"+Inf\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_sum 22.65\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_latency_seconds_count 5\n"));
}

TEST(MetricsTest, HistogramWithLabelsPutsLeLast) {
  Registry r;
  r.AddHistogram("dsv3_ttft_seconds", "TTFT.", {1}, {"model"}).WithLabels({"m"}).Observe(0.5);
  EXPECT_THAT(r.Expose(), HasSubstr("dsv3_ttft_seconds_bucket{model=\"m\",le=\"1\"} 1\n"));
}

TEST(MetricsTest, EscapesHelpAndLabelValues) {
  Registry r;
  r.AddGauge("dsv3_g", "line one\nback\\slash", {"path"}).WithLabels({"a\"b\\c\nd"}).Set(1);
  std::string text = r.Expose();
  EXPECT_THAT(text, HasSubstr("# HELP dsv3_g line one\\nback\\\\slash\n"));
  EXPECT_THAT(text, HasSubstr("dsv3_g{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
}

TEST(MetricsTest, FormatsSpecialValues) {
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1795611539.550209), "1795611539.550209");
  EXPECT_EQ(std::strtod(FormatValue(1.0 / 3).c_str(), nullptr), 1.0 / 3);
}

TEST(MetricsTest, ValidatesNames) {
  EXPECT_TRUE(IsValidMetricName("dsv3_a:b_1"));
  EXPECT_FALSE(IsValidMetricName("1abc"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_TRUE(IsValidLabelName("status"));
  EXPECT_FALSE(IsValidLabelName("__reserved"));
  EXPECT_FALSE(IsValidLabelName("le"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
}

TEST(MetricsDeathTest, RedefinitionAborts) {
  Registry r;
  r.AddCounter("dsv3_c_total", "c", {"a"});
  EXPECT_DEATH(r.AddGauge("dsv3_c_total", "c", {"a"}), "registered twice");
  EXPECT_DEATH(r.AddCounter("dsv3_c_total", "c", {"a"}).WithLabels({}), "label values");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  Counter& c = r.AddCounter("dsv3_n_total", "n").Get();
  Histogram& h = r.AddHistogram("dsv3_h", "h", {0.5}).Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Increment();
        h.Observe(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Value(), 40000);
  EXPECT_EQ(h.Read().count, 40000u);
  EXPECT_EQ(h.Read().sum, 40000);
}

TEST(MetricsTest, CollectorsRunBeforeExposition) {
  Registry r;
  Gauge& g = r.AddGauge("dsv3_collected", "c").Get();
  int runs = 0;
  r.AddCollector([&] { g.Set(++runs); });
  EXPECT_THAT(r.Expose(), HasSubstr("dsv3_collected 1\n"));
  EXPECT_THAT(r.Expose(), HasSubstr("dsv3_collected 2\n"));
}

// The real Prometheus tooling accepts what we expose, including a lint-clean naming.
TEST(MetricsTest, PromtoolAcceptsExposition) {
  auto [which_rc, which_out] = dsv3::testing::RunCommand("command -v promtool");
  ASSERT_EQ(which_rc, 0) << "promtool missing: run scripts/install-deps.sh";
  Registry r;
  r.AddCounter("dsv3_requests_total", "Requests.", {"status"}).WithLabels({"ok"}).Increment();
  r.AddGauge("dsv3_kv_usage_ratio", "KV usage.").Get().Set(0.25);
  auto& h =
      r.AddHistogram("dsv3_time_to_first_token_seconds", "TTFT.", LatencyBuckets(), {"model"});
  h.WithLabels({"tiny \"q\""}).Observe(0.003);
  h.WithLabels({"other"}).Observe(INFINITY);
  r.AddGauge("dsv3_unused", "A family without children.");
  std::string dir = dsv3::testing::MakeTempDir("metrics");
  std::string path = dir + "/metrics.txt";
  std::ofstream(path) << r.Expose();
  auto [rc, out] = dsv3::testing::RunCommand("promtool check metrics < " + path);
  EXPECT_EQ(rc, 0) << out;
  // And the linter does reject a counter without _total, so the check above can fail.
  Registry bad;
  bad.AddCounter("dsv3_requests", "Requests.").Get().Increment();
  std::ofstream(path) << bad.Expose();
  auto [bad_rc, bad_out] = dsv3::testing::RunCommand("promtool check metrics < " + path);
  EXPECT_NE(bad_rc, 0) << bad_out;
}

}  // namespace
}  // namespace dsv3::metrics
