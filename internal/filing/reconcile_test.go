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

var (
	absent = recordsRead{}
	found1 = recordsRead{finding: dispatch.Finding{Records: []dispatch.Record{{ID: "QUA1",
		Outcome: dispatch.Outcome{Result: json.RawMessage(`{"QualificationNo":"QUA1"}`), UpstreamRequestID: "read-1"}}}}}
	twice    = recordsRead{finding: dispatch.Finding{Records: []dispatch.Record{{ID: "QUA1"}, {ID: "QUA2"}}}}
	earlier  = recordsRead{finding: dispatch.Finding{Records: []dispatch.Record{{ID: "7"}}}}
	readDown = recordsRead{err: fmt.Errorf("SystemError: %w", retry.ErrTransient)}
	readBad  = recordsRead{err: fmt.Errorf("SignatureDoesNotMatch: %w", retry.ErrPermanent)}
)

// lostCall plays a create of api, called under nonce n1 from an entry
// that edit may change (its baseline read found nothing), whose answer
// was lost.
func lostCall(t *testing.T, api messages.API, rules reconcileRules, edit func(*ledger.Entry)) *script {
	t.Helper()
	d := newTest(t, api)
	d.rules.reconcile = rules
	d.rules.policy = retry.Policy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond, NoJitter: true}
	e := ledger.Entry{RequestID: "d-1", API: api, State: ledger.StateCalling, Owner: "me", Nonce: "n1", Fingerprint: d.msg.fingerprint,
		BaselineKnown: true, Revision: 2, Trail: received(), Emitted: 1}
	if edit != nil {
		edit(&e)
	}
	return play(t, d, idTaken{mem: remembered{nonce: "n1", fingerprint: d.msg.fingerprint}}, claimed{e},
		fine, // renewed before the call: this delivery did not write the entry
		called{err: &dispatch.AmbiguousError{API: api, Err: errors.New("read: connection reset")}})
}

// readOn answers the steps that follow with their routine success and
// each read of the vendor's records with the next of reads (then
// readDown), until the delivery settles, a call is due or an outcome is
// recorded. It returns when each read was made.
func (p *script) readOn(reads ...recordsRead) (at []time.Duration) {
	p.t.Helper()
	start := p.now
	for range 200 {
		switch s := p.last(); {
		case s.kind == stepSettle || s.kind == stepCall || p.d.ledger.recorded:
			return at
		case s.kind == stepReconcile:
			at = append(at, p.now.Sub(start))
			a := readDown
			if len(reads) > 0 {
				a, reads = reads[0], reads[1:]
			}
			p.then(a)
		default:
			p.then(fine)
		}
	}
	p.t.Fatal("no end after 200 steps")
	return nil
}

func trailEvents(d *delivery) string {
	var names []string
	for _, ev := range d.trail() {
		names = append(names, ev.Event)
	}
	return strings.Join(names, ",")
}

var rules3 = reconcileRules{on: true, window: 300 * time.Millisecond, reads: 3}

func TestReconcileRules(t *testing.T) {
	vms, sms := messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent
	baseline7 := func(e *ledger.Entry) { e.Baseline, e.BaselineKnown = []string{"7"}, true }
	noBaseline := func(e *ledger.Entry) { e.BaselineKnown = false }
	for _, tc := range []struct {
		name  string
		api   messages.API
		rules reconcileRules
		edit  func(*ledger.Entry)
		reads []recordsRead
		check func(t *testing.T, d *delivery, p *script, at []time.Duration)
	}{
		{"found on the second read: succeeded, reconciled", vms, rules3, nil, []recordsRead{absent, found1}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			res := d.mem.outcome
			if res == nil || res.Status != messages.StatusSucceeded || !res.Reconciled || string(res.Result) != `{"QualificationNo":"QUA1"}` || res.UpstreamRequestID != "read-1" {
				t.Fatalf("outcome %+v: want succeeded, reconciled, the record's number", res)
			}
			if !d.ledger.recorded || d.ledger.entry.State != ledger.StateDone {
				t.Errorf("entry %+v: want the outcome recorded", d.ledger.entry)
			}
			if want := []time.Duration{0, 150 * time.Millisecond}; fmt.Sprint(at) != fmt.Sprint(want) {
				t.Errorf("reads at %v, want %v (spread over the window)", at, want)
			}
			if got := trailEvents(d); got != "received,attempt,reconciling,reconciled" {
				t.Errorf("trail %s", got)
			}
		}},
		{"absent over the window: filed again, once", sms, rules3, func(e *ledger.Entry) { e.BaselineKnown = true }, []recordsRead{absent, absent, absent}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if p.last().kind != stepCall {
				t.Fatalf("steps %v, want a call last", p.kinds())
			}
			if e := d.ledger.entry; e.State != ledger.StateCalling || e.Refiled != 1 || e.Nonce == "n1" || e.Nonce != d.mem.nonce {
				t.Errorf("entry %+v, memory %+v: want calling under a new nonce, refiled once", e, d.mem)
			}
			if want := []time.Duration{0, 150 * time.Millisecond, 300 * time.Millisecond}; fmt.Sprint(at) != fmt.Sprint(want) {
				t.Errorf("reads at %v, want %v (the last at the end of the window)", at, want)
			}
			if got := trailEvents(d); got != "received,attempt,reconciling,refiled" {
				t.Errorf("trail %s", got)
			}
		}},
		{"absent, and filed again once already: ambiguous", vms, rules3, func(e *ledger.Entry) { e.Refiled = 1 }, []recordsRead{absent, absent, absent}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "filed again once already")
		}},
		{"absent, refiling off: ambiguous", vms, reconcileRules{on: true, window: time.Second, reads: 2, keepAmbiguous: true}, nil, []recordsRead{absent, absent}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "reconcile.refile is off")
		}},
		{"two records match: ambiguous, not filed again", vms, rules3, nil, []recordsRead{twice}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "2 records at the vendor match")
		}},
		{"the read fails for the whole window: ambiguous", sms, rules3, nil, nil, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "could not be read")
			if len(at) < 3 || len(at) > 20 || at[len(at)-1] > 300*time.Millisecond {
				t.Errorf("reads at %v: want retries with backoff, none after the window", at)
			}
		}},
		{"absent early, then the reads fail: not enough to file again", vms, rules3, nil, []recordsRead{absent, readDown, readDown, readDown, readDown, readDown, readDown, readDown}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "could not be read")
		}},
		{"a read refused for good: ambiguous at once", vms, rules3, nil, []recordsRead{readBad}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "SignatureDoesNotMatch")
			if len(at) != 1 {
				t.Errorf("%d reads, want 1", len(at))
			}
		}},
		{"off: ambiguous at once", vms, reconcileRules{}, nil, nil, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if len(at) != 0 || !isAmbiguous(d.mem.outcome) {
				t.Errorf("reads %v, outcome %+v: want ambiguous without reads", at, d.mem.outcome)
			}
		}},
		{"douyin.add_role has no read: ambiguous at once", messages.APIDouyinAddRole, rules3, nil, nil, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if len(at) != 0 || !isAmbiguous(d.mem.outcome) {
				t.Errorf("reads %v, outcome %+v: want ambiguous without reads", at, d.mem.outcome)
			}
		}},
		{"sms: a record listed before the first call is an earlier filing", sms, rules3, baseline7, []recordsRead{earlier, earlier, earlier}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if p.last().kind != stepCall || d.ledger.entry.Refiled != 1 {
				t.Errorf("steps %v, refiled %d: want it filed again (the only match is older)", p.kinds(), d.ledger.entry.Refiled)
			}
		}},
		{"sms: a new record beside an earlier one is this filing", sms, rules3, baseline7, []recordsRead{{finding: dispatch.Finding{Records: []dispatch.Record{{ID: "7"}, {ID: "8", Outcome: dispatch.Outcome{Result: json.RawMessage(`{"id":8}`)}}}}}}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if res := d.mem.outcome; res == nil || !res.Reconciled || string(res.Result) != `{"id":8}` {
				t.Errorf("outcome %+v: want the new record", res)
			}
		}},
		{"sms: matches, and no baseline: an operator decides", sms, rules3, noBaseline, []recordsRead{earlier}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "which existed before")
		}},
		{"vms: matches, and no baseline: an operator decides", vms, rules3, noBaseline, []recordsRead{earlier}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			wantAmbiguous(t, d, "which existed before")
		}},
		{"vms: an earlier filing listed before the first call is not this one", vms, rules3, baseline7, []recordsRead{earlier, earlier, earlier}, func(t *testing.T, d *delivery, p *script, at []time.Duration) {
			if e := d.ledger.entry; e.Refiled != 1 || e.State != ledger.StateCalling {
				t.Errorf("entry %+v: want it filed again, the earlier record set aside", e)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := lostCall(t, tc.api, tc.rules, tc.edit)
			at := p.readOn(tc.reads...)
			tc.check(t, p.d, p, at)
		})
	}
}

func wantAmbiguous(t *testing.T, d *delivery, why string) {
	t.Helper()
	res := d.mem.outcome
	if res == nil || !isAmbiguous(res) || !strings.Contains(res.Error.Message, why) {
		t.Fatalf("outcome %+v: want ambiguous, saying %q", res, why)
	}
	if e := d.ledger.entry; e.Refiled > 1 || (e.State == ledger.StateCalling && e.Nonce != "n1") {
		t.Errorf("entry %+v: nothing may be filed again", e)
	}
}

// Another replica's lost call is reconciled too: its "calling" entry's
// lease is over, and nobody holds the answer.
func TestAnotherReplicasLostCallIsReconciled(t *testing.T) {
	d := newTest(t, messages.APIVMSAddQualification)
	d.rules.reconcile = rules3
	p := play(t, d, idTaken{}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "other", Nonce: "theirs",
		UpdatedAt: t0.Add(-time.Hour), BaselineKnown: true, Revision: 2, Trail: received(), Emitted: 1}})
	p.readOn(found1)
	if res := d.mem.outcome; res == nil || !res.Reconciled {
		t.Errorf("steps %v, outcome %+v: want reconciled", p.kinds(), res)
	}
}

// Shutdown while reconciling hands the message back, the entry left
// "calling" for the next delivery to reconcile.
func TestShutdownWhileReconciling(t *testing.T) {
	p := lostCall(t, messages.APIVMSAddQualification, rules3, nil).then(shutdown{})
	p.readOn()
	if s := p.last(); s.settle != settleShutdownReconciling || p.d.ledger.entry.State != ledger.StateCalling {
		t.Errorf("steps %v, settle %v, entry %s: want a nak, the entry calling", p.kinds(), s.settle, p.d.ledger.entry.State)
	}
}

// When the entry moved on meanwhile (another replica took the call over),
// reconciliation stops: nothing is read or filed again.
func TestReconcilingStopsWhenTheEntryMovedOn(t *testing.T) {
	p := lostCall(t, messages.APIVMSAddQualification, rules3, nil)
	for n := 0; p.last().kind != stepWrite || p.last().entry.Refiled != 1; n++ { // up to the refile's move to "calling"
		switch {
		case n > 100:
			t.Fatalf("steps %v: no refile", p.kinds())
		case p.last().kind == stepReconcile:
			p.then(absent)
		default:
			p.then(fine)
		}
	}
	p.then(conflicted{}, found{ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "other", Nonce: "theirs",
		UpdatedAt: t0, Revision: 4, Trail: received(), Emitted: 1}})
	if s := p.last(); s.kind != stepWatch || p.d.recon.active {
		t.Errorf("steps %v: want nothing read or filed again, the other replica's call watched", p.kinds())
	}
}

// A new create that can be reconciled (VMS or SMS) lists the vendor's
// matching records before its first call, and the move to "calling" keeps
// them; other apis, and reconciliation off, read nothing.
func TestBaselineBeforeTheFirstCall(t *testing.T) {
	for _, api := range []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent} {
		t.Run(string(api), func(t *testing.T) { testBaselineBeforeTheFirstCall(t, api) })
	}
	for _, tc := range []struct {
		name  string
		api   messages.API
		rules reconcileRules
	}{{"douyin", messages.APIDouyinAddRole, rules3}, {"reconciliation off", messages.APISMSApplySignatureIdent, reconcileRules{}}} {
		d := newTest(t, tc.api)
		d.rules.reconcile = tc.rules
		if got := fmt.Sprint(play(t, d, idTaken{}, fine, fine).kinds()); got != fmt.Sprint([]stepKind{stepTakeID, stepClaim, stepEmit, stepWrite}) {
			t.Errorf("%s: steps %s, want no baseline read", tc.name, got)
		}
	}
}

func testBaselineBeforeTheFirstCall(t *testing.T, sms messages.API) {
	d := newTest(t, sms)
	d.rules.reconcile = rules3
	p := play(t, d, idTaken{})
	if s := p.last(); s.kind != stepClaim || s.entry.State == ledger.StateCalling || s.entry.Nonce != "" {
		t.Fatalf("steps %v, entry %+v: want a plain claim", p.kinds(), s.entry)
	}
	if p.then(fine); p.last().kind != stepBaseline {
		t.Fatalf("steps %v: want the baseline read after the claim", p.kinds())
	}
	p.then(baselineRead{finding: dispatch.Finding{Records: []dispatch.Record{{ID: "7"}}}}, fine) // the received event, then the move
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateCalling || !s.entry.BaselineKnown || len(s.entry.Baseline) != 1 {
		t.Fatalf("steps %v, entry %+v: want the move to calling keeping the baseline", p.kinds(), s.entry)
	}
	// A claimed entry whose baseline is known is not read again.
	d = newTest(t, sms)
	d.rules.reconcile = rules3
	p = play(t, d, idTaken{}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateClaimed, Revision: 3, BaselineKnown: true, Trail: received(), Emitted: 1}})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateCalling {
		t.Errorf("with a known baseline: steps %v, want the move to calling", p.kinds())
	}
}
