package filing

import (
	"math"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
)

// The decision core of the pipeline: decide is a deterministic function
// from what is known of one delivery (state.go) to the next step (its
// clock is delivery.now, its dice the retry policy's jitter). It does no
// I/O. The runner (run.go) performs each step and answers (steps.go);
// apply takes the answer in, and decide is asked again, until a step
// settles the delivery (settlement.go). The rules are read here and in
// three files by concept, none with I/O: entry.go (entry states and ledger
// moves), calls.go (calls and reconciliation), results.go (results and
// events).

// decide returns the next step.
func (d *delivery) decide() step { return d.withHold(d.next()) }

func (d *delivery) next() step {
	if d.trouble.failed != 0 {
		return d.afterBrokerFailure()
	}
	e := d.ledger.entry
	switch {
	case d.panicked != "":
		return d.afterPanic()
	case d.msg.undecodable != nil:
		return d.undecodable()
	case d.msg.invalid != nil:
		return d.rejected()
	case d.msg.notPermitted:
		return d.notPermitted()
	case d.idBusy:
		// The grace period ended while another handler of this replica held the id.
		return d.settle(settleShutdown, d.rules.policy.RedeliveryDelay(1, false))
	case !d.idTaken:
		return step{kind: stepTakeID}
	case e == nil:
		return d.claim()
	case d.ledger.stale:
		if d.mem.derived {
			d.dropOutcome() // a verdict drawn from an entry that has since changed
		}
		if d.ledger.conflicts > 3 {
			d.ledger.conflicts = 0 // a follower behind the leader: give it a moment
			return step{kind: stepSleep, delay: 50 * time.Millisecond}
		}
		return step{kind: stepRead}
	case d.ledger.missing:
		switch {
		case d.mem.outcome != nil:
			return d.writeDone() // the entry vanished; the outcome is known
		case d.mem.dispatched && !d.mem.answered && !d.msg.req.API.Resendable():
			return d.ambiguous("the ledger entry vanished while a call of this replica may have reached the vendor")
		}
		return d.claim()
	case e.Fingerprint != "" && e.Fingerprint != d.msg.fingerprint:
		if e.State == ledger.StateDone && filedNothing(e.Result) {
			return d.resubmitted()
		}
		return d.reused()
	}
	if d.call.cutOff {
		// A call cut off may have reached the vendor: what follows is
		// decided from the entry, as after a replica that stopped mid-call.
		d.call.cutOff, d.call.attempts, d.call.deferred = false, 0, false
	}
	if d.out.otherOutcomeStands {
		return d.letOtherStand()
	}
	if d.mem.outcome != nil && !d.ledger.recorded {
		return d.record()
	}
	if d.ledger.recorded {
		return d.finish(d.mem.outcome, d.mem.deadReason)
	}
	if (d.call.attempts > 0 || d.call.due) && e.State != ledger.StateClaimed && !d.holds() && !d.recon.active {
		// The entry is no longer this delivery's to call under (another
		// replica took it over, or recorded it): its calls are over, and
		// the entry decides what follows.
		d.call.attempts, d.call.due, d.call.deferred = 0, false, false
	}
	if d.recon.active {
		if e.State == ledger.StateCalling && e.Nonce == d.recon.nonce && d.ours(e) {
			return d.reconcile()
		}
		// The entry moved on: this replica filed it again, or another
		// replica took it over or recorded it.
		d.recon.active = false
	}
	if d.call.held != nil {
		return d.holdBack()
	}
	if d.call.due && d.stopping {
		d.call.due, d.call.deferred = false, true // the grace period is over: send nothing more
	}
	if d.call.due {
		return d.callStep()
	}
	if d.call.attempts > 0 || d.call.deferred {
		return d.afterCall()
	}
	switch e.State {
	case ledger.StateClaimed:
		if d.baselineFirst() && !e.BaselineKnown && !d.call.baselineDone && !d.stopping {
			// Nothing of ours can be at the vendor now (a claimed entry
			// follows no call, or a definite "no"): list what is there.
			return step{kind: stepBaseline}
		}
		if d.eventsDue() && !d.stopping {
			return d.recordEvents() // received is stored before the entry says a call may be in flight
		}
		return d.toCalling(nil)
	case ledger.StateCalling:
		return d.calling()
	}
	return d.done()
}

// afterBrokerFailure decides after a failed broker step: try again in
// process while the budget lasts (longer while this replica holds
// knowledge the ledger lacks), else hand the message back.
func (d *delivery) afterBrokerFailure() step {
	failed := d.trouble.failed
	d.trouble.failed = 0
	var budget time.Duration
	switch {
	case d.keep() && failed != stepFiles && !d.stopping:
		// What the ledger may lack (a vendor's answer; a "calling" nonce
		// never called under, or whose call was answered) is never handed
		// back for broker trouble: it is tried for as long as this replica
		// lives, the message in hand, so that no other replica takes the
		// call for lost. (A file fetch sent nothing: it is not knowledge
		// to keep trying to record.)
		budget = math.MaxInt64
	case d.keep() && failed != stepFiles:
		budget = d.rules.recordBudget // past the grace period, for as long as the record timeout
	case !d.stopping:
		budget = d.rules.troubleBudget
	}
	if d.clock-d.trouble.since < budget {
		return step{kind: stepSleep, delay: min(50*time.Millisecond<<min(d.trouble.failures-1, 6), 2*time.Second)}
	}
	if failed == stepFiles {
		// Nothing was sent: the entry goes back to "claimed", so that no
		// replica takes it for a call in flight, and no call is due.
		d.call.due = false
		d.call.deferred, d.call.deferDelay, d.call.deferAs = true, d.rules.policy.RedeliveryDelay(d.msg.deliveries, false), settleFileStoreUnreadable
		return d.deferral()
	}
	return d.settle(settleBrokerTrouble, d.rules.policy.RedeliveryDelay(d.msg.deliveries, false))
}
