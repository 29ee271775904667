#include "router/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/logging.h"
#include "common/resolve_addresses.h"
#include "common/serving_metrics.h"

namespace dsv3::router {

const char* WorkerKindName(WorkerKind kind) {
  return kind == WorkerKind::kPrefill ? "prefill" : "decode";
}

absl::StatusOr<RoutingPolicy> ParseRoutingPolicy(absl::string_view name) {
  if (name == "kv") return RoutingPolicy::kKv;
  if (name == "load") return RoutingPolicy::kLoad;
  if (name == "round_robin") return RoutingPolicy::kRoundRobin;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown routing policy \"", name, "\" (want kv, load or round_robin)"));
}

const char* RoutingPolicyName(RoutingPolicy policy) {
  switch (policy) {
    case RoutingPolicy::kKv:
      return "kv";
    case RoutingPolicy::kLoad:
      return "load";
    case RoutingPolicy::kRoundRobin:
      return "round_robin";
  }
  return "kv";
}

struct WorkerRegistry::Worker {
  std::string address;
  WorkerKind kind;
  std::unique_ptr<v1::WorkerStatus::Stub> status;  // GetInfo, WatchLoad
  std::shared_ptr<v1::PrefillWorker::Stub> prefill_stub;
  std::shared_ptr<v1::DecodeWorker::Stub> decode_stub;
  std::thread monitor;
  // Guarded by the registry's mu_.
  bool up = false;
  bool removed = false;
  absl::Time last_report = absl::InfinitePast();
  v1::LoadReport load;
  v1::WorkerInfo info;
  int64_t assigned_since_report = 0;
  // The WatchLoad call in progress, so the watchdog and shutdown can cancel it.
  grpc::ClientContext* stream_context = nullptr;
};

WorkerRegistry::WorkerRegistry(WorkerRegistryOptions options) : options_(std::move(options)) {}

void WorkerRegistry::SetUpGauge(const Worker& w) {
  Metrics().worker_up.WithLabels({WorkerKindName(w.kind), w.address}).Set(w.up ? 1 : 0);
}

std::unique_ptr<WorkerRegistry> WorkerRegistry::Start(WorkerRegistryOptions options) {
  std::unique_ptr<WorkerRegistry> r(new WorkerRegistry(std::move(options)));
  {
    absl::MutexLock lock(&r->mu_);
    for (const auto& a : r->options_.prefill_addresses) r->AddWorker(a, WorkerKind::kPrefill);
    for (const auto& a : r->options_.decode_addresses) r->AddWorker(a, WorkerKind::kDecode);
  }
  r->ResolveDns();
  r->housekeeping_ = std::thread([raw = r.get()] { raw->Housekeeping(); });
  return r;
}

WorkerRegistry::~WorkerRegistry() {
  std::vector<std::unique_ptr<Worker>> workers;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (auto& [address, w] : workers_) {
      w->removed = true;
      if (w->stream_context != nullptr) w->stream_context->TryCancel();
      workers.push_back(std::move(w));
    }
    workers_.clear();
  }
  if (housekeeping_.joinable()) housekeeping_.join();
  for (auto& w : workers) {
    if (w->monitor.joinable()) w->monitor.join();
  }
}

void WorkerRegistry::AddWorker(const std::string& address, WorkerKind kind) {
  // Once stopping, never: the destructor has taken the workers it joins, and a worker added
  // by a late DNS refresh would be destroyed with its thread running (std::terminate).
  if (stop_ || workers_.count(address)) return;
  auto w = std::make_unique<Worker>();
  w->address = address;
  w->kind = kind;
  const std::shared_ptr<grpc::Channel> channel = ClusterChannel(address);
  w->status = v1::WorkerStatus::NewStub(channel);
  if (kind == WorkerKind::kPrefill) {
    w->prefill_stub = v1::PrefillWorker::NewStub(channel);
  } else {
    w->decode_stub = v1::DecodeWorker::NewStub(channel);
  }
  Worker* raw = w.get();
  SetUpGauge(*raw);
  workers_[address] = std::move(w);
  raw->monitor = std::thread([this, raw] { Monitor(raw); });
  DSV3_LOG(INFO) << "watching " << WorkerKindName(kind) << " worker " << address;
}

void WorkerRegistry::Monitor(Worker* w) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (w->removed) return;
    }
    // Identity first: a worker serves only when GetInfo answers.
    grpc::ClientContext info_ctx;
    info_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::WorkerInfo info;
    grpc::Status s = w->status->GetInfo(&info_ctx, v1::GetInfoRequest(), &info);
    if (s.ok()) {
      grpc::ClientContext ctx;
      {
        absl::MutexLock lock(&mu_);
        if (w->removed) return;
        w->info = info;
        w->stream_context = &ctx;
      }
      v1::WatchLoadRequest request;
      request.set_interval_ms(options_.report_interval_ms);
      auto reader = w->status->WatchLoad(&ctx, request);
      v1::LoadReport report;
      while (reader->Read(&report)) {
        absl::MutexLock lock(&mu_);
        if (!w->up) {
          DSV3_LOG(INFO) << WorkerKindName(w->kind) << " worker " << w->address << " is up";
        }
        w->up = !report.draining();
        SetUpGauge(*w);
        kv_index_.Apply(w->address, report.kv_cache_events());
        report.clear_kv_cache_events();  // kept in the index, not in every snapshot
        w->load = report;
        w->last_report = absl::Now();
        w->assigned_since_report = 0;
      }
      (void)reader->Finish();
      absl::MutexLock lock(&mu_);
      w->stream_context = nullptr;
      kv_index_.Forget(w->address);  // the next stream starts with everything
    }
    {
      absl::MutexLock lock(&mu_);
      if (w->up) {
        DSV3_LOG(WARNING) << WorkerKindName(w->kind) << " worker " << w->address << " is down";
      }
      w->up = false;
      SetUpGauge(*w);
      if (w->removed) return;
      // Retry soon; the wait ends early when the worker is removed.
      auto removed = [w]() { return w->removed; };
      mu_.AwaitWithTimeout(absl::Condition(&removed), absl::Milliseconds(250));
      if (w->removed) return;
    }
  }
}

uint64_t WorkerRegistry::WatchStall(const std::string& address, std::function<void()> on_stall) {
  absl::MutexLock lock(&mu_);
  const uint64_t token = next_stall_watch_++;
  stall_watches_[token] = StallWatch{address, std::move(on_stall)};
  return token;
}

void WorkerRegistry::UnwatchStall(uint64_t token) {
  absl::MutexLock lock(&mu_);
  stall_watches_.erase(token);
}

void WorkerRegistry::Housekeeping() {
  absl::Time next_dns = absl::Now() + options_.dns_interval;
  while (true) {
    std::vector<std::function<void()>> stalled;
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100))) return;
      // Watchdog: a stream that went quiet means a worker that stopped answering.
      const absl::Time now = absl::Now();
      for (auto& [address, w] : workers_) {
        if (w->up && now - w->last_report > options_.down_after) {
          DSV3_LOG(WARNING) << WorkerKindName(w->kind) << " worker " << address
                            << " stopped reporting; taking it out";
          w->up = false;
          SetUpGauge(*w);
          if (w->stream_context != nullptr) w->stream_context->TryCancel();
          for (auto it = stall_watches_.begin(); it != stall_watches_.end();) {
            if (it->second.address == address) {
              stalled.push_back(std::move(it->second.on_stall));
              it = stall_watches_.erase(it);
            } else {
              ++it;
            }
          }
        }
      }
    }
    for (auto& on_stall : stalled) on_stall();
    if (absl::Now() >= next_dns) {
      ResolveDns();
      next_dns = absl::Now() + options_.dns_interval;
    }
  }
}

void WorkerRegistry::ResolveDns() {
  for (auto [name, kind] : {std::pair{options_.prefill_dns, WorkerKind::kPrefill},
                            std::pair{options_.decode_dns, WorkerKind::kDecode}}) {
    if (name.empty()) continue;
    auto addresses = options_.resolve ? options_.resolve(name) : ResolveAddresses(name);
    if (!addresses.ok()) {
      DSV3_LOG(WARNING) << "resolving " << name << ": " << addresses.status();
      continue;
    }
    std::vector<std::unique_ptr<Worker>> gone;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& a : *addresses) AddWorker(a, kind);
      // Workers of this kind that came from DNS and no longer resolve leave.
      const auto& statics =
          kind == WorkerKind::kPrefill ? options_.prefill_addresses : options_.decode_addresses;
      for (auto it = workers_.begin(); it != workers_.end();) {
        Worker& w = *it->second;
        bool listed = std::count(addresses->begin(), addresses->end(), w.address) ||
                      std::count(statics.begin(), statics.end(), w.address);
        if (w.kind == kind && !listed) {
          DSV3_LOG(INFO) << "worker " << w.address << " left " << name;
          w.removed = true;
          w.up = false;
          SetUpGauge(w);
          kv_index_.Forget(w.address);
          if (w.stream_context != nullptr) w.stream_context->TryCancel();
          gone.push_back(std::move(it->second));
          it = workers_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& w : gone) {
      if (w->monitor.joinable()) w->monitor.join();
    }
  }
}

absl::StatusOr<WorkerView> WorkerRegistry::Pick(WorkerKind kind,
                                                const std::set<std::string>& exclude,
                                                const PickHint& hint) {
  absl::MutexLock lock(&mu_);
  const bool kv = options_.policy == RoutingPolicy::kKv && !hint.kv_names.empty();
  std::vector<Worker*> candidates;
  for (auto& [address, w] : workers_) {
    if (w->kind == kind && w->up && !exclude.count(address)) candidates.push_back(w.get());
  }
  if (candidates.empty()) {
    return absl::UnavailableError(absl::StrCat("no ", WorkerKindName(kind), " worker is up",
                                               exclude.empty() ? "" : " (others tried)"));
  }
  Worker* best = nullptr;
  int64_t best_overlap = 0;
  if (options_.policy == RoutingPolicy::kRoundRobin) {
    // The first candidate after the last one chosen (addresses are in order).
    std::string& last = last_pick_[kind == WorkerKind::kPrefill ? 0 : 1];
    for (Worker* w : candidates) {
      if (w->address > last) {
        best = w;
        break;
      }
    }
    if (best == nullptr) best = candidates.front();
    last = best->address;
    if (!hint.kv_names.empty()) best_overlap = kv_index_.Overlap(best->address, hint.kv_names);
  } else {
    double best_cost = 0;
    for (Worker* w : candidates) {
      const int64_t overlap = kv_index_.Overlap(w->address, hint.kv_names);
      const double credit = kv ? options_.kv_overlap_weight * static_cast<double>(overlap) : 0;
      double cost;
      if (kind == WorkerKind::kDecode) {
        cost =
            -(static_cast<double>(w->load.kv_blocks_free() - w->assigned_since_report) + credit) +
            1e-3 * (w->load.running_requests() + w->load.waiting_requests());
      } else {
        const int64_t block_size = std::max(1, w->info.kv_layout().block_size());
        cost = options_.load_weight *
                   static_cast<double>(w->load.queued_prefill_tokens() + w->assigned_since_report) +
               static_cast<double>(hint.prompt_tokens) - credit * static_cast<double>(block_size);
      }
      if (best == nullptr || cost < best_cost) {
        best = w;
        best_cost = cost;
        best_overlap = overlap;
      }
    }
  }
  const char* reason = options_.policy == RoutingPolicy::kRoundRobin
                           ? "round_robin"
                           : (kv && best_overlap > 0 ? "prefix_overlap" : "load");
  Metrics().router_decisions.WithLabels({WorkerKindName(kind), reason}).Increment();
  WorkerView v;
  v.address = best->address;
  v.kind = best->kind;
  v.up = true;
  v.load = best->load;
  v.info = best->info;
  v.prefill_stub = best->prefill_stub;
  v.decode_stub = best->decode_stub;
  v.assigned_since_report = best->assigned_since_report;
  v.cached_blocks = best_overlap;
  return v;
}

int64_t WorkerRegistry::BestOverlap(WorkerKind kind, std::span<const uint64_t> names) const {
  absl::MutexLock lock(&mu_);
  int64_t best = 0;
  for (const auto& [address, w] : workers_) {
    if (w->kind == kind && w->up) best = std::max(best, kv_index_.Overlap(address, names));
  }
  return best;
}

void WorkerRegistry::NoteAssigned(const std::string& address, int64_t amount) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(address);
  if (it != workers_.end()) it->second->assigned_since_report += amount;
}

void WorkerRegistry::NoteDone(const std::string& address, int64_t amount) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(address);
  if (it == workers_.end()) return;
  int64_t& assigned = it->second->assigned_since_report;
  assigned = std::max<int64_t>(0, assigned - amount);
}

std::vector<WorkerView> WorkerRegistry::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerView> out;
  for (const auto& [address, w] : workers_) {
    WorkerView v;
    v.address = address;
    v.kind = w->kind;
    v.up = w->up;
    v.load = w->load;
    v.info = w->info;
    v.prefill_stub = w->prefill_stub;
    v.decode_stub = w->decode_stub;
    out.push_back(std::move(v));
  }
  return out;
}

std::optional<v1::WorkerInfo> WorkerRegistry::ModelInfo() const {
  absl::MutexLock lock(&mu_);
  for (const auto& [address, w] : workers_) {
    if (w->up) return w->info;
  }
  return std::nullopt;
}

bool WorkerRegistry::WaitUntilReady(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    bool prefill = false, decode = false;
    for (const auto& [address, w] : workers_) {
      if (!w->up) continue;
      (w->kind == WorkerKind::kPrefill ? prefill : decode) = true;
    }
    return prefill && decode;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

}  // namespace dsv3::router
