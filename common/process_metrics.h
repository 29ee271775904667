#ifndef DSV3_COMMON_PROCESS_METRICS_H_
#define DSV3_COMMON_PROCESS_METRICS_H_

#include <string>

#include "common/metrics.h"

namespace dsv3 {

// Registers the metrics every dsv3 process exposes: dsv3_build_info (labels version,
// revision, role, cuda), start time, uptime, resident memory and CPU time (read from
// /proc at scrape time).
void RegisterProcessMetrics(const std::string& role,
                            metrics::Registry& registry = metrics::Registry::Default());

// Resident set size of this process in bytes (from /proc/self/statm), 0 if unknown.
long long ResidentMemoryBytes();

}  // namespace dsv3

#endif  // DSV3_COMMON_PROCESS_METRICS_H_
