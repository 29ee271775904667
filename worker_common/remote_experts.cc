#include "worker_common/remote_experts.h"

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/serving_metrics.h"
#include "dsv3/v1/expert.grpc.pb.h"
#include "experts/placement_proto.h"

ABSL_FLAG(std::string, expert_workers, "",
          "Expert workers (dsv3-expert gRPC host:port, comma separated) that run the routed "
          "experts; empty (and no --expert_dns): the experts run in this process.");
ABSL_FLAG(std::string, expert_dns, "",
          "name:port resolved to every expert worker (a Kubernetes headless Service), "
          "re-resolved every second.");
ABSL_FLAG(absl::Duration, expert_timeout, absl::Seconds(10),
          "Deadline of one MoE layer's exchange with the expert workers; a worker that misses "
          "it is marked down.");
ABSL_FLAG(absl::Duration, expert_wait, absl::Minutes(10),
          "How long startup waits for the expert workers to hold every expert.");

namespace dsv3::worker {

RemoteExpertsOptions RemoteExpertsOptionsFromFlags(const std::string& member_id) {
  RemoteExpertsOptions o;
  for (absl::string_view a :
       absl::StrSplit(absl::GetFlag(FLAGS_expert_workers), ',', absl::SkipWhitespace())) {
    o.addresses.emplace_back(a);
  }
  o.dns = absl::GetFlag(FLAGS_expert_dns);
  o.exchange_timeout = absl::GetFlag(FLAGS_expert_timeout);
  o.member_id = member_id;
  return o;
}

bool RemoteExpertsConfigured(const RemoteExpertsOptions& options) {
  return !options.addresses.empty() || !options.dns.empty();
}

RemoteExpertExecutor::RemoteExpertExecutor(const engine::ModelConfig& config,
                                           transport::UcxContext& ucx, RemoteExpertsOptions options)
    : config_(config),
      ucx_(ucx),
      options_(std::move(options)),
      dispatch_seconds_(&Metrics().expert_dispatch_seconds.WithLabels({"ucx"})) {
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    if (config.IsMoeLayer(l)) moe_layers_.push_back(l);
  }
  for (int64_t k = 0; k < config.num_nextn_predict_layers; ++k) {
    if (config.n_routed_experts > 0) moe_layers_.push_back(config.num_hidden_layers + k);
  }
}

absl::StatusOr<std::unique_ptr<RemoteExpertExecutor>> RemoteExpertExecutor::Create(
    const engine::ModelConfig& config, transport::UcxContext& ucx, RemoteExpertsOptions options) {
  if (!RemoteExpertsConfigured(options)) {
    return absl::InvalidArgumentError("no expert workers given (--expert_workers/--expert_dns)");
  }
  std::unique_ptr<RemoteExpertExecutor> r(
      new RemoteExpertExecutor(config, ucx, std::move(options)));
  auto client = transport::UcxExpertClient::Create(ucx);
  if (!client.ok()) return client.status();
  r->client_ = std::move(*client);
  WatchedPeersOptions peers;
  peers.what = "expert worker";
  peers.addresses = r->options_.addresses;
  peers.dns = r->options_.dns;
  peers.dns_interval = absl::Seconds(1);
  peers.retry_after = absl::Milliseconds(200);
  RemoteExpertExecutor* raw = r.get();
  r->peers_ = WatchedPeers::Start(
      std::move(peers), [raw](PeerSession& peer) { return raw->Session(peer); },
      [raw](const PeerEvent& event) { raw->OnPeerEvent(event); });
  r->thread_ = std::thread([raw] { raw->FetchPlacements(); });
  return r;
}

RemoteExpertExecutor::~RemoteExpertExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  peers_.reset();  // before the state its sessions and events use
}

void RemoteExpertExecutor::OnPeerEvent(const PeerEvent& event) {
  absl::MutexLock lock(&mu_);
  if (event.change == PeerChange::kAdded) {
    channels_[event.address] = event.channel;
  } else if (event.change == PeerChange::kRemoved) {
    channels_.erase(event.address);
    joined_.erase(event.address);
  }
}

std::shared_ptr<grpc::Channel> RemoteExpertExecutor::ChannelTo(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(address);
  return it == channels_.end() ? nullptr : it->second;
}

absl::Status RemoteExpertExecutor::Session(PeerSession& peer) {
  grpc::ClientContext* ctx = peer.NewCall();
  if (ctx == nullptr) return absl::CancelledError("the expert worker is leaving");
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  absl::StatusOr<int32_t> index = JoinOne(peer, ctx);
  if (!index.ok()) return index.status();
  peer.Heard();
  // Joined: up while the exchange's connection to it holds (a failed exchange drops it).
  while (client_->connected(*index)) {
    if (!peer.Wait(absl::Milliseconds(200))) return absl::CancelledError("leaving");
  }
  return absl::UnavailableError(
      absl::StrCat("the exchange with expert worker ", *index, " failed; joining it again"));
}

absl::StatusOr<int32_t> RemoteExpertExecutor::JoinOne(PeerSession& peer, grpc::ClientContext* ctx) {
  const std::string& address = peer.address();
  auto stub = v1::Expert::NewStub(peer.channel());
  v1::JoinRequest request;
  request.set_member_id(options_.member_id);
  request.set_config_hash(engine::ModelConfigHash(config_));
  request.set_transport(v1::EXPERT_TRANSPORT_UCX);
  request.set_ucx_worker_address(ucx_.worker_address());
  v1::JoinResponse response;
  absl::Status st = FromGrpcStatus(stub->Join(ctx, request, &response));
  if (!st.ok()) return st;
  experts::ExpertPlacement placement = experts::PlacementFromProto(response.placement());
  st = placement.Validate(moe_layers_, config_.n_routed_experts);
  if (!st.ok())
    return absl::FailedPreconditionError(
        absl::StrCat("expert worker ", address, ": ", st.message()));
  const int32_t index = response.worker_index();
  if (index < 0 || index >= placement.num_workers) {
    return absl::FailedPreconditionError(absl::StrCat("expert worker ", address, " has index ",
                                                      index, " of ", placement.num_workers));
  }
  st = client_->Connect(index, response.ucx_worker_address(), response.member_index());
  if (!st.ok()) return st;
  absl::MutexLock lock(&mu_);
  joined_[address] = index;
  address_of_[index] = address;
  if (placement_ == nullptr || placement.version > placement_->version) {
    if (placement_ == nullptr) {
      placement_ = std::make_shared<const experts::ExpertPlacement>(std::move(placement));
    } else if (next_placement_ == nullptr || placement.version > next_placement_->version) {
      next_placement_ = std::make_shared<const experts::ExpertPlacement>(std::move(placement));
    }
  }
  DSV3_LOG(INFO) << "joined expert worker " << index << " at " << address;
  return index;
}

void RemoteExpertExecutor::FetchPlacement(int64_t version) {
  std::vector<std::string> addresses;
  {
    absl::MutexLock lock(&mu_);
    if (next_placement_ != nullptr && next_placement_->version >= version) return;
    if (placement_ != nullptr && placement_->version >= version) return;
    for (const auto& [a, w] : joined_) addresses.push_back(a);
  }
  for (const std::string& address : addresses) {
    std::shared_ptr<grpc::Channel> channel = ChannelTo(address);
    if (channel == nullptr) continue;
    auto stub = v1::Expert::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::ExpertPlacement proto;
    if (!stub->GetPlacement(&ctx, v1::GetPlacementRequest(), &proto).ok()) continue;
    experts::ExpertPlacement p = experts::PlacementFromProto(proto);
    if (p.version < version || !p.Validate(moe_layers_, config_.n_routed_experts).ok()) continue;
    absl::MutexLock lock(&mu_);
    if (next_placement_ == nullptr || p.version > next_placement_->version) {
      DSV3_LOG(INFO) << "expert placement version " << p.version << " fetched from " << address;
      next_placement_ = std::make_shared<const experts::ExpertPlacement>(std::move(p));
    }
    return;
  }
}

void RemoteExpertExecutor::FetchPlacements() {
  absl::Time last_poll = absl::Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), absl::Milliseconds(200))) return;
    }
    // Newer maps are announced in combine answers; a worker without traffic would not hear
    // of them (and its expert workers drop the experts of maps older than the previous
    // one), so it also asks every few seconds.
    const int64_t wanted = wanted_version_.load();
    if (wanted > placement_version()) {
      FetchPlacement(wanted);
    } else if (absl::Now() - last_poll >= absl::Seconds(3)) {
      last_poll = absl::Now();
      FetchPlacement(placement_version() + 1);
    }
  }
}

std::vector<bool> RemoteExpertExecutor::WorkersUp(int32_t num_workers) const {
  std::vector<bool> up(static_cast<size_t>(num_workers));
  for (int32_t w = 0; w < num_workers; ++w) up[static_cast<size_t>(w)] = client_->connected(w);
  return up;
}

bool RemoteExpertExecutor::ready() const {
  std::shared_ptr<const experts::ExpertPlacement> p;
  {
    absl::MutexLock lock(&mu_);
    p = placement_;
  }
  if (p == nullptr) return false;
  const std::vector<bool> up = WorkersUp(p->num_workers);
  for (const auto& layer : p->layers) {
    for (const auto& replicas : layer.replicas) {
      bool any = false;
      for (int32_t w : replicas) any = any || up[static_cast<size_t>(w)];
      if (!any) return false;
    }
  }
  return true;
}

int64_t RemoteExpertExecutor::placement_version() const {
  absl::MutexLock lock(&mu_);
  const int64_t v = placement_ != nullptr ? placement_->version : 0;
  return std::max(v, next_placement_ != nullptr ? next_placement_->version : 0);
}

absl::Status RemoteExpertExecutor::WaitUntilReady(absl::Time deadline) {
  while (!ready()) {
    if (absl::Now() >= deadline) {
      std::string peers;
      for (const WatchedPeers::State& p : peers_->Snapshot()) {
        absl::StrAppend(&peers, "; ", p.address, p.up ? " up" : " down: ", p.reason);
      }
      return absl::UnavailableError(
          absl::StrCat("the expert workers do not hold every routed expert yet (see "
                       "--expert_workers / --expert_dns)",
                       peers.empty() ? std::string("; none resolved") : peers));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::OkStatus();
}

void RemoteExpertExecutor::MarkDown(int32_t worker) {
  client_->Disconnect(worker);
  std::string address;
  {
    absl::MutexLock lock(&mu_);
    auto it = address_of_.find(worker);
    if (it != address_of_.end()) address = it->second;
  }
  DSV3_LOG(WARNING) << "expert worker " << worker << " (" << address
                    << ") is down; re-joining in the background";
}

absl::Status RemoteExpertExecutor::Run(int64_t layer, const float* x, int64_t rows, int64_t hidden,
                                       int64_t top_k, const int32_t* experts,
                                       engine::ExpertOutputs* outputs,
                                       absl::FunctionRef<void()> overlapped) {
  bool overlapped_done = false;
  auto overlapped_once = [&] {
    if (!overlapped_done) {
      overlapped_done = true;
      overlapped();
    }
  };
  std::shared_ptr<const experts::ExpertPlacement> placement;
  {
    absl::MutexLock lock(&mu_);
    // A new map takes effect at a step boundary: the first MoE layer of a forward step.
    if (next_placement_ != nullptr && !moe_layers_.empty() && layer == moe_layers_.front()) {
      placement_ = std::move(next_placement_);
      next_placement_ = nullptr;
      DSV3_LOG(INFO) << "expert placement version " << placement_->version << " in effect";
    }
    placement = placement_;
  }
  if (placement == nullptr) {
    overlapped_once();
    return absl::UnavailableError("not joined to any expert worker yet");
  }
  const experts::ExpertPlacement::Layer* lp = placement->Find(layer);
  if (lp == nullptr) {
    overlapped_once();
    return absl::InternalError(absl::StrCat("layer ", layer, " is not in the expert placement"));
  }
  std::vector<bool> up = WorkersUp(placement->num_workers);
  // One retry: a worker that fails mid-exchange may have replicas for all it held.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<experts::DispatchPlan> plan = experts::PlanDispatch(
        *lp, experts, rows, top_k, placement->num_workers, up, spread_.fetch_add(1));
    if (!plan.ok()) {
      overlapped_once();
      return plan.status();
    }
    transport::ExchangeRequest request;
    request.layer = layer;
    request.placement_version = placement->version;
    request.plan = &*plan;
    request.x = x;
    request.hidden = hidden;
    request.deadline = absl::Now() + options_.exchange_timeout;
    const absl::Time start = absl::Now();
    transport::ExchangeResult result = client_->Exchange(request, overlapped_once);
    dispatch_seconds_->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    if (result.newest_placement_version > placement->version) {
      int64_t wanted = wanted_version_.load();
      while (result.newest_placement_version > wanted &&
             !wanted_version_.compare_exchange_weak(wanted, result.newest_placement_version)) {
      }
    }
    if (result.status.ok()) {
      // The rows stay where the combine answers landed.
      // Given back to the client's pool once the engine has added them.
      auto received = std::shared_ptr<std::vector<experts::FloatBuffer>>(
          new std::vector<experts::FloatBuffer>(std::move(result.outputs)),
          [pool = client_->pool()](std::vector<experts::FloatBuffer>* buffers) {
            for (experts::FloatBuffer& b : *buffers) pool->Give(std::move(b));
            delete buffers;
          });
      std::vector<const float*> by_worker;
      by_worker.reserve(received->size());
      for (const experts::FloatBuffer& o : *received) by_worker.push_back(o.data());
      outputs->slots.resize(static_cast<size_t>(rows * top_k));
      experts::SlotOutputRows(*plan, by_worker, hidden, outputs->slots.data());
      outputs->storage = std::move(received);
      return absl::OkStatus();
    }
    for (int32_t w : result.failed_workers) {
      MarkDown(w);
      up[static_cast<size_t>(w)] = false;
    }
    if (result.failed_workers.empty() || attempt >= 1) return result.status;
  }
}

}  // namespace dsv3::worker
