package filing

import (
	"fmt"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

type heldErr struct{ d time.Duration }

func (h heldErr) Error() string          { return "circuit open: " + retry.ErrHeld.Error() }
func (h heldErr) Unwrap() error          { return retry.ErrHeld }
func (h heldErr) HeldFor() time.Duration { return h.d }

// A call qualfile held back (breaker open, rate limit full) was never
// sent: the entry goes back to claimed, counting the hand-back, and the
// request waits in the broker for as long as the guard said.
func TestHeldCallIsHandedBackUncounted(t *testing.T) {
	k := testKnown(t)
	k.mem = recollection{nonce: "n1", fingerprint: "fp"} // not dispatched: held before sending
	k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Fingerprint: "fp", Revision: 2,
		Trail: []messages.AuditEvent{{Event: messages.EventReceived}}}
	k.emitted = 1
	k.held, k.heldFor = heldErr{3 * time.Second}, 3*time.Second

	s := decide(k)
	if s.kind != stepEmit {
		t.Fatalf("first step %s, want the deferred event out before the write", s.kind)
	}
	ev := k.pending[len(k.pending)-1]
	if ev.Event != messages.EventDeferred || ev.Class != string(retry.ClassHeld) {
		t.Errorf("event %+v, want deferred, class held", ev)
	}
	k.emitted = len(k.trail())
	s = decide(k)
	if s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Held != 1 || s.entry.Nonce != "" {
		t.Fatalf("step %s, entry %+v: want claimed, held 1", s.kind, s.entry)
	}
	e := s.entry
	e.Revision = 3
	k.entry, k.pending = &e, nil
	s = decide(k)
	if s.kind != stepSettle || s.action != retry.ActionNakWithDelay || s.delay != 3*time.Second {
		t.Fatalf("step %+v: want a nak after the guard's delay", s)
	}
	if n := len(k.trail()); n != 2 {
		t.Errorf("trail of %d events, want received and one deferred", n)
	}
}

// Deliveries handed back because a call was held do not count toward the
// dead-letter limit.
func TestHeldDeliveriesDoNotCount(t *testing.T) {
	for _, tc := range []struct {
		held     int
		wantDead bool
	}{{held: 0, wantDead: true}, {held: 4, wantDead: false}} {
		k := testKnown(t)
		k.lim.policy = retry.Policy{InitialInterval: time.Millisecond, MaxAttempts: 1, RedeliveryBase: time.Second, RedeliveryMax: time.Second}
		k.delivery = 5
		k.mem = recollection{nonce: "n1", dispatched: true, answered: true, fingerprint: "fp"}
		k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Fingerprint: "fp", Revision: 2, Held: tc.held,
			Trail: []messages.AuditEvent{{Event: messages.EventReceived}}}
		k.emitted = 1
		k.attempts, k.callStart = 1, t0
		k.lastErr = fmt.Errorf("SystemError: %w", retry.ErrTransient)
		k.lastClass = retry.ClassTransient
		decide(k)
		dead := k.mem.outcome != nil && k.mem.deadReason == "retries exhausted"
		if dead != tc.wantDead {
			t.Errorf("held %d of 5 deliveries: dead-lettered %v, want %v (outcome %+v)", tc.held, dead, tc.wantDead, k.mem.outcome)
		}
	}
}

// A held retry after real attempts counts as a delivery; a run of held
// deliveries is one event in the trail, not one per delivery.
func TestHeldAfterAttemptsCountsAndNotesOnce(t *testing.T) {
	k := testKnown(t)
	k.mem = recollection{nonce: "n1", fingerprint: "fp"}
	k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Fingerprint: "fp", Revision: 2,
		Trail: []messages.AuditEvent{{Event: messages.EventReceived}, {Event: messages.EventDeferred, Class: string(retry.ClassHeld)}}}
	k.emitted = 2
	k.attempts = 2 // this delivery's calls reached the vendor before the breaker opened
	k.held, k.heldFor = heldErr{time.Second}, time.Second
	s := decide(k)
	if s.kind != stepWrite || s.entry.Held != 0 {
		t.Fatalf("step %s, held %d: want a write that does not count the delivery as held", s.kind, s.entry.Held)
	}
	if n := len(s.entry.Trail); n != 2 {
		t.Errorf("trail of %d events, want the earlier held event to stand for this one too", n)
	}
}

// A file store that cannot be read hands the request back with its entry
// "claimed": nothing was sent, so no replica may take it for a lost call.
func TestUnreadableFileStoreHandsBackClaimed(t *testing.T) {
	k := testKnown(t)
	k.lim.policy = retry.Policy{InitialInterval: time.Millisecond, RedeliveryBase: time.Second, RedeliveryMax: time.Second}
	k.mem = recollection{nonce: "n1", fingerprint: "fp"}
	k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Fingerprint: "fp", Revision: 2,
		Trail: []messages.AuditEvent{{Event: messages.EventReceived}}}
	k.emitted = 1
	k.failed, k.failures, k.troubleSince = stepFiles, 3, t0.Add(-time.Minute)
	k.callDue = true // the fetch came before a call that was due
	s := decide(k)
	if s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Nonce != "" {
		t.Fatalf("step %s, entry %+v: want the entry back to claimed", s.kind, s.entry)
	}
	e := s.entry
	e.Revision = 3
	k.entry, k.pending = &e, nil
	s = decide(k)
	if s.kind != stepSettle || s.action != retry.ActionNakWithDelay {
		t.Fatalf("after the write: step %s, want a nak (no call with the entry claimed)", s.kind)
	}
}
