package filing

import (
	"fmt"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The decisions for what is answered without a call of its own (part of
// the decision core, without I/O): another replica's outcome that stands,
// a rejected or reused request, an undecodable message, a panic.

// conflict: another replica recorded a different definite outcome (it
// took this one's entry for a dead one's). Its outcome stands and is
// published; ours goes into a conflict event for the operator.
func (k *known) conflict() step {
	if !k.eventDone {
		ours := k.mem.outcome
		ev := messages.AuditEvent{Event: messages.EventConflict, Status: ours.Status, Attempt: ours.Attempts, UpstreamRequestID: ours.UpstreamRequestID,
			Message: "this replica's outcome differs from the one recorded by another replica (" + string(k.entry.Result.Status) + "); the recorded one stands"}
		if ours.Error != nil {
			ev.Class, ev.Code = ours.Error.Class, ours.Error.Code
		}
		return step{kind: stepEvent, event: k.event(ev)}
	}
	// Our attempts happened and stay in the trail; our outcome did not
	// become the record.
	k.dropOutcome()
	k.yielded = true
	return decide(k)
}

// rejected answers a request that failed validation. A rejection is
// decided by the message alone: every delivery of it gets the same
// verdict, stored once (keyed by the stream timestamp).
func (k *known) rejected() step {
	res := k.rejection("InvalidRequest", "the request breaks the rules listed in fields")
	if ve := asValidation(k.invalid); ve != nil {
		res.Error.Fields = boundFields(ve.Fields)
	}
	return k.direct(res, messages.EventRejected)
}

// reused answers a request whose id was first used for another request.
func (k *known) reused() step {
	first := k.entry.API
	return k.direct(k.rejection("IdReused", fmt.Sprintf(
		"id %q was first used for another request (%s, other account or payload); give each request its own id", k.req.ID, first)),
		messages.EventRejected)
}

// direct publishes a result decided by the message alone, then terminates.
func (k *known) direct(res *messages.Result, event string) step {
	if !k.resultDone {
		return step{kind: stepResult, result: res}
	}
	if !k.eventDone {
		ev := messages.AuditEvent{Event: event, Status: res.Status, Time: res.CompletedAt, Class: res.Error.Class, Code: res.Error.Code, Message: res.Error.Message}
		return step{kind: stepEvent, event: k.event(ev)}
	}
	return k.settle(retry.ActionTerm, 0, event)
}

// undecodable dead-letters a message that is not a JSON object at all.
func (k *known) undecodable() step {
	if !k.deadDone {
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: bound(k.parseErr.Error(), 200), class: messages.ClassInvalid, key: "seq:" + fmt.Sprint(k.seq)}}
	}
	if !k.eventDone {
		return step{kind: stepEvent, event: k.event(messages.AuditEvent{Event: messages.EventUndecodable, Time: k.receivedAt, Message: bound(k.parseErr.Error(), 200)})}
	}
	return k.settle(retry.ActionDeadLetter, 0, "undecodable")
}

// afterPanic dead-letters a message whose handling panicked (a bug), with
// a failed result when it was a request, and terminates it. A call may
// have reached the vendor: then the result is ambiguous.
func (k *known) afterPanic() step {
	reason := "internal error: " + k.panicked
	class := messages.ClassPermanent
	if k.mem.dispatched && !k.mem.answered {
		class = messages.ClassAmbiguous
	}
	if k.panics == 1 && k.req != nil && k.fingerprint != "" && k.entry != nil && !k.missing {
		// A request with a ledger entry: its outcome is recorded and
		// published like any other (a second panic takes the way below).
		k.panicked = ""
		switch {
		case k.recorded:
			return k.finish(k.mem.outcome, k.mem.deadReason)
		case k.mem.outcome != nil && !k.mem.derived:
			return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(k.delivery, false), "internal error with an outcome held")
		}
		k.dropOutcome()
		res := k.result(messages.StatusFailed, &messages.ResultError{Code: "InternalError", Class: class, Message: reason})
		event := messages.EventFailed
		if class == messages.ClassAmbiguous {
			event = messages.EventAmbiguous
		}
		return k.decided(res, event, reason)
	}
	switch {
	case !k.deadDone:
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: reason, class: class, key: "seq:" + fmt.Sprint(k.seq)}}
	case k.req != nil && k.req.ID != "" && !k.resultDone:
		res := k.rejection("InternalError", reason)
		res.Status, res.Error.Class, res.Error.Fields = messages.StatusFailed, class, nil
		return step{kind: stepResult, result: res}
	case !k.eventDone:
		return step{kind: stepEvent, event: k.event(messages.AuditEvent{Event: messages.EventDeadLetter, Time: k.receivedAt, Class: class, Message: reason})}
	}
	return k.settle(retry.ActionDeadLetter, 0, "panic")
}
