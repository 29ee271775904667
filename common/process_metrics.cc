#include "common/process_metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "common/build_info.h"

namespace dsv3 {

long long ResidentMemoryBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long pages_total = 0, pages_resident = 0;
  int n = std::fscanf(f, "%lld %lld", &pages_total, &pages_resident);
  std::fclose(f);
  if (n != 2) return 0;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

void RegisterProcessMetrics(const std::string& role, metrics::Registry& registry) {
  const BuildInfo& build = GetBuildInfo();
  registry
      .AddGauge("dsv3_build_info", "Build of this process; the value is always 1.",
                {"version", "revision", "role", "cuda"})
      .WithLabels({build.version, build.git_revision, role, build.cuda_compiled ? "1" : "0"})
      .Set(1);

  const auto start = std::chrono::system_clock::now();
  const double start_seconds = std::chrono::duration<double>(start.time_since_epoch()).count();
  registry.AddGauge("dsv3_process_start_time_seconds", "Start time of the process, Unix seconds.")
      .Get()
      .Set(start_seconds);
  auto& uptime =
      registry.AddGauge("dsv3_uptime_seconds", "Seconds since the process started.").Get();
  auto& rss = registry
                  .AddGauge("dsv3_process_resident_memory_bytes",
                            "Resident set size of the process in bytes.")
                  .Get();
  auto& cpu = registry
                  .AddCounter("dsv3_process_cpu_seconds_total",
                              "User and system CPU time of the process in seconds.")
                  .Get();
  registry.AddCollector([start, &uptime, &rss, &cpu] {
    uptime.Set(std::chrono::duration<double>(std::chrono::system_clock::now() - start).count());
    rss.Set(static_cast<double>(ResidentMemoryBytes()));
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) == 0) {
      double total = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 + usage.ru_stime.tv_sec +
                     usage.ru_stime.tv_usec * 1e-6;
      cpu.Increment(total - cpu.Value());  // a counter that follows the kernel's total
    }
  });
}

}  // namespace dsv3
