#ifndef DSV3_COMMON_METRICS_H_
#define DSV3_COMMON_METRICS_H_

// A small Prometheus metrics registry: counters, gauges and histograms, each a family of
// children keyed by label values, exposed in the Prometheus text format (version 0.0.4).
//
// Hot paths look a child up once and keep the reference (children live as long as the
// registry); updating a child is a few relaxed atomic operations, no lock.
//
//   static auto& requests = Registry::Default().AddCounter(
//       "dsv3_requests_total", "Requests by final status.", {"status"});
//   requests.WithLabels({"ok"}).Increment();

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace dsv3::metrics {

class Counter {
 public:
  // `delta` must be >= 0; a negative delta is ignored (counters never go down).
  void Increment(double delta = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};  // relaxed: a sample, not a synchronisation point
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};  // relaxed: a sample, not a synchronisation point
};

class Histogram {
 public:
  // `upper_bounds` strictly increasing, without +Inf (always added).
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Read() const;

 private:
  const std::vector<double> upper_bounds_;
  // counts_[i]: observations in (bound[i-1], bound[i]]; the last is (bound[n-1], +Inf).
  // Relaxed: a scrape may see a count one observation ahead of the sum, as Prometheus
  // clients accept.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

// Bucket helpers: `count` bounds start, start*factor, ...; or start, start+width, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> LinearBuckets(double start, double width, int count);
// Latency buckets in seconds from 0.5 ms to 60 s.
std::vector<double> LatencyBuckets();

enum class MetricType { kCounter, kGauge, kHistogram };

// All children of one metric name.
template <typename T>
class Family {
 public:
  // `label_values` must have one value per label name of the family.
  T& WithLabels(const std::vector<std::string>& label_values);
  // The child of a family without labels.
  T& Get() { return WithLabels({}); }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::function<std::unique_ptr<T>()> make)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        make_(std::move(make)) {}

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that /metrics exposes.
  static Registry& Default();

  // Adding a name twice with the same type and labels returns the existing family; a
  // name that is invalid or already used differently aborts (a programming error).
  Family<Counter>& AddCounter(absl::string_view name, absl::string_view help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(absl::string_view name, absl::string_view help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(absl::string_view name, absl::string_view help,
                                  std::vector<double> upper_bounds,
                                  std::vector<std::string> label_names = {});

  // Runs before every exposition, to refresh gauges computed on demand (memory, uptime).
  void AddCollector(std::function<void()> collector);

  // The whole registry in the Prometheus text exposition format.
  std::string Expose() const;

 private:
  struct Entry {
    MetricType type;
    std::vector<std::string> label_names;
    std::vector<double> upper_bounds;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  Entry& FindOrAdd(absl::string_view name, MetricType type,
                   const std::vector<std::string>& label_names,
                   const std::vector<double>& upper_bounds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Serialises expositions, so collectors never run concurrently.
  mutable absl::Mutex expose_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(mu_);
};

// Validity of names under the Prometheus data model.
bool IsValidMetricName(absl::string_view name);
bool IsValidLabelName(absl::string_view name);
// Formats a sample value as Prometheus does (+Inf, -Inf, NaN, shortest round-trip).
std::string FormatValue(double value);

}  // namespace dsv3::metrics

#endif  // DSV3_COMMON_METRICS_H_
