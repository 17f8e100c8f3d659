package filing

import (
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// TestResubmission: a changed request under the id of one that ended with
// nothing filed is processed, its outcome superseding the earlier one; an
// id whose request filed something, or may have, stays refused.
func TestResubmission(t *testing.T) {
	for _, tc := range []struct {
		name string
		was  *messages.Result
		want bool
	}{
		{"rejected by the vendor", outcome(messages.StatusRejected, messages.ClassInvalid, t0), true},
		{"failed with a definite no", outcome(messages.StatusFailed, messages.ClassPermanent, t0), true},
		{"succeeded", outcome(messages.StatusSucceeded, "", t0), false},
		{"ambiguous", outcome(messages.StatusFailed, messages.ClassAmbiguous, t0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTest(t, vms)
			e := ledger.Entry{RequestID: "d-1", API: vms, State: ledger.StateDone, Fingerprint: "the first request", Nonce: "n1", Seq: 3,
				Result: tc.was, Attempts: 1, Revision: 4, Trail: received(), Emitted: 1}
			p := play(t, d, idTaken{}, claimed{e})
			if !tc.want {
				if s := p.last(); s.kind != stepResult || s.result.Error == nil || s.result.Error.Code != "IdReused" {
					t.Errorf("steps %v: want the reuse refused", p.kinds())
				}
				return
			}
			s := p.last()
			if s.kind != stepWrite || s.entry.State != ledger.StateClaimed || s.entry.Fingerprint != d.msg.fingerprint || !s.entry.Supersedes.Equal(t0) || s.entry.Attempts != 0 ||
				s.entry.Trail[len(s.entry.Trail)-1].Event != messages.EventReceived {
				t.Fatalf("steps %v, entry %+v: want the entry started over for the new request, with its received event", p.kinds(), s.entry)
			}
			for n := 0; p.last().kind != stepCall && n < 10; n++ {
				p.then(fine)
			}
			p.then(elapse(time.Second), fine)
			for n := 0; p.last().kind != stepWrite && n < 10; n++ {
				p.then(fine)
			}
			if r := p.last().entry.Result; r == nil || r.Status != messages.StatusSucceeded || !r.Supersedes.Equal(t0) {
				t.Errorf("steps %v, outcome %+v: want a success that supersedes the earlier outcome", p.kinds(), r)
			}
		})
	}
}

// TestSameVerdict: what two replicas' outcomes must share to be no
// conflict.
func TestSameVerdict(t *testing.T) {
	ok := func(api messages.API, result string) *messages.Result {
		return &messages.Result{API: api, Status: messages.StatusSucceeded, Result: []byte(result)}
	}
	for _, tc := range []struct {
		name string
		a, b *messages.Result
		want bool
	}{
		{"a create, the same record", ok(vms, `{"QualificationNo":"Q1"}`), ok(vms, `{"QualificationNo":"Q1"}`), true},
		{"a create, two records: filed twice", ok(vms, `{"QualificationNo":"Q1"}`), ok(vms, `{"QualificationNo":"Q2"}`), false},
		{"a read, two answers", ok(messages.APIDouyinGetClassAuth, `{"a":1}`), ok(messages.APIDouyinGetClassAuth, `{"a":2}`), true},
		{"the same refusal", outcome(messages.StatusFailed, messages.ClassPermanent, t0), outcome(messages.StatusFailed, messages.ClassPermanent, t0), true},
		{"a refusal and a success", outcome(messages.StatusFailed, messages.ClassPermanent, t0), ok(vms, ""), false},
	} {
		if got := sameVerdict(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: same verdict %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A rejected request keeps its files in the object store, for a
// resubmission that references them; a success removes them.
func TestRejectedKeepsItsFiles(t *testing.T) {
	if keepsNoFiles(outcome(messages.StatusRejected, messages.ClassInvalid, t0)) || !keepsNoFiles(outcome(messages.StatusSucceeded, "", t0)) {
		t.Error("want the files of a rejected request kept, of a succeeded one removed")
	}
}
