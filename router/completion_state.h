#ifndef DSV3_ROUTER_COMPLETION_STATE_H_
#define DSV3_ROUTER_COMPLETION_STATE_H_

// Where one completion's calls and KV lease stand (router/completion_run.h), as a value with
// a pure transition function. CompletionRun's callbacks name what happened (an event);
// NextCompletionState() says what the state becomes and what the run must do about it;
// SettleCompletion() says what the state asks for once the event's own work is done (free a
// lease nothing will use, report a cancellation). No clock, no I/O, no lock: the run holds
// its mutex around each step, and tests/router/completion_state_test.cc checks both
// functions table by table.
//
// The invariants the states keep (each once a source of a bug in the flags they replace):
// - a lease is released only while no prefill can write into it (PrefillPhase::kWriting
//   blocks it, and so does a timed-out call's write grace);
// - a lease a stalled prefill worker held is never released nor decoded from (kAbandoned);
// - a lease a Decode took is the sequence's (kDecoding): the Decode's end frees it;
// - a cancellation is reported once no call of the run is pending.

#include <ostream>

#include "absl/time/time.h"

namespace dsv3::router {

enum class RequestPhase {
  kRunning,
  kCancelling,  // the client cancelled; reported (kFinished) once no call is pending
  kFinished,    // the run reported its end
};

enum class LeasePhase {
  kNone,       // no lease, no Reserve pending
  kReserving,  // a Reserve in flight, or waiting for a decode worker's capacity to send one
  kHeld,       // granted; no Decode took it, nothing released it
  kDecoding,   // a Decode took it: the sequence's end on the decode worker frees it
  kReleased,   // released (or on its way back)
  kAbandoned,  // a stalled prefill worker may still write into it: left to expire
};

enum class PrefillPhase {
  kIdle,       // no Prefill call pending
  kComputing,  // pending without the destination: it cannot write into the lease
  kWriting,    // pending with the destination: it may write into the lease
};

struct CompletionState {
  RequestPhase request = RequestPhase::kRunning;
  bool cancelled = false;  // by the client (kCancelling, or kFinished after it)
  LeasePhase lease = LeasePhase::kNone;
  PrefillPhase prefill = PrefillPhase::kIdle;
  // The pending prefill's worker fell silent and its call is being cancelled.
  bool prefill_stalled = false;
  // The attempt's decode worker fell silent: its call (Reserve or Decode) is being cancelled,
  // and the attempt's failure resumes the request elsewhere. Until the next attempt.
  bool decode_stalled = false;
  // A prefill call that timed out here may leave writes in flight: no release before this.
  absl::Time release_not_before = absl::InfinitePast();

  bool over() const { return request != RequestPhase::kRunning; }
  friend bool operator==(const CompletionState& a, const CompletionState& b) {
    return a.request == b.request && a.cancelled == b.cancelled && a.lease == b.lease &&
           a.prefill == b.prefill && a.prefill_stalled == b.prefill_stalled &&
           a.decode_stalled == b.decode_stalled && a.release_not_before == b.release_not_before;
  }
};

enum class CompletionEvent {
  kCancel,           // the client cancelled
  kFinish,           // the run reports its end to its caller
  kReserveBegin,     // an attempt starts: a Reserve will be sent
  kReserveSend,      // a Reserve is about to go out (the first, a retry, after a wait)
  kReserveGranted,   // the Reserve answered OK
  kReserveEnded,     // the Reserve failed and no other follows
  kPrefillSend,      // a Prefill call is about to go out
  kPrefillStalled,   // the pending prefill's worker fell silent: its call is cancelled
  kPrefillOk,        // the Prefill call answered OK
  kPrefillFailed,    // it failed (not DEADLINE_EXCEEDED)
  kPrefillTimedOut,  // it failed DEADLINE_EXCEEDED here: the worker may write for a while
  kDecodeStart,      // a Decode is about to take the lease
  kDecodeStalled,    // the attempt's decode worker fell silent
  kRelease,          // the lease is about to be released
  kDropLease,        // the attempt's lease is forgotten (a migration, or a new lease)
};

enum class CompletionAction {
  kNone,             // nothing beyond the state change
  kIgnore,           // the event does not apply here (e.g. the run is over): skip its call
  kCancelDecode,     // kCancel: cancel the Decode stream
  kCancelPrefill,    // kCancel: tell the prefill worker to stop (UpdatePrefill cancel)
  kSendDestination,  // the pending Prefill gets the lease's destination (now, or in the call)
  kRestartPrefill,   // the stalled prefill's call ended: start the prompt on another worker
  kCancelReserve,    // kDecodeStalled: cancel the pending Reserve (another worker is tried)
};

struct CompletionTransition {
  CompletionState state;
  CompletionAction action = CompletionAction::kNone;
};

// How long a prefill worker may still write after its call timed out here: it notices at
// its next step boundary, then waits up to 2 s (kQuiesceTimeout) for its in-flight puts.
inline constexpr absl::Duration kPrefillWriteGrace = absl::Seconds(3);

// The state after `event` at time `now`, and what the run must do.
CompletionTransition NextCompletionState(const CompletionState& state, CompletionEvent event,
                                         absl::Time now);

struct CompletionSettlement {
  bool release_lease = false;  // over, and no Decode nor prefill will use the lease
  // The lease would be released but for a timed-out prefill's grace: settle again then.
  absl::Time settle_again_at = absl::InfinitePast();
  bool report_cancel = false;  // cancelled, and no call is pending
};
CompletionSettlement SettleCompletion(const CompletionState& state, absl::Time now);

// A migration may start a new attempt: running, and no Reserve or Prefill pending.
bool CanResume(const CompletionState& state);

const char* ToString(RequestPhase phase);
const char* ToString(LeasePhase phase);
const char* ToString(PrefillPhase phase);
const char* ToString(CompletionEvent event);
const char* ToString(CompletionAction action);
std::ostream& operator<<(std::ostream& os, const CompletionState& state);

}  // namespace dsv3::router

#endif  // DSV3_ROUTER_COMPLETION_STATE_H_
