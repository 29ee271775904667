#include "common/watched_peers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_channel.h"
#include "common/logging.h"
#include "common/resolve_addresses.h"

namespace dsv3 {
namespace watched_peers_internal {

struct Peer {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::thread thread;
  // Guarded by WatchedPeers::mu_.
  bool removed = false;
  bool up = false;
  bool quiet = false;  // taken down as quiet: the session in progress should end
  std::string reason = "not heard from yet";
  absl::Time last_heard = absl::InfinitePast();
  std::unique_ptr<grpc::ClientContext> call;  // the session's call in progress, if any
};

}  // namespace watched_peers_internal

grpc::ClientContext* PeerSession::NewCall() {
  absl::MutexLock lock(&peers_->mu_);
  if (peer_->removed || peer_->quiet) return nullptr;
  peer_->call = std::make_unique<grpc::ClientContext>();
  return peer_->call.get();
}

void PeerSession::Heard(bool serving) {
  absl::ReleasableMutexLock lock(&peers_->mu_);
  std::vector<PeerEvent> events;
  peer_->last_heard = absl::Now();
  // A quiet peer's session is being ended; the next session says whether it is back.
  if (!peer_->removed && !peer_->quiet) {
    peers_->SetUp(peer_, serving, serving ? "" : "it takes no work (draining)", false, &events);
  }
  peers_->Report(lock, std::move(events));
}

bool PeerSession::Wait(absl::Duration timeout) {
  absl::MutexLock lock(&peers_->mu_);
  auto should_end = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(peers_->mu_) {
    return peer_->removed || peer_->quiet;
  };
  peers_->mu_.AwaitWithTimeout(absl::Condition(&should_end), timeout);
  return !should_end();
}

WatchedPeers::WatchedPeers(WatchedPeersOptions options, SessionFn session, EventFn on_event)
    : options_(std::move(options)), session_(std::move(session)), on_event_(std::move(on_event)) {}

std::unique_ptr<WatchedPeers> WatchedPeers::Start(WatchedPeersOptions options, SessionFn session,
                                                  EventFn on_event) {
  std::unique_ptr<WatchedPeers> p(
      new WatchedPeers(std::move(options), std::move(session), std::move(on_event)));
  for (const std::string& a : p->options_.addresses) p->Add(a);
  p->Resolve();
  p->housekeeping_ = std::thread([raw = p.get()] { raw->Housekeeping(); });
  return p;
}

WatchedPeers::~WatchedPeers() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    for (auto& [address, peer] : peers_) {
      peer->removed = true;
      if (peer->call != nullptr) peer->call->TryCancel();
    }
  }
  // Housekeeping first: it adds and removes peers.
  if (housekeeping_.joinable()) housekeeping_.join();
  std::map<std::string, std::unique_ptr<Peer>> peers;
  {
    absl::MutexLock lock(&mu_);
    peers.swap(peers_);
  }
  for (auto& [address, peer] : peers) {
    if (peer->thread.joinable()) peer->thread.join();
  }
}

std::vector<WatchedPeers::State> WatchedPeers::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<State> out;
  for (const auto& [address, peer] : peers_) out.push_back({address, peer->up, peer->reason});
  return out;
}

void WatchedPeers::SetUp(Peer* peer, bool up, std::string reason, bool quiet,
                         std::vector<PeerEvent>* events) {
  std::string before = std::exchange(peer->reason, std::move(reason));
  if (peer->up == up) {
    // Still down, for another reason (a worker that never answered, then refuses to join):
    // said once, not on every retry.
    if (!up && peer->reason != before) {
      DSV3_LOG(WARNING) << options_.what << " " << peer->address << " is down: " << peer->reason;
    }
    return;
  }
  peer->up = up;
  if (up) {
    DSV3_LOG(INFO) << options_.what << " " << peer->address << " is up";
  } else {
    DSV3_LOG(WARNING) << options_.what << " " << peer->address << " is down: " << peer->reason;
  }
  PeerEvent e;
  e.change = up ? PeerChange::kUp : PeerChange::kDown;
  e.address = peer->address;
  e.reason = peer->reason;
  e.quiet = quiet;
  events->push_back(std::move(e));
}

void WatchedPeers::Report(absl::ReleasableMutexLock& lock, std::vector<PeerEvent> events) {
  if (events.empty() || stop_) {
    lock.Release();
    return;
  }
  // Hand over hand: whoever changes a state next reports after these.
  events_mu_.Lock();
  lock.Release();
  for (const PeerEvent& e : events) on_event_(e);
  events_mu_.Unlock();
}

void WatchedPeers::Add(const std::string& address) {
  Peer* peer;
  {
    absl::ReleasableMutexLock lock(&mu_);
    if (stop_ || peers_.count(address)) return;
    auto owned = std::make_unique<Peer>();
    peer = owned.get();
    peer->address = address;
    peer->channel = ClusterChannel(address);
    peers_[address] = std::move(owned);
    DSV3_LOG(INFO) << "watching " << options_.what << " " << address;
    PeerEvent added;
    added.change = PeerChange::kAdded;
    added.address = address;
    added.channel = peer->channel;
    Report(lock, {std::move(added)});
  }
  // Only this thread (Start's caller, then housekeeping) adds and removes peers, and the
  // destructor joins it before it touches a peer's thread.
  absl::MutexLock lock(&mu_);
  peer->thread = std::thread([this, peer] { Watch(peer); });
}

void WatchedPeers::Watch(Peer* peer) {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (peer->removed) return;
      peer->quiet = false;
    }
    PeerSession session(this, peer, peer->address, peer->channel);
    const absl::Status status = session_(session);
    std::unique_ptr<grpc::ClientContext> call;  // destroyed without the lock
    absl::ReleasableMutexLock lock(&mu_);
    call = std::move(peer->call);
    if (peer->removed) return;
    std::vector<PeerEvent> events;
    if (!peer->quiet) {
      SetUp(peer, false,
            status.ok() ? std::string("its session ended") : std::string(status.message()), false,
            &events);
    }
    Report(lock, std::move(events));
    absl::MutexLock wait(&mu_);
    auto removed = [peer]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return peer->removed; };
    if (mu_.AwaitWithTimeout(absl::Condition(&removed), options_.retry_after)) return;
  }
}

void WatchedPeers::Housekeeping() {
  absl::Time next_dns = absl::Now() + options_.dns_interval;
  const absl::Duration tick =
      std::clamp(options_.quiet_after / 4, absl::Milliseconds(10), absl::Milliseconds(100));
  while (true) {
    {
      absl::ReleasableMutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), tick)) return;
      // Watchdog: up and silent means a peer that stopped answering.
      std::vector<PeerEvent> events;
      const absl::Time now = absl::Now();
      for (auto& [address, peer] : peers_) {
        if (!peer->up || now - peer->last_heard <= options_.quiet_after) continue;
        SetUp(peer.get(), false,
              absl::StrCat("not heard from for ", absl::FormatDuration(now - peer->last_heard)),
              true, &events);
        peer->quiet = true;
        if (peer->call != nullptr) peer->call->TryCancel();
      }
      Report(lock, std::move(events));
    }
    if (absl::Now() >= next_dns) {
      Resolve();
      next_dns = absl::Now() + options_.dns_interval;
    }
  }
}

void WatchedPeers::Resolve() {
  if (options_.dns.empty()) return;
  absl::StatusOr<std::vector<std::string>> addresses =
      options_.resolve ? options_.resolve(options_.dns) : ResolveAddresses(options_.dns);
  if (!addresses.ok()) {
    DSV3_LOG(WARNING) << "resolving " << options_.dns << ": " << addresses.status();
    return;
  }
  for (const std::string& a : *addresses) Add(a);
  // Peers that came from DNS and no longer resolve leave.
  std::vector<std::unique_ptr<Peer>> gone;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = peers_.begin(); it != peers_.end();) {
      const std::string& a = it->first;
      const bool listed = std::count(addresses->begin(), addresses->end(), a) ||
                          std::count(options_.addresses.begin(), options_.addresses.end(), a);
      if (listed) {
        ++it;
        continue;
      }
      DSV3_LOG(INFO) << options_.what << " " << a << " left " << options_.dns;
      Peer& peer = *it->second;
      peer.removed = true;
      if (peer.call != nullptr) peer.call->TryCancel();
      gone.push_back(std::move(it->second));
      it = peers_.erase(it);
    }
  }
  for (auto& peer : gone) {
    if (peer->thread.joinable()) peer->thread.join();
    absl::ReleasableMutexLock lock(&mu_);
    PeerEvent removed;
    removed.change = PeerChange::kRemoved;
    removed.address = peer->address;
    Report(lock, {std::move(removed)});
  }
}

}  // namespace dsv3
