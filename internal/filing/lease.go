package filing

import (
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
)

// The in-flight lease (part of the decision core, without I/O). No rule
// compares a time one process wrote with another process's clock:
//
//   - the replica that holds an entry "calling" renews it (a ledger write,
//     which changes its revision) every quarter of the lease while it works;
//   - another replica takes the holder for dead only once it has itself
//     watched the entry keep one revision for the whole lease, on its own
//     monotonic clock (delivery.clock);
//   - the holder starts or goes on with a step that may reach the vendor
//     only while its last renewal was issued less than two thirds of the
//     lease ago (the fence). A watcher began watching after that renewal
//     landed, so it cannot take over before the holder stops, as long as
//     the two clocks' rates differ by less than a third.

// leaseState is what this delivery knows of the lease on its entry.
type leaseState struct {
	watching     bool          // another replica's "calling" entry is watched
	tookOver     bool          // its holder was taken for dead at watchedRev
	watchedRev   uint64        // at this revision
	watchedSince time.Duration // since then, unchanged (delivery.clock)
	asked        bool          // a copy asked whether the holder's message is still there
	holderGone   bool          // and it is not
	renewed      bool          // this delivery wrote the entry it holds
	renewedAt    time.Duration // when it issued that write (delivery.clock)
}

func (l limits) renewEvery() time.Duration { return l.lease / 4 }
func (l limits) fence() time.Duration      { return l.lease * 2 / 3 }

// holds reports whether this delivery holds the entry "calling": under the
// nonce of its own call, or of a lost call it reconciles, with no outcome
// in hand yet, and written by this replica (or, before its first renewal,
// the very revision whose holder it took for dead).
func (d *delivery) holds() bool {
	e := d.ledger.entry
	return e != nil && !d.ledger.missing && e.Revision != 0 && e.State == ledger.StateCalling && d.mem.outcome == nil &&
		(e.Nonce == d.mem.nonce || d.recon.active && e.Nonce == d.recon.nonce) && d.ours(e)
}

// ours reports whether this replica wrote e, or took e's holder for dead
// at e's very revision.
func (d *delivery) ours(e *ledger.Entry) bool {
	return e.Owner == d.rules.owner || d.lease.tookOver && e.Revision == d.lease.watchedRev
}

// watch decides about another replica's "calling" entry: it is watched,
// the message kept in hand, until it changes (the holder is alive: watched
// again from there) or it has kept one revision for the lease (dead: ok
// false).
//
// A copy of the request (another message than the one whose delivery
// holds the entry, which the entry names) takes over only once that
// message is gone from the request stream as well. While it is there, its
// holder may be alive, cut off from the ledger with the vendor's answer
// in hand; and if it died, the broker delivers that message again, and
// that delivery takes over. So the copy is handed back for a lease, which
// frees the id for that delivery on this replica too.
func (d *delivery) watch() (s step, live bool) {
	e := d.ledger.entry
	if !d.lease.watching || d.lease.watchedRev != e.Revision {
		d.lease.watching, d.lease.watchedRev, d.lease.watchedSince = true, e.Revision, d.clock
		d.lease.asked, d.lease.holderGone = false, false
	}
	watched, lease := d.clock-d.lease.watchedSince, d.rules.lease
	copyOf := e.Seq != 0 && e.Seq != d.msg.seq
	switch {
	case watched < lease && d.stopping:
		return d.settle(settleInFlightElsewhere, lease-watched), true
	case watched < lease:
		return step{kind: stepWatch, delay: min(lease-watched, d.rules.renewEvery())}, true
	case copyOf && !d.lease.asked:
		d.lease.asked = true
		return step{kind: stepHolder, seq: e.Seq}, true
	case copyOf && !d.lease.holderGone:
		return d.settle(settleInFlightElsewhere, lease), true
	}
	d.lease.tookOver = true
	return step{}, false
}

// renewalDue reports whether the entry held must be renewed before a step
// that lasts: the runner renews it during the step only from a renewal
// this fresh.
func (d *delivery) renewalDue() bool {
	return d.holds() && !d.stopping && (!d.lease.renewed || d.clock-d.lease.renewedAt >= d.rules.renewEvery())
}

// renew writes the entry held again, unchanged but for its owner and time:
// a new revision, which tells a watcher that its holder is alive.
func (d *delivery) renew() step {
	e := *d.ledger.entry
	e.Owner, e.UpdatedAt, e.Seq = d.rules.owner, d.now, d.msg.seq
	return d.write(e)
}

// withHold gives a step that lasts (a call, a read of the vendor's
// records or of the files, a sleep) the hold the runner keeps on the entry
// while it lasts. A call without one is a bug: it is never made.
func (d *delivery) withHold(s step) step {
	switch s.kind {
	case stepCall, stepSleep, stepReconcile, stepFiles:
	default:
		return s
	}
	if d.holds() && d.lease.renewed {
		s.hold = &holding{entry: *d.ledger.entry, renew: d.rules.renewEvery(), fence: d.rules.fence(),
			left: d.lease.renewedAt + d.rules.fence() - d.clock}
	} else if s.kind == stepCall {
		panic("filing: a call decided without a hold on its ledger entry")
	}
	return s
}

// noteWrite takes in a write of the entry this delivery issued at began:
// a renewal, when the entry is held.
func (d *delivery) noteWrite(began time.Duration) {
	if d.holds() {
		d.lease.renewed, d.lease.renewedAt = true, began
	}
}
