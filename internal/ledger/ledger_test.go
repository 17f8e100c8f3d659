package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a fake Now that steps one second per call.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func open(t *testing.T) (*ledger.Ledger, jetstream.JetStream) {
	t.Helper()
	js, _, _ := natstest.JetStream(t)
	c := &clock{t: t0}
	l, err := ledger.Open(ctx(t), js, ledger.Config{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return l, js
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClaimOnce(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	e, created, err := l.Claim(c, "req-1", messages.APIVMSAddQualification, "replica-a")
	if err != nil || !created {
		t.Fatalf("first claim: created=%v err=%v", created, err)
	}
	if e.State != ledger.StateClaimed || e.Revision == 0 || e.Owner != "replica-a" || e.API != messages.APIVMSAddQualification || !e.UpdatedAt.After(t0) {
		t.Fatalf("first claim entry %+v", e)
	}
	again, created, err := l.Claim(c, "req-1", messages.APIVMSAddQualification, "replica-b")
	if err != nil || created {
		t.Fatalf("second claim: created=%v err=%v", created, err)
	}
	if again.Revision != e.Revision || again.Owner != "replica-a" || again.State != ledger.StateClaimed || !again.UpdatedAt.Equal(e.UpdatedAt) {
		t.Fatalf("second claim returned %+v, want %+v", again, e)
	}
}

func TestConcurrentClaims(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	const n = 20
	var wg sync.WaitGroup
	results := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, results[i], errs[i] = l.Claim(c, "race", messages.APIDouyinAddRole, "r")
		})
	}
	wg.Wait()
	won := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
		}
		if results[i] {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d claims created the entry, want 1", won)
	}
}

func TestTransitionConflict(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	e, _, err := l.Claim(c, "cas-1", messages.APISMSApplySignatureIdent, "a")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	got := make([]ledger.Entry, n)
	for i := range n {
		wg.Go(func() {
			<-start
			got[i], errs[i] = l.Transition(c, e, ledger.StateCalling, func(e *ledger.Entry) {
				e.Owner = "replica-" + string(rune('a'+i))
				e.Attempts = i
			})
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("transitions %d and %d both won", winner, i)
			}
			winner = i
		case errors.Is(err, ledger.ErrConflict):
			var ce *ledger.ConflictError
			if !errors.As(err, &ce) || ce.Revision != e.Revision || ce.RequestID != "cas-1" {
				t.Fatalf("conflict %d: %#v", i, err)
			}
		default:
			t.Fatalf("transition %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no transition won")
	}
	stored, err := l.Get(c, "", "cas-1")
	if err != nil {
		t.Fatal(err)
	}
	w := got[winner]
	if stored.Revision != w.Revision || stored.Owner != w.Owner || stored.Attempts != winner || stored.State != ledger.StateCalling {
		t.Fatalf("stored %+v, winner %+v", stored, w)
	}
	// The stale entry loses again; the fresh one moves on.
	if _, err := l.Transition(c, e, ledger.StateDone, withResult); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("stale transition: %v, want ErrConflict", err)
	}
	if _, err := l.Transition(c, stored, ledger.StateClaimed, nil); err != nil {
		t.Fatal(err)
	}
}

func withResult(e *ledger.Entry) {
	e.Result = &messages.Result{RequestID: e.RequestID, API: e.API, Status: messages.StatusFailed, Error: &messages.ResultError{Message: "x", Class: messages.ClassPermanent}}
}

func TestTransitions(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	claim := func(id string) ledger.Entry {
		t.Helper()
		e, _, err := l.Claim(c, id, messages.APIVMSUpdateQualification, "a")
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	step := func(e ledger.Entry, to ledger.State, mutate func(*ledger.Entry)) ledger.Entry {
		t.Helper()
		n, err := l.Transition(c, e, to, mutate)
		if err != nil {
			t.Fatalf("%s -> %s: %v", e.State, to, err)
		}
		if n.State != to || n.Revision <= e.Revision || !n.UpdatedAt.After(e.UpdatedAt) {
			t.Fatalf("%s -> %s gave %+v", e.State, to, n)
		}
		return n
	}
	forbid := func(e ledger.Entry, to ledger.State) {
		t.Helper()
		_, err := l.Transition(c, e, to, func(e *ledger.Entry) { // another outcome
			withResult(e)
			e.Result.Status, e.Result.Error = messages.StatusSucceeded, nil
		})
		var te *ledger.TransitionError
		if !errors.Is(err, ledger.ErrBadTransition) || !errors.As(err, &te) || te.From != e.State || te.To != to {
			t.Fatalf("%s -> %s: %v, want ErrBadTransition", e.State, to, err)
		}
	}

	// claimed → calling → claimed → calling → calling (taken over) → done
	e := claim("t-1")
	forbid(e, ledger.StateClaimed)
	e = step(e, ledger.StateCalling, func(e *ledger.Entry) { e.Attempts++ })
	e = step(e, ledger.StateClaimed, nil)
	e = step(e, ledger.StateCalling, func(e *ledger.Entry) { e.Attempts++ })
	e = step(e, ledger.StateCalling, func(e *ledger.Entry) { e.Owner = "b" })
	e = step(e, ledger.StateDone, withResult)
	if e.Attempts != 2 {
		t.Fatalf("attempts %d, want 2", e.Attempts)
	}
	// A known outcome is moved only by a replay.
	for _, to := range []ledger.State{ledger.StateDone, ledger.StateCalling, "bogus"} {
		forbid(e, to)
	}
	// The forbidden attempts changed nothing.
	if got, err := l.Get(c, "", "t-1"); err != nil || got.Revision != e.Revision {
		t.Fatalf("after forbidden transitions: %+v %v", got, err)
	}
	step(e, ledger.StateClaimed, nil)

	// claimed → done (no call needed).
	d := step(claim("t-2"), ledger.StateDone, withResult)
	forbid(d, ledger.StateDone)
	// The trail of an outcome that stays may grow; an operator's
	// resolution may replace the outcome.
	d = step(d, ledger.StateDone, func(e *ledger.Entry) {
		e.Trail = append(e.Trail, messages.AuditEvent{Event: messages.EventDeadRemoved})
	})
	d = step(d, ledger.StateDone, func(e *ledger.Entry) {
		e.Result = &messages.Result{RequestID: e.RequestID, Status: messages.StatusSucceeded, CompletedAt: time.Now(),
			Resolution: &messages.Resolution{Decision: messages.DecisionFiled, Record: "R-1", Operator: "alice", Reason: "the vendor lists it"}}
	})
	forbid(d, ledger.StateDone)

	// An ambiguous outcome may be settled: done → done, or done → calling
	// when the call is known never to have been sent.
	amb := step(claim("t-6"), ledger.StateDone, func(e *ledger.Entry) {
		withResult(e)
		e.Result.Error.Class = messages.ClassAmbiguous
	})
	step(amb, ledger.StateDone, withResult)
	amb2 := step(claim("t-7"), ledger.StateDone, func(e *ledger.Entry) {
		withResult(e)
		e.Result.Error.Class = messages.ClassAmbiguous
	})
	step(amb2, ledger.StateCalling, nil)

	// done needs a result.
	if _, err := l.Transition(c, claim("t-3"), ledger.StateDone, nil); !errors.Is(err, ledger.ErrNoResult) {
		t.Fatalf("done without result: %v", err)
	}
	// An entry not read from the ledger has no revision.
	if _, err := l.Transition(c, ledger.Entry{RequestID: "t-4", State: ledger.StateClaimed}, ledger.StateCalling, nil); !errors.Is(err, ledger.ErrNoRevision) {
		t.Fatalf("no revision: %v", err)
	}
	// mutate may not rename the entry or change the target state, but may
	// set UpdatedAt.
	past := t0.Add(-time.Hour)
	e = claim("t-5")
	e = step(e, ledger.StateCalling, func(e *ledger.Entry) {
		e.RequestID, e.State, e.Owner = "other", ledger.StateDone, "b"
	})
	if e.RequestID != "t-5" || e.Owner != "b" {
		t.Fatalf("mutated entry %+v", e)
	}
	e, err := l.Transition(c, e, ledger.StateClaimed, func(e *ledger.Entry) { e.UpdatedAt = past })
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Get(c, "", "t-5"); err != nil || !got.UpdatedAt.Equal(past) || got.State != ledger.StateClaimed || got.Revision != e.Revision {
		t.Fatalf("stored %+v %v", got, err)
	}
}

func TestResultRoundTrip(t *testing.T) {
	l, _ := open(t)
	c := ctx(t)
	e, _, err := l.Claim(c, "sms-1", messages.APISMSApplySignatureIdent, "a")
	if err != nil {
		t.Fatal(err)
	}
	e, err = l.Transition(c, e, ledger.StateCalling, func(e *ledger.Entry) { e.Attempts = 1 })
	if err != nil {
		t.Fatal(err)
	}
	res := &messages.Result{
		RequestID: "sms-1", API: messages.APISMSApplySignatureIdent, Account: "default",
		Status: messages.StatusSucceeded, Attempts: 1,
		Result:            json.RawMessage(`{"id":9007199254740993}`),
		UpstreamRequestID: "up-1",
		ReceivedAt:        t0, CompletedAt: t0.Add(time.Second),
		Metadata: map[string]string{"k": "v"},
	}
	if _, err := l.Transition(c, e, ledger.StateDone, func(e *ledger.Entry) { e.Result = res }); err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(c, "", "sms-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != ledger.StateDone || got.Result == nil || got.Attempts != 1 {
		t.Fatalf("got %+v", got)
	}
	if string(got.Result.Result) != `{"id":9007199254740993}` {
		t.Fatalf("result %s", got.Result.Result)
	}
	var v struct{ ID int64 }
	dec := json.NewDecoder(strings.NewReader(string(got.Result.Result)))
	if err := dec.Decode(&v); err != nil || v.ID != 9007199254740993 {
		t.Fatalf("id %d %v, want 9007199254740993", v.ID, err)
	}
	r := got.Result
	if r.Status != res.Status || r.UpstreamRequestID != "up-1" || !r.CompletedAt.Equal(res.CompletedAt) || r.Metadata["k"] != "v" {
		t.Fatalf("result %+v", r)
	}
}

func TestKeyEncoding(t *testing.T) {
	// Every id has a key of its own: distinct ids never share an entry.
	ids := map[string]string{}
	for _, id := range []string{"a", "urn:req:1", "urn:req.1", "a.b", ".lead", "trail.", "a..b", "::", "x-y_z.9:Q", strings.Repeat("a:", 64)} {
		for _, tenant := range []string{"", "acme", "a"} {
			key, err := ledger.Key(tenant, id)
			if err != nil {
				t.Fatalf("Key(%q, %q): %v", tenant, id, err)
			}
			if strings.ContainsAny(strings.TrimPrefix(key, tenant+"."), ":.") || (tenant != "" && !strings.HasPrefix(key, tenant+".")) {
				t.Fatalf("Key(%q, %q) = %q", tenant, id, key)
			}
			if other, ok := ids[key]; ok {
				t.Fatalf("Key(%q, %q) = Key(%s) = %q", tenant, id, other, key)
			}
			ids[key] = tenant + " " + id
		}
	}
	for _, id := range []string{"", "a b", "a=b", "ä", "a*", "a>", strings.Repeat("a", 129)} {
		if _, err := ledger.Key("", id); !errors.Is(err, ledger.ErrInvalidID) {
			t.Fatalf("Key(%q): %v, want ErrInvalidID", id, err)
		}
	}
	for _, tenant := range []string{"vms", "Acme", "a.b", "a b", strings.Repeat("a", 33)} {
		if _, err := ledger.Key(tenant, "x"); !errors.Is(err, ledger.ErrInvalidID) {
			t.Fatalf("Key(%q, x): %v, want ErrInvalidID", tenant, err)
		}
	}
}

func TestKeyEncodingInBucket(t *testing.T) {
	l, js := open(t)
	c := ctx(t)
	ids := []string{"urn:req:1", "urn:req.1", ".x:", "a..b"}
	for _, id := range ids {
		if _, created, err := l.Claim(c, id, messages.APIVMSAddQualification, "a"); err != nil || !created {
			t.Fatalf("claim %q: %v %v", id, created, err)
		}
	}
	for _, id := range ids {
		e, err := l.Get(c, "", id)
		if err != nil || e.RequestID != id {
			t.Fatalf("get %q: %+v %v", id, e, err)
		}
	}
	kv, err := js.KeyValue(c, ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(c)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k] = true
	}
	for _, id := range ids {
		if k, _ := ledger.Key("", id); !seen[k] {
			t.Fatalf("id %q not among keys %q", id, keys)
		}
	}
	if _, err := kv.Get(c, "urn=3Areq=3A1"); err != nil {
		t.Fatalf("documented key form: %v", err)
	}
}

// TestDeleteThenClaim: an entry deleted under the ledger (its key removed,
// as an expiry does) is claimed afresh, by exactly one of several.
func TestDeleteThenClaim(t *testing.T) {
	l, js := open(t)
	c := ctx(t)
	kv, err := js.KeyValue(c, ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	del := func(id string) error { return kv.Delete(c, id) }
	if _, err := l.Get(c, "", "del-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("get before claim: %v", err)
	}
	if err := del("del-1"); err != nil {
		t.Fatalf("delete absent: %v", err)
	}
	e, _, err := l.Claim(c, "del-1", messages.APIDouyinAddRole, "a")
	if err != nil {
		t.Fatal(err)
	}
	e, err = l.Transition(c, e, ledger.StateDone, withResult)
	if err != nil {
		t.Fatal(err)
	}
	if err := del("del-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Get(c, "", "del-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	// A transition from before the delete loses.
	if _, err := l.Transition(c, ledger.Entry{RequestID: "del-1", State: ledger.StateClaimed, Revision: e.Revision}, ledger.StateCalling, nil); !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("transition after delete: %v", err)
	}
	again, created, err := l.Claim(c, "del-1", messages.APIDouyinAddRole, "b")
	if err != nil || !created || again.State != ledger.StateClaimed || again.Owner != "b" || again.Result != nil {
		t.Fatalf("claim after delete: %+v created=%v err=%v", again, created, err)
	}
	// Concurrent claims after a delete: still exactly one creates.
	if err := del("del-1"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 10 {
		wg.Go(func() {
			_, created, err := l.Claim(c, "del-1", messages.APIDouyinAddRole, "c")
			if err != nil {
				t.Error(err)
			}
			if created {
				mu.Lock()
				won++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d claims created after delete, want 1", won)
	}
}

func TestOpenIdempotent(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	c := ctx(t)
	a, err := ledger.Open(c, js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Claim(c, "keep", messages.APIVMSAddQualification, "a"); err != nil {
		t.Fatal(err)
	}
	b, err := ledger.Open(c, js, ledger.Config{})
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
	if e, err := b.Get(c, "", "keep"); err != nil || e.State != ledger.StateClaimed {
		t.Fatalf("entry after reopen: %+v %v", e, err)
	}
	kv, err := js.KeyValue(c, ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(c)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != ledger.DefaultMaxAge || st.History() != 1 || b.Bucket() != ledger.DefaultBucket {
		t.Fatalf("bucket ttl %s history %d name %s", st.TTL(), st.History(), b.Bucket())
	}
	// A custom bucket and max age.
	cst, err := ledger.Open(c, js, ledger.Config{Bucket: "OTHER_LEDGER", MaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cst.Get(c, "", "keep"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("other bucket shares entries: %v", err)
	}
	if _, err := ledger.Open(c, js, ledger.Config{Replicas: 7}); !errors.Is(err, ledger.ErrInvalidConfig) {
		t.Fatalf("replicas 7: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ledger.Config
		wantErr error
	}{
		{"zero", ledger.Config{}, nil},
		{"explicit", ledger.Config{Bucket: "L", Replicas: 5, MaxAge: time.Hour}, nil},
		{"replicas 6", ledger.Config{Replicas: 6}, ledger.ErrInvalidConfig},
		{"negative replicas", ledger.Config{Replicas: -1}, ledger.ErrInvalidConfig},
		{"negative max age", ledger.Config{MaxAge: -time.Second}, ledger.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}

func TestCorruptEntry(t *testing.T) {
	l, js := open(t)
	c := ctx(t)
	kv, err := js.KeyValue(c, ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(c, "bad", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	var de *ledger.DecodeError
	if _, err := l.Get(c, "", "bad"); !errors.As(err, &de) {
		t.Fatalf("get corrupt: %v", err)
	}
	if _, _, err := l.Claim(c, "bad", messages.APIVMSAddQualification, "a"); !errors.As(err, &de) {
		t.Fatalf("claim corrupt: %v", err)
	}
}

// TestLedgerRefusesRollups: a message with a Nats-Rollup header, which
// anyone allowed to write one entry could send, is refused by the bucket:
// it would have purged every entry.
func TestLedgerRefusesRollups(t *testing.T) {
	_, js := open(t)
	c := ctx(t)
	// As a replica's restart opens it again.
	l, err := ledger.Open(c, js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Claim(c, "keep-1", messages.APIVMSAddQualification, "a"); err != nil {
		t.Fatal(err)
	}
	for _, rollup := range []string{"all", "sub"} {
		m := nats.NewMsg("$KV." + ledger.DefaultBucket + ".x")
		m.Header.Set(jetstream.MsgRollup, rollup)
		if _, err := js.PublishMsg(c, m); err == nil {
			t.Errorf("a rollup %q was stored", rollup)
		}
	}
	if _, err := l.Get(c, "", "keep-1"); err != nil {
		t.Errorf("after the rollups: %v", err)
	}
}

// TestADoneEntryWithoutAResultIsRefusedNotPanicked: a done entry without
// a result (a corrupt or foreign entry) written again is an error.
func TestADoneEntryWithoutAResultIsRefusedNotPanicked(t *testing.T) {
	l, js := open(t)
	c := ctx(t)
	kv, err := js.KeyValue(c, ledger.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(c, "x-1", []byte(`{"request_id":"x-1","state":"done"}`)); err != nil {
		t.Fatal(err)
	}
	e, err := l.Get(c, "", "x-1")
	if err != nil {
		t.Fatal(err)
	}
	next := e
	next.Trail = append(next.Trail, messages.AuditEvent{Event: messages.EventDeadRemoved})
	if _, err := l.Put(c, e, next); !errors.Is(err, ledger.ErrBadTransition) {
		t.Fatalf("Put: %v, want ErrBadTransition", err)
	}
}
