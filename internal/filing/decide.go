package filing

import (
	"fmt"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// This file is the decision core of the pipeline: decide is a deterministic
// function from what is known about one delivery (state.go) to the next
// step (its clock is known.now, its dice the retry policy's jitter). It
// does no I/O; it notes its own decisions in
// known (an outcome taken in hand, a nonce chosen), as a state machine
// does. The runner (run.go) performs each step, writes the answer into
// known and asks again, until a step settles the delivery. Every ack
// decision, ledger transition and dead-letter rule is read here and in
// the core's three other files, without I/O like this one: reconcile.go
// (a lost create read back from the vendor), hold.go (a call that is due:
// its files, a call held back) and answers.go (what is answered without a
// call of its own).

// decide returns the next step.
func decide(k *known) step {
	if k.failed != 0 {
		return k.trouble()
	}
	switch {
	case k.panicked != "":
		return k.afterPanic()
	case k.parseErr != nil:
		return k.undecodable()
	case k.invalid != nil:
		return k.rejected()
	case k.busy && k.stopping:
		return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(1, false), "shutdown")
	case k.busy:
		return step{kind: stepWaitLocal}
	case k.entry == nil:
		return k.claim()
	case k.stale:
		if k.mem.derived {
			k.dropOutcome() // a verdict drawn from an entry that has since changed
		}
		if k.conflicts > 3 {
			k.conflicts = 0 // a follower behind the leader: give it a moment
			return step{kind: stepSleep, delay: 50 * time.Millisecond}
		}
		return step{kind: stepRead}
	case k.missing:
		if k.mem.outcome != nil {
			return k.writeDone() // the entry vanished; the outcome is known
		}
		return k.claim()
	case k.entry.Fingerprint != "" && k.entry.Fingerprint != k.fingerprint:
		return k.reused()
	}
	if k.yielded {
		return k.finish(k.entry.Result, deadReasonOf(k.entry.Result))
	}
	if k.mem.outcome != nil && !k.recorded {
		return k.record()
	}
	if k.recorded {
		return k.finish(k.mem.outcome, k.mem.deadReason)
	}
	if k.recon.active {
		if e := k.entry; e.State == ledger.StateCalling && e.Nonce == k.recon.nonce {
			return k.reconcile()
		}
		// The entry moved on: this replica filed it again, or another
		// replica took it over or recorded it.
		k.recon.active = false
	}
	if k.held != nil {
		return k.holdBack()
	}
	if k.callDue && k.stopping {
		k.callDue, k.deferred = false, true // the grace period is over: send nothing more
	}
	if k.callDue {
		return k.callStep()
	}
	if k.attempts > 0 || k.deferred {
		return k.afterCall()
	}
	switch e := k.entry; e.State {
	case ledger.StateClaimed:
		if k.baselineFirst() && !e.BaselineKnown && !k.baselineDone && !k.stopping {
			// Nothing of ours can be at the vendor now (a claimed entry
			// follows no call, or a definite "no"): list what is there.
			return step{kind: stepBaseline}
		}
		return k.toCalling(nil)
	case ledger.StateCalling:
		return k.calling()
	default:
		return k.done()
	}
}

// claim creates the request's entry, or reads the one there is. For a
// request this replica knows nothing of, a call is what follows, so the
// entry is created straight in "calling" under a new nonce: one ledger
// write where a claim and a move to "calling" were two. A crash between
// that write and the call is then taken for a call in flight, as a crash
// right after a move to "calling" always was. When this replica remembers
// something of the request (its entry exists, or existed), or once the
// grace period is over, the entry is created "claimed".
func (k *known) claim() step {
	e := k.newEntry()
	if !k.stopping && k.mem.nonce == "" && k.mem.outcome == nil && !k.baselineFirst() {
		k.mem = recollection{nonce: k.newNonce(), fingerprint: k.fingerprint}
		k.fresh = true
		e.State, e.Nonce = ledger.StateCalling, k.mem.nonce
	}
	return step{kind: stepClaim, entry: e}
}

// calling decides about an entry found "calling".
func (k *known) calling() step {
	e := k.entry
	if e.Nonce != "" && e.Nonce == k.mem.nonce {
		// This replica wrote it and knows what became of it.
		if !k.mem.dispatched || k.mem.answered || k.req.API.Resendable() {
			return k.adopt()
		}
		return k.lost("this replica was cut off mid-call by a shutdown; the vendor may have filed it")
	}
	age := k.now.Sub(e.UpdatedAt)
	if age < k.lim.lease && k.counted() < k.lim.hardLimit {
		// Another replica is calling right now; look again after its lease.
		return k.settle(retry.ActionNakWithDelay, max(k.lim.lease-age, time.Second), "in flight on another replica")
	}
	if !k.req.API.Resendable() {
		return k.lost("a previous delivery was calling the vendor when it stopped; the vendor may have filed it")
	}
	return k.toCalling(nil) // a read may be sent again
}

// done decides about an entry found "done".
func (k *known) done() step {
	e := k.entry
	if e.Result != nil && e.Result.Error != nil && e.Result.Error.Class == messages.ClassAmbiguous &&
		e.Nonce != "" && e.Nonce == k.mem.nonce && (!k.mem.dispatched || k.mem.answered) {
		// Recorded as ambiguous by another replica, but this one knows the
		// call under that nonce was never sent (or got a definite "no"):
		// file it now, once; its outcome settles the ambiguous one.
		return k.toCalling(e.Result)
	}
	if e.Result == nil {
		return k.settle(retry.ActionTerm, 0, "done without a stored result")
	}
	if e.Seq != k.seq {
		// A copy of a request whose outcome is recorded: answer it.
		if !k.eventDone {
			return step{kind: stepEvent, event: k.event(messages.AuditEvent{Event: messages.EventDuplicate,
				Status: e.Result.Status, Message: "outcome already recorded; stored result sent again"})}
		}
		if !k.resultDone {
			return step{kind: stepResult, result: e.Result}
		}
		return k.settleFor(e.Result, "duplicate")
	}
	// A redelivery of the message that recorded it: finish what it began.
	return k.finish(e.Result, deadReasonOf(e.Result))
}

// adopt goes on calling under the nonce this replica wrote.
func (k *known) adopt() step {
	if k.stopping {
		k.deferred = true
		return k.deferral()
	}
	k.callDue = true
	return k.callStep()
}

// toCalling records that a call may be in flight from here on. settles is
// the ambiguous outcome the call will settle, if any.
func (k *known) toCalling(settles *messages.Result) step {
	if k.stopping {
		return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(1, false), "shutdown")
	}
	if k.mem.nonce == "" || k.mem.dispatched {
		// A new nonce; one that was written (perhaps) but never called
		// under is reused, so that a write that timed out but landed is
		// recognised as this replica's own.
		k.mem = recollection{nonce: k.newNonce(), fingerprint: k.fingerprint}
	}
	e := *k.entry
	if settles != nil {
		e.Supersedes, k.settling = settles.CompletedAt, true
	}
	if k.refiling {
		e.Refiled++
	}
	if k.baselineDone && !e.BaselineKnown {
		e.Baseline, e.BaselineKnown = k.baseline, k.baselineKnown
	}
	e.State, e.Owner, e.Nonce, e.UpdatedAt, e.Result = ledger.StateCalling, k.lim.owner, k.mem.nonce, k.now, nil
	return k.write(e)
}

// afterCall decides what follows an upstream attempt.
func (k *known) afterCall() step {
	if k.deferred {
		return k.deferral()
	}
	if k.cutShort {
		// Shutdown cut the call short: it may have reached the vendor. The
		// entry stays "calling"; the next delivery resolves it.
		return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(1, false), "shutdown mid-call")
	}
	err, class := k.lastErr, k.lastClass
	switch class {
	case retry.ClassNone:
		res := k.result(messages.StatusSucceeded, nil)
		res.Result, res.UpstreamRequestID = k.lastOut.Result, k.lastOut.UpstreamRequestID
		if k.lim.redactResults && len(res.Result) > 0 {
			res.Result = messages.Redact(res.Result)
		}
		return k.decided(res, messages.EventSucceeded, "")
	case retry.ClassAmbiguous:
		if k.reconcilable() && k.entry.Nonce == k.mem.nonce {
			// (An entry under another nonce is another replica's call now.)
			_, msg, _ := describe(err)
			return k.startReconcile("the answer to the call was lost (" + bound(msg, 300) + ")")
		}
		return k.decided(k.result(messages.StatusFailed, k.resultError(class)), messages.EventAmbiguous, "ambiguous")
	case retry.ClassInvalid:
		return k.decided(k.result(messages.StatusRejected, k.resultError(class)), messages.EventRejected, "")
	case retry.ClassPermanent:
		return k.decided(k.result(messages.StatusFailed, k.resultError(class)), messages.EventFailed, "")
	}
	if wait, ok := k.lim.policy.Wait(k.attempts, class, k.now.Sub(k.callStart)); ok && !k.stopping {
		if k.emitted < len(k.trail()) && !k.emitFailed {
			return step{kind: stepEmit} // the attempt's event, before waiting
		}
		k.callDue = true
		return step{kind: stepSleep, delay: wait}
	}
	dec := k.lim.policy.Decide(err, k.counted(), k.lim.maxDeliver)
	if dec.Action == retry.ActionDeadLetter {
		return k.decided(k.result(messages.StatusFailed, k.resultError(class)), messages.EventFailed, "retries exhausted")
	}
	k.deferred, k.deferDelay, k.deferReason = true, dec.Delay, dec.Reason
	code, _, _ := describe(err)
	k.pending = append(k.pending, k.event(messages.AuditEvent{Event: messages.EventDeferred, Attempt: k.entry.Attempts,
		Class: string(class), Code: code, Message: fmt.Sprintf("redelivery in %s", dec.Delay.Round(time.Millisecond))}))
	return k.deferral()
}

// deferral hands the request back to the broker to wait there, not in
// memory. The last answer was a definite failure (or nothing was sent), so
// the entry goes back to "claimed" and the next delivery may call again.
func (k *known) deferral() step {
	if e := k.entry; e.State == ledger.StateDone && isAmbiguous(e.Result) && e.Nonce == k.mem.nonce && !k.stopping {
		// Another replica took our call for lost meanwhile; it was a
		// definite "no": file it now, and settle the ambiguous record.
		k.deferred, k.attempts = false, 0
		return k.toCalling(e.Result)
	}
	if k.entry.State == ledger.StateCalling && k.entry.Nonce == k.mem.nonce {
		e := *k.entry
		e.State, e.Nonce, e.UpdatedAt = ledger.StateClaimed, "", k.now
		return k.write(e)
	}
	if k.stopping || k.deferDelay == 0 {
		return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(1, false), "shutdown")
	}
	return k.settle(retry.ActionNakWithDelay, k.deferDelay, k.deferReason)
}

// decided takes a final outcome in hand: from here on it must not be lost.
func (k *known) decided(res *messages.Result, event, deadReason string) step {
	k.mem.outcome, k.mem.deadReason = res, deadReason
	k.pending = append(k.pending, k.outcomeEvents(res, event, deadReason)...)
	return k.record()
}

// ambiguous records that nobody knows whether the vendor filed it.
func (k *known) ambiguous(why string) step {
	rerr := &messages.ResultError{Code: "AmbiguousOutcome", Class: messages.ClassAmbiguous, Message: why +
		". Check with the vendor, then replay deliberately (publisher dead replay --force)"}
	step := k.decided(k.result(messages.StatusFailed, rerr), messages.EventAmbiguous, "ambiguous")
	k.mem.derived = true // drawn from the entry, not from the vendor
	return step
}

// dropOutcome forgets an outcome in hand and its events.
func (k *known) dropOutcome() {
	kept := k.pending[:0]
	for _, ev := range k.pending {
		if !isOutcomeEvent(ev.Event) && ev.Event != messages.EventDeadLetter {
			kept = append(kept, ev)
		}
	}
	k.pending, k.mem.outcome, k.mem.deadReason, k.mem.derived = kept, nil, "", false
}

// record writes the outcome in hand to the ledger.
func (k *known) record() step {
	e := k.entry
	if !k.missing && e.State == ledger.StateDone && e.Result != nil {
		switch {
		case e.Result.CompletedAt.Equal(k.mem.outcome.CompletedAt):
			k.recorded = true // an earlier write of ours landed
			return decide(k)
		case isAmbiguous(k.mem.outcome) && isAmbiguous(e.Result):
			// Nothing new is known: the stored verdict stands.
			k.dropOutcome()
			k.yielded = true
			return decide(k)
		case e.Result.Error == nil || e.Result.Error.Class != messages.ClassAmbiguous || e.Nonce != k.mem.nonce:
			return k.conflict()
		}
		// Ours settles the ambiguous outcome recorded for the same call.
		k.settling = true
	}
	return k.writeDone()
}

// writeDone stores the outcome in hand.
func (k *known) writeDone() step {
	// The done entry keeps the nonce of the call its outcome belongs to.
	e := ledger.Entry{Nonce: k.mem.nonce}
	if !k.missing {
		e = *k.entry
	}
	// The new outcome replaces an earlier one: an ambiguous outcome this
	// replica settles, or the outcome an operator's replay set aside.
	at := e.Supersedes
	if e.State == ledger.StateDone && e.Result != nil {
		at = e.Result.CompletedAt
	}
	if res := *k.mem.outcome; !at.IsZero() && res.Supersedes.IsZero() {
		// A result that supersedes another is also the later one, so that
		// "the latest completed_at" and "the one not superseded" agree.
		res.Supersedes, res.CompletedAt = at, latest(res.CompletedAt, k.now, at.Add(time.Nanosecond))
		k.mem.outcome = &res
		for i := range k.pending {
			if ev := &k.pending[i]; isOutcomeEvent(ev.Event) {
				ev.Message = strings.TrimPrefix(ev.Message+"; ", "; ") + "supersedes the outcome recorded at " + at.Format(time.RFC3339Nano)
				if k.settling {
					ev.Event = messages.EventSettled
				}
			}
		}
	}
	e.Supersedes = time.Time{}
	e.RequestID, e.API, e.Fingerprint = k.req.ID, k.req.API, k.fingerprint
	e.State, e.Owner, e.UpdatedAt, e.Seq = ledger.StateDone, k.lim.owner, k.now, k.seq
	e.Result, e.Attempts = k.mem.outcome, k.mem.outcome.Attempts
	return k.write(e)
}

// write stores e, with this delivery's new events in its trail.
func (k *known) write(e ledger.Entry) step {
	e.Trail = k.trail()
	e.Emitted = k.emitted
	if k.emitted < len(e.Trail) && e.State != ledger.StateDone && !k.emitFailed {
		// Events go out before the write that follows them, so that the
		// entry can say they did; a final outcome is recorded first.
		return step{kind: stepEmit}
	}
	return step{kind: stepWrite, entry: e}
}

// finish publishes a recorded outcome and settles.
func (k *known) finish(res *messages.Result, deadReason string) step {
	switch {
	case deadReason != "" && !k.deadDone:
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: deadReason, class: res.Error.Class, key: res.RequestID + ":" + stamp(res.CompletedAt)}}
	case k.emitted < len(k.trail()) || !k.resultDone:
		// The events and the result go out together.
		s := step{kind: stepEmit}
		if !k.resultDone {
			s.result = res
		}
		return s
	}
	if !k.filesRemoved && keepsNoFiles(res) && k.req != nil && k.req.HasFileRefs() {
		return step{kind: stepRemoveFiles}
	}
	return k.settleFor(res, string(res.Status))
}

// settleFor settles a delivery whose outcome is res.
func (k *known) settleFor(res *messages.Result, why string) step {
	switch {
	case deadReasonOf(res) != "":
		return k.settle(retry.ActionDeadLetter, 0, deadReasonOf(res))
	case res.Status == messages.StatusSucceeded:
		return k.settle(retry.ActionAck, 0, why)
	}
	return k.settle(retry.ActionTerm, 0, why)
}

// trouble decides after a failed broker step: try again in process while
// the budget lasts (longer while this replica holds knowledge the ledger
// lacks), else hand the message back. Events that could not go out before
// a write go out later (the entry says which are missing); only the last
// ones, after the outcome is recorded, hold the message.
func (k *known) trouble() step {
	failed := k.failed
	k.failed = 0
	if failed == stepEmit && !k.recorded && k.entry != nil && k.entry.State != ledger.StateDone {
		k.emitFailed = true
		return decide(k)
	}
	budget := k.lim.troubleBudget
	if k.keep() && failed != stepFiles {
		// (A file fetch sent nothing: it is not knowledge to keep trying
		// to record, and the entry's lease must not run out under it.)
		budget = k.lim.recordBudget
	}
	if !k.stopping && k.now.Sub(k.troubleSince) < budget {
		return step{kind: stepSleep, delay: min(50*time.Millisecond<<min(k.failures-1, 6), 2*time.Second)}
	}
	if failed == stepFiles {
		// Nothing was sent: the entry goes back to "claimed", so that no
		// replica takes it for a call in flight, and no call is due.
		k.callDue = false
		k.deferred, k.deferDelay, k.deferReason = true, k.lim.policy.RedeliveryDelay(k.delivery, false), "the file store could not be read"
		return k.deferral()
	}
	return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(k.delivery, false), failed.String()+" failed")
}

func latest(ts ...time.Time) time.Time {
	var t time.Time
	for _, u := range ts {
		if u.After(t) {
			t = u
		}
	}
	return t
}

func (k *known) settle(a retry.Action, delay time.Duration, reason string) step {
	return step{kind: stepSettle, action: a, delay: delay, reason: reason}
}
