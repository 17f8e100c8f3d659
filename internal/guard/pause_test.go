package guard

import (
	"context"
	"errors"
	"iter"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// fakeBallot is a Ballot in memory; put and list may be made to fail.
type fakeBallot struct {
	mu      sync.Mutex
	entries map[string]Entry
	now     func() time.Time
	failPut error
}

func (b *fakeBallot) PutString(_ context.Context, key, value string) (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failPut != nil {
		return 0, b.failPut
	}
	b.entries[key] = Entry{Value: value, Created: b.now()}
	return 1, nil
}

func (b *fakeBallot) Entries(context.Context) (iter.Seq2[string, Entry], error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	copied := map[string]Entry{}
	for k, e := range b.entries {
		copied[k] = e
	}
	return func(yield func(string, Entry) bool) {
		for k, e := range copied {
			if !yield(k, e) {
				return
			}
		}
	}, nil
}

// fakePauser and fakeGauges record what they are told, with function
// fields for what a test makes them answer.
type fakePauser struct {
	pause, resume func() error
	paused        []time.Time
	resumed       int
}

func (p *fakePauser) Pause(ctx context.Context, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.pause != nil {
		if err := p.pause(); err != nil {
			return err
		}
	}
	p.paused = append(p.paused, until)
	return nil
}

func (p *fakePauser) Resume(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.resume != nil {
		if err := p.resume(); err != nil {
			return err
		}
	}
	p.resumed++
	return nil
}

type fakeGauges struct {
	breaker map[string]int
	paused  bool
}

func (g *fakeGauges) Guard(vendor, account string, state int, _ float64) {
	g.breaker[vendor+"/"+account] = state
}
func (g *fakeGauges) Paused(p bool) { g.paused = p }

// TestWatchPausesOnlyByAgreement: the shared consumer is paused only when
// every live replica votes that all its breakers are open, until the
// first of them lets a probe through; it is resumed once a breaker lets
// calls through, and a vote of a replica gone silent does not count.
func TestWatchPausesOnlyByAgreement(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	vendor := &fakeVendor{answer: func() error { return retry.ErrTransient }}
	g := New(Config{Pairs: []Pair{{"vms", "default"}}, Failures: 1, OpenFor: time.Minute}, vendor, vendor)
	ballot := &fakeBallot{entries: map[string]Entry{}, now: clock}
	pauser, gauges := &fakePauser{}, &fakeGauges{breaker: map[string]int{}}
	var events []messages.AuditEvent
	w := NewWatch(WatchConfig{Guard: g, Owner: "me", Ballot: ballot, Pauser: pauser, Gauges: gauges, Interval: time.Second, Timeout: time.Second, Now: clock,
		Emit: func(_ context.Context, key string, ev messages.AuditEvent) {
			if key != "vms/default" {
				t.Errorf("event about %q", key)
			}
			events = append(events, ev)
		}})
	ctx := context.Background()
	// Two replicas alive; the breaker still closed: no pause.
	ballot.entries["me"] = Entry{Created: now}
	ballot.entries["other"] = Entry{Created: now}
	w.refresh(ctx)
	if len(pauser.paused) != 0 || gauges.breaker["vms/default"] != 0 {
		t.Fatalf("paused %v, gauges %v with the breaker closed", pauser.paused, gauges.breaker)
	}
	// Our breaker opens: one event, our vote, but the other replica has
	// not voted: no pause.
	if _, err := g.Dispatch(ctx, &messages.Request{API: messages.APIVMSAddQualification}); err == nil {
		t.Fatal("the vendor's failure was not returned")
	}
	w.changed(ctx, <-g.Changes())
	w.refresh(ctx)
	if len(events) != 1 || events[0].Event != EventBreakerOpen || events[0].API != "breaker.vms" {
		t.Fatalf("events %+v, want one breaker_open", events)
	}
	if len(pauser.paused) != 0 || gauges.breaker["vms/default"] != 2 {
		t.Fatalf("paused %v, gauges %v: the other replica did not agree", pauser.paused, gauges.breaker)
	}
	// The other replica votes too, until later than ours: paused until
	// the first probe.
	ours, _ := time.Parse(time.RFC3339Nano, ballot.entries[votePrefix+"me"].Value)
	ballot.entries[votePrefix+"other"] = Entry{Value: ours.Add(time.Hour).Format(time.RFC3339Nano), Created: now}
	w.refresh(ctx)
	if len(pauser.paused) != 1 || !pauser.paused[0].Equal(ours) || !gauges.paused {
		t.Fatalf("paused %v (want until %s), gauge %v", pauser.paused, ours, gauges.paused)
	}
	// The other replica's breakers let calls through again: resumed.
	ballot.entries[votePrefix+"other"] = Entry{Value: "-", Created: now}
	w.refresh(ctx)
	if pauser.resumed != 1 || gauges.paused {
		t.Fatalf("resumed %d, gauge %v after the other replica's breakers closed", pauser.resumed, gauges.paused)
	}
	// Two intervals later it has not written again: it still counts.
	now = now.Add(2 * time.Second)
	ballot.entries["me"] = Entry{Created: now}
	w.refresh(ctx)
	if len(pauser.paused) != 1 || gauges.paused {
		t.Fatalf("paused %d times: a replica silent for two intervals still counts", len(pauser.paused))
	}
	// It falls silent for more than three intervals: neither its vote nor
	// its presence counts any more, and ours alone agrees.
	now = now.Add(2 * time.Second)
	ballot.entries["me"] = Entry{Created: now}
	w.refresh(ctx)
	if len(pauser.paused) != 2 || !gauges.paused {
		t.Fatalf("paused %d times, want again with the silent replica left out", len(pauser.paused))
	}
	// Our breaker's open time has passed (a probe is due): no pause while
	// it probes, whatever the votes say.
	now = ours.Add(time.Second)
	ballot.entries["me"] = Entry{Created: now}
	ballot.entries[votePrefix+"me"] = Entry{Value: ours.Format(time.RFC3339Nano), Created: now}
	w.refresh(ctx)
	if pauser.resumed != 2 || gauges.paused {
		t.Fatalf("resumed %d, gauge %v: a pause that has run out must be lifted", pauser.resumed, gauges.paused)
	}
	now = ours.Add(-5 * time.Second)
	ballot.entries["me"] = Entry{Created: now}
	w.refresh(ctx)
	if len(pauser.paused) != 3 {
		t.Fatalf("paused %d times, want again before the probe is due", len(pauser.paused))
	}
	// The ballot cannot be written: no agreement, so resume.
	ballot.failPut = errors.New("no quorum")
	w.refresh(ctx)
	if pauser.resumed != 3 || gauges.paused {
		t.Fatalf("resumed %d, gauge %v: a replica that cannot vote must not keep a pause", pauser.resumed, gauges.paused)
	}
}

// TestWatchLeavesNoPauseBehind: a replica that stops while it has the
// consumer paused resumes it, even with its context already over.
func TestWatchLeavesNoPauseBehind(t *testing.T) {
	vendor := &fakeVendor{answer: func() error { return retry.ErrTransient }}
	g := New(Config{Pairs: []Pair{{"vms", "default"}}, Failures: 1, OpenFor: time.Minute}, vendor, vendor)
	_, _ = g.Dispatch(context.Background(), &messages.Request{API: messages.APIVMSAddQualification})
	<-g.Changes() // taken here, so that Run sees only its context's end
	ballot := &fakeBallot{entries: map[string]Entry{"me": {Created: time.Now()}}, now: time.Now}
	pauser := &fakePauser{}
	w := NewWatch(WatchConfig{Guard: g, Owner: "me", Ballot: ballot, Pauser: pauser, Gauges: &fakeGauges{breaker: map[string]int{}},
		Interval: time.Hour, Timeout: time.Second, Emit: func(context.Context, string, messages.AuditEvent) {}})
	w.refresh(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Run(ctx)
	if len(pauser.paused) != 1 || pauser.resumed != 1 {
		t.Fatalf("paused %d and resumed %d times, want each once", len(pauser.paused), pauser.resumed)
	}
}
