package filing

import (
	"errors"
	"fmt"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The calls and their reconciliation (part of the decision core, without
// I/O): what comes before a call (the request's files, an SMS baseline),
// what follows its answer (an outcome, a retry, a hand-back), a call the
// guard held back, and a create whose answer was lost, settled by reading
// the vendor's records over a settling window (README, "Reconciliation").

// callStep is the upstream call that is due, once the request's files
// held in the object store are fetched and checked (a missing or
// mismatched one rejects the request: nothing is sent).
func (d *delivery) callStep() step {
	switch {
	case d.call.filesErr != nil:
		d.call.due = false
		res := d.result(messages.StatusRejected, &messages.ResultError{Code: "InvalidRequest", Class: messages.ClassInvalid,
			Message: "a file the request references in the object store cannot be used: see fields"})
		if ve := asValidation(d.call.filesErr); ve != nil {
			res.Error.Fields = boundFields(ve.Fields)
		}
		return d.decided(res, messages.EventRejected, "")
	case d.eventsDue():
		return d.recordEvents() // the trail so far (received, at first) is stored before the vendor is called
	case d.renewalDue():
		return d.renew()
	case !d.call.filesDone && len(d.msg.req.FileRefs()) > 0:
		return step{kind: stepFiles}
	}
	// From here on the call may reach the vendor.
	d.call.due = false
	if d.call.attempts == 0 {
		d.call.start = d.clock
	}
	d.mem.dispatched, d.mem.answered = true, false
	return step{kind: stepCall}
}

// afterCall decides what follows an upstream attempt.
func (d *delivery) afterCall() step {
	if d.call.deferred {
		return d.deferral()
	}
	if d.call.cutShort {
		// Shutdown cut the call short: it may have reached the vendor. The
		// entry stays "calling"; the next delivery resolves it.
		return d.settle(settleShutdownMidCall, d.rules.policy.RedeliveryDelay(1, false))
	}
	err, class := d.call.err, d.call.class
	switch class {
	case retry.ClassNone:
		res := d.result(messages.StatusSucceeded, nil)
		res.Result, res.UpstreamRequestID = d.call.out.Result, d.call.out.UpstreamRequestID
		if d.rules.redactResults && len(res.Result) > 0 {
			res.Result = messages.Redact(res.Result)
		}
		return d.decided(res, messages.EventSucceeded, "")
	case retry.ClassAmbiguous:
		if d.reconcilable() && d.ledger.entry.Nonce == d.mem.nonce {
			// (An entry under another nonce is another replica's call now.)
			_, msg, _ := describe(err)
			return d.startReconcile("the answer to the call was lost (" + messages.Truncate(msg, 300) + ")")
		}
		return d.decided(d.result(messages.StatusFailed, d.resultError(class)), messages.EventAmbiguous, settleAmbiguous.reason)
	case retry.ClassInvalid:
		return d.decided(d.result(messages.StatusRejected, d.resultError(class)), messages.EventRejected, "")
	case retry.ClassPermanent:
		return d.decided(d.result(messages.StatusFailed, d.resultError(class)), messages.EventFailed, "")
	}
	if wait, ok := d.rules.policy.Wait(d.call.attempts, class, d.clock-d.call.start); ok && !d.stopping {
		if d.eventsDue() {
			return d.recordEvents() // the attempt's event, before waiting
		}
		if d.renewalDue() {
			return d.renew()
		}
		d.call.due = true
		return step{kind: stepSleep, delay: wait}
	}
	dec := d.rules.policy.Decide(err, d.counted(), d.rules.maxDeliver)
	if dec.Action == retry.ActionDeadLetter {
		return d.decided(d.result(messages.StatusFailed, d.resultError(class)), messages.EventFailed, settleRetriesExhausted.reason)
	}
	d.call.deferred, d.call.deferDelay, d.call.deferAs = true, dec.Delay, settleRetryLater
	code, _, _ := describe(err)
	d.out.pending = append(d.out.pending, d.event(messages.AuditEvent{Event: messages.EventDeferred, Attempt: d.ledger.entry.Attempts,
		Class: string(class), Code: code, Message: fmt.Sprintf("redelivery in %s", dec.Delay.Round(time.Millisecond))}))
	return d.deferral()
}

// holdBack hands back a request whose call qualfile held back before
// sending it (the vendor's breaker is open, or its rate limit full): the
// entry goes back to "claimed" counting the hand-back, so that the
// delivery does not count toward the dead-letter limit.
func (d *delivery) holdBack() step {
	if e := d.ledger.entry; e.State == ledger.StateCalling && e.Nonce == d.mem.nonce {
		if !d.call.heldNoted {
			d.call.heldNoted = true
			// One event for a run of held deliveries, so that an outage of
			// hours does not grow the entry without bound.
			if trail := d.trail(); len(trail) == 0 || trail[len(trail)-1].Class != string(retry.ClassHeld) {
				_, msg, _ := describe(d.call.held)
				d.out.pending = append(d.out.pending, d.event(messages.AuditEvent{Event: messages.EventDeferred, Attempt: e.Attempts,
					Class: string(retry.ClassHeld), Code: "Held", Message: messages.Truncate(msg, 300)}))
			}
		}
		next := *e
		next.State, next.Nonce, next.UpdatedAt = ledger.StateClaimed, "", d.now
		if d.call.attempts == 0 {
			// Only a delivery that sent nothing goes uncounted: one whose
			// retry was held after real attempts counts as usual.
			next.Held++
		}
		return d.write(next)
	}
	if d.eventsDue() {
		return d.recordEvents() // the held event, recorded with the move back
	}
	return d.settle(settleHeld, max(heldDelay(d.call.held), time.Second))
}

// heldDelay is how long a held call's request should wait.
func heldDelay(err error) time.Duration {
	var h interface{ HeldFor() time.Duration }
	if errors.As(err, &h) {
		return h.HeldFor()
	}
	return time.Second
}

// reconcileRules say how a create whose answer was lost is settled by
// reading the vendor's records.
type reconcileRules struct {
	on            bool
	window        time.Duration // the settling window: reads are spread over it
	reads         int           // answered reads in the window, the last at its end
	keepAmbiguous bool          // absent after the window: ambiguous, for an operator (not filed again)
}

// slot is when read i (0-based) of a reconciliation that began at start
// is due: spread evenly, the last at the end of the window.
func (r reconcileRules) slot(start time.Duration, i int) time.Duration {
	if r.reads <= 1 {
		return start + r.window
	}
	return start + r.window*time.Duration(i)/time.Duration(r.reads-1)
}

// reconciliation is the progress of reading back a create whose answer
// was lost.
type reconciliation struct {
	active   bool
	why      string           // how the answer was lost
	nonce    string           // the nonce of the lost call; the entry must still name it
	start    time.Duration    // on delivery.clock, as next and lastRead
	next     time.Duration    // when the next read is due
	reads    int              // reads answered
	lastRead time.Duration    // when the last answered read was made
	finding  dispatch.Finding // its answer
	failures int              // reads failed since the last answered one
	failed   int              // reads failed in all
	lastErr  error
	gaveUp   bool // a read failed in a way that another cannot mend
	refile   bool // decided: file it again (the write may still be due)
}

// baselineFirst reports whether the request's calls must be preceded by a
// baseline: the vendor's records that match it, listed before its first
// call. Reconciliation tells this filing from an earlier identical one by
// what was listed before, never by comparing a record's creation time
// with a clock of ours. Such a request is claimed plainly, the baseline
// read, and then the move to "calling" records it.
func (d *delivery) baselineFirst() bool {
	return d.rules.reconcile.on && d.msg.req.API.Reconcilable()
}

// lost decides about a call that may have reached the vendor and whose
// answer nobody holds: read the vendor's records where they can tell,
// else leave it to an operator.
func (d *delivery) lost(why string) step {
	if d.reconcilable() {
		return d.startReconcile(why)
	}
	return d.ambiguous(why)
}

// reconcilable reports whether a lost call of this request can be
// settled by reading the vendor's records: the api has such a read, it is
// turned on, and the entry is "calling" (the call's outcome is recorded
// nowhere).
func (d *delivery) reconcilable() bool {
	return d.rules.reconcile.on && d.msg.req.API.Reconcilable() && d.ledger.entry != nil && d.ledger.entry.State == ledger.StateCalling
}

// startReconcile begins reading the vendor's records back.
func (d *delivery) startReconcile(why string) step {
	d.recon = reconciliation{active: true, why: why, nonce: d.ledger.entry.Nonce, start: d.clock, next: d.rules.reconcile.slot(d.clock, 0)}
	d.out.pending = append(d.out.pending, d.event(messages.AuditEvent{Event: messages.EventReconciling, Attempt: d.ledger.entry.Attempts,
		Message: why + fmt.Sprintf("; reading the vendor's records (%d reads over %s)", max(d.rules.reconcile.reads, 1), d.rules.reconcile.window)}))
	return d.reconcile()
}

// reconcile goes on reading the vendor's records until they tell (found,
// or more than one match), the reads are done (absent), or the window is
// over.
func (d *delivery) reconcile() step {
	r, rules := &d.recon, d.rules.reconcile
	switch {
	case r.refile:
		return d.refile()
	case d.stopping:
		return d.settle(settleShutdownReconciling, d.rules.policy.RedeliveryDelay(1, false))
	case r.gaveUp:
		return d.ambiguous(r.why + "; the vendor's records could not be read: " + messages.Truncate(errText(r.lastErr), 300))
	}
	if r.reads > 0 {
		cands, why := d.candidates()
		switch {
		case why != "":
			return d.ambiguous(r.why + "; " + why)
		case len(cands) == 1:
			res := d.result(messages.StatusSucceeded, nil)
			res.Result, res.UpstreamRequestID, res.Reconciled = cands[0].Outcome.Result, cands[0].Outcome.UpstreamRequestID, true
			if d.rules.redactResults && len(res.Result) > 0 {
				res.Result = messages.Redact(res.Result)
			}
			st := d.decided(res, messages.EventReconciled, "")
			d.noteOutcome(fmt.Sprintf("%s; the vendor's record was found by read %d", r.why, r.reads+r.failed))
			return st
		case len(cands) > 1:
			return d.ambiguous(fmt.Sprintf("%s; %d records at the vendor match it and cannot be told apart", r.why, len(cands)))
		}
	}
	end := rules.slot(r.start, max(rules.reads, 1)-1)
	if r.reads < max(rules.reads, 1) && r.next <= end {
		if d.renewalDue() {
			return d.renew()
		}
		if wait := r.next - d.clock; wait > 0 {
			return step{kind: stepSleep, delay: wait}
		}
		if d.eventsDue() {
			return d.recordEvents() // the reconciling event, before the reads
		}
		return step{kind: stepReconcile}
	}
	// The reads are done, or the window is over.
	if r.reads == 0 || r.lastRead-r.start < rules.window/2 {
		return d.ambiguous(fmt.Sprintf("%s; the vendor's records could not be read over %s (%d reads failed): %s", r.why, rules.window, r.failed, messages.Truncate(errText(r.lastErr), 300)))
	}
	switch {
	case rules.keepAmbiguous:
		return d.ambiguous(fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s, and reconcile.refile is off", r.why, r.reads, rules.window))
	case d.ledger.entry.Refiled > 0:
		return d.ambiguous(fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s, and it was filed again once already", r.why, r.reads, rules.window))
	}
	r.refile = true
	d.out.pending = append(d.out.pending, d.event(messages.AuditEvent{Event: messages.EventRefiled, Attempt: d.ledger.entry.Attempts,
		Message: fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s: filed again, once", r.why, r.reads, rules.window)}))
	return d.refile()
}

// noteRead takes in the answer to one read of the vendor's records.
func (d *delivery) noteRead(f dispatch.Finding, err error) {
	r := &d.recon
	if err != nil {
		r.failures++
		r.failed++
		r.lastErr = err
		class := retry.ClassOf(err)
		if class == retry.ClassHeld {
			// This replica held the read back (the rate limit): not an
			// answer, and not a failure of the vendor.
			r.next = d.clock + min(heldDelay(err), time.Second)
			return
		}
		if !class.Retryable() {
			r.gaveUp = true
			return
		}
		r.next = d.clock + d.rules.policy.Backoff(r.failures, class)
		return
	}
	r.reads++
	r.failures, r.lastRead, r.finding = 0, d.clock, f
	r.next = d.rules.reconcile.slot(r.start, r.reads)
}

// candidates are the records of the last read that may be this filing:
// those not listed before its first call. why says why the records cannot
// decide at all ("" when they can).
func (d *delivery) candidates() (cands []dispatch.Record, why string) {
	f := d.recon.finding
	if !d.ledger.entry.BaselineKnown {
		if len(f.Records) > 0 {
			return nil, fmt.Sprintf("%d matching records are listed, and which existed before this request's first call is not known", len(f.Records))
		}
		return nil, ""
	}
	earlier := map[string]bool{}
	for _, id := range d.ledger.entry.Baseline {
		earlier[id] = true
	}
	for _, rec := range f.Records {
		if !earlier[rec.ID] {
			cands = append(cands, rec)
		}
	}
	return cands, ""
}

// refile files the request again, once: a new move to "calling" that
// counts the refile in the entry.
func (d *delivery) refile() step {
	d.call.attempts, d.call.due, d.call.err, d.call.class, d.call.out = 0, false, nil, retry.ClassNone, dispatch.Outcome{}
	d.call.refiling = true
	s := d.toCalling(nil)
	d.call.refiling = false
	return s
}

func errText(err error) string {
	if err == nil {
		return "no answer"
	}
	return err.Error()
}
