#ifndef DSV3_COMMON_WATCHED_PEERS_H_
#define DSV3_COMMON_WATCHED_PEERS_H_

// The control plane's one way of watching peers: the peers a process keeps track of (a static
// list, and a DNS name re-resolved every dns_interval: a Kubernetes headless Service), one
// channel and one watch thread per peer, and each peer's state: up, or down with a reason.
// The router's worker registry (prefill and decode workers), the EPLB rebalancer (expert
// workers' load) and an attention worker's remote experts (Join, then the UCX connection)
// all watch their peers with it.
//
// What watching a peer means is the owner's: a session function that talks to the peer (opens
// a load stream and reads it, or joins it and waits) and tells the session when the peer is
// heard from and whether it serves (PeerSession::Heard). The state follows:
//   up    the last Heard said "serving";
//   down  not yet heard; Heard said "not serving" (a draining worker); the session ended
//         (the reason is the status it returned, and a new session starts after retry_after);
//         or quiet: up, and not heard for quiet_after (a stopped or wedged process: its call
//         is cancelled, which ends the session).
// A peer that no longer resolves (and is not in the static list) is removed: its call is
// cancelled and its thread joined.
//
// The owner learns of every change through one event function, called in order (added, then
// its ups and downs, then removed) and never with this object's lock held, so it may take its
// own locks. It must not call back into this WatchedPeers. A peer's session starts only after
// its kAdded event, and its kRemoved event comes after its session ended; the destructor ends
// every session and reports nothing more.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace dsv3 {

class WatchedPeers;
namespace watched_peers_internal {
struct Peer;
}  // namespace watched_peers_internal

struct WatchedPeersOptions {
  std::string what;                    // how logs name a peer: "prefill worker"
  std::vector<std::string> addresses;  // host:port, always watched
  std::string dns;                     // "name:port", resolved to every address it has
  absl::Duration dns_interval = absl::Seconds(5);
  // Resolves a "name:port" to host:port addresses; unset: DNS (common/resolve_addresses.h).
  std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)> resolve;
  // Between a session's end and the next one.
  absl::Duration retry_after = absl::Milliseconds(250);
  // Up and not heard from for this long: down (infinite: never).
  absl::Duration quiet_after = absl::InfiniteDuration();
};

enum class PeerChange { kAdded, kUp, kDown, kRemoved };

struct PeerEvent {
  PeerChange change;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;  // kAdded: the channel every session uses
  std::string reason;                      // kDown: why
  bool quiet = false;                      // kDown: it stopped answering (not a session end)
};

// One session with one peer, as its watch thread runs it.
class PeerSession {
 public:
  const std::string& address() const { return address_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // A context for the session's next call, which removal, shutdown and the quiet watchdog
  // cancel; null when the session should end (the peer is leaving or went quiet). It lives
  // until the next NewCall or the end of the session.
  grpc::ClientContext* NewCall();
  // The peer answered now; serving=false: it answers but takes no work (a draining worker).
  void Heard(bool serving = true);
  // Waits up to `timeout`; false (at once) when the session should end.
  bool Wait(absl::Duration timeout);

 private:
  friend class WatchedPeers;
  PeerSession(WatchedPeers* peers, watched_peers_internal::Peer* peer, std::string address,
              std::shared_ptr<grpc::Channel> channel)
      : peers_(peers), peer_(peer), address_(std::move(address)), channel_(std::move(channel)) {}
  WatchedPeers* peers_;
  watched_peers_internal::Peer* peer_;
  const std::string address_;
  const std::shared_ptr<grpc::Channel> channel_;
};

class WatchedPeers {
 public:
  // Runs one session with the peer; returns why it ended.
  using SessionFn = std::function<absl::Status(PeerSession&)>;
  using EventFn = std::function<void(const PeerEvent&)>;

  // Adds the static peers and what the DNS name resolves to now (their kAdded events come
  // before Start returns), then watches.
  static std::unique_ptr<WatchedPeers> Start(WatchedPeersOptions options, SessionFn session,
                                             EventFn on_event);
  ~WatchedPeers();
  WatchedPeers(const WatchedPeers&) = delete;
  WatchedPeers& operator=(const WatchedPeers&) = delete;

  struct State {
    std::string address;
    bool up = false;
    std::string reason;  // why it is down
  };
  std::vector<State> Snapshot() const;

 private:
  friend class PeerSession;
  using Peer = watched_peers_internal::Peer;
  WatchedPeers(WatchedPeersOptions options, SessionFn session, EventFn on_event);
  // Makes the peer, reports kAdded and starts its thread (nothing if it is known).
  void Add(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);
  void Watch(Peer* peer);
  void Housekeeping();
  void Resolve();
  // Changes the peer's state; the event, if any, is reported once mu_ is released.
  void SetUp(Peer* peer, bool up, std::string reason, bool quiet, std::vector<PeerEvent>* events)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports `events` in order: takes events_mu_ before releasing `lock`'s mu_.
  void Report(absl::ReleasableMutexLock& lock, std::vector<PeerEvent> events);

  const WatchedPeersOptions options_;
  const SessionFn session_;
  const EventFn on_event_;
  mutable absl::Mutex mu_;
  // Held while events are reported, so that they arrive in the order they happened.
  absl::Mutex events_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::map<std::string, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread housekeeping_;
};

}  // namespace dsv3

#endif  // DSV3_COMMON_WATCHED_PEERS_H_
