// The PromQL name extraction the dashboard and rule checks rely on.

#include "tests/deploy/promql_names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace dsv3::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

TEST(PromqlNamesTest, FindsSelectedMetricsOnly) {
  EXPECT_THAT(
      MetricNamesInPromQL("histogram_quantile(0.99, sum by (model, le) "
                          "(rate(dsv3_time_to_first_token_seconds_bucket{model=~\"a|b\"}[5m])))"),
      ElementsAre("dsv3_time_to_first_token_seconds_bucket"));
  EXPECT_THAT(MetricNamesInPromQL(
                  "sum(rate(a_total{status!~\"ok|x\"}[5m] offset 1h)) / on (model) "
                  "group_left(role) sum without (instance) (b) > bool 0.5 and c unless d or "
                  "max_over_time(e[10m:1m])"),
              ElementsAre("a_total", "b", "c", "d", "e"));
  EXPECT_THAT(MetricNamesInPromQL("up{component=~\"router|prefill\"} == 0"), ElementsAre("up"));
  EXPECT_THAT(MetricNamesInPromQL("1 + 2e3 * vector(1) - time()"), IsEmpty());
  EXPECT_THAT(MetricNamesInPromQL(
                  "label_replace(x, \"dst\", \"$1\", \"src\", \"(.*)\") + count_values(\"v\", y)"),
              UnorderedElementsAre("x", "y"));
  EXPECT_THAT(MetricNamesInPromQL("topk(5, sum by (expert)(rate(dsv3_expert_tokens_total[1m])))"),
              ElementsAre("dsv3_expert_tokens_total"));
}

TEST(PromqlNamesTest, SubstitutesGrafanaVariables) {
  EXPECT_EQ(
      SubstituteGrafanaVariables(
          "rate(x{model=~\"$model\",l=~\"${layer:regex}\",z=~\"[[old]]\"}[$__rate_interval])"),
      "rate(x{model=~\".*\",l=~\".*\",z=~\".*\"}[1m])");
  EXPECT_EQ(SubstituteGrafanaVariables("increase(x[$__range])"), "increase(x[1h])");
}

TEST(PromqlNamesTest, SampleNamesFromTypeLines) {
  auto names = SampleNamesFromExposition(
      "# HELP a_total x\n# TYPE a_total counter\n# TYPE h_seconds histogram\n"
      "# TYPE g gauge\ng 1\n");
  EXPECT_THAT(names, UnorderedElementsAre("a_total", "g", "h_seconds_bucket", "h_seconds_sum",
                                          "h_seconds_count"));
}

}  // namespace
}  // namespace dsv3::testing
