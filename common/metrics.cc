#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace dsv3::metrics {
namespace {

void AppendEscapedHelp(absl::string_view help, std::string* out) {
  for (char c : help) {
    if (c == '\\')
      out->append("\\\\");
    else if (c == '\n')
      out->append("\\n");
    else
      out->push_back(c);
  }
}

void AppendEscapedLabelValue(absl::string_view value, std::string* out) {
  for (char c : value) {
    if (c == '\\')
      out->append("\\\\");
    else if (c == '\n')
      out->append("\\n");
    else if (c == '"')
      out->append("\\\"");
    else
      out->push_back(c);
  }
}

// Appends {a="x",b="y"[,le="..."]} (nothing when there are no labels).
void AppendLabels(const std::vector<std::string>& names, const std::vector<std::string>& values,
                  const char* le, std::string* out) {
  if (names.empty() && le == nullptr) return;
  out->push_back('{');
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out->push_back(',');
    absl::StrAppend(out, names[i], "=\"");
    AppendEscapedLabelValue(values[i], out);
    out->push_back('"');
  }
  if (le != nullptr) {
    if (!names.empty()) out->push_back(',');
    absl::StrAppend(out, "le=\"", le, "\"");
  }
  out->push_back('}');
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

[[noreturn]] void Die(const std::string& message) {
  DSV3_LOG(ERROR) << "metrics: " << message;
  std::abort();
}

}  // namespace

void Counter::Increment(double delta) {
  if (!(delta >= 0)) return;
  value_.fetch_add(delta, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      counts_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) counts_[i].store(0);
}

void Histogram::Observe(double value) {
  // First bucket whose bound is >= value (buckets are few; a linear scan is cheapest).
  size_t i = 0;
  while (i < upper_bounds_.size() && value > upper_bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.upper_bounds = upper_bounds_;
  s.cumulative.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> bounds;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> bounds;
  for (int i = 0; i < count; ++i) bounds.push_back(start + width * i);
  return bounds;
}

std::vector<double> LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
          0.5,    0.75,  1.0,    1.5,   2.5,  5.0,   7.5,  10,    20,  30,   60};
}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& label_values) {
  if (label_values.size() != label_names_.size()) {
    Die(absl::StrCat(name_, ": ", label_values.size(), " label values for ", label_names_.size(),
                     " labels"));
  }
  absl::MutexLock lock(&mu_);
  auto& child = children_[label_values];
  if (!child) child = make_();
  return *child;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Registry& Registry::Default() {
  static auto* registry = new Registry();
  return *registry;
}

bool IsValidMetricName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__" || name == "le") return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[32];
  // Shortest representation that reads back to the same double.
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

Registry::Entry& Registry::FindOrAdd(absl::string_view name, MetricType type,
                                     const std::vector<std::string>& label_names,
                                     const std::vector<double>& upper_bounds) {
  if (!IsValidMetricName(name)) Die(absl::StrCat("invalid metric name '", name, "'"));
  for (const auto& l : label_names) {
    if (!IsValidLabelName(l)) Die(absl::StrCat(name, ": invalid label name '", l, "'"));
  }
  for (size_t i = 1; i < upper_bounds.size(); ++i) {
    if (!(upper_bounds[i] > upper_bounds[i - 1])) {
      Die(absl::StrCat(name, ": bucket bounds must increase"));
    }
  }
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    const Entry& e = it->second;
    if (e.type != type || e.label_names != label_names || e.upper_bounds != upper_bounds) {
      Die(absl::StrCat("metric '", name, "' registered twice with different definitions"));
    }
    return it->second;
  }
  Entry& e = entries_[std::string(name)];
  e.type = type;
  e.label_names = label_names;
  e.upper_bounds = upper_bounds;
  return e;
}

Family<Counter>& Registry::AddCounter(absl::string_view name, absl::string_view help,
                                      std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  Entry& e = FindOrAdd(name, MetricType::kCounter, label_names, {});
  if (!e.counter) {
    e.counter.reset(new Family<Counter>(std::string(name), std::string(help), label_names,
                                        [] { return std::make_unique<Counter>(); }));
  }
  return *e.counter;
}

Family<Gauge>& Registry::AddGauge(absl::string_view name, absl::string_view help,
                                  std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  Entry& e = FindOrAdd(name, MetricType::kGauge, label_names, {});
  if (!e.gauge) {
    e.gauge.reset(new Family<Gauge>(std::string(name), std::string(help), label_names,
                                    [] { return std::make_unique<Gauge>(); }));
  }
  return *e.gauge;
}

Family<Histogram>& Registry::AddHistogram(absl::string_view name, absl::string_view help,
                                          std::vector<double> upper_bounds,
                                          std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  Entry& e = FindOrAdd(name, MetricType::kHistogram, label_names, upper_bounds);
  if (!e.histogram) {
    e.histogram.reset(new Family<Histogram>(
        std::string(name), std::string(help), label_names,
        [upper_bounds] { return std::make_unique<Histogram>(upper_bounds); }));
  }
  return *e.histogram;
}

void Registry::AddCollector(std::function<void()> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string Registry::Expose() const {
  absl::MutexLock expose_lock(&expose_mu_);
  std::vector<std::function<void()>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  for (const auto& c : collectors) c();

  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, e] : entries_) {
    std::string help;
    if (e.counter) help = e.counter->help_;
    if (e.gauge) help = e.gauge->help_;
    if (e.histogram) help = e.histogram->help_;
    absl::StrAppend(&out, "# HELP ", name, " ");
    AppendEscapedHelp(help, &out);
    absl::StrAppend(&out, "\n# TYPE ", name, " ", TypeName(e.type), "\n");
    if (e.counter) {
      absl::MutexLock family_lock(&e.counter->mu_);
      for (const auto& [values, child] : e.counter->children_) {
        out += name;
        AppendLabels(e.label_names, values, nullptr, &out);
        absl::StrAppend(&out, " ", FormatValue(child->Value()), "\n");
      }
    } else if (e.gauge) {
      absl::MutexLock family_lock(&e.gauge->mu_);
      for (const auto& [values, child] : e.gauge->children_) {
        out += name;
        AppendLabels(e.label_names, values, nullptr, &out);
        absl::StrAppend(&out, " ", FormatValue(child->Value()), "\n");
      }
    } else if (e.histogram) {
      absl::MutexLock family_lock(&e.histogram->mu_);
      for (const auto& [values, child] : e.histogram->children_) {
        Histogram::Snapshot s = child->Read();
        for (size_t i = 0; i <= s.upper_bounds.size(); ++i) {
          std::string le = i < s.upper_bounds.size() ? FormatValue(s.upper_bounds[i]) : "+Inf";
          absl::StrAppend(&out, name, "_bucket");
          AppendLabels(e.label_names, values, le.c_str(), &out);
          absl::StrAppend(&out, " ", s.cumulative[i], "\n");
        }
        absl::StrAppend(&out, name, "_sum");
        AppendLabels(e.label_names, values, nullptr, &out);
        absl::StrAppend(&out, " ", FormatValue(s.sum), "\n", name, "_count");
        AppendLabels(e.label_names, values, nullptr, &out);
        absl::StrAppend(&out, " ", s.count, "\n");
      }
    }
  }
  return out;
}

}  // namespace dsv3::metrics
