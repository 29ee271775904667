#ifndef DSV3_TESTS_DEPLOY_PROMQL_NAMES_H_
#define DSV3_TESTS_DEPLOY_PROMQL_NAMES_H_

// What the deploy tests need to check PromQL against the metric catalog: the metric names
// an expression selects, Grafana's template variables replaced by values Prometheus
// accepts, and the sample names an exposition can produce.
//
// Prometheus itself finds parse errors (the tests send every expression to its query API);
// it cannot find a misspelt metric name, since a selector of a name without samples is an
// empty result, not an error. Hence the name check here.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace dsv3::testing {

// Metric names selected by `expr` (identifiers that are not functions, aggregations,
// keywords, label names, strings, numbers or durations). Assumes the expression parses.
std::vector<std::string> MetricNamesInPromQL(absl::string_view expr);

// Replaces Grafana's variables so that Prometheus can evaluate the expression:
// $__rate_interval and $__interval by 1m, $__range by 1h, any other $var / ${var} / [[var]]
// (the dashboard's template variables, used in =~ matchers) by ".*".
std::string SubstituteGrafanaVariables(absl::string_view expr);

// Every sample name the families of a text exposition can produce: the name of a counter or
// gauge; name_bucket, name_sum and name_count of a histogram (from the # TYPE lines, so
// families without samples count).
std::set<std::string> SampleNamesFromExposition(absl::string_view exposition);

}  // namespace dsv3::testing

#endif  // DSV3_TESTS_DEPLOY_PROMQL_NAMES_H_
