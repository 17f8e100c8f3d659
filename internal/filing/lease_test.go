package filing

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// TestLeaseTrustsNoWrittenTime: another replica's "calling" entry is taken
// for dead only after this replica has watched it keep one revision for
// the whole lease, whatever time the entry says it was written (a clock
// hours ahead or behind), and a renewal starts the watch over.
func TestLeaseTrustsNoWrittenTime(t *testing.T) {
	for _, written := range []time.Duration{-4 * time.Hour, 0, 4 * time.Hour} {
		d := newTest(t, vms)
		e := ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "other", Nonce: "theirs", UpdatedAt: t0.Add(written),
			Fingerprint: d.msg.fingerprint, Revision: 2, Trail: received(), Emitted: 1}
		p := play(t, d, idTaken{}, claimed{e}, fine, fine, fine)
		renewed := e
		renewed.Revision = 3
		p.then(found{renewed}, fine, fine, fine) // 45 s watched in all, 30 s of them unchanged
		if s := p.last(); s.kind != stepWatch {
			t.Fatalf("written %s: steps %v: want the renewed entry watched on", written, p.kinds())
		}
		p.then(fine)
		if s := p.last(); s.kind != stepWrite || !isAmbiguous(s.entry.Result) {
			t.Errorf("written %s: steps %v: want the entry taken for dead a lease after its last change", written, p.kinds())
		}
	}
}

// TestACopyWaitsForTheHoldersMessage: a copy of the request (another
// message than the one the entry names) takes the holder for dead only
// if, after the lease, that message is gone from the request stream too.
// While it is there (or the stream cannot tell), the copy is handed back
// for a lease, the id freed for that message's own redelivery.
func TestACopyWaitsForTheHoldersMessage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer holderMsg
		gone   bool
	}{
		{"there", holderMsg{}, false},
		{"the stream cannot tell", holderMsg{err: errors.New("timeout")}, false},
		{"gone", holderMsg{gone: true}, true},
	} {
		d := newTest(t, vms)
		e := ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "other", Nonce: "theirs", Seq: 3,
			Fingerprint: d.msg.fingerprint, Revision: 2, Trail: received(), Emitted: 1}
		p := play(t, d, idTaken{}, claimed{e}, fine, fine, fine)
		if s := p.last(); s.kind != stepWatch {
			t.Fatalf("%s: steps %v: want the entry watched for the lease", tc.name, p.kinds())
		}
		p.then(fine)
		if s := p.last(); s.kind != stepHolder || s.seq != 3 {
			t.Fatalf("%s: steps %v: want the stream asked for the holder's message (seq 3) after the lease", tc.name, p.kinds())
		}
		p.then(tc.answer)
		s := p.last()
		switch {
		case tc.gone && (s.kind != stepWrite || !isAmbiguous(s.entry.Result)):
			t.Errorf("%s: steps %v: want the holder taken for dead", tc.name, p.kinds())
		case !tc.gone && (s.kind != stepSettle || s.settle != settleInFlightElsewhere || s.delay != time.Minute):
			t.Errorf("%s: steps %v (%+v): want the copy handed back for a lease", tc.name, p.kinds(), s.settle)
		}
	}
}

// TestAHolderRenewsBeforeItCalls: a delivery that did not itself write the
// "calling" entry it holds renews it before it calls; one whose renewal is
// older than a quarter of the lease renews it again before its next
// attempt; a call carries the hold that the runner keeps up; and an
// attempt's event is recorded before it goes out.
func TestAHolderRenewsBeforeItCalls(t *testing.T) {
	p := play(t, newTest(t, vms), idTaken{mem: remembered{nonce: "n1"}}, claimed{ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "me",
		Nonce: "n1", Revision: 2, Trail: received(), Emitted: 1}})
	if s := p.last(); s.kind != stepWrite || s.entry.State != ledger.StateCalling || s.entry.Nonce != "n1" {
		t.Fatalf("steps %v: want the entry renewed first", p.kinds())
	}
	p.then(fine)
	s := p.last()
	if s.kind != stepCall || s.hold == nil || s.hold.entry.Revision != 3 || s.hold.left != time.Minute*2/3 || s.hold.renew != 15*time.Second {
		t.Fatalf("steps %v, hold %+v: want the call holding the renewed entry", p.kinds(), s.hold)
	}
	p.then(elapse(20*time.Second), called{err: transient})
	if s := p.last(); s.kind != stepWrite || !slices.ContainsFunc(s.entry.Trail, func(ev messages.AuditEvent) bool { return ev.Event == messages.EventAttempt }) {
		t.Fatalf("steps %v, entry %+v: want a write recording the attempt before it goes out", p.kinds(), p.last().entry)
	}
	if s := p.then(fine).last(); s.kind != stepEmit || s.events[0].Event != messages.EventAttempt {
		t.Fatalf("steps %v: want the attempt's event out once recorded", p.kinds())
	}
}

// A step cut short by the fence: the entry is read again, and a call cut
// short is taken for one that may have reached the vendor.
func TestACallCutOffIsALostCall(t *testing.T) {
	p := play(t, newTest(t, vms), idTaken{}, fine, fine, fine, cutOff{call: true})
	if s := p.last(); s.kind != stepRead {
		t.Fatalf("steps %v: want the entry read again", p.kinds())
	}
	e := *p.d.ledger.entry
	p.then(found{e})
	if s := p.last(); s.kind != stepWrite || !isAmbiguous(s.entry.Result) {
		t.Errorf("steps %v: want a create cut off mid-call ambiguous, never called again", p.kinds())
	}
}

// leaseLedger is a Ledger whose Put is put and whose Get answers with
// the entry held, owned by owner.
type leaseLedger struct {
	Ledger
	put   func(prev, next ledger.Entry) (ledger.Entry, error)
	owner string
}

func (l leaseLedger) Put(_ context.Context, prev, next ledger.Entry) (ledger.Entry, error) {
	return l.put(prev, next)
}

func (l leaseLedger) Get(context.Context, string, string) (ledger.Entry, error) {
	return ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Owner: l.owner, Revision: 9}, nil
}

type dispatcherFunc func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)

func (f dispatcherFunc) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	return f(ctx, req)
}

// TestTheRunnerFencesAStep: while a call lasts the runner renews the entry
// held; when no renewal lands (the ledger fails, or another replica moved
// the entry), the call is cut short at the fence, and not before.
func TestTheRunnerFencesAStep(t *testing.T) {
	hold := &holding{entry: ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Nonce: "n1", Revision: 2},
		renew: 50 * time.Millisecond, fence: 300 * time.Millisecond, left: 300 * time.Millisecond}
	conflict := func(ledger.Entry, ledger.Entry) (ledger.Entry, error) { return ledger.Entry{}, ledger.ErrConflict }
	for _, tc := range []struct {
		name     string
		put      func(prev, next ledger.Entry) (ledger.Entry, error)
		owner    string // of the entry read back after a conflict
		callTook time.Duration
		wantCut  bool
		min, max time.Duration
	}{
		{"renewals land: the call runs its course", func(_, next ledger.Entry) (ledger.Entry, error) { next.Revision++; return next, nil },
			"me", time.Second, false, time.Second, 2 * time.Second},
		{"renewals fail: cut at the fence", func(ledger.Entry, ledger.Entry) (ledger.Entry, error) {
			return ledger.Entry{}, errors.New("no responders")
		}, "me", 5 * time.Second, true, 300 * time.Millisecond, time.Second},
		{"another replica moved the entry: cut at once", conflict, "other", 5 * time.Second, true, 50 * time.Millisecond, 250 * time.Millisecond},
		{"a renewal of ours that landed late: not cut for it, but at the fence", conflict, "me", 5 * time.Second, true, 300 * time.Millisecond, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := dispatcherFunc(func(ctx context.Context, _ *messages.Request) (dispatch.Outcome, error) {
				select {
				case <-time.After(tc.callTook):
					return dispatch.Outcome{}, nil
				case <-ctx.Done():
					return dispatch.Outcome{}, ctx.Err()
				}
			})
			p := &Processor{cfg: Config{Now: time.Now, Owner: "me", PublishTimeout: time.Second, CallTimeout: time.Minute},
				disp: call, ledger: leaseLedger{put: tc.put, owner: tc.owner}}
			r := &runner{p: p, ctx: context.Background(), d: newTest(t, vms)}
			start := time.Now()
			a := r.lasting(step{kind: stepCall, hold: hold})
			took := time.Since(start)
			_, cut := a.(cutOff)
			if cut != tc.wantCut || took < tc.min || took > tc.max {
				t.Errorf("answer %T after %s: want cut %v after %s to %s", a, took, tc.wantCut, tc.min, tc.max)
			}
			if !tc.wantCut && (r.renewal == nil || r.renewal.entry.Revision <= 2) {
				t.Errorf("renewal %+v: want the last one reported", r.renewal)
			}
		})
	}
}

// A watch counts only time the entry was seen unchanged read after read:
// a failed read (the ledger unreachable, where the holder cannot renew
// either) starts it over.
func TestAWatchStartsOverAfterAFailedRead(t *testing.T) {
	d := newTest(t, vms)
	d.rules.troubleBudget = time.Hour
	e := ledger.Entry{RequestID: "d-1", State: ledger.StateCalling, Owner: "other", Nonce: "theirs", Revision: 2, Trail: received(), Emitted: 1}
	p := play(t, d, idTaken{}, claimed{e}, fine, fine, failed{op: stepRead, err: transient}, fine, fine, fine, fine)
	if s := p.last(); s.kind != stepWatch {
		t.Errorf("steps %v: want the entry still watched, a full lease after the failed read", p.kinds())
	}
}

// A claim whose reply was lost just before the grace period ended leaves
// nothing for lost: a claim never says a call may be in flight, so the
// message is handed back, and the next replica files the request.
func TestShutdownAfterALostClaimReplyCallsNothingLost(t *testing.T) {
	d := newTest(t, messages.APIVMSUpdateQualification)
	p := play(t, d, idTaken{}, shutdown{}, failed{op: stepClaim, err: transient, mayHaveLanded: true})
	if s := p.last(); s.kind != stepSettle || s.settle.action != retry.ActionNakWithDelay || d.mem.nonce != "" || d.mem.outcome != nil {
		t.Errorf("steps %v, settle %v, memory %+v: want it handed back, nothing to resolve", p.kinds(), s.settle, d.mem)
	}
	if e := p.steps[1].entry; e.State == ledger.StateCalling || e.Nonce != "" {
		t.Errorf("claim %+v: want a plain claim", e)
	}
}

// A hold that lapsed is not taken back: a step cut off by the fence while
// a retry was due, an entry another replica took over under this
// replica's own nonce, a write known only later to have landed, an entry
// that vanished under a call that was cut off — none leads to a call
// without a fresh hold, and none to a second call of a create.
func TestALapsedHoldIsNotTakenBack(t *testing.T) {
	mine := func(d *delivery) ledger.Entry {
		return ledger.Entry{RequestID: "d-1", API: vms, State: ledger.StateCalling, Owner: "me", Nonce: "n1", Fingerprint: d.msg.fingerprint,
			Revision: 2, Trail: received(), Emitted: 1}
	}
	t.Run("a sleep before a retry cut off, the entry taken over", func(t *testing.T) {
		d := newTest(t, vms)
		p := play(t, d, idTaken{mem: remembered{nonce: "n1"}}, claimed{mine(d)}, fine, called{err: transient}, fine, fine)
		if s := p.last(); s.kind != stepSleep {
			t.Fatalf("steps %v: want the backoff", p.kinds())
		}
		theirs := mine(d)
		theirs.Owner, theirs.Nonce, theirs.Revision = "other", "n2", 5
		p.then(cutOff{}, found{theirs})
		if s := p.last(); s.kind != stepWatch {
			t.Errorf("steps %v: want the other replica's call watched, nothing called", p.kinds())
		}
	})
	t.Run("the own nonce under another owner", func(t *testing.T) {
		d := newTest(t, vms)
		e := mine(d)
		e.Owner = "other" // it took the call over, reconciling under this replica's nonce
		p := play(t, d, idTaken{mem: remembered{nonce: "n1", dispatched: true, answered: true}}, claimed{e})
		if s := p.last(); s.kind != stepWatch {
			t.Errorf("steps %v: want the other replica watched, not the call adopted", p.kinds())
		}
	})
	t.Run("a write known later to have landed renews nothing", func(t *testing.T) {
		d := newTest(t, vms)
		claimedEntry := mine(d)
		claimedEntry.State, claimedEntry.Nonce, claimedEntry.Owner = ledger.StateClaimed, "", ""
		p := play(t, d, idTaken{}, claimed{claimedEntry})
		s := p.last()
		if s.kind != stepWrite || s.entry.State != ledger.StateCalling {
			t.Fatalf("steps %v: want the move to calling", p.kinds())
		}
		landed := s.entry
		landed.Revision = 3
		p.then(failed{op: stepWrite, err: transient, mayHaveLanded: true, tried: &landed}, fine, found{landed})
		if s := p.last(); s.kind != stepWrite || s.entry.Nonce != landed.Nonce {
			t.Errorf("steps %v: want a renewal before the call", p.kinds())
		}
	})
	t.Run("a takeover lost to another replica", func(t *testing.T) {
		d := newTest(t, vms)
		d.rules.reconcile = rules3
		dead := mine(d)
		dead.Owner, dead.Nonce = "other", "theirs"
		p := play(t, d, idTaken{}, claimed{dead}, fine, fine, fine, fine)
		for n := 0; p.last().kind != stepWrite && n < 5; n++ {
			p.then(fine)
		}
		if s := p.last(); s.kind != stepWrite || s.entry.Nonce != "theirs" || s.entry.Owner != "me" {
			t.Fatalf("steps %v: want the dead holder's entry renewed by this replica before it reads", p.kinds())
		}
		won := dead
		won.Owner, won.Revision = "third", 4
		p.then(conflicted{}, found{won})
		if s := p.last(); s.kind != stepWatch || p.d.recon.active {
			t.Errorf("steps %v: want the replica that won the takeover watched, nothing read or filed", p.kinds())
		}
	})
	t.Run("the entry vanished under a call cut off", func(t *testing.T) {
		d := newTest(t, vms)
		p := play(t, d, idTaken{}, fine, fine, fine, cutOff{call: true}, notFound{})
		if s := p.last(); s.kind != stepWrite || !isAmbiguous(s.entry.Result) {
			t.Errorf("steps %v: want it ambiguous, never called again", p.kinds())
		}
	})
}

// TestTheHoldersMessageIsAskedOfTheStream: the runner asks the request
// stream (a real one) for the message whose delivery holds an entry: there
// while the stream holds it, gone once it is removed, and gone when the
// sequence holds another request (the stream was recreated since).
func TestTheHoldersMessageIsAskedOfTheStream(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "REQS", Subjects: []string{"reqs.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d-1", "other", "d-1"} {
		if _, err := js.Publish(ctx, "reqs.x", []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	r := &runner{p: &Processor{cfg: Config{Requests: st, PublishTimeout: 5 * time.Second}, log: zap.NewNop()}, ctx: ctx, d: newTest(t, vms)}
	for seq, gone := range map[uint64]bool{1: false, 2: true, 3: true, 4: true} {
		if a := r.holder(seq); a != (holderMsg{gone: gone}) {
			t.Errorf("seq %d: %+v, want gone %v", seq, a, gone)
		}
	}
}
