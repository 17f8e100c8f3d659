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
	e := ledger.Entry{RequestID: "d-1", API: vms, State: ledger.StateCalling, Nonce: rec.nonce, Fingerprint: again.msg.fingerprint, Revision: 2,
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
