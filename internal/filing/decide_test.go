package filing

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The decision core is a function of its answers, so its rules can be
// checked one by one without a broker: each case plays a sequence of
// answers, as the runner would give them, and looks at the step that
// follows.

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// newTest is delivery 1 (stream sequence 7) of request d-1 of api (the
// example request, as edits change it), as the runner reads it.
func newTest(t *testing.T, api messages.API, edits ...func([]byte) []byte) *delivery {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", string(api)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["id"] = json.RawMessage(`"d-1"`)
	data, _ = json.Marshal(m)
	for _, edit := range edits {
		data = edit(data)
	}
	rules := limits{maxDeliver: 5, lease: time.Minute, recordBudget: time.Minute, troubleBudget: time.Second, owner: "me"}
	d := newDelivery(rules, t0, data, "", api, &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: 7}, NumDelivered: 1, Timestamp: t0})
	if d.msg.invalid != nil || d.msg.undecodable != nil {
		t.Fatalf("the example of %s: %v %v", api, d.msg.invalid, d.msg.undecodable)
	}
	return d
}

const vms = messages.APIVMSAddQualification

// Markers in a script, not answers: what happens before the next answer.
type (
	elapse   time.Duration // the clock moves on
	shutdown struct{}      // the grace period ends
	routine  struct{}      // (fine) the step went as asked
)

// fine answers a step with its routine success: the entry claimed or
// written as asked, every event and the result published, the call
// succeeded, nothing found, slept.
var fine routine

// script is a delivery played through the core.
type script struct {
	t        *testing.T
	d        *delivery
	now      time.Time
	stopping bool
	steps    []step // every step decided; the last awaits an answer
}

// play runs the core as the runner does: it asks for a step, applies the
// next answer, asks again, until the answers run out. The clock moves on
// by what a step slept, and as elapse says.
func play(t *testing.T, d *delivery, answers ...answer) *script {
	t.Helper()
	p := &script{t: t, d: d, now: d.now, steps: []step{d.decide()}}
	return p.then(answers...)
}

// then plays more answers.
func (p *script) then(answers ...answer) *script {
	p.t.Helper()
	for _, a := range answers {
		switch m := a.(type) {
		case elapse:
			p.now = p.now.Add(time.Duration(m))
			continue
		case shutdown:
			p.stopping = true
			continue
		}
		s := p.last()
		switch s.kind {
		case stepSettle:
			p.t.Fatalf("answer %T after the delivery settled (steps %v)", a, p.kinds())
		case stepSleep, stepWatch:
			p.now = p.now.Add(s.delay)
		}
		if a == fine {
			a = p.routine(s)
		}
		p.d.apply(p.now, p.stopping, a)
		p.steps = append(p.steps, p.d.decide())
	}
	return p
}

func (p *script) routine(s step) answer {
	switch s.kind {
	case stepTakeID:
		return idTaken{}
	case stepClaim:
		e := s.entry
		if e.State != ledger.StateCalling {
			e.State = ledger.StateClaimed
		}
		e.UpdatedAt, e.Revision = p.now, 1
		return claimed{entry: e}
	case stepWrite:
		e := s.entry
		e.Revision = 1
		if s.prev != nil {
			e.Revision = s.prev.Revision + 1
		}
		return written{entry: e}
	case stepEmit:
		return published{events: len(s.events), result: s.result != nil}
	case stepEvent:
		return eventSent{}
	case stepResult:
		return resultSent{}
	case stepDeadLetter:
		return deadLettered{}
	case stepSleep:
		return slept{}
	case stepWatch:
		return found{entry: *p.d.ledger.entry}
	case stepCall:
		return called{out: dispatch.Outcome{Result: json.RawMessage(`{"QualificationNo":"Q1"}`)}}
	case stepReconcile:
		return recordsRead{}
	case stepBaseline:
		return baselineRead{}
	case stepFiles:
		return filesFetched{}
	case stepRemoveFiles:
		return filesRemoved{}
	}
	p.t.Fatalf("no routine answer to a step %s", s.kind)
	return nil
}

func (p *script) last() step { return p.steps[len(p.steps)-1] }

func (p *script) kinds() []stepKind {
	var ks []stepKind
	for _, s := range p.steps {
		ks = append(ks, s.kind)
	}
	return ks
}

func outcome(status messages.Status, class string, at time.Time) *messages.Result {
	r := &messages.Result{RequestID: "d-1", API: vms, Status: status, CompletedAt: at}
	if class != "" {
		r.Error = &messages.ResultError{Class: class, Code: "X"}
	}
	return r
}

func received() []messages.AuditEvent { return []messages.AuditEvent{{Event: messages.EventReceived}} }

var (
	transient  = fmt.Errorf("SystemError: %w", retry.ErrTransient)
	noResponse = fmt.Errorf("claiming: %w", nats.ErrNoResponders)
)

func TestDecide(t *testing.T) {
	mine := remembered{nonce: "mine"}
	sent := remembered{nonce: "mine", dispatched: true, answered: true}
	withOutcome := func(m remembered, res *messages.Result) remembered { m.outcome = res; return m }
	claimedBy := func(emitted int) ledger.Entry {
		return ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Trail: received(), Emitted: emitted, Revision: 1}
	}
	callingUnder := func(nonce string, age time.Duration) ledger.Entry {
		owner := "other"
		if nonce == "mine" {
			owner = "me" // this replica wrote it
		}
		return ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: owner, Nonce: nonce, UpdatedAt: t0.Add(-age), Revision: 3}
	}
	doneBy := func(nonce string, seq uint64, res *messages.Result) ledger.Entry {
		return ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: nonce, Seq: seq, Result: res, Revision: 5}
	}
	for _, tc := range []struct {
		name       string
		deliveries int
		answers    []answer
		want       stepKind
		check      func(t *testing.T, d *delivery, p *script)
	}{
		{"the id is taken in this replica's memory first", 0, nil, stepTakeID, nil},
		{"a new request is claimed plainly, with its received event", 0, []answer{idTaken{}}, stepClaim, func(t *testing.T, d *delivery, p *script) {
			e := p.last().entry
			if e.Fingerprint != d.msg.fingerprint || len(e.Trail) != 1 || e.Trail[0].Event != messages.EventReceived {
				t.Errorf("claim entry %+v", e)
			}
			if e.State == ledger.StateCalling || e.Nonce != "" || d.mem.nonce != "" {
				t.Errorf("claim entry %+v, memory %+v: want a plain claim, no nonce", e, d.mem)
			}
		}},
		{"a request this replica remembers is claimed, not called", 0, []answer{idTaken{mem: mine}}, stepClaim, func(t *testing.T, d *delivery, p *script) {
			if e := p.last().entry; e.State == ledger.StateCalling || e.Nonce != "" || d.mem.nonce != "mine" {
				t.Errorf("claim entry %+v, memory %+v: want a plain claim, the nonce kept", e, d.mem)
			}
		}},
		{"after the grace period a new request is claimed, not called", 0, []answer{shutdown{}, idTaken{}}, stepClaim, func(t *testing.T, d *delivery, p *script) {
			if e := p.last().entry; e.State == ledger.StateCalling || d.mem.nonce != "" {
				t.Errorf("claim entry %+v, memory %+v: want a plain claim", e, d.mem)
			}
		}},
		{"another handler of this replica holds the id past the grace period", 0, []answer{shutdown{}, idBusy{}}, stepSettle, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.settle != settleShutdown {
				t.Errorf("settle %v, want %v", s.settle, settleShutdown)
			}
		}},
		{"a calling write that may have landed is tried again under its nonce", 0, []answer{idTaken{mem: mine}, claimed{claimedBy(1)}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateCalling || e.Nonce != "mine" {
				t.Errorf("write %+v: want calling under the nonce remembered", e)
			}
		}},
		{"a claimed entry goes to calling under a new nonce", 0, []answer{idTaken{}, claimed{claimedBy(1)}}, stepWrite, func(t *testing.T, d *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateCalling || e.Nonce == "" || e.Nonce != d.mem.nonce || e.Owner != "me" {
				t.Errorf("write %+v, memory %+v", e, d.mem)
			}
		}},
		{"received goes out before the calling write", 0, []answer{idTaken{}, claimed{claimedBy(0)}}, stepEmit, nil},
		{"another replica's call is watched, the message in hand", 0, []answer{idTaken{}, claimed{callingUnder("theirs", 10*time.Second)}, fine, fine, fine}, stepWatch, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.delay != 15*time.Second {
				t.Errorf("watch %+v, want the entry read again a quarter of the lease on", s)
			}
		}},
		// Two copies past their limit taking a live holder's entry from each
		// other at once would call on, in turn, forever.
		{"past the delivery limit a live holder is watched all the same", 8, []answer{idTaken{}, claimed{callingUnder("theirs", 10*time.Second)}}, stepWatch, nil},
		{"an expired call of another replica is ambiguous for a create", 0, []answer{idTaken{}, claimed{callingUnder("theirs", 2*time.Minute)}, fine, fine, fine, fine}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateDone || e.Result.Error.Class != messages.ClassAmbiguous || e.Nonce != "theirs" {
				t.Errorf("write %+v", e)
			}
		}},
		{"a calling write of ours that landed is renewed and called under", 0, []answer{idTaken{mem: mine}, claimed{callingUnder("mine", 2*time.Minute)}, fine}, stepCall, nil},
		{"a copy of a recorded request is answered from the ledger", 0, []answer{idTaken{}, claimed{doneBy("", 3, outcome(messages.StatusSucceeded, "", t0))}}, stepEvent, func(t *testing.T, _ *delivery, p *script) {
			if ev := p.last().event; ev.Event != messages.EventDuplicate {
				t.Errorf("event %+v", ev)
			}
		}},
		{"a copy of a recorded success is acknowledged once its result is out", 0, []answer{idTaken{}, claimed{doneBy("", 3, outcome(messages.StatusSucceeded, "", t0))}, eventSent{}, resultSent{}}, stepSettle, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.settle != settleDuplicateOfSuccess || s.settle.action != retry.ActionAck || p.steps[len(p.steps)-2].kind != stepResult {
				t.Errorf("steps %v, settle %v: want the stored result, then an ack", p.kinds(), s.settle)
			}
		}},
		{"a reused id is rejected", 0, []answer{idTaken{}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Fingerprint: "other", Result: outcome(messages.StatusSucceeded, "", t0), Revision: 4}}}, stepResult, func(t *testing.T, _ *delivery, p *script) {
			if r := p.last().result; r.Status != messages.StatusRejected || r.Error.Code != "IdReused" {
				t.Errorf("result %+v", r)
			}
		}},
		{"an outcome held is recorded over an entry that vanished", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusSucceeded, "", t0))}, claimed{callingUnder("mine", 0)}, conflicted{}, notFound{}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.prev != nil || s.entry.State != ledger.StateDone || s.entry.Result.Status != messages.StatusSucceeded || s.entry.Nonce != "mine" {
				t.Errorf("write %+v over %+v: want the outcome created anew", s.entry, s.prev)
			}
		}},
		{"an outcome held settles another replica's ambiguous record of the same call", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusSucceeded, "", t0))}, claimed{doneBy("mine", 0, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0.Add(time.Second)))}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if r := p.last().entry.Result; r.Status != messages.StatusSucceeded || !r.Supersedes.Equal(t0.Add(time.Second)) || !r.CompletedAt.After(t0.Add(time.Second)) {
				t.Errorf("result %+v, want it to supersede the ambiguous one and be later", r)
			}
		}},
		{"a call known unsent is filed after another replica's ambiguous record", 0, []answer{idTaken{mem: mine}, claimed{doneBy("mine", 0, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0))}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateCalling || !e.Supersedes.Equal(t0) {
				t.Errorf("write %+v", e)
			}
		}},
		{"a call that was sent is not filed again after an ambiguous record", 0, []answer{idTaken{mem: remembered{nonce: "mine", dispatched: true}}, claimed{doneBy("mine", 7, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0))}}, stepDeadLetter, nil},
		{"another replica's different outcome stands and is published", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0))}, claimed{doneBy("mine", 0, outcome(messages.StatusSucceeded, "", t0.Add(time.Second)))}, eventSent{}}, stepEmit, func(t *testing.T, d *delivery, p *script) {
			if ev := p.steps[len(p.steps)-2].event; ev.Event != messages.EventConflict {
				t.Errorf("event %+v, want the conflict noted first", ev)
			}
			if r := p.last().result; r == nil || r.Status != messages.StatusSucceeded || !d.out.otherOutcomeStands {
				t.Errorf("result %+v, want the recorded one", r)
			}
		}},
		{"another replica's same outcome stands, no conflict", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusSucceeded, "", t0))}, claimed{doneBy("mine", 0, outcome(messages.StatusSucceeded, "", t0.Add(time.Second)))}}, stepEmit, func(t *testing.T, d *delivery, p *script) {
			for _, s := range p.steps {
				if s.kind == stepEvent && s.event.Event == messages.EventConflict {
					t.Errorf("steps %v: a conflict noted for the same verdict", p.kinds())
				}
			}
			if r := p.last().result; r == nil || !r.CompletedAt.Equal(t0.Add(time.Second)) || !d.out.otherOutcomeStands {
				t.Errorf("result %+v, want the recorded one", r)
			}
		}},
		{"broker trouble with an outcome held keeps trying", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusSucceeded, "", t0))}, claimed{callingUnder("mine", 0)},
			failed{op: stepWrite, err: transient, mayHaveLanded: true}, fine, elapse(time.Hour), failed{op: stepWrite, err: transient, mayHaveLanded: true}}, stepSleep, nil},
		{"past the grace period an outcome held is tried for the record budget", 0, []answer{idTaken{mem: withOutcome(sent, outcome(messages.StatusSucceeded, "", t0))}, shutdown{}, claimed{callingUnder("mine", 0)},
			failed{op: stepWrite, err: transient, mayHaveLanded: true}, fine, elapse(30 * time.Second), failed{op: stepWrite, err: transient, mayHaveLanded: true}}, stepSleep, nil},
		{"other broker trouble hands the message back", 0, []answer{idTaken{}, failed{op: stepClaim, err: noResponse}, fine, elapse(30 * time.Second), failed{op: stepClaim, err: noResponse}}, stepSettle, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.settle != settleBrokerTrouble || s.settle.action != retry.ActionNakWithDelay {
				t.Errorf("settle %v", s.settle)
			}
		}},
		{"an ambiguous verdict drawn from an entry that changed is dropped", 0, []answer{idTaken{}, claimed{callingUnder("theirs", 2*time.Minute)}, fine, fine, fine, fine, conflicted{}}, stepRead, func(t *testing.T, d *delivery, p *script) {
			if s := p.steps[len(p.steps)-2]; s.kind != stepWrite || !isAmbiguous(s.entry.Result) {
				t.Fatalf("steps %v: want the ambiguous write first", p.kinds())
			}
			if d.mem.outcome != nil || len(d.out.pending) != 0 {
				t.Errorf("the verdict is still held: %+v, %d pending events", d.mem.outcome, len(d.out.pending))
			}
		}},
		{"past the grace period nothing is called", 0, []answer{idTaken{}, shutdown{}, claimed{claimedBy(1)}}, stepSettle, func(t *testing.T, _ *delivery, p *script) {
			if s := p.last(); s.settle != settleShutdown {
				t.Errorf("settle %v", s.settle)
			}
		}},
		{"past the grace period a calling write of ours is taken back", 0, []answer{idTaken{mem: mine}, shutdown{}, claimed{callingUnder("mine", 0)}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateClaimed {
				t.Errorf("write %+v", e)
			}
		}},
		{"a definite failure over another replica's ambiguous record files it now", 0, []answer{idTaken{mem: mine}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "me", Nonce: "mine", Trail: received(), Emitted: 1, Revision: 2}},
			fine, called{err: transient}, conflicted{}, found{doneBy("mine", 0, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0))}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateCalling || !e.Supersedes.Equal(t0) {
				t.Errorf("steps %v, write %+v", p.kinds(), e)
			}
		}},
		{"an ambiguous outcome does not supersede an ambiguous one", 0, []answer{idTaken{mem: withOutcome(remembered{nonce: "mine", dispatched: true}, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0.Add(time.Second)))},
			claimed{doneBy("mine", 7, outcome(messages.StatusFailed, messages.ClassAmbiguous, t0))}}, stepDeadLetter, func(t *testing.T, d *delivery, p *script) {
			if s := p.last(); !d.out.otherOutcomeStands || s.dead.key != "d-1:"+stamp(t0) {
				t.Errorf("dead letter %+v, other outcome stands %v: want the stored outcome's", s.dead, d.out.otherOutcomeStands)
			}
		}},
		{"a panic with a ledger entry records a failed outcome", 0, []answer{idTaken{}, claimed{claimedBy(1)}, panicked{why: "boom"}}, stepWrite, func(t *testing.T, _ *delivery, p *script) {
			if e := p.last().entry; e.State != ledger.StateDone || e.Result.Error.Code != "InternalError" {
				t.Errorf("write %+v", e)
			}
		}},
		{"a panic is dead-lettered", 0, []answer{panicked{why: "boom"}}, stepDeadLetter, func(t *testing.T, _ *delivery, p *script) {
			if dead := p.last().dead; dead.reason != "internal error: boom" {
				t.Errorf("dead %+v", dead)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTest(t, vms)
			d.rules.policy = retry.Policy{InitialInterval: time.Millisecond, MaxAttempts: 1, RedeliveryBase: time.Second, RedeliveryMax: time.Second}
			if tc.deliveries != 0 {
				d.msg.deliveries = tc.deliveries
			}
			p := play(t, d, tc.answers...)
			if s := p.last(); s.kind != tc.want {
				t.Fatalf("steps %v (the last %+v), want %s last", p.kinds(), s, tc.want)
			}
			if tc.check != nil {
				tc.check(t, d, p)
			}
		})
	}
}

func TestUndecodableIsDeadLettered(t *testing.T) {
	d := newDelivery(limits{owner: "me"}, t0, []byte("not json"), "", "", nil)
	p := play(t, d, fine, fine)
	if got := fmt.Sprint(p.kinds()); got != "[dead letter audit settle]" || p.last().settle != settleUndecodable {
		t.Errorf("steps %s, settle %v", got, p.last().settle)
	}
}

// A whole delivery whose every step succeeds comes in the order the
// guarantees need: the claim, the received event stored, the move to
// "calling", the call, one write after, then every other event and the
// result at once, then the ack.
func TestDecideSucceedsInOrder(t *testing.T) {
	p := play(t, newTest(t, vms), fine, fine, fine, fine, fine, fine, fine)
	if got, want := fmt.Sprint(p.kinds()), fmt.Sprint([]stepKind{stepTakeID, stepClaim, stepEmit, stepWrite, stepCall, stepWrite, stepEmit, stepSettle}); got != want {
		t.Fatalf("steps %s, want %s", got, want)
	}
	if s := p.steps[3]; s.entry.State != ledger.StateCalling || s.entry.Nonce == "" {
		t.Errorf("write %+v, want the move to calling", s.entry)
	}
	if s := p.last(); s.settle != settleSucceeded || s.settle.action != retry.ActionAck {
		t.Errorf("settle %v", s.settle)
	}
}

// TestResultsRedactedWhenConfigured: with RedactResults the vendor's
// answer is redacted in the outcome before it is recorded; without, it is
// kept as it came.
func TestResultsRedactedWhenConfigured(t *testing.T) {
	answer := json.RawMessage(`{"class_auths":[{"name":"张三","id_number":"110101199003078515"}]}`)
	for _, redact := range []bool{false, true} {
		d := newTest(t, vms)
		d.rules.redactResults = redact
		p := play(t, d, idTaken{mem: remembered{nonce: "mine"}}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "me", Nonce: "mine", Revision: 2}},
			fine, called{out: dispatch.Outcome{Result: answer}})
		s := p.last()
		if s.kind != stepWrite || s.entry.Result == nil {
			t.Fatalf("redact %v: steps %v, want the outcome's write", redact, p.kinds())
		}
		got, want := string(s.entry.Result.Result), string(answer)
		if redact {
			want = string(messages.Redact(answer))
		}
		if got != want || (redact && strings.Contains(got, "110101199003078515")) {
			t.Errorf("redact %v: result %s, want %s", redact, got, want)
		}
	}
}
