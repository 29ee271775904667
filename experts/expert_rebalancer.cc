#include "experts/expert_rebalancer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/resolve_addresses.h"
#include "common/serving_metrics.h"
#include "experts/placement_proto.h"

namespace dsv3::experts {
namespace {

// "[::1]:5" and "::1:5" name the same endpoint; ResolveAddresses brackets IPv6 hosts, a pod's
// $(POD_IP) does not.
std::string Unbracketed(const std::string& address) {
  std::string out;
  for (char c : address) {
    if (c != '[' && c != ']') out.push_back(c);
  }
  return out;
}

}  // namespace

struct ExpertRebalancer::Worker {
  std::string address;
  std::shared_ptr<v1::Expert::Stub> stub;
  // Guarded by the rebalancer's mu_.
  bool up = false;  // its load stream is open and reporting
  int32_t index = -1;
  int64_t version = 0;  // of the placement it holds, as last reported or applied
};

ExpertRebalancer::ExpertRebalancer(ExpertRebalancerOptions options)
    : options_(std::move(options)),
      // Reports several times per window, never slower than once a second.
      report_interval_ms_(static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(options_.interval) / 4, 100, 1000))) {}

absl::StatusOr<std::unique_ptr<ExpertRebalancer>> ExpertRebalancer::Start(
    ExpertRebalancerOptions options) {
  if (options.addresses.empty() && options.dns.empty()) {
    return absl::InvalidArgumentError(
        "EPLB needs the expert workers: --expert_workers or --expert_dns");
  }
  if (options.interval < absl::ZeroDuration() || (options.interval == absl::ZeroDuration() &&
                                                  options.failover_after <= absl::ZeroDuration())) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB needs an interval > 0 or failover, got interval ",
                     absl::FormatDuration(options.interval)));
  }
  if (!(options.min_gain >= 0 && options.min_gain < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("EPLB minimum gain must be in [0, 1), got ", options.min_gain));
  }
  if (!options.leader_dns.empty() && options.self_address.empty()) {
    return absl::InvalidArgumentError(
        "leader election among rebalancer replicas (--leader_dns) needs this replica's own "
        "address (--leader_self)");
  }
  std::unique_ptr<ExpertRebalancer> r(new ExpertRebalancer(std::move(options)));
  r->started_ = absl::Now();
  WatchedPeersOptions peers;
  peers.what = "expert worker";
  peers.addresses = r->options_.addresses;
  peers.dns = r->options_.dns;
  peers.dns_interval = r->options_.dns_interval;
  peers.retry_after = absl::Milliseconds(500);
  ExpertRebalancer* raw = r.get();
  r->peers_ = WatchedPeers::Start(
      std::move(peers), [raw](PeerSession& peer) { return raw->Session(peer); },
      [raw](const PeerEvent& event) { raw->OnPeerEvent(event); });
  r->control_ = std::thread([raw = r.get()] { raw->Control(); });
  if (r->options_.interval == absl::ZeroDuration()) {
    DSV3_LOG(INFO) << "EPLB: rebalancing off; expert workers down for "
                   << absl::FormatDuration(r->options_.failover_after)
                   << " get their experts copied to the live ones";
  } else {
    DSV3_LOG(INFO) << "EPLB: rebalancing the routed experts every "
                   << absl::FormatDuration(r->options_.interval) << " (redundant copies per layer: "
                   << (r->options_.redundant_per_layer < 0
                           ? std::string("one per expert worker")
                           : absl::StrCat(r->options_.redundant_per_layer))
                   << ", at least " << r->options_.min_tokens << " routed tokens and a "
                   << 100 * r->options_.min_gain << "% gain per change)";
  }
  return r;
}

ExpertRebalancer::~ExpertRebalancer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (grpc::ClientContext* c : calls_) c->TryCancel();
  }
  if (control_.joinable()) control_.join();
  peers_.reset();  // before the state its sessions and events use
}

void ExpertRebalancer::OnPeerEvent(const PeerEvent& event) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(event.address);
  switch (event.change) {
    case PeerChange::kAdded: {
      auto w = std::make_unique<Worker>();
      w->address = event.address;
      w->stub = v1::Expert::NewStub(event.channel);
      workers_[event.address] = std::move(w);
      break;
    }
    case PeerChange::kUp:
    case PeerChange::kDown:
      if (it != workers_.end()) it->second->up = event.change == PeerChange::kUp;
      break;
    case PeerChange::kRemoved:
      if (it != workers_.end()) workers_.erase(it);
      break;
  }
}

absl::Status ExpertRebalancer::Session(PeerSession& peer) {
  std::shared_ptr<v1::Expert::Stub> stub = StubOf(peer.address());
  grpc::ClientContext* ctx = peer.NewCall();
  if (stub == nullptr || ctx == nullptr) return absl::CancelledError("the worker is leaving");
  v1::WatchExpertLoadRequest request;
  request.set_interval_ms(report_interval_ms_);
  auto reader = stub->WatchExpertLoad(ctx, request);
  v1::ExpertLoadReport report;
  bool first = true;
  while (reader->Read(&report)) {
    // A stream's first report counts everything since the worker started: not this window.
    const bool in_window = !std::exchange(first, false);
    {
      absl::MutexLock lock(&mu_);
      auto it = workers_.find(peer.address());
      if (it == workers_.end()) break;
      Worker& w = *it->second;
      if (!in_window) {
        DSV3_LOG(INFO) << "EPLB: expert worker " << report.worker_index() << " at " << w.address
                       << " reports load (placement version " << report.placement_version() << ")";
      }
      w.index = report.worker_index();
      last_seen_[report.worker_index()] = absl::Now();
      w.version = report.placement_version();
      max_version_seen_ = std::max(max_version_seen_, report.placement_version());
      if (in_window) window_.Add(report);
    }
    peer.Heard();
  }
  ctx->TryCancel();  // when the loop left early
  const grpc::Status status = reader->Finish();
  return absl::UnavailableError(absl::StrCat("its load stream ended: ", status.error_message()));
}

v1::RebalancerStatus ExpertRebalancer::Status() const {
  v1::RebalancerStatus status;
  absl::MutexLock lock(&mu_);
  status.set_leader(leader_);
  status.set_placement_version(max_version_seen_);
  for (const auto& [address, worker] : workers_) {
    v1::RebalancerStatus::ExpertWorker* w = status.add_expert_workers();
    w->set_address(address);
    w->set_up(worker->up);
    w->set_index(worker->index);
    w->set_placement_version(worker->version);
  }
  return status;
}

bool ExpertRebalancer::IsLeader() {
  if (options_.leader_dns.empty()) return true;
  if (absl::Now() - leader_resolved_ >= options_.dns_interval) {
    absl::StatusOr<std::vector<std::string>> peers = ResolveAddresses(options_.leader_dns);
    if (peers.ok()) {
      leader_peers_.clear();
      for (const std::string& p : *peers) leader_peers_.push_back(Unbracketed(p));
      std::sort(leader_peers_.begin(), leader_peers_.end());
    } else {
      DSV3_LOG(WARNING) << "EPLB: resolving " << options_.leader_dns << ": " << peers.status();
      leader_peers_.clear();  // act on nothing rather than risk two leaders
    }
    leader_resolved_ = absl::Now();
  }
  // Only a published (ready) replica leads: the lowest address of the Service.
  return !leader_peers_.empty() && leader_peers_.front() == Unbracketed(options_.self_address);
}

std::shared_ptr<v1::Expert::Stub> ExpertRebalancer::StubOf(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(address);
  return it == workers_.end() ? nullptr : it->second->stub;
}

absl::StatusOr<ExpertPlacement> ExpertRebalancer::FetchPlacement(const std::string& address) {
  std::shared_ptr<v1::Expert::Stub> stub = StubOf(address);
  if (stub == nullptr) return absl::NotFoundError(absl::StrCat("no expert worker ", address));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::CancelledError("shutting down");
    calls_.push_back(&ctx);
  }
  v1::ExpertPlacement proto;
  absl::Status st = FromGrpcStatus(stub->GetPlacement(&ctx, v1::GetPlacementRequest(), &proto));
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(std::find(calls_.begin(), calls_.end(), &ctx));
  }
  if (!st.ok()) {
    return absl::Status(
        st.code(), absl::StrCat("GetPlacement from expert worker ", address, ": ", st.message()));
  }
  ExpertPlacement p = PlacementFromProto(proto);
  if (p.num_workers <= 0 || p.layers.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "expert worker ", address, " holds an empty placement (version ", p.version, ")"));
  }
  return p;
}

absl::StatusOr<std::vector<std::string>> ExpertRebalancer::WorkerAddresses(int32_t num_workers) {
  std::vector<std::string> out(static_cast<size_t>(num_workers));
  absl::MutexLock lock(&mu_);
  for (const auto& [address, w] : workers_) {
    if (w->up && w->index >= 0 && w->index < num_workers) {
      out[static_cast<size_t>(w->index)] = address;
    }
  }
  for (int32_t i = 0; i < num_workers; ++i) {
    if (out[static_cast<size_t>(i)].empty()) {
      return absl::UnavailableError(
          absl::StrCat("expert worker ", i, " of ", num_workers, " is not reporting its load"));
    }
  }
  return out;
}

void ExpertRebalancer::SyncCurrent() {
  std::string holder;
  int64_t newest = 0;
  {
    absl::MutexLock lock(&mu_);
    newest = max_version_seen_;
    if (current_ != nullptr && current_->version >= newest) return;
    for (const auto& [address, w] : workers_) {
      if (w->up && w->version == newest) holder = address;
    }
  }
  if (holder.empty()) return;
  absl::StatusOr<ExpertPlacement> p = FetchPlacement(holder);
  if (!p.ok()) {
    DSV3_LOG(WARNING) << "EPLB: " << p.status();
    return;
  }
  DSV3_LOG(INFO) << "EPLB: placement version " << p->version << " (" << p->num_workers
                 << " expert workers, " << p->layers.size() << " MoE layers) is in effect";
  current_ = std::make_unique<ExpertPlacement>(*std::move(p));
  Metrics().expert_placement_version.Get().Set(static_cast<double>(current_->version));
}

absl::Status ExpertRebalancer::ApplyStep(const PlacementStep& step) {
  std::vector<absl::Status> results(step.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < step.size(); ++i) {
    threads.emplace_back([this, &step, &results, i] {
      const PlacementApply& apply = step[i];
      const int32_t w = apply.worker;
      const std::string& address = apply.placement.worker_addresses[static_cast<size_t>(w)];
      std::shared_ptr<v1::Expert::Stub> stub = StubOf(address);
      if (stub == nullptr) {
        results[i] = absl::UnavailableError(absl::StrCat("expert worker ", address, " is gone"));
        return;
      }
      v1::ExpertPlacement proto;
      PlacementToProto(apply.placement, &proto);
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + options_.apply_timeout));
      {
        absl::MutexLock lock(&mu_);
        if (stop_) {
          results[i] = absl::CancelledError("shutting down");
          return;
        }
        calls_.push_back(&ctx);
      }
      v1::ApplyPlacementResponse response;
      absl::Status st = FromGrpcStatus(stub->ApplyPlacement(&ctx, proto, &response));
      {
        absl::MutexLock lock(&mu_);
        calls_.erase(std::find(calls_.begin(), calls_.end(), &ctx));
        if (st.ok()) {
          auto it = workers_.find(address);
          if (it != workers_.end()) it->second->version = response.version();
          max_version_seen_ = std::max(max_version_seen_, response.version());
        }
      }
      if (st.ok() && response.version() != apply.placement.version) {
        st = absl::FailedPreconditionError(absl::StrCat(
            "holds version ", response.version(), " after applying ", apply.placement.version));
      }
      if (!st.ok()) {
        results[i] = absl::Status(st.code(), absl::StrCat("ApplyPlacement to expert worker ", w,
                                                          " (", address, "): ", st.message()));
        return;
      }
      DSV3_LOG(INFO) << "EPLB: expert worker " << w << " (" << address << ") holds placement "
                     << response.version() << ": " << response.experts_loaded() << " experts, "
                     << response.expert_bytes() << " bytes";
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& st : results) {
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

void ExpertRebalancer::ConvergeStale() {
  if (current_ == nullptr) return;
  std::vector<std::pair<int32_t, std::string>> stale;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [address, w] : workers_) {
      if (w->up && w->index >= 0 && w->index < current_->num_workers &&
          w->version < current_->version) {
        stale.emplace_back(w->index, address);
      }
    }
  }
  const absl::Time now = absl::Now();
  for (const auto& [index, address] : stale) {
    auto retry = retry_after_.find(address);
    if (retry != retry_after_.end() && now < retry->second) continue;
    // Its report may predate an apply that already reached it.
    absl::StatusOr<ExpertPlacement> held = FetchPlacement(address);
    if (held.ok() && held->version >= current_->version) {
      absl::MutexLock lock(&mu_);
      auto it = workers_.find(address);
      if (it != workers_.end()) it->second->version = held->version;
      continue;
    }
    DSV3_LOG(INFO) << "EPLB: expert worker " << index << " (" << address
                   << ") holds placement version " << (held.ok() ? held->version : -1)
                   << ", older than " << current_->version << " (restarted?): applying it again";
    absl::StatusOr<std::vector<std::string>> addresses = WorkerAddresses(current_->num_workers);
    if (!addresses.ok()) {
      DSV3_LOG(WARNING) << "EPLB: " << addresses.status() << " (trying again in 5s)";
      retry_after_[address] = absl::Now() + absl::Seconds(5);
      continue;
    }
    current_->worker_addresses = *addresses;
    absl::Status st = ApplyStep({{index, *current_}});
    if (st.ok()) {
      retry_after_.erase(address);
    } else {
      DSV3_LOG(WARNING) << "EPLB: " << st << " (trying again in 5s)";
      retry_after_[address] = absl::Now() + absl::Seconds(5);
    }
  }
}

void ExpertRebalancer::Failover() {
  if (options_.failover_after <= absl::ZeroDuration() || current_ == nullptr) return;
  const int32_t n = current_->num_workers;
  std::vector<std::string> addresses(static_cast<size_t>(n));
  std::vector<bool> live(static_cast<size_t>(n), false), gone(static_cast<size_t>(n), false);
  int64_t newest = 0;
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    newest = std::max(max_version_seen_, current_->version);
    for (const auto& [address, w] : workers_) {
      if (w->index < 0 || w->index >= n) continue;
      addresses[static_cast<size_t>(w->index)] = address;
      if (w->up) live[static_cast<size_t>(w->index)] = true;
    }
    // Gone: no worker has reported as that index for failover_after (since this rebalancer
    // started, for one it never heard from).
    for (int32_t i = 0; i < n; ++i) {
      auto seen = last_seen_.find(i);
      const absl::Time last = seen != last_seen_.end() ? seen->second : started_;
      gone[static_cast<size_t>(i)] =
          !live[static_cast<size_t>(i)] && now - last >= options_.failover_after;
    }
  }
  if (std::find(gone.begin(), gone.end(), true) == gone.end()) return;
  int64_t moved = 0;
  ExpertPlacement next = AddCopiesForGoneWorkers(*current_, live, gone, &moved);
  if (moved == 0) return;
  next.worker_addresses = addresses;
  std::vector<PlacementStep> steps = PlanPlacementSwitch(*current_, next, newest + 1);
  ExpertPlacement final_placement = steps.back().front().placement;
  absl::Status st;
  for (PlacementStep& step : steps) {
    // Only live workers are asked; a returning one gets the placement from ConvergeStale.
    step.erase(std::remove_if(
                   step.begin(), step.end(),
                   [&](const PlacementApply& a) { return !live[static_cast<size_t>(a.worker)]; }),
               step.end());
    if (step.empty()) continue;
    st = ApplyStep(step);
    if (!st.ok()) break;
  }
  Metrics().eplb_rebalances.WithLabels({StatusLabel(st.code())}).Increment();
  if (!st.ok()) {
    DSV3_LOG(WARNING) << "EPLB failover: " << st;
    return;
  }
  current_ = std::make_unique<ExpertPlacement>(std::move(final_placement));
  Metrics().expert_placement_version.Get().Set(static_cast<double>(current_->version));
  DSV3_LOG(WARNING) << "EPLB failover: " << moved << " experts had no live copy; placement "
                    << current_->version << " gives them one on the live expert workers";
}

void ExpertRebalancer::Decide(bool leader) {
  ExpertLoad load;
  int64_t newest = 0;
  {
    absl::MutexLock lock(&mu_);
    if (current_ == nullptr) {
      window_.Take(ExpertPlacement());
      if (leader) {
        DSV3_LOG(INFO) << "EPLB: no expert worker has reported a placement yet";
      }
      return;
    }
    load = window_.Take(*current_);
    newest = std::max(max_version_seen_, current_->version);
  }
  const int32_t redundant =
      options_.redundant_per_layer >= 0 ? options_.redundant_per_layer : current_->num_workers;
  absl::StatusOr<RebalanceDecision> d = DecideRebalance(*current_, load, redundant, newest + 1,
                                                        options_.min_tokens, options_.min_gain);
  if (!d.ok()) {
    DSV3_LOG(WARNING) << "EPLB: " << d.status();
    return;
  }
  const ServingMetrics& m = Metrics();
  if (d->tokens > 0) {
    m.eplb_imbalance_ratio.WithLabels({"current"}).Set(d->current.overall);
  }
  if (d->tokens >= options_.min_tokens && d->tokens > 0) {
    m.eplb_imbalance_ratio.WithLabels({"proposed"}).Set(d->proposed.overall);
  }
  // Every replica exports the figures; only the leader acts on them.
  if (!leader) return;
  DSV3_LOG(INFO) << "EPLB: " << d->reason;
  if (!d->apply) return;

  absl::StatusOr<std::vector<std::string>> addresses = WorkerAddresses(current_->num_workers);
  absl::Status st = addresses.status();
  if (st.ok()) {
    d->placement.worker_addresses = *addresses;
    const std::vector<PlacementStep> steps =
        PlanPlacementSwitch(*current_, d->placement, newest + 1);
    for (const PlacementStep& step : steps) {
      int64_t lowest = step.front().placement.version;
      for (const PlacementApply& a : step) lowest = std::min(lowest, a.placement.version);
      {
        // Someone else changed the placement meanwhile (another replica): stand back.
        absl::MutexLock lock(&mu_);
        if (max_version_seen_ >= lowest) {
          st = absl::AbortedError(absl::StrCat("placement version ", max_version_seen_,
                                               " appeared while applying ", lowest));
          break;
        }
      }
      st = ApplyStep(step);
      if (!st.ok()) break;
    }
    if (st.ok()) {
      current_ = std::make_unique<ExpertPlacement>(steps.back().front().placement);
      DSV3_LOG(INFO) << "EPLB: placement version " << current_->version
                     << " applied to every expert worker ("
                     << (steps.size() > 1 ? steps.front().size() : 0)
                     << " of them loaded their new experts first)";
      m.expert_placement_version.Get().Set(static_cast<double>(current_->version));
    }
  }
  m.eplb_rebalances.WithLabels({StatusLabel(st.code())}).Increment();
  if (!st.ok()) {
    DSV3_LOG(WARNING) << "EPLB: rebalancing failed, trying again in "
                      << absl::FormatDuration(options_.interval) << ": " << st;
  }
}

void ExpertRebalancer::Control() {
  absl::Time next_decision = absl::Now() + options_.interval;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100))) return;
    }
    SyncCurrent();
    const bool leader = IsLeader();
    {
      absl::MutexLock lock(&mu_);
      leader_ = leader;
    }
    if (leader) {
      ConvergeStale();
      Failover();
    }
    if (options_.interval > absl::ZeroDuration() && absl::Now() >= next_decision) {
      next_decision = absl::Now() + options_.interval;
      Decide(leader);
    }
  }
}

}  // namespace dsv3::experts
