package filing

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The decision core is a function of what is known, so its rules can be
// checked one by one without a broker: each case sets up a known and
// compares the step decide returns, then optionally plays a few answers.

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func testKnown(t *testing.T) *known {
	t.Helper()
	req, err := messages.ParseRequest([]byte(`{"id":"d-1","api":"vms.add_qualification","payload":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	return &known{
		lim: limits{maxDeliver: 5, hardLimit: 8, lease: time.Minute, recordBudget: time.Minute, troubleBudget: time.Second, owner: "me"},
		now: t0, delivery: 1, seq: 7, receivedAt: t0, subjectAPI: messages.APIVMSAddQualification, req: req, fingerprint: "fp",
	}
}

func done(status messages.Status, class string, at time.Time) *messages.Result {
	r := &messages.Result{RequestID: "d-1", API: messages.APIVMSAddQualification, Status: status, CompletedAt: at}
	if class != "" {
		r.Error = &messages.ResultError{Class: class, Code: "X"}
	}
	return r
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(k *known)
		want  stepKind
		check func(t *testing.T, k *known, s step)
	}{
		{"a new request is claimed straight into calling", func(k *known) {}, stepClaim, func(t *testing.T, k *known, s step) {
			if s.entry.Fingerprint != "fp" || len(s.entry.Trail) != 1 || s.entry.Trail[0].Event != messages.EventReceived {
				t.Errorf("claim entry %+v", s.entry)
			}
			if s.entry.State != ledger.StateCalling || s.entry.Nonce == "" || s.entry.Nonce != k.mem.nonce {
				t.Errorf("claim entry %+v, memory %+v: want calling under the nonce remembered", s.entry, k.mem)
			}
		}},
		{"a request this replica remembers is claimed, not called", func(k *known) {
			k.mem = recollection{nonce: "mine"}
		}, stepClaim, func(t *testing.T, k *known, s step) {
			if s.entry.State == ledger.StateCalling || s.entry.Nonce != "" || k.mem.nonce != "mine" {
				t.Errorf("claim entry %+v, memory %+v: want a plain claim, the nonce kept", s.entry, k.mem)
			}
		}},
		{"after the grace period a new request is claimed, not called", func(k *known) {
			k.stopping = true
		}, stepClaim, func(t *testing.T, k *known, s step) {
			if s.entry.State == ledger.StateCalling || k.mem.nonce != "" {
				t.Errorf("claim entry %+v, memory %+v: want a plain claim", s.entry, k.mem)
			}
		}},
		{"a calling write that may have landed is tried again under its nonce", func(k *known) {
			k.mem = recollection{nonce: "mine"}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Trail: []messages.AuditEvent{{Event: "received"}}, Revision: 1}
			k.emitted = 1
		}, stepWrite, func(t *testing.T, k *known, s step) {
			if s.entry.State != ledger.StateCalling || s.entry.Nonce != "mine" {
				t.Errorf("write %+v: want calling under the nonce remembered", s.entry)
			}
		}},
		{"another handler of this replica holds the id", func(k *known) { k.busy = true }, stepWaitLocal, nil},
		{"a claimed entry goes to calling under a new nonce", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Trail: []messages.AuditEvent{{Event: "received"}}, Revision: 1}
			k.emitted = 1
		}, stepWrite, func(t *testing.T, k *known, s step) {
			if s.entry.State != ledger.StateCalling || s.entry.Nonce == "" || s.entry.Nonce != k.mem.nonce || s.entry.Owner != "me" {
				t.Errorf("write %+v, memory %+v", s.entry, k.mem)
			}
		}},
		{"events go out before the calling write", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Trail: []messages.AuditEvent{{Event: "received"}}, Revision: 1}
		}, stepEmit, nil},
		{"another replica's fresh call is waited for, in the broker", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "theirs", UpdatedAt: t0.Add(-10 * time.Second), Revision: 3}
		}, stepSettle, func(t *testing.T, _ *known, s step) {
			if s.action != retry.ActionNakWithDelay || s.delay != 50*time.Second {
				t.Errorf("settle %+v, want nak with the rest of the lease", s)
			}
		}},
		{"past the delivery limit it is not waited for", func(k *known) {
			k.delivery = 8
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "theirs", UpdatedAt: t0.Add(-10 * time.Second), Revision: 3}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateDone || s.entry.Result.Error.Class != messages.ClassAmbiguous {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"an expired call of another replica is ambiguous for a create", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "theirs", UpdatedAt: t0.Add(-2 * time.Minute), Revision: 3}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateDone || s.entry.Result.Error.Class != messages.ClassAmbiguous || s.entry.Nonce != "theirs" {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"a calling write of ours that landed is called under", func(k *known) {
			k.mem = recollection{nonce: "mine"}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "mine", UpdatedAt: t0.Add(-2 * time.Minute), Revision: 3}
		}, stepCall, nil},
		{"a copy of a recorded request is answered from the ledger", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Seq: 3, Result: done(messages.StatusSucceeded, "", t0), Revision: 4}
		}, stepEvent, func(t *testing.T, _ *known, s step) {
			if s.event.Event != messages.EventDuplicate {
				t.Errorf("event %+v", s.event)
			}
		}},
		{"a reused id is rejected", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Fingerprint: "other", Result: done(messages.StatusSucceeded, "", t0), Revision: 4}
		}, stepResult, func(t *testing.T, _ *known, s step) {
			if s.result.Status != messages.StatusRejected || s.result.Error.Code != "IdReused" {
				t.Errorf("result %+v", s.result)
			}
		}},
		{"an outcome held is recorded over an entry that vanished", func(k *known) {
			k.entry, k.missing = &ledger.Entry{RequestID: "d-1"}, true
			k.mem = recollection{nonce: "mine", dispatched: true, answered: true, outcome: done(messages.StatusSucceeded, "", t0)}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateDone || s.entry.Result.Status != messages.StatusSucceeded || s.entry.Nonce != "mine" {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"an outcome held settles another replica's ambiguous record of the same call", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true, answered: true, outcome: done(messages.StatusSucceeded, "", t0)}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Result: done(messages.StatusFailed, messages.ClassAmbiguous, t0.Add(time.Second)), Revision: 5}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			r := s.entry.Result
			if r.Status != messages.StatusSucceeded || !r.Supersedes.Equal(t0.Add(time.Second)) || !r.CompletedAt.After(t0.Add(time.Second)) {
				t.Errorf("result %+v, want it to supersede the ambiguous one and be later", r)
			}
		}},
		{"a call known unsent is filed after another replica's ambiguous record", func(k *known) {
			k.mem = recollection{nonce: "mine"}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Result: done(messages.StatusFailed, messages.ClassAmbiguous, t0), Revision: 5}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateCalling || !s.entry.Supersedes.Equal(t0) {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"a call that was sent is not filed again after an ambiguous record", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Seq: 7, Result: done(messages.StatusFailed, messages.ClassAmbiguous, t0), Revision: 5}
			k.emitted = 0
		}, stepDeadLetter, nil},
		{"another replica's different outcome stands and is published", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true, answered: true, outcome: done(messages.StatusFailed, messages.ClassAmbiguous, t0)}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Result: done(messages.StatusSucceeded, "", t0.Add(time.Second)), Revision: 5}
			k.eventDone = true // the conflict event went out
		}, stepEmit, func(t *testing.T, _ *known, s step) {
			if s.result == nil || s.result.Status != messages.StatusSucceeded {
				t.Errorf("result %+v, want the recorded one", s.result)
			}
		}},
		{"broker trouble with an outcome held keeps trying", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true, answered: true, outcome: done(messages.StatusSucceeded, "", t0)}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "mine", Revision: 3}
			k.failed, k.failures, k.troubleSince = stepWrite, 3, t0.Add(-30*time.Second)
		}, stepSleep, nil},
		{"other broker trouble hands the message back", func(k *known) {
			k.failed, k.failures, k.troubleSince = stepClaim, 3, t0.Add(-30*time.Second)
		}, stepSettle, func(t *testing.T, _ *known, s step) {
			if s.action != retry.ActionNakWithDelay {
				t.Errorf("settle %+v", s)
			}
		}},
		{"an ambiguous verdict drawn from an entry that changed is dropped", func(k *known) {
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "theirs", UpdatedAt: t0.Add(-2 * time.Minute), Revision: 3}
			if s := decide(k); s.kind != stepWrite || !isAmbiguous(s.entry.Result) {
				panic("setup: want the ambiguous write")
			}
			k.stale = true // the write lost: the entry moved on
		}, stepRead, func(t *testing.T, k *known, _ step) {
			if k.mem.outcome != nil || len(k.pending) != 0 {
				t.Errorf("the verdict is still held: %+v, %d pending events", k.mem.outcome, len(k.pending))
			}
		}},
		{"past the grace period nothing is called", func(k *known) {
			k.stopping = true
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Revision: 1}
		}, stepSettle, func(t *testing.T, _ *known, s step) {
			if s.action != retry.ActionNakWithDelay {
				t.Errorf("settle %+v", s)
			}
		}},
		{"past the grace period a calling write of ours is taken back", func(k *known) {
			k.stopping = true
			k.mem = recollection{nonce: "mine"}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "mine", Revision: 3}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateClaimed {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"a definite failure over another replica's ambiguous record files it now", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true, answered: true}
			k.deferred, k.attempts = true, 4
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Result: done(messages.StatusFailed, messages.ClassAmbiguous, t0), Revision: 5}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateCalling || !s.entry.Supersedes.Equal(t0) {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"an ambiguous outcome does not supersede an ambiguous one", func(k *known) {
			k.mem = recollection{nonce: "mine", dispatched: true, outcome: done(messages.StatusFailed, messages.ClassAmbiguous, t0.Add(time.Second))}
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateDone, Nonce: "mine", Seq: 7, Result: done(messages.StatusFailed, messages.ClassAmbiguous, t0), Revision: 5}
		}, stepDeadLetter, func(t *testing.T, k *known, s step) {
			if !k.yielded || s.dead.key != "d-1:"+stamp(t0) {
				t.Errorf("dead letter %+v, yielded %v: want the stored outcome's", s.dead, k.yielded)
			}
		}},
		{"a panic with a ledger entry records a failed outcome", func(k *known) {
			k.panicked, k.panics = "boom", 1
			k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Revision: 1}
		}, stepWrite, func(t *testing.T, _ *known, s step) {
			if s.entry.State != ledger.StateDone || s.entry.Result.Error.Code != "InternalError" {
				t.Errorf("write %+v", s.entry)
			}
		}},
		{"undecodable is dead-lettered", func(k *known) { k.req, k.parseErr = nil, &messages.DecodeError{Reason: "not a JSON object"} }, stepDeadLetter, nil},
		{"a panic is dead-lettered", func(k *known) { k.panicked = "boom" }, stepDeadLetter, func(t *testing.T, _ *known, s step) {
			if s.dead.reason != "internal error: boom" {
				t.Errorf("dead %+v", s.dead)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testKnown(t)
			tc.setup(k)
			s := decide(k)
			if s.kind != tc.want {
				t.Fatalf("step %s (%+v), want %s", s.kind, s, tc.want)
			}
			if tc.check != nil {
				tc.check(t, k, s)
			}
		})
	}
}

// TestDecideSucceedsInOrder plays a whole delivery against answers that
// always succeed: the steps come in the order the guarantees need.
func TestDecideSucceedsInOrder(t *testing.T) {
	k := testKnown(t)
	var got []stepKind
	for range 50 {
		s := decide(k)
		got = append(got, s.kind)
		switch s.kind {
		case stepClaim:
			e := s.entry
			if e.State != ledger.StateCalling || e.Nonce == "" || e.Nonce != k.mem.nonce {
				t.Fatalf("claim %+v, want it created calling under the nonce remembered (%q)", e, k.mem.nonce)
			}
			e.Revision = 1
			k.entry, k.created = &e, true
		case stepEmit:
			k.emitted = len(k.trail())
			if s.result != nil {
				k.resultDone = true
			}
		case stepWrite:
			e := s.entry
			e.Revision = k.entry.Revision + 1
			k.entry, k.pending = &e, nil
			if e.State == ledger.StateDone && e.Result == k.mem.outcome {
				k.recorded = true
			}
		case stepCall:
			k.callDue, k.attempts = false, k.attempts+1
			k.entry.Attempts++
			k.mem.dispatched, k.mem.answered = true, true
			k.lastOut.Result = json.RawMessage(`{"QualificationNo":"Q1"}`)
			k.pending = append(k.pending, k.attemptEvent(time.Millisecond))
		case stepResult:
			k.resultDone = true
		case stepSettle:
			// One write before the call, one after, then every event and
			// the result at once.
			want := []stepKind{stepClaim, stepCall, stepWrite, stepEmit, stepSettle}
			if len(got) != len(want) {
				t.Fatalf("steps %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("steps %v, want %v", got, want)
				}
			}
			if s.action != retry.ActionAck {
				t.Fatalf("settle %+v", s)
			}
			return
		default:
			t.Fatalf("unexpected step %s", s.kind)
		}
	}
	t.Fatalf("no settle after %v", got)
}

// TestResultsRedactedWhenConfigured: with RedactResults the vendor's
// answer is redacted in the outcome before it is recorded; without, it is
// kept as it came.
func TestResultsRedactedWhenConfigured(t *testing.T) {
	answer := json.RawMessage(`{"class_auths":[{"name":"张三","id_number":"110101199003078515"}]}`)
	for _, redact := range []bool{false, true} {
		k := testKnown(t)
		k.lim.redactResults = redact
		k.mem = recollection{nonce: "mine", dispatched: true, answered: true}
		k.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "mine", Revision: 2, Attempts: 1}
		k.attempts, k.lastOut.Result = 1, answer
		s := decide(k)
		if s.kind != stepWrite || s.entry.Result == nil {
			t.Fatalf("redact %v: step %s, want the outcome's write", redact, s.kind)
		}
		got := string(s.entry.Result.Result)
		want := string(answer)
		if redact {
			want = string(messages.Redact(answer))
		}
		if got != want || (redact && strings.Contains(got, "110101199003078515")) {
			t.Errorf("redact %v: result %s, want %s", redact, got, want)
		}
	}
}
