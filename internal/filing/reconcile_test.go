package filing

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The rules of reconciliation, played without a broker: a create whose
// answer was lost, then scripted answers to the reads.

type readAnswer struct {
	f   dispatch.Finding
	err error
}

var (
	absent = readAnswer{}
	found  = readAnswer{f: dispatch.Finding{Records: []dispatch.Record{{ID: "QUA1",
		Outcome: dispatch.Outcome{Result: json.RawMessage(`{"QualificationNo":"QUA1"}`), UpstreamRequestID: "read-1"}}}}}
	twice    = readAnswer{f: dispatch.Finding{Records: []dispatch.Record{{ID: "QUA1"}, {ID: "QUA2"}}}}
	earlier  = readAnswer{f: dispatch.Finding{Records: []dispatch.Record{{ID: "7"}}}}
	readDown = readAnswer{err: fmt.Errorf("SystemError: %w", retry.ErrTransient)}
	readBad  = readAnswer{err: fmt.Errorf("SignatureDoesNotMatch: %w", retry.ErrPermanent)}
)

// lostCall is a known right after a call of api whose answer was lost.
func lostCall(t *testing.T, api messages.API, rules reconcileRules) *known {
	t.Helper()
	k := testKnown(t)
	k.req.API = api
	k.lim.reconcile = rules
	k.lim.policy = retry.Policy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond, NoJitter: true}
	k.mem = recollection{nonce: "n1", dispatched: true, fingerprint: "fp"}
	k.entry = &ledger.Entry{RequestID: "d-1", API: api, State: ledger.StateCalling, Nonce: "n1", Fingerprint: "fp",
		Attempts: 1, ClaimedAt: t0, Revision: 2, Trail: []messages.AuditEvent{{Event: messages.EventReceived}}}
	k.emitted = 1
	k.attempts, k.callStart = 1, t0
	k.lastErr = &dispatch.AmbiguousError{API: api, Err: errors.New("read: connection reset")}
	k.lastClass = retry.ClassAmbiguous
	return k
}

type played struct {
	steps []step
	reads []time.Duration // when each read was made, after the start
}

// play runs decide, answering each step as the runner would, until the
// delivery settles, an outcome is taken in hand or a call is due.
func play(t *testing.T, k *known, answers ...readAnswer) played {
	t.Helper()
	var p played
	start := k.now
	for n := 0; n < 200; n++ {
		s := decide(k)
		p.steps = append(p.steps, s)
		switch s.kind {
		case stepSettle, stepCall:
			return p
		case stepEmit:
			k.emitted = len(k.trail())
		case stepSleep:
			k.now = k.now.Add(s.delay)
		case stepReconcile:
			p.reads = append(p.reads, k.now.Sub(start))
			a := readDown
			if len(answers) > 0 {
				a, answers = answers[0], answers[1:]
			}
			k.noteRead(a.f, a.err, k.now)
		case stepWrite:
			e := s.entry
			e.Revision = k.entry.Revision + 1
			k.entry, k.pending = &e, nil
			if e.State == ledger.StateDone {
				k.recorded = true
				return p
			}
		default:
			t.Fatalf("unexpected step %s", s.kind)
		}
	}
	t.Fatal("no end after 200 steps")
	return p
}

func (p played) last() step { return p.steps[len(p.steps)-1] }

func trailEvents(k *known) []string {
	var names []string
	for _, ev := range k.trail() {
		names = append(names, ev.Event)
	}
	return names
}

var rules3 = reconcileRules{on: true, window: 300 * time.Millisecond, reads: 3, skew: time.Minute}

func TestReconcileRules(t *testing.T) {
	vms, sms := messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent
	for _, tc := range []struct {
		name    string
		api     messages.API
		rules   reconcileRules
		setup   func(k *known)
		answers []readAnswer
		check   func(t *testing.T, k *known, p played)
	}{
		{"found on the second read: succeeded, reconciled", vms, rules3, nil, []readAnswer{absent, found}, func(t *testing.T, k *known, p played) {
			res := k.mem.outcome
			if res == nil || res.Status != messages.StatusSucceeded || !res.Reconciled || string(res.Result) != `{"QualificationNo":"QUA1"}` || res.UpstreamRequestID != "read-1" {
				t.Fatalf("outcome %+v: want succeeded, reconciled, the record's number", res)
			}
			if !k.recorded || k.entry.State != ledger.StateDone {
				t.Errorf("entry %+v: want the outcome recorded", k.entry)
			}
			if want := []time.Duration{0, 150 * time.Millisecond}; fmt.Sprint(p.reads) != fmt.Sprint(want) {
				t.Errorf("reads at %v, want %v (spread over the window)", p.reads, want)
			}
			if got := strings.Join(trailEvents(k), ","); got != "received,reconciling,reconciled" {
				t.Errorf("trail %s", got)
			}
		}},
		{"absent over the window: filed again, once", sms, rules3, func(k *known) { k.entry.BaselineKnown = true }, []readAnswer{absent, absent, absent}, func(t *testing.T, k *known, p played) {
			if p.last().kind != stepCall {
				t.Fatalf("last step %s, want a call", p.last().kind)
			}
			if e := k.entry; e.State != ledger.StateCalling || e.Refiled != 1 || e.Nonce == "n1" || e.Nonce != k.mem.nonce || k.mem.dispatched {
				t.Errorf("entry %+v, memory %+v: want calling under a new nonce, refiled once", e, k.mem)
			}
			if want := []time.Duration{0, 150 * time.Millisecond, 300 * time.Millisecond}; fmt.Sprint(p.reads) != fmt.Sprint(want) {
				t.Errorf("reads at %v, want %v (the last at the end of the window)", p.reads, want)
			}
			if got := strings.Join(trailEvents(k), ","); got != "received,reconciling,refiled" {
				t.Errorf("trail %s", got)
			}
		}},
		{"absent, and filed again once already: ambiguous", vms, rules3, func(k *known) { k.entry.Refiled = 1 }, []readAnswer{absent, absent, absent}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "filed again once already")
		}},
		{"absent, refiling off: ambiguous", vms, reconcileRules{on: true, window: time.Second, reads: 2, keepAmbiguous: true}, nil, []readAnswer{absent, absent}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "reconcile.refile is off")
		}},
		{"two records match: ambiguous, not filed again", vms, rules3, nil, []readAnswer{twice}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "2 records at the vendor match")
		}},
		{"the read fails for the whole window: ambiguous", sms, rules3, nil, nil, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "could not be read")
			if len(p.reads) < 3 || len(p.reads) > 20 || p.reads[len(p.reads)-1] > 300*time.Millisecond {
				t.Errorf("reads at %v: want retries with backoff, none after the window", p.reads)
			}
		}},
		{"absent early, then the reads fail: not enough to file again", vms, rules3, nil, []readAnswer{absent, readDown, readDown, readDown, readDown, readDown, readDown, readDown}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "could not be read")
		}},
		{"a read refused for good: ambiguous at once", vms, rules3, nil, []readAnswer{readBad}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "SignatureDoesNotMatch")
			if len(p.reads) != 1 {
				t.Errorf("%d reads, want 1", len(p.reads))
			}
		}},
		{"off: ambiguous at once", vms, reconcileRules{}, nil, nil, func(t *testing.T, k *known, p played) {
			if len(p.reads) != 0 || k.mem.outcome == nil || !isAmbiguous(k.mem.outcome) {
				t.Errorf("reads %v, outcome %+v: want ambiguous without reads", p.reads, k.mem.outcome)
			}
		}},
		{"douyin.add_role has no read: ambiguous at once", messages.APIDouyinAddRole, rules3, nil, nil, func(t *testing.T, k *known, p played) {
			if len(p.reads) != 0 || k.mem.outcome == nil || !isAmbiguous(k.mem.outcome) {
				t.Errorf("reads %v, outcome %+v: want ambiguous without reads", p.reads, k.mem.outcome)
			}
		}},
		{"another replica's lost call is reconciled too", vms, rules3, func(k *known) {
			k.mem, k.attempts, k.lastErr, k.lastClass = recollection{}, 0, nil, retry.ClassNone
			k.entry.Owner, k.entry.Nonce, k.entry.UpdatedAt = "other", "theirs", t0.Add(-time.Hour)
		}, []readAnswer{found}, func(t *testing.T, k *known, p played) {
			if res := k.mem.outcome; res == nil || !res.Reconciled {
				t.Errorf("outcome %+v: want reconciled", res)
			}
		}},
		{"sms: a record listed before the first call is an earlier filing", sms, rules3, func(k *known) {
			k.entry.Baseline, k.entry.BaselineKnown = []string{"7"}, true
		}, []readAnswer{earlier, earlier, earlier}, func(t *testing.T, k *known, p played) {
			if p.last().kind != stepCall || k.entry.Refiled != 1 {
				t.Errorf("last step %s, refiled %d: want it filed again (the only match is older)", p.last().kind, k.entry.Refiled)
			}
		}},
		{"sms: a new record beside an earlier one is this filing", sms, rules3, func(k *known) {
			k.entry.Baseline, k.entry.BaselineKnown = []string{"7"}, true
		}, []readAnswer{{f: dispatch.Finding{Records: []dispatch.Record{{ID: "7"}, {ID: "8", Outcome: dispatch.Outcome{Result: json.RawMessage(`{"id":8}`)}}}}}}, func(t *testing.T, k *known, p played) {
			if res := k.mem.outcome; res == nil || !res.Reconciled || string(res.Result) != `{"id":8}` {
				t.Errorf("outcome %+v: want the new record", res)
			}
		}},
		{"sms: matches, and no baseline: an operator decides", sms, rules3, func(k *known) {
			k.entry.BaselineKnown = false
		}, []readAnswer{earlier}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "which existed before")
		}},
		{"vms: an undated match cannot decide", vms, rules3, nil, []readAnswer{{f: dispatch.Finding{Undated: 1}}}, func(t *testing.T, k *known, p played) {
			wantAmbiguous(t, k, "creation time that cannot be read")
		}},
		{"shutdown while reconciling: handed back, the entry left calling", vms, rules3, func(k *known) {
			k.recon = reconciliation{active: true, nonce: "n1", start: t0, next: t0.Add(time.Second)}
			k.stopping = true
		}, nil, func(t *testing.T, k *known, p played) {
			if s := p.last(); s.kind != stepSettle || s.action != retry.ActionNakWithDelay || k.entry.State != ledger.StateCalling {
				t.Errorf("last step %+v, entry %s: want a nak, the entry calling", s, k.entry.State)
			}
		}},
		{"the entry moved on meanwhile: no refile", vms, rules3, func(k *known) {
			k.recon = reconciliation{active: true, nonce: "n1", start: t0, reads: 3, lastRead: t0.Add(300 * time.Millisecond), next: t0.Add(time.Hour)}
			k.entry.Nonce, k.entry.Owner, k.entry.UpdatedAt = "theirs", "other", t0
		}, nil, func(t *testing.T, k *known, p played) {
			if k.entry.Refiled != 0 || len(p.reads) != 0 {
				t.Errorf("entry %+v, reads %v: want nothing filed or read", k.entry, p.reads)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := lostCall(t, tc.api, tc.rules)
			if tc.setup != nil {
				tc.setup(k)
			}
			p := play(t, k, tc.answers...)
			tc.check(t, k, p)
		})
	}
}

func wantAmbiguous(t *testing.T, k *known, why string) {
	t.Helper()
	res := k.mem.outcome
	if res == nil || !isAmbiguous(res) || !strings.Contains(res.Error.Message, why) {
		t.Fatalf("outcome %+v: want ambiguous, saying %q", res, why)
	}
	if k.entry.Refiled > 1 || (k.entry.State == ledger.StateCalling && k.entry.Nonce != "n1") {
		t.Errorf("entry %+v: nothing may be filed again", k.entry)
	}
}

// A new SMS create is claimed plainly, lists the vendor's matching records
// before its first call, and the move to "calling" keeps them; other
// apis, and reconciliation off, go straight to "calling".
func TestBaselineBeforeTheFirstSMSCall(t *testing.T) {
	k := testKnown(t)
	k.req.API = messages.APISMSApplySignatureIdent
	k.lim.reconcile = rules3
	s := decide(k)
	if s.kind != stepClaim || s.entry.State == ledger.StateCalling || s.entry.Nonce != "" {
		t.Fatalf("first step %s, entry %+v: want a plain claim", s.kind, s.entry)
	}
	e := s.entry
	e.State, e.Revision = ledger.StateClaimed, 1
	k.entry, k.pending, k.emitted = &e, nil, len(e.Trail)
	if s := decide(k); s.kind != stepBaseline {
		t.Fatalf("after the claim: step %s, want the baseline read", s.kind)
	}
	k.baselineDone, k.baseline, k.baselineKnown = true, []string{"7"}, true
	s = decide(k)
	if s.kind != stepWrite || s.entry.State != ledger.StateCalling || !s.entry.BaselineKnown || len(s.entry.Baseline) != 1 {
		t.Fatalf("step %s, entry %+v: want the move to calling keeping the baseline", s.kind, s.entry)
	}
	// A claimed entry whose baseline is known is not read again.
	k2 := testKnown(t)
	k2.req.API, k2.lim.reconcile = messages.APISMSApplySignatureIdent, rules3
	k2.entry = &ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Fingerprint: "fp", Revision: 3, BaselineKnown: true,
		Trail: []messages.AuditEvent{{Event: messages.EventReceived}}}
	k2.emitted = 1
	if s := decide(k2); s.kind != stepWrite || s.entry.State != ledger.StateCalling {
		t.Errorf("with a known baseline: step %s, want the move to calling", s.kind)
	}
	for _, tc := range []struct {
		name  string
		api   messages.API
		rules reconcileRules
	}{{"vms", messages.APIVMSAddQualification, rules3}, {"reconciliation off", messages.APISMSApplySignatureIdent, reconcileRules{}}} {
		k := testKnown(t)
		k.req.API, k.lim.reconcile = tc.api, tc.rules
		if s := decide(k); s.kind != stepClaim || s.entry.State != ledger.StateCalling {
			t.Errorf("%s: first step %s into %s, want a claim straight into calling", tc.name, s.kind, s.entry.State)
		}
	}
}
