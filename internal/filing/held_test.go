package filing

import (
	"bytes"
	"strings"
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

// callingN1 is an entry "calling" under nonce n1, this replica's, whose
// call was not sent yet.
func callingN1(trail ...messages.AuditEvent) []answer {
	e := ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "me", Nonce: "n1", Revision: 2, Trail: append(received(), trail...)}
	e.Emitted = len(e.Trail)
	return []answer{idTaken{mem: remembered{nonce: "n1"}}, claimed{e}, fine} // renewed: this delivery did not write it
}

// A call qualfile held back (breaker open, rate limit full) was never
// sent: the entry goes back to claimed, counting the hand-back, and the
// request waits in the broker for as long as the guard said.
func TestHeldCallIsHandedBackUncounted(t *testing.T) {
	p := play(t, newTest(t, vms), callingN1()...).then(held{heldErr{3 * time.Second}})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Held != 1 || s.entry.Nonce != "" {
		t.Fatalf("steps %v, entry %+v: want claimed, held 1", p.kinds(), s.entry)
	}
	if n := len(p.last().entry.Trail); n != 2 {
		t.Errorf("trail of %d events, want received and one deferred", n)
	}
	s := p.then(fine).last()
	if s.kind != stepEmit {
		t.Fatalf("steps %v, want the deferred event out once recorded", p.kinds())
	}
	if ev := s.events[len(s.events)-1]; ev.Event != messages.EventDeferred || ev.Class != string(retry.ClassHeld) {
		t.Errorf("event %+v, want deferred, class held", ev)
	}
	p.then(fine)
	if s := p.last(); s.settle != settleHeld || s.delay != 3*time.Second {
		t.Fatalf("steps %v, settle %v after %s: want a nak after the guard's delay", p.kinds(), s.settle, s.delay)
	}
}

// Deliveries handed back because a call was held do not count toward the
// dead-letter limit.
func TestHeldDeliveriesDoNotCount(t *testing.T) {
	for _, tc := range []struct {
		held     int
		wantDead bool
	}{{held: 0, wantDead: true}, {held: 4, wantDead: false}} {
		d := newTest(t, vms)
		d.rules.policy = retry.Policy{InitialInterval: time.Millisecond, MaxAttempts: 1, RedeliveryBase: time.Second, RedeliveryMax: time.Second}
		d.msg.deliveries = 5
		e := ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "me", Nonce: "n1", Revision: 2, Held: tc.held, Trail: received(), Emitted: 1}
		play(t, d, idTaken{mem: remembered{nonce: "n1"}}, claimed{e}, fine, called{err: transient})
		if dead := d.mem.outcome != nil && d.mem.deadReason == "retries exhausted"; dead != tc.wantDead {
			t.Errorf("held %d of 5 deliveries: dead-lettered %v, want %v (outcome %+v)", tc.held, dead, tc.wantDead, d.mem.outcome)
		}
	}
}

// A held retry after real attempts counts as a delivery.
func TestHeldAfterAttemptsCounts(t *testing.T) {
	p := play(t, newTest(t, vms), callingN1()...).then(called{err: transient}, fine, fine, fine)
	if p.last().kind != stepCall {
		t.Fatalf("steps %v: want a retry in process", p.kinds())
	}
	p.then(held{heldErr{time.Second}})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Held != 0 {
		t.Fatalf("steps %v, entry %+v: want a write that does not count the delivery as held", p.kinds(), s.entry)
	}
}

// A run of held deliveries is one event in the trail, not one per
// delivery.
func TestHeldDeliveriesNotedOnce(t *testing.T) {
	p := play(t, newTest(t, vms), callingN1(messages.AuditEvent{Event: messages.EventDeferred, Class: string(retry.ClassHeld)})...).
		then(held{heldErr{time.Second}})
	if s := p.last(); s.kind != stepWrite || s.entry.Held != 1 || len(s.entry.Trail) != 2 {
		t.Fatalf("steps %v, entry %+v: want the earlier held event to stand for this one too", p.kinds(), s.entry)
	}
}

// A file store that cannot be read hands the request back with its entry
// "claimed": nothing was sent, so no replica may take it for a lost call.
func TestUnreadableFileStoreHandsBackClaimed(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	d := newTest(t, messages.APISMSApplySignatureIdent, func(data []byte) []byte {
		i := bytes.Index(data, []byte(`"data:image`)) // the first file, held in the object store instead
		j := i + 1 + bytes.IndexByte(data[i+1:], '"')
		return append(append(append([]byte{}, data[:i]...), `{"$ref":"obj://FILING_FILES/`+sum+`","sha256":"`+sum+`","size":5}`...), data[j+1:]...)
	})
	d.rules.policy = retry.Policy{InitialInterval: time.Millisecond, RedeliveryBase: time.Second, RedeliveryMax: time.Second}
	p := play(t, d, callingN1()...)
	if p.last().kind != stepFiles {
		t.Fatalf("steps %v: want the files fetched before the call", p.kinds())
	}
	p.then(failed{op: stepFiles, err: transient}, fine, elapse(time.Minute), failed{op: stepFiles, err: transient})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Nonce != "" {
		t.Fatalf("steps %v, entry %+v: want the entry back to claimed", p.kinds(), s.entry)
	}
	p.then(fine)
	if s := p.last(); s.settle != settleFileStoreUnreadable {
		t.Fatalf("steps %v, settle %v: want a nak (no call with the entry claimed)", p.kinds(), s.settle)
	}
}
