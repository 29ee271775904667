#include "router/completion_state.h"

namespace dsv3::router {

CompletionTransition NextCompletionState(const CompletionState& state, CompletionEvent event,
                                         absl::Time now) {
  using Action = CompletionAction;
  CompletionTransition t{state, Action::kNone};
  CompletionState& s = t.state;
  auto ignore = [&] { return CompletionTransition{state, Action::kIgnore}; };
  switch (event) {
    case CompletionEvent::kCancel:
      if (state.over()) return ignore();
      s.request = RequestPhase::kCancelling;
      s.cancelled = true;
      if (s.lease == LeasePhase::kDecoding) {
        t.action = Action::kCancelDecode;  // the decode worker frees the sequence's blocks
      } else if (s.prefill != PrefillPhase::kIdle) {
        t.action = Action::kCancelPrefill;  // it answers once its writes are done
      }
      return t;
    case CompletionEvent::kFinish:
      if (state.request == RequestPhase::kFinished) return ignore();
      s.request = RequestPhase::kFinished;
      return t;
    case CompletionEvent::kReserveBegin:
      // Ended before the attempt began: nothing to undo. A lease is never reserved twice.
      if (state.over() || state.lease != LeasePhase::kNone) return ignore();
      s.lease = LeasePhase::kReserving;
      return t;
    case CompletionEvent::kReserveSend:
      if (state.over()) {
        // Ended during a retry or a wait for capacity: no Reserve goes out.
        if (s.lease == LeasePhase::kReserving) s.lease = LeasePhase::kNone;
        t.action = Action::kIgnore;
        return t;
      }
      if (s.lease != LeasePhase::kReserving && s.lease != LeasePhase::kNone) return ignore();
      s.lease = LeasePhase::kReserving;
      s.decode_stalled = false;  // a Reserve goes to a worker that answers
      return t;
    case CompletionEvent::kReserveGranted:
      if (state.lease != LeasePhase::kReserving) return ignore();  // no Reserve was sent
      s.lease = LeasePhase::kHeld;
      if (!s.over() && s.prefill == PrefillPhase::kComputing) {
        s.prefill = PrefillPhase::kWriting;  // from here on the prefill may write into it
        t.action = Action::kSendDestination;
      }
      return t;
    case CompletionEvent::kReserveEnded:
      if (s.lease == LeasePhase::kReserving) s.lease = LeasePhase::kNone;
      return t;
    case CompletionEvent::kPrefillSend:
      // Ended while no prefill was pending: send nothing, so nothing can write into the lease.
      if (state.over()) return ignore();
      s.prefill_stalled = false;
      if (s.lease == LeasePhase::kHeld) {
        s.prefill = PrefillPhase::kWriting;  // a retry: the destination goes with the prompt
        t.action = Action::kSendDestination;
      } else {
        s.prefill = PrefillPhase::kComputing;
      }
      return t;
    case CompletionEvent::kPrefillStalled:
      if (state.over() || state.prefill == PrefillPhase::kIdle) return ignore();
      s.prefill_stalled = true;
      return t;
    case CompletionEvent::kPrefillOk:
    case CompletionEvent::kPrefillFailed:
    case CompletionEvent::kPrefillTimedOut: {
      const bool writing = s.prefill == PrefillPhase::kWriting;
      // A worker that answered despite the stall is not stalled.
      const bool stalled = s.prefill_stalled && event != CompletionEvent::kPrefillOk;
      s.prefill = PrefillPhase::kIdle;
      s.prefill_stalled = false;
      if (stalled && writing && s.lease == LeasePhase::kHeld) {
        // It may write into the lease when it runs again: never release it, never decode
        // from it; the decode worker frees it when it expires.
        s.lease = LeasePhase::kAbandoned;
      }
      if (writing && event == CompletionEvent::kPrefillTimedOut) {
        // The worker ends the job at its next step boundary and waits for its writes.
        s.release_not_before = now + kPrefillWriteGrace;
      }
      if (stalled && !s.over()) t.action = Action::kRestartPrefill;
      return t;
    }
    case CompletionEvent::kDecodeStalled:
      if (state.over()) return ignore();
      s.decode_stalled = true;
      if (s.lease == LeasePhase::kDecoding) {
        t.action = Action::kCancelDecode;  // its end resumes the request elsewhere
      } else if (s.lease == LeasePhase::kReserving) {
        t.action = Action::kCancelReserve;
      }
      return t;
    case CompletionEvent::kDecodeStart:
      // Only from a held lease nothing writes into any more.
      if (state.over() || state.lease != LeasePhase::kHeld ||
          state.prefill != PrefillPhase::kIdle) {
        return ignore();
      }
      s.lease = LeasePhase::kDecoding;
      return t;
    case CompletionEvent::kRelease:
      // Only a lease nothing else owns (a Decode's is freed by its end, an abandoned one by
      // its expiry) and nothing can write into any more.
      if (state.lease != LeasePhase::kHeld || state.prefill != PrefillPhase::kIdle ||
          now < state.release_not_before) {
        return ignore();
      }
      s.lease = LeasePhase::kReleased;
      return t;
    case CompletionEvent::kDropLease:
      s.lease = LeasePhase::kNone;
      s.decode_stalled = false;  // the next attempt's decode worker is another
      if (s.prefill == PrefillPhase::kWriting) s.prefill = PrefillPhase::kComputing;
      s.release_not_before = absl::InfinitePast();
      return t;
  }
  return t;
}

CompletionSettlement SettleCompletion(const CompletionState& state, absl::Time now) {
  CompletionSettlement settlement;
  // A lease no Decode will take, once no prefill can write into it.
  settlement.release_lease =
      state.over() && state.lease == LeasePhase::kHeld && state.prefill == PrefillPhase::kIdle;
  if (settlement.release_lease && now < state.release_not_before) {
    settlement.release_lease = false;
    settlement.settle_again_at = state.release_not_before;
  }
  settlement.report_cancel =
      state.request == RequestPhase::kCancelling && state.prefill == PrefillPhase::kIdle &&
      state.lease != LeasePhase::kReserving && state.lease != LeasePhase::kDecoding;
  return settlement;
}

bool CanResume(const CompletionState& state) {
  return !state.over() && state.lease != LeasePhase::kReserving &&
         state.prefill == PrefillPhase::kIdle;
}

const char* ToString(RequestPhase phase) {
  switch (phase) {
    case RequestPhase::kRunning:
      return "running";
    case RequestPhase::kCancelling:
      return "cancelling";
    case RequestPhase::kFinished:
      return "finished";
  }
  return "?";
}

const char* ToString(LeasePhase phase) {
  switch (phase) {
    case LeasePhase::kNone:
      return "none";
    case LeasePhase::kReserving:
      return "reserving";
    case LeasePhase::kHeld:
      return "held";
    case LeasePhase::kDecoding:
      return "decoding";
    case LeasePhase::kReleased:
      return "released";
    case LeasePhase::kAbandoned:
      return "abandoned";
  }
  return "?";
}

const char* ToString(PrefillPhase phase) {
  switch (phase) {
    case PrefillPhase::kIdle:
      return "idle";
    case PrefillPhase::kComputing:
      return "computing";
    case PrefillPhase::kWriting:
      return "writing";
  }
  return "?";
}

const char* ToString(CompletionEvent event) {
  switch (event) {
    case CompletionEvent::kCancel:
      return "cancel";
    case CompletionEvent::kFinish:
      return "finish";
    case CompletionEvent::kReserveBegin:
      return "reserve_begin";
    case CompletionEvent::kReserveSend:
      return "reserve_send";
    case CompletionEvent::kReserveGranted:
      return "reserve_granted";
    case CompletionEvent::kReserveEnded:
      return "reserve_ended";
    case CompletionEvent::kPrefillSend:
      return "prefill_send";
    case CompletionEvent::kPrefillStalled:
      return "prefill_stalled";
    case CompletionEvent::kPrefillOk:
      return "prefill_ok";
    case CompletionEvent::kPrefillFailed:
      return "prefill_failed";
    case CompletionEvent::kPrefillTimedOut:
      return "prefill_timed_out";
    case CompletionEvent::kDecodeStart:
      return "decode_start";
    case CompletionEvent::kDecodeStalled:
      return "decode_stalled";
    case CompletionEvent::kRelease:
      return "release";
    case CompletionEvent::kDropLease:
      return "drop_lease";
  }
  return "?";
}

const char* ToString(CompletionAction action) {
  switch (action) {
    case CompletionAction::kNone:
      return "none";
    case CompletionAction::kIgnore:
      return "ignore";
    case CompletionAction::kCancelDecode:
      return "cancel_decode";
    case CompletionAction::kCancelPrefill:
      return "cancel_prefill";
    case CompletionAction::kSendDestination:
      return "send_destination";
    case CompletionAction::kRestartPrefill:
      return "restart_prefill";
    case CompletionAction::kCancelReserve:
      return "cancel_reserve";
  }
  return "?";
}

std::ostream& operator<<(std::ostream& os, const CompletionState& state) {
  os << "{request=" << ToString(state.request) << (state.cancelled ? " (cancelled)" : "")
     << " lease=" << ToString(state.lease) << " prefill=" << ToString(state.prefill)
     << (state.prefill_stalled ? " (stalled)" : "")
     << (state.decode_stalled ? " decode_stalled" : "");
  if (state.release_not_before != absl::InfinitePast()) {
    os << " release_not_before=" << absl::FormatTime(state.release_not_before);
  }
  return os << "}";
}

}  // namespace dsv3::router
