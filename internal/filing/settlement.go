package filing

import (
	"time"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// settlement is one way a delivery ends: a broker action and its reason,
// which the span, the log and a term's advisory carry. Every settle in the
// core names one of those below; a hand-back's delay is chosen where it is
// named.
type settlement struct {
	action retry.Action
	reason string
}

var (
	// Acknowledged: the outcome is recorded, its result and events are out.
	settleSucceeded          = settlement{retry.ActionAck, "succeeded"}
	settleDuplicateOfSuccess = settlement{retry.ActionAck, "duplicate"}
	// Terminated: a final outcome other than a success, recorded and out.
	settleRejected          = settlement{retry.ActionTerm, "rejected"}
	settleFailed            = settlement{retry.ActionTerm, "failed"}
	settleDuplicate         = settlement{retry.ActionTerm, "duplicate"}
	settleDoneWithoutResult = settlement{retry.ActionTerm, "done without a stored result"}
	// Dead-lettered (the dead letter is out), then terminated.
	settleAmbiguous        = settlement{retry.ActionDeadLetter, "ambiguous"}
	settleRetriesExhausted = settlement{retry.ActionDeadLetter, "retries exhausted"}
	settleInternalError    = settlement{retry.ActionDeadLetter, "internal error"}
	settleUndecodable      = settlement{retry.ActionDeadLetter, "undecodable"}
	settlePanic            = settlement{retry.ActionDeadLetter, "panic"}
	// Handed back: redelivered after a delay.
	settleInFlightElsewhere    = settlement{retry.ActionNakWithDelay, "in flight on another replica"}
	settleRetryLater           = settlement{retry.ActionNakWithDelay, "retryable failure: redelivered later"}
	settleHeld                 = settlement{retry.ActionNakWithDelay, "held back: nothing sent"}
	settleFileStoreUnreadable  = settlement{retry.ActionNakWithDelay, "the file store could not be read"}
	settleBrokerTrouble        = settlement{retry.ActionNakWithDelay, "broker trouble"}
	settlePanicWithOutcomeHeld = settlement{retry.ActionNakWithDelay, "internal error with an outcome held"}
	settleShutdown             = settlement{retry.ActionNakWithDelay, "shutdown"}
	settleShutdownMidCall      = settlement{retry.ActionNakWithDelay, "shutdown mid-call"}
	settleShutdownReconciling  = settlement{retry.ActionNakWithDelay, "shutdown while reconciling"}
	settleCoreFailed           = settlement{retry.ActionNakWithDelay, "internal error"} // the core itself failed (run.go)
)

// settle ends the delivery; delay is for a hand-back.
func (d *delivery) settle(s settlement, delay time.Duration) step {
	return step{kind: stepSettle, settle: s, delay: delay}
}

// settleFor ends a delivery whose outcome res is recorded and out; copy:
// the delivery is a copy of the request that recorded it.
func (d *delivery) settleFor(res *messages.Result, copy bool) step {
	s := deadLetterOf(res)
	switch {
	case s.reason != "":
	case res.Status == messages.StatusSucceeded && copy:
		s = settleDuplicateOfSuccess
	case res.Status == messages.StatusSucceeded:
		s = settleSucceeded
	case copy:
		s = settleDuplicate
	case res.Status == messages.StatusRejected:
		s = settleRejected
	default:
		s = settleFailed
	}
	return d.settle(s, 0)
}

// deadLetterOf is how a delivery whose recorded outcome is res is
// dead-lettered (none when it is not); its reason is the dead letter's.
func deadLetterOf(res *messages.Result) (s settlement) {
	switch {
	case res == nil || res.Status != messages.StatusFailed || res.Error == nil:
	case res.Error.Code == "InternalError":
		return settleInternalError
	case res.Error.Class == messages.ClassAmbiguous:
		return settleAmbiguous
	case res.Error.Class == messages.ClassTransient:
		return settleRetriesExhausted
	}
	return s
}
