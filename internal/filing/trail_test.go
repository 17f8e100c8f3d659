package filing

import (
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// TestMemoryKeepsTheEventsOfAnOutcome: a replica that hands a message back
// holding an outcome the ledger lacks remembers the events that go with
// it, and the redelivery records them with the outcome: the trail is not
// short of the attempt and the outcome.
func TestMemoryKeepsTheEventsOfAnOutcome(t *testing.T) {
	d := newTest(t, vms)
	p := play(t, d, idTaken{}, fine, fine, called{out: dispatch.Outcome{Result: []byte(`{"QualificationNo":"Q1"}`)}})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateDone {
		t.Fatalf("steps %v: want the outcome's write", p.kinds())
	}
	p.then(shutdown{}, failed{op: stepWrite, err: noResponse}, fine, elapse(time.Hour), failed{op: stepWrite, err: noResponse})
	if s := p.last(); s.settle != settleBrokerTrouble {
		t.Fatalf("steps %v: want it handed back", p.kinds())
	}
	rec, keep := d.remember()
	if !keep || rec.outcome == nil {
		t.Fatalf("remembered %+v (keep %v): want the outcome", rec, keep)
	}
	again := newTest(t, vms)
	again.msg.deliveries = 2
	e := ledger.Entry{RequestID: "d-1", API: vms, State: ledger.StateCalling, Owner: "me", Nonce: rec.nonce, Fingerprint: again.msg.fingerprint, Revision: 2,
		Trail: received()}
	q := play(t, again, idTaken{mem: rec}, claimed{e})
	s := q.last()
	if s.kind != stepWrite || s.entry.State != ledger.StateDone {
		t.Fatalf("steps %v: want the outcome recorded", q.kinds())
	}
	var names []string
	for _, ev := range s.entry.Trail {
		names = append(names, ev.Event)
	}
	if len(names) != 3 || names[1] != messages.EventAttempt || names[2] != messages.EventSucceeded {
		t.Errorf("trail recorded %v, want received, attempt, succeeded", names)
	}
}

// TestEventsSayTheirPlace: each event of the trail carries its position,
// and its identity, which a copy of it keeps.
func TestEventsSayTheirPlace(t *testing.T) {
	p := play(t, newTest(t, vms), fine, fine, fine, fine, fine, fine)
	var seqs []int
	ids := map[string]bool{}
	for _, s := range p.steps {
		if s.kind != stepEmit {
			continue
		}
		for _, ev := range s.events {
			seqs = append(seqs, ev.Seq)
			if ev.ID == "" || ids[ev.ID] {
				t.Errorf("event %s: id %q missing or not unique", ev.Event, ev.ID)
			}
			ids[ev.ID] = true
		}
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Errorf("published events at positions %v, want 1, 2, 3", seqs)
	}
}

// TestEventIdentitiesDoNotCollide: two events of one kind and attempt in
// one delivery, and the events of two messages with one stream sequence
// (a requests stream recreated), have identities of their own.
func TestEventIdentitiesDoNotCollide(t *testing.T) {
	d := newTest(t, vms)
	first := d.event(messages.AuditEvent{Event: messages.EventReconciling, Attempt: 1})
	d.out.pending = append(d.out.pending, first)
	if again := d.event(messages.AuditEvent{Event: messages.EventReconciling, Attempt: 1}); again.ID == first.ID {
		t.Errorf("a second reconciling event of attempt 1 has the first one's identity %s", first.ID)
	}
	other := newTest(t, vms) // the same stream sequence, 7
	other.msg.receivedAt = other.msg.receivedAt.Add(time.Hour)
	if ev := other.event(messages.AuditEvent{Event: messages.EventReconciling, Attempt: 1}); ev.ID == first.ID {
		t.Errorf("another message with the same stream sequence gave the identity %s", first.ID)
	}
}
