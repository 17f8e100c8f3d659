package filing

import (
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The decisions around a call that is due (part of the decision core,
// without I/O): the request's files fetched first, a call the guard held
// back handed back uncounted, files removed once an outcome is final.

// callStep is the upstream call that is due, once the request's files
// held in the object store are fetched and checked (a missing or
// mismatched one rejects the request: nothing is sent).
func (k *known) callStep() step {
	switch {
	case k.filesErr != nil:
		k.callDue = false
		res := k.result(messages.StatusRejected, &messages.ResultError{Code: "InvalidRequest", Class: messages.ClassInvalid,
			Message: "a file the request references in the object store cannot be used: see fields"})
		if ve := asValidation(k.filesErr); ve != nil {
			res.Error.Fields = boundFields(ve.Fields)
		}
		return k.decided(res, messages.EventRejected, "")
	case !k.filesDone && len(k.req.FileRefs()) > 0:
		return step{kind: stepFiles}
	}
	return step{kind: stepCall}
}

// holdBack hands back a request whose call qualfile held back before
// sending it (the vendor's breaker is open, or its rate limit full): the
// entry goes back to "claimed" counting the hand-back, so that the
// delivery does not count toward the dead-letter limit.
func (k *known) holdBack() step {
	if e := k.entry; e.State == ledger.StateCalling && e.Nonce == k.mem.nonce {
		if !k.heldNoted {
			k.heldNoted = true
			// One event for a run of held deliveries, so that an outage of
			// hours does not grow the entry without bound.
			if trail := k.trail(); len(trail) == 0 || trail[len(trail)-1].Class != string(retry.ClassHeld) {
				_, msg, _ := describe(k.held)
				k.pending = append(k.pending, k.event(messages.AuditEvent{Event: messages.EventDeferred, Attempt: e.Attempts,
					Class: string(retry.ClassHeld), Code: "Held", Message: bound(msg, 300)}))
			}
		}
		next := *e
		next.State, next.Nonce, next.UpdatedAt = ledger.StateClaimed, "", k.now
		if k.attempts == 0 {
			// Only a delivery that sent nothing goes uncounted: one whose
			// retry was held after real attempts counts as usual.
			next.Held++
		}
		return k.write(next)
	}
	return k.settle(retry.ActionNakWithDelay, max(k.heldFor, time.Second), "held back: nothing sent")
}

// keepsNoFiles reports whether an outcome is final for good, so that the
// request's files in the object store can go: a success or a rejection.
// A failure that is dead-lettered (ambiguous, retries exhausted) may be
// replayed, which needs them; they expire with the bucket's max age.
func keepsNoFiles(res *messages.Result) bool {
	return res.Status == messages.StatusSucceeded || res.Status == messages.StatusRejected
}
