// The control plane's peer watching (common/watched_peers.h) with scripted sessions and a DNS
// the test controls: peers come from the static list and DNS and leave with it; a session that
// ends takes its peer down with its reason and is retried; a quiet peer is taken down and its
// session told to end; a draining peer is down; events arrive in order.

#include "common/watched_peers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "tests/support/eventually.h"

namespace dsv3 {
namespace {

using dsv3::testing::Eventually;

class FakeDns {
 public:
  void Set(std::vector<std::string> addresses) {
    absl::MutexLock lock(&mu_);
    addresses_ = std::move(addresses);
  }
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string&) {
    absl::MutexLock lock(&mu_);
    return addresses_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> addresses_ ABSL_GUARDED_BY(mu_);
};

// Every event, per address, in the order the owner saw them.
class EventLog {
 public:
  void Add(const PeerEvent& e) {
    absl::MutexLock lock(&mu_);
    events_[e.address].push_back(e);
  }
  std::vector<PeerEvent> Of(const std::string& address) {
    absl::MutexLock lock(&mu_);
    return events_[address];
  }
  // The changes of `address`, as a string: "+^v-" for added, up, down, removed.
  std::string Changes(const std::string& address) {
    std::string out;
    for (const PeerEvent& e : Of(address)) out.push_back("+^v-"[static_cast<int>(e.change)]);
    return out;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::vector<PeerEvent>> events_ ABSL_GUARDED_BY(mu_);
};

bool IsUp(const WatchedPeers& peers, const std::string& address) {
  for (const WatchedPeers::State& s : peers.Snapshot()) {
    if (s.address == address) return s.up;
  }
  return false;
}

// Serves until told to end.
absl::Status Serve(PeerSession& session) {
  session.Heard(true);
  while (session.Wait(absl::Milliseconds(20))) session.Heard(true);
  return absl::CancelledError("told to end");
}

TEST(WatchedPeersTest, StaticAndResolvedPeersAreWatchedAndThoseThatLeaveDnsAreRemoved) {
  FakeDns dns;
  dns.Set({"a.test:1", "b.test:1"});
  EventLog log;
  WatchedPeersOptions options;
  options.what = "test peer";
  options.addresses = {"static.test:1"};
  options.dns = "svc.test:1";
  options.dns_interval = absl::Milliseconds(20);
  options.resolve = [&dns](const std::string& name) { return dns.Resolve(name); };
  auto peers = WatchedPeers::Start(options, Serve, [&log](const PeerEvent& e) {
    if (e.change == PeerChange::kAdded) {
      EXPECT_NE(e.channel, nullptr);
    }
    log.Add(e);
  });
  // Added before Start returns.
  for (const char* a : {"static.test:1", "a.test:1", "b.test:1"}) {
    EXPECT_EQ(log.Changes(a).substr(0, 1), "+") << a;
  }
  ASSERT_TRUE(Eventually([&] {
    return IsUp(*peers, "static.test:1") && IsUp(*peers, "a.test:1") && IsUp(*peers, "b.test:1");
  }));

  dns.Set({"b.test:1", "c.test:1"});
  ASSERT_TRUE(Eventually([&] { return log.Changes("a.test:1") == "+^-"; }))
      << log.Changes("a.test:1");
  ASSERT_TRUE(Eventually([&] { return IsUp(*peers, "c.test:1"); }));
  std::vector<std::string> addresses;
  for (const WatchedPeers::State& s : peers->Snapshot()) addresses.push_back(s.address);
  EXPECT_EQ(addresses, (std::vector<std::string>{"b.test:1", "c.test:1", "static.test:1"}));

  // A DNS that empties keeps the static peer.
  dns.Set({});
  ASSERT_TRUE(Eventually([&] { return peers->Snapshot().size() == 1; }));
  EXPECT_EQ(peers->Snapshot()[0].address, "static.test:1");
  EXPECT_EQ(log.Changes("static.test:1"), "+^");
  peers.reset();
  EXPECT_EQ(log.Changes("static.test:1"), "+^") << "nothing is reported at shutdown";
}

TEST(WatchedPeersTest, ASessionThatEndsTakesItsPeerDownWithItsReasonAndIsRetried) {
  std::atomic<int> sessions{0};
  EventLog log;
  WatchedPeersOptions options;
  options.what = "test peer";
  options.addresses = {"p.test:1"};
  options.retry_after = absl::Milliseconds(50);
  auto peers = WatchedPeers::Start(
      options,
      [&](PeerSession& session) {
        const int n = ++sessions;
        if (n == 1) return absl::UnavailableError("connection refused");  // never heard
        if (n == 2) {
          session.Heard(true);
          return absl::UnavailableError("the stream broke");
        }
        return Serve(session);
      },
      [&log](const PeerEvent& e) { log.Add(e); });
  ASSERT_TRUE(Eventually([&] { return log.Changes("p.test:1") == "+^v^"; }))
      << log.Changes("p.test:1");
  const std::vector<PeerEvent> events = log.Of("p.test:1");
  EXPECT_EQ(events[2].reason, "the stream broke");
  EXPECT_FALSE(events[2].quiet);
  EXPECT_EQ(sessions.load(), 3);
}

TEST(WatchedPeersTest, AQuietPeerIsTakenDownItsSessionEndedAndItComesBack) {
  std::atomic<int> sessions{0};
  std::atomic<bool> call_after_quiet{true};
  EventLog log;
  WatchedPeersOptions options;
  options.what = "test peer";
  options.addresses = {"p.test:1"};
  options.retry_after = absl::Milliseconds(20);
  options.quiet_after = absl::Milliseconds(200);
  auto peers = WatchedPeers::Start(
      options,
      [&](PeerSession& session) {
        if (++sessions == 1) {
          if (session.NewCall() == nullptr) return absl::InternalError("no call");
          session.Heard(true);
          // Silent from here on: only the watchdog ends this wait.
          if (session.Wait(absl::Seconds(30))) return absl::InternalError("not told to end");
          call_after_quiet = session.NewCall() != nullptr;
          return absl::CancelledError("cancelled");
        }
        return Serve(session);
      },
      [&log](const PeerEvent& e) { log.Add(e); });
  ASSERT_TRUE(Eventually([&] { return log.Changes("p.test:1") == "+^v^"; }))
      << log.Changes("p.test:1");
  const PeerEvent down = log.Of("p.test:1")[2];
  EXPECT_TRUE(down.quiet);
  EXPECT_TRUE(absl::StrContains(down.reason, "not heard from")) << down.reason;
  EXPECT_FALSE(call_after_quiet.load()) << "a quiet peer's session gets no new call";
  EXPECT_EQ(sessions.load(), 2);
}

TEST(WatchedPeersTest, ADrainingPeerIsDownAndUpAgainWhenItServes) {
  std::atomic<bool> serving{true};
  EventLog log;
  WatchedPeersOptions options;
  options.what = "test peer";
  options.addresses = {"p.test:1"};
  auto peers = WatchedPeers::Start(
      options,
      [&](PeerSession& session) {
        do {
          session.Heard(serving.load());
        } while (session.Wait(absl::Milliseconds(10)));
        return absl::CancelledError("told to end");
      },
      [&log](const PeerEvent& e) { log.Add(e); });
  ASSERT_TRUE(Eventually([&] { return IsUp(*peers, "p.test:1"); }));
  serving = false;
  ASSERT_TRUE(Eventually([&] { return !IsUp(*peers, "p.test:1"); }));
  EXPECT_TRUE(absl::StrContains(peers->Snapshot()[0].reason, "draining"));
  serving = true;
  ASSERT_TRUE(Eventually([&] { return log.Changes("p.test:1") == "+^v^"; }))
      << log.Changes("p.test:1");
  EXPECT_FALSE(log.Of("p.test:1")[2].quiet);
}

}  // namespace
}  // namespace dsv3
