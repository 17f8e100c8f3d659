package filing

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// The entry states and the ledger moves (part of the decision core,
// without I/O): an entry is claimed, moves to "calling" before each call
// and back to "claimed" when the request is handed back, and ends "done"
// with its outcome.

// claim creates the request's entry "claimed", or reads the one there
// is. The move to "calling" comes once its received event is stored,
// right before the call: an entry "calling" is taken for a call in
// flight, so a replica that stops (or is cut off from the ledger) while
// it stores that event leaves no call for lost.
func (d *delivery) claim() step {
	return step{kind: stepClaim, entry: d.newEntry()}
}

// calling decides about an entry found "calling".
func (d *delivery) calling() step {
	e := d.ledger.entry
	if e.Nonce != "" && e.Nonce == d.mem.nonce && e.Owner == d.rules.owner {
		// This replica wrote it and knows what became of it.
		if !d.mem.dispatched || d.mem.answered || d.msg.req.API.Resendable() {
			return d.adopt()
		}
		return d.lost("this replica's call was cut off mid-call (by a shutdown, or because its hold on the ledger entry lapsed); the vendor may have filed it")
	}
	if s, live := d.watch(); live {
		return s // another replica holds it (lease.go)
	}
	if !d.msg.req.API.Resendable() {
		return d.lost("a previous delivery was calling the vendor when it stopped; the vendor may have filed it")
	}
	return d.toCalling(nil) // a read may be sent again
}

// done decides about an entry found "done".
func (d *delivery) done() step {
	e := d.ledger.entry
	if isAmbiguous(e.Result) && e.Nonce != "" && e.Nonce == d.mem.nonce && (!d.mem.dispatched || d.mem.answered) {
		// Recorded as ambiguous by another replica, but this one knows the
		// call under that nonce was never sent (or got a definite "no"):
		// file it now, once; its outcome settles the ambiguous one.
		return d.toCalling(e.Result)
	}
	if e.Result == nil {
		return d.settle(settleDoneWithoutResult, 0)
	}
	if e.Seq != d.msg.seq {
		// A copy of a request whose outcome is recorded: answer it.
		if s, ok := d.besideFirst(); ok {
			return s
		}
		if !d.out.eventDone {
			return step{kind: stepEvent, event: d.event(messages.AuditEvent{Event: messages.EventDuplicate,
				Status: e.Result.Status, Message: "outcome already recorded; stored result sent again"})}
		}
		if !d.out.resultDone {
			return step{kind: stepResult, result: e.Result}
		}
		return d.settleFor(e.Result, true)
	}
	// A redelivery of the message that recorded it: finish what it began.
	return d.finish(e.Result, deadLetterOf(e.Result).reason)
}

// adopt goes on calling under the nonce this replica wrote.
func (d *delivery) adopt() step {
	if d.stopping {
		d.call.deferred = true
		return d.deferral()
	}
	d.call.due = true
	return d.callStep()
}

// toCalling records that a call may be in flight from here on. settles is
// the ambiguous outcome the call will settle, if any.
func (d *delivery) toCalling(settles *messages.Result) step {
	if d.stopping {
		return d.settle(settleShutdown, d.rules.policy.RedeliveryDelay(1, false))
	}
	if d.mem.nonce == "" || d.mem.dispatched {
		// A new nonce; one that was written (perhaps) but never called
		// under is reused, so that a write that timed out but landed is
		// recognised as this replica's own.
		d.mem = remembered{nonce: d.newNonce(), fingerprint: d.msg.fingerprint}
	}
	e := *d.ledger.entry
	if settles != nil {
		e.Supersedes, d.out.settling = settles.CompletedAt, true
	}
	if d.call.refiling {
		e.Refiled++
	}
	if d.call.baselineDone && !e.BaselineKnown {
		e.Baseline, e.BaselineKnown = d.call.baseline, d.call.baselineKnown
	}
	e.State, e.Owner, e.Nonce, e.UpdatedAt, e.Result, e.Seq = ledger.StateCalling, d.rules.owner, d.mem.nonce, d.now, nil, d.msg.seq
	return d.write(e)
}

// deferral hands the request back to the broker to wait there, not in
// memory. The last answer was a definite failure (or nothing was sent), so
// the entry goes back to "claimed" and the next delivery may call again.
func (d *delivery) deferral() step {
	e := d.ledger.entry
	if e.State == ledger.StateDone && isAmbiguous(e.Result) && e.Nonce == d.mem.nonce && !d.stopping {
		// Another replica took our call for lost meanwhile; it was a
		// definite "no": file it now, and settle the ambiguous record.
		d.call.deferred, d.call.attempts = false, 0
		return d.toCalling(e.Result)
	}
	if e.State == ledger.StateCalling && e.Nonce == d.mem.nonce {
		next := *e
		next.State, next.Nonce, next.UpdatedAt = ledger.StateClaimed, "", d.now
		return d.write(next)
	}
	if d.eventsDue() {
		return d.recordEvents() // the deferral's event, recorded with the move back
	}
	if d.stopping || d.call.deferDelay == 0 {
		return d.settle(settleShutdown, d.rules.policy.RedeliveryDelay(1, false))
	}
	return d.settle(d.call.deferAs, d.call.deferDelay)
}

// record writes the outcome in hand to the ledger, over a "done" entry
// only when it settles the ambiguous outcome recorded for the same call.
func (d *delivery) record() step {
	e := d.ledger.entry
	if !d.ledger.missing && e.State == ledger.StateDone && e.Result != nil {
		switch {
		case isAmbiguous(d.mem.outcome) && isAmbiguous(e.Result), sameVerdict(d.mem.outcome, e.Result):
			return d.letOtherStand() // nothing new is known: the stored verdict stands
		case !isAmbiguous(e.Result) || e.Nonce != d.mem.nonce:
			return d.conflict()
		}
		d.out.settling = true // ours settles the ambiguous outcome recorded for the same call
	}
	return d.writeDone()
}

// writeDone stores the outcome in hand.
func (d *delivery) writeDone() step {
	// The done entry keeps the nonce of the call its outcome belongs to.
	e := ledger.Entry{Nonce: d.mem.nonce}
	if !d.ledger.missing {
		e = *d.ledger.entry
	}
	// The new outcome replaces an earlier one: an ambiguous outcome this
	// replica settles, or the outcome an operator's replay set aside.
	at := e.Supersedes
	if e.State == ledger.StateDone && e.Result != nil {
		at = e.Result.CompletedAt
	}
	if res := *d.mem.outcome; !at.IsZero() && res.Supersedes.IsZero() {
		// A result that supersedes another is also the later one, so that
		// "the latest completed_at" and "the one not superseded" agree.
		res.Supersedes, res.CompletedAt = at, latest(res.CompletedAt, d.now, at.Add(time.Nanosecond))
		d.mem.outcome = &res
		for i := range d.out.pending {
			if ev := &d.out.pending[i]; isOutcomeEvent(ev.Event) {
				ev.Message = strings.TrimPrefix(ev.Message+"; ", "; ") + "supersedes the outcome recorded at " + at.Format(time.RFC3339Nano)
				if d.out.settling {
					ev.Event = messages.EventSettled
				}
			}
		}
	}
	e.Supersedes = time.Time{}
	e.RequestID, e.Tenant, e.API, e.Fingerprint = d.msg.req.ID, d.msg.tenant, d.msg.req.API, d.msg.fingerprint
	e.State, e.Owner, e.UpdatedAt, e.Seq = ledger.StateDone, d.rules.owner, d.now, d.msg.seq
	e.Result, e.Attempts = d.mem.outcome, d.mem.outcome.Attempts
	return d.write(e)
}

// write stores e, with this delivery's new events in its trail: an event
// goes out only once the trail holds it (eventsDue).
func (d *delivery) write(e ledger.Entry) step {
	e.Trail = d.trail()
	e.Emitted = d.out.emitted
	s := step{kind: stepWrite, entry: e}
	if !d.ledger.missing && d.ledger.entry.Revision != 0 {
		s.prev = d.ledger.entry
	}
	return s
}

// newEntry is the ledger entry of a request seen for the first time.
func (d *delivery) newEntry() ledger.Entry {
	received := d.event(messages.AuditEvent{Event: messages.EventReceived, Seq: 1})
	return ledger.Entry{
		RequestID: d.msg.req.ID, Tenant: d.msg.tenant, API: d.msg.req.API, Owner: d.rules.owner, Fingerprint: d.msg.fingerprint,
		Trail: []messages.AuditEvent{received},
	}
}

// newNonce names one move to "calling": unique per replica, message,
// delivery and move.
func (d *delivery) newNonce() string {
	attempts := 0
	if d.ledger.entry != nil {
		attempts = d.ledger.entry.Attempts
	}
	return d.rules.owner + "/" + strconv.FormatUint(d.msg.seq, 10) + "/" + strconv.Itoa(d.msg.deliveries) + "/" + strconv.Itoa(attempts) + "/" + stamp(d.now)
}

// eventsOut is how many of an entry's trail events are known to be out.
// The writer of a done entry publishes the rest of its trail before it
// settles the message, so only a redelivery of that very message (its
// stream sequence) publishes them again; for everyone else they are out.
func eventsOut(e ledger.Entry, seq uint64) int {
	if e.State == ledger.StateDone && e.Seq != seq {
		return len(e.Trail)
	}
	return e.Emitted
}

// counted is the deliveries that count toward the dead-letter limit: not
// those handed back because qualfile held the call back.
func (d *delivery) counted() int {
	if d.ledger.entry == nil {
		return d.msg.deliveries
	}
	return max(1, d.msg.deliveries-d.ledger.entry.Held)
}

func stamp(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func latest(ts ...time.Time) time.Time {
	var t time.Time
	for _, u := range ts {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// sameVerdict reports whether two outcomes say the same: both succeeded
// (a create with the same record: two creates that filed two records are
// a conflict), or both failed or were rejected with the same class and
// code. Another replica's outcome that says what ours says is no conflict.
func sameVerdict(a, b *messages.Result) bool {
	switch {
	case a.Status != b.Status || (a.Error == nil) != (b.Error == nil):
		return false
	case a.Error != nil:
		return a.Error.Class == b.Error.Class && a.Error.Code == b.Error.Code
	}
	return a.API.Resendable() || bytes.Equal(a.Result, b.Result) || a.UpstreamRequestID != "" && a.UpstreamRequestID == b.UpstreamRequestID
}
