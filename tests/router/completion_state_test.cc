// The request path's state (router/completion_state.h), table by table: each row is a state,
// an event, and the state and action that must follow; then what each state asks for when
// it settles; then every state reachable from a new request, checked against the invariants
// the lease depends on.

#include "router/completion_state.h"

#include <gtest/gtest.h>

#include <deque>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace dsv3::router {
namespace {

using Action = CompletionAction;
using Event = CompletionEvent;
using Lease = LeasePhase;
using Prefill = PrefillPhase;
using Request = RequestPhase;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

CompletionState State(Request request, Lease lease, Prefill prefill, bool cancelled = false,
                      bool stalled = false) {
  CompletionState s;
  s.request = request;
  s.cancelled = cancelled || request == Request::kCancelling;
  s.lease = lease;
  s.prefill = prefill;
  s.prefill_stalled = stalled;
  return s;
}

struct Row {
  std::string name;
  CompletionState from;
  Event event;
  CompletionState to;
  Action action;
};

void CheckTable(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const CompletionTransition t = NextCompletionState(row.from, row.event, kNow);
    EXPECT_EQ(t.state, row.to) << "from " << row.from << " on " << ToString(row.event);
    EXPECT_STREQ(ToString(t.action), ToString(row.action))
        << "from " << row.from << " on " << ToString(row.event);
  }
}

constexpr Request kRun = Request::kRunning;
constexpr Request kCancelling = Request::kCancelling;
constexpr Request kDone = Request::kFinished;

TEST(CompletionStateTest, ReserveAndPrefillShareTheLeaseOnlyOnceItIsGranted) {
  CheckTable({
      {"an attempt begins", State(kRun, Lease::kNone, Prefill::kIdle), Event::kReserveBegin,
       State(kRun, Lease::kReserving, Prefill::kIdle), Action::kNone},
      {"no attempt after a cancel", State(kCancelling, Lease::kNone, Prefill::kIdle),
       Event::kReserveBegin, State(kCancelling, Lease::kNone, Prefill::kIdle), Action::kIgnore},
      {"the prefill goes first, without a destination",
       State(kRun, Lease::kReserving, Prefill::kIdle), Event::kPrefillSend,
       State(kRun, Lease::kReserving, Prefill::kComputing), Action::kNone},
      {"the grant sends the destination to the computing prefill",
       State(kRun, Lease::kReserving, Prefill::kComputing), Event::kReserveGranted,
       State(kRun, Lease::kHeld, Prefill::kWriting), Action::kSendDestination},
      {"a grant after a cancel keeps the destination from the prefill",
       State(kCancelling, Lease::kReserving, Prefill::kComputing), Event::kReserveGranted,
       State(kCancelling, Lease::kHeld, Prefill::kComputing), Action::kNone},
      {"a grant with no prefill (the decode worker computes the prompt)",
       State(kRun, Lease::kReserving, Prefill::kIdle), Event::kReserveGranted,
       State(kRun, Lease::kHeld, Prefill::kIdle), Action::kNone},
      {"a prefill retried under a granted lease carries the destination",
       State(kRun, Lease::kHeld, Prefill::kIdle), Event::kPrefillSend,
       State(kRun, Lease::kHeld, Prefill::kWriting), Action::kSendDestination},
      {"no prefill goes out once the request is over", State(kDone, Lease::kHeld, Prefill::kIdle),
       Event::kPrefillSend, State(kDone, Lease::kHeld, Prefill::kIdle), Action::kIgnore},
      {"a retried Reserve", State(kRun, Lease::kReserving, Prefill::kComputing),
       Event::kReserveSend, State(kRun, Lease::kReserving, Prefill::kComputing), Action::kNone},
      {"a Reserve retry after the end sends nothing",
       State(kCancelling, Lease::kReserving, Prefill::kIdle), Event::kReserveSend,
       State(kCancelling, Lease::kNone, Prefill::kIdle), Action::kIgnore},
      {"a Reserve that failed for good", State(kRun, Lease::kReserving, Prefill::kComputing),
       Event::kReserveEnded, State(kRun, Lease::kNone, Prefill::kComputing), Action::kNone},
  });
}

TEST(CompletionStateTest, APrefillsAnswerEndsItsWritesButAStalledOneAbandonsTheLease) {
  CompletionState timed_out = State(kRun, Lease::kHeld, Prefill::kIdle);
  timed_out.release_not_before = kNow + kPrefillWriteGrace;
  CheckTable({
      {"answered: the lease is the Decode's to take", State(kRun, Lease::kHeld, Prefill::kWriting),
       Event::kPrefillOk, State(kRun, Lease::kHeld, Prefill::kIdle), Action::kNone},
      {"failed: nothing writes any more", State(kRun, Lease::kHeld, Prefill::kWriting),
       Event::kPrefillFailed, State(kRun, Lease::kHeld, Prefill::kIdle), Action::kNone},
      {"timed out here: the worker may write for its grace",
       State(kRun, Lease::kHeld, Prefill::kWriting), Event::kPrefillTimedOut, timed_out,
       Action::kNone},
      {"timed out without the destination: no grace",
       State(kRun, Lease::kReserving, Prefill::kComputing), Event::kPrefillTimedOut,
       State(kRun, Lease::kReserving, Prefill::kIdle), Action::kNone},
      {"a silent worker is marked stalled", State(kRun, Lease::kHeld, Prefill::kWriting),
       Event::kPrefillStalled, State(kRun, Lease::kHeld, Prefill::kWriting, false, true),
       Action::kNone},
      {"no stall once cancelled", State(kCancelling, Lease::kHeld, Prefill::kWriting),
       Event::kPrefillStalled, State(kCancelling, Lease::kHeld, Prefill::kWriting),
       Action::kIgnore},
      {"no stall without a prefill", State(kRun, Lease::kHeld, Prefill::kIdle),
       Event::kPrefillStalled, State(kRun, Lease::kHeld, Prefill::kIdle), Action::kIgnore},
      {"a stalled writer's lease is abandoned and the prompt restarts",
       State(kRun, Lease::kHeld, Prefill::kWriting, false, true), Event::kPrefillFailed,
       State(kRun, Lease::kAbandoned, Prefill::kIdle), Action::kRestartPrefill},
      {"a stalled computer never had the lease: it stays",
       State(kRun, Lease::kReserving, Prefill::kComputing, false, true), Event::kPrefillFailed,
       State(kRun, Lease::kReserving, Prefill::kIdle), Action::kRestartPrefill},
      {"a stalled worker that answered OK after all is not stalled",
       State(kRun, Lease::kHeld, Prefill::kWriting, false, true), Event::kPrefillOk,
       State(kRun, Lease::kHeld, Prefill::kIdle), Action::kNone},
      {"a stalled writer after the end: abandoned, no restart",
       State(kDone, Lease::kHeld, Prefill::kWriting, false, true), Event::kPrefillFailed,
       State(kDone, Lease::kAbandoned, Prefill::kIdle), Action::kNone},
  });
}

TEST(CompletionStateTest, CancelStopsWhateverCallIsPendingOnce) {
  CheckTable({
      {"during the Decode", State(kRun, Lease::kDecoding, Prefill::kIdle), Event::kCancel,
       State(kCancelling, Lease::kDecoding, Prefill::kIdle), Action::kCancelDecode},
      {"during the prefill", State(kRun, Lease::kHeld, Prefill::kWriting), Event::kCancel,
       State(kCancelling, Lease::kHeld, Prefill::kWriting), Action::kCancelPrefill},
      {"during the Reserve", State(kRun, Lease::kReserving, Prefill::kIdle), Event::kCancel,
       State(kCancelling, Lease::kReserving, Prefill::kIdle), Action::kNone},
      {"twice", State(kCancelling, Lease::kDecoding, Prefill::kIdle), Event::kCancel,
       State(kCancelling, Lease::kDecoding, Prefill::kIdle), Action::kIgnore},
      {"after the end", State(kDone, Lease::kHeld, Prefill::kIdle), Event::kCancel,
       State(kDone, Lease::kHeld, Prefill::kIdle), Action::kIgnore},
      {"finishing a cancelled run keeps that it was cancelled",
       State(kCancelling, Lease::kNone, Prefill::kIdle), Event::kFinish,
       State(kDone, Lease::kNone, Prefill::kIdle, /*cancelled=*/true), Action::kNone},
      {"finished once", State(kDone, Lease::kNone, Prefill::kIdle), Event::kFinish,
       State(kDone, Lease::kNone, Prefill::kIdle), Action::kIgnore},
  });
}

TEST(CompletionStateTest, OnlyAHeldLeaseNothingWritesIntoIsDecodedOrReleased) {
  CompletionState in_grace = State(kDone, Lease::kHeld, Prefill::kIdle);
  in_grace.release_not_before = kNow + absl::Seconds(1);
  CompletionState migrated = State(kRun, Lease::kDecoding, Prefill::kIdle);
  migrated.release_not_before = kNow;
  CheckTable({
      {"the Decode takes the lease", State(kRun, Lease::kHeld, Prefill::kIdle), Event::kDecodeStart,
       State(kRun, Lease::kDecoding, Prefill::kIdle), Action::kNone},
      {"no Decode after a cancel", State(kCancelling, Lease::kHeld, Prefill::kIdle),
       Event::kDecodeStart, State(kCancelling, Lease::kHeld, Prefill::kIdle), Action::kIgnore},
      {"no Decode from an abandoned lease", State(kRun, Lease::kAbandoned, Prefill::kIdle),
       Event::kDecodeStart, State(kRun, Lease::kAbandoned, Prefill::kIdle), Action::kIgnore},
      {"release a held lease", State(kDone, Lease::kHeld, Prefill::kIdle), Event::kRelease,
       State(kDone, Lease::kReleased, Prefill::kIdle), Action::kNone},
      {"not while a prefill may write", State(kDone, Lease::kHeld, Prefill::kWriting),
       Event::kRelease, State(kDone, Lease::kHeld, Prefill::kWriting), Action::kIgnore},
      {"not in a timed-out prefill's grace", in_grace, Event::kRelease, in_grace, Action::kIgnore},
      {"not the Decode's", State(kDone, Lease::kDecoding, Prefill::kIdle), Event::kRelease,
       State(kDone, Lease::kDecoding, Prefill::kIdle), Action::kIgnore},
      {"not an abandoned one", State(kDone, Lease::kAbandoned, Prefill::kIdle), Event::kRelease,
       State(kDone, Lease::kAbandoned, Prefill::kIdle), Action::kIgnore},
      {"not twice", State(kDone, Lease::kReleased, Prefill::kIdle), Event::kRelease,
       State(kDone, Lease::kReleased, Prefill::kIdle), Action::kIgnore},
      {"a migration forgets the failed attempt's lease", migrated, Event::kDropLease,
       State(kRun, Lease::kNone, Prefill::kIdle), Action::kNone},
  });
}

TEST(CompletionStateTest, ASilentDecodeWorkersCallIsCancelledUntilTheNextAttempt) {
  auto stalled = [](CompletionState s) {
    s.decode_stalled = true;
    return s;
  };
  const CompletionState decoding = State(kRun, Lease::kDecoding, Prefill::kIdle);
  const CompletionState reserving = State(kRun, Lease::kReserving, Prefill::kComputing);
  const CompletionState held = State(kRun, Lease::kHeld, Prefill::kWriting);
  CheckTable({
      {"a Decode's stream is cancelled", decoding, Event::kDecodeStalled, stalled(decoding),
       Action::kCancelDecode},
      {"a pending Reserve is cancelled", reserving, Event::kDecodeStalled, stalled(reserving),
       Action::kCancelReserve},
      {"a held lease waits for its prefill", held, Event::kDecodeStalled, stalled(held),
       Action::kNone},
      {"an ended request ignores it", State(kCancelling, Lease::kDecoding, Prefill::kIdle),
       Event::kDecodeStalled, State(kCancelling, Lease::kDecoding, Prefill::kIdle),
       Action::kIgnore},
      {"the next Reserve goes to a worker that answers",
       stalled(State(kRun, Lease::kNone, Prefill::kComputing)), Event::kReserveSend, reserving,
       Action::kNone},
      {"a migration forgets the stall with the lease", stalled(decoding), Event::kDropLease,
       State(kRun, Lease::kNone, Prefill::kIdle), Action::kNone},
  });
}

TEST(CompletionStateTest, SettlingReleasesAnUnusedLeaseAndReportsACancelOnceNothingIsPending) {
  struct SettleRow {
    std::string name;
    CompletionState state;
    bool release;
    bool report_cancel;
  };
  const std::vector<SettleRow> rows = {
      {"running: nothing", State(kRun, Lease::kHeld, Prefill::kIdle), false, false},
      {"failed with a held lease", State(kDone, Lease::kHeld, Prefill::kIdle), true, false},
      {"failed while the prefill writes", State(kDone, Lease::kHeld, Prefill::kWriting), false,
       false},
      {"failed while the prefill computes", State(kDone, Lease::kHeld, Prefill::kComputing), false,
       false},
      {"failed during the Decode", State(kDone, Lease::kDecoding, Prefill::kIdle), false, false},
      {"failed after an abandon", State(kDone, Lease::kAbandoned, Prefill::kIdle), false, false},
      {"cancelled with a held lease", State(kCancelling, Lease::kHeld, Prefill::kIdle), true, true},
      {"cancelled, Reserve pending", State(kCancelling, Lease::kReserving, Prefill::kIdle), false,
       false},
      {"cancelled, prefill pending", State(kCancelling, Lease::kNone, Prefill::kComputing), false,
       false},
      {"cancelled, Decode pending", State(kCancelling, Lease::kDecoding, Prefill::kIdle), false,
       false},
      {"cancelled, nothing", State(kCancelling, Lease::kNone, Prefill::kIdle), false, true},
      {"cancelled and reported", State(kDone, Lease::kNone, Prefill::kIdle, true), false, false},
  };
  for (const SettleRow& row : rows) {
    SCOPED_TRACE(row.name);
    const CompletionSettlement s = SettleCompletion(row.state, kNow);
    EXPECT_EQ(s.release_lease, row.release) << row.state;
    EXPECT_EQ(s.report_cancel, row.report_cancel) << row.state;
    EXPECT_EQ(s.settle_again_at, absl::InfinitePast()) << row.state;
  }
  // A timed-out prefill's grace defers the release to its end.
  CompletionState grace = State(kDone, Lease::kHeld, Prefill::kIdle);
  grace.release_not_before = kNow + absl::Seconds(2);
  CompletionSettlement s = SettleCompletion(grace, kNow);
  EXPECT_FALSE(s.release_lease);
  EXPECT_EQ(s.settle_again_at, kNow + absl::Seconds(2));
  s = SettleCompletion(grace, kNow + absl::Seconds(2));
  EXPECT_TRUE(s.release_lease);
  EXPECT_EQ(s.settle_again_at, absl::InfinitePast());

  EXPECT_TRUE(CanResume(State(kRun, Lease::kDecoding, Prefill::kIdle)));
  EXPECT_TRUE(CanResume(State(kRun, Lease::kHeld, Prefill::kIdle)));
  EXPECT_FALSE(CanResume(State(kRun, Lease::kReserving, Prefill::kIdle)));
  EXPECT_FALSE(CanResume(State(kRun, Lease::kHeld, Prefill::kWriting)));
  EXPECT_FALSE(CanResume(State(kCancelling, Lease::kDecoding, Prefill::kIdle)));
}

// Every state a request can reach, by any order of events, keeps the lease's invariants.
TEST(CompletionStateTest, EveryReachableStateKeepsTheLeaseInvariants) {
  const std::vector<Event> events = {
      Event::kCancel,        Event::kFinish,          Event::kReserveBegin,
      Event::kReserveSend,   Event::kReserveGranted,  Event::kReserveEnded,
      Event::kPrefillSend,   Event::kPrefillStalled,  Event::kPrefillOk,
      Event::kPrefillFailed, Event::kPrefillTimedOut, Event::kDecodeStart,
      Event::kDecodeStalled, Event::kRelease,         Event::kDropLease};
  auto key = [](const CompletionState& s) {
    return std::make_tuple(static_cast<int>(s.request), s.cancelled, static_cast<int>(s.lease),
                           static_cast<int>(s.prefill), s.prefill_stalled, s.decode_stalled,
                           absl::ToUnixMillis(s.release_not_before));
  };
  std::set<decltype(key(CompletionState()))> seen;
  std::deque<CompletionState> queue = {CompletionState()};
  seen.insert(key(queue.front()));
  int transitions = 0;
  while (!queue.empty()) {
    const CompletionState from = queue.front();
    queue.pop_front();
    for (Event e : events) {
      const CompletionTransition t = NextCompletionState(from, e, kNow);
      const CompletionState& to = t.state;
      ++transitions;
      SCOPED_TRACE(::testing::Message() << from << " on " << ToString(e) << " -> " << to);
      if (t.action == Action::kIgnore) {
        // An ignored event changes nothing but a Reserve that will not be sent.
        if (e != Event::kReserveSend) {
          EXPECT_EQ(to, from);
        }
      }
      // Released only a lease nothing wrote into any more, and never in a write grace.
      if (to.lease == Lease::kReleased && from.lease != Lease::kReleased) {
        EXPECT_EQ(from.prefill, Prefill::kIdle);
        EXPECT_GE(kNow, from.release_not_before);
      }
      // An abandoned lease is never decoded from nor released: only forgotten.
      if (from.lease == Lease::kAbandoned) {
        EXPECT_TRUE(to.lease == Lease::kAbandoned || to.lease == Lease::kNone);
      }
      // A prefill writes only into a held lease.
      if (to.prefill == Prefill::kWriting) {
        EXPECT_TRUE(to.lease == Lease::kHeld || to.lease == Lease::kAbandoned) << "writing";
      }
      // A Decode starts only from a held lease nothing writes into, in a running request.
      if (to.lease == Lease::kDecoding && from.lease != Lease::kDecoding) {
        EXPECT_EQ(from.lease, Lease::kHeld);
        EXPECT_EQ(from.prefill, Prefill::kIdle);
        EXPECT_FALSE(from.over());
      }
      // A new Reserve or a dropped lease starts an attempt on a worker not known silent.
      if ((e == Event::kReserveSend && t.action != Action::kIgnore) || e == Event::kDropLease) {
        EXPECT_FALSE(to.decode_stalled);
      }
      // The end is final, and a cancel is remembered.
      if (from.request == Request::kFinished) {
        EXPECT_EQ(to.request, Request::kFinished);
      }
      if (from.cancelled) {
        EXPECT_TRUE(to.cancelled);
      }
      const CompletionSettlement settled = SettleCompletion(to, kNow);
      if (settled.release_lease) {
        EXPECT_EQ(to.prefill, Prefill::kIdle);
      }
      if (settled.report_cancel) {
        EXPECT_NE(to.lease, Lease::kDecoding);
        EXPECT_NE(to.lease, Lease::kReserving);
      }
      if (seen.insert(key(to)).second) queue.push_back(to);
    }
  }
  // The walk is not vacuous: the phases combine into dozens of states.
  EXPECT_GT(seen.size(), 40u);
  EXPECT_GT(transitions, 500);
}

}  // namespace
}  // namespace dsv3::router
