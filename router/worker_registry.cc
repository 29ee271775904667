#include "router/worker_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
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
  std::shared_ptr<v1::PrefillWorker::Stub> prefill_stub;
  std::shared_ptr<v1::DecodeWorker::Stub> decode_stub;
  // Guarded by the registry's mu_.
  bool up = false;
  v1::LoadReport load;
  v1::WorkerInfo info;
  int64_t assigned_since_report = 0;
};

WorkerRegistry::WorkerRegistry(WorkerRegistryOptions options) : options_(std::move(options)) {}

void WorkerRegistry::SetUpGauge(const Worker& w) {
  Metrics().worker_up.WithLabels({WorkerKindName(w.kind), w.address}).Set(w.up ? 1 : 0);
}

std::unique_ptr<WorkerRegistry> WorkerRegistry::Start(WorkerRegistryOptions options) {
  std::unique_ptr<WorkerRegistry> r(new WorkerRegistry(std::move(options)));
  r->prefill_peers_ = r->WatchKind(WorkerKind::kPrefill);
  r->decode_peers_ = r->WatchKind(WorkerKind::kDecode);
  return r;
}

// The sessions and events stop before the state they use goes.
WorkerRegistry::~WorkerRegistry() {
  prefill_peers_.reset();
  decode_peers_.reset();
}

std::unique_ptr<WatchedPeers> WorkerRegistry::WatchKind(WorkerKind kind) {
  const bool prefill = kind == WorkerKind::kPrefill;
  WatchedPeersOptions o;
  o.what = absl::StrCat(WorkerKindName(kind), " worker");
  o.addresses = prefill ? options_.prefill_addresses : options_.decode_addresses;
  o.dns = prefill ? options_.prefill_dns : options_.decode_dns;
  o.dns_interval = options_.dns_interval;
  o.resolve = options_.resolve;
  o.retry_after = absl::Milliseconds(250);
  o.quiet_after = options_.down_after;
  return WatchedPeers::Start(
      std::move(o), [this, kind](PeerSession& peer) { return Session(kind, peer); },
      [this, kind](const PeerEvent& event) { OnPeerEvent(kind, event); });
}

void WorkerRegistry::OnPeerEvent(WorkerKind kind, const PeerEvent& event) {
  std::vector<std::function<void()>> stalled;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(event.address);
    if (event.change == PeerChange::kAdded) {
      if (it != workers_.end()) return;  // the same address as the other kind: ignored
      auto w = std::make_unique<Worker>();
      w->address = event.address;
      w->kind = kind;
      if (kind == WorkerKind::kPrefill) {
        w->prefill_stub = v1::PrefillWorker::NewStub(event.channel);
      } else {
        w->decode_stub = v1::DecodeWorker::NewStub(event.channel);
      }
      SetUpGauge(*w);
      workers_[event.address] = std::move(w);
      return;
    }
    if (it == workers_.end() || it->second->kind != kind) return;
    Worker& w = *it->second;
    switch (event.change) {
      case PeerChange::kAdded:
        break;
      case PeerChange::kUp:
      case PeerChange::kDown:
        w.up = event.change == PeerChange::kUp;
        SetUpGauge(w);
        break;
      case PeerChange::kRemoved:
        w.up = false;
        SetUpGauge(w);
        kv_index_.Forget(w.address);
        workers_.erase(it);
        break;
    }
    // A worker that stopped answering: its watchers learn it once.
    if (event.change == PeerChange::kDown && event.quiet) {
      for (auto s = stall_watches_.begin(); s != stall_watches_.end();) {
        if (s->second.address == event.address) {
          stalled.push_back(std::move(s->second.on_stall));
          s = stall_watches_.erase(s);
        } else {
          ++s;
        }
      }
    }
  }
  for (auto& on_stall : stalled) on_stall();
}

absl::Status WorkerRegistry::Session(WorkerKind kind, PeerSession& peer) {
  std::unique_ptr<v1::WorkerStatus::Stub> status = v1::WorkerStatus::NewStub(peer.channel());
  // Identity first: a worker serves only once GetInfo answers.
  grpc::ClientContext* info_ctx = peer.NewCall();
  if (info_ctx == nullptr) return absl::CancelledError("the worker is leaving");
  info_ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::WorkerInfo info;
  grpc::Status s = status->GetInfo(info_ctx, v1::GetInfoRequest(), &info);
  if (!s.ok()) return absl::UnavailableError(absl::StrCat("GetInfo: ", s.error_message()));
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(peer.address());
    if (it == workers_.end() || it->second->kind != kind) {
      return absl::CancelledError("the worker is leaving");
    }
    it->second->info = info;
  }
  grpc::ClientContext* ctx = peer.NewCall();
  if (ctx == nullptr) return absl::CancelledError("the worker is leaving");
  v1::WatchLoadRequest request;
  request.set_interval_ms(options_.report_interval_ms);
  auto reader = status->WatchLoad(ctx, request);
  v1::LoadReport report;
  while (reader->Read(&report)) {
    {
      absl::MutexLock lock(&mu_);
      auto it = workers_.find(peer.address());
      if (it == workers_.end() || it->second->kind != kind) break;
      Worker& w = *it->second;
      kv_index_.Apply(w.address, report.kv_cache_events());
      report.clear_kv_cache_events();  // kept in the index, not in every snapshot
      w.load = report;
      w.assigned_since_report = 0;
    }
    peer.Heard(!report.draining());
  }
  ctx->TryCancel();  // when the loop left early
  s = reader->Finish();
  absl::MutexLock lock(&mu_);
  kv_index_.Forget(peer.address());  // the next stream starts with everything
  return absl::UnavailableError(absl::StrCat("its load stream ended: ", s.error_message()));
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

bool WorkerRegistry::ReadyLocked() const {
  bool prefill = false, decode = false;
  for (const auto& [address, w] : workers_) {
    if (!w->up) continue;
    (w->kind == WorkerKind::kPrefill ? prefill : decode) = true;
  }
  return prefill && decode;
}

bool WorkerRegistry::Ready() const {
  absl::MutexLock lock(&mu_);
  return ReadyLocked();
}

bool WorkerRegistry::WaitUntilReady(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ReadyLocked(); };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

}  // namespace dsv3::router
