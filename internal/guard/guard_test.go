package guard

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// fakeVendor answers with answer() and records when each call started.
type fakeVendor struct {
	mu     sync.Mutex
	starts []time.Time
	answer func() error
	reads  atomic.Int32
}

func (f *fakeVendor) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	answer := f.answer
	f.mu.Unlock()
	if answer == nil {
		return dispatch.Outcome{}, nil
	}
	return dispatch.Outcome{}, answer()
}

func (f *fakeVendor) ReconcilePaced(ctx context.Context, req *messages.Request, pace func(context.Context) error) (dispatch.Finding, error) {
	f.reads.Add(1)
	return dispatch.Finding{}, nil
}

func (f *fakeVendor) calls() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.starts...)
}

var vms = Pair{"vms", "default"}

func vmsRequest() *messages.Request {
	return &messages.Request{ID: "g-1", API: messages.APIVMSAddQualification}
}

var (
	systemError = func() error { return fmt.Errorf("SystemError: %w", retry.ErrTransient) }
	badRequest  = func() error { return fmt.Errorf("RequestParametersError: %w", retry.ErrPermanent) }
)

func TestBreakerOpensHoldsAndRecovers(t *testing.T) {
	f := &fakeVendor{answer: systemError}
	g := New(Config{Pairs: []Pair{vms}, Failures: 3, OpenFor: 300 * time.Millisecond}, f, f)
	ctx := context.Background()
	for range 3 {
		if _, err := g.Dispatch(ctx, vmsRequest()); retry.ClassOf(err) != retry.ClassTransient {
			t.Fatalf("err %v, want the vendor's transient error", err)
		}
	}
	// Open: held back, nothing sent.
	_, err := g.Dispatch(ctx, vmsRequest())
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, retry.ErrHeld) || held.Why != WhyOpen || held.RetryAfter <= 0 || held.RetryAfter > 300*time.Millisecond+time.Second {
		t.Fatalf("err %v, want held (circuit open) with a retry-after", err)
	}
	if n := len(f.calls()); n != 3 {
		t.Fatalf("the vendor saw %d calls, want 3: an open breaker sends nothing", n)
	}
	if st := g.States()[0]; st.Breaker != Open || st.OpenUntil.IsZero() {
		t.Errorf("state %+v, want open with its end", st)
	}
	if until, ok := PauseUntil(g.States()); !ok || until.IsZero() {
		t.Errorf("PauseUntil = %v, %v: every pair is open", until, ok)
	}
	// A vendor that fails every call is not read either.
	if _, err := g.Reconcile(ctx, vmsRequest()); !errors.Is(err, retry.ErrHeld) || f.reads.Load() != 0 {
		t.Errorf("read while open: %v (%d reads), want held and none made", err, f.reads.Load())
	}
	// After OpenFor one probe goes through; its success closes the breaker.
	time.Sleep(350 * time.Millisecond)
	f.mu.Lock()
	f.answer = nil
	f.mu.Unlock()
	if _, err := g.Dispatch(ctx, vmsRequest()); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if st := g.States()[0]; st.Breaker != Closed {
		t.Errorf("state %+v after a successful probe, want closed", st)
	}
	if _, err := g.Reconcile(ctx, vmsRequest()); err != nil || f.reads.Load() != 1 {
		t.Errorf("read once closed: %v (%d reads)", err, f.reads.Load())
	}
	var got []string
	for len(g.Changes()) > 0 {
		c := <-g.Changes()
		got = append(got, fmt.Sprintf("%s>%s", c.From, c.To))
	}
	if want := "[closed>open open>half_open half_open>closed]"; fmt.Sprint(got) != want {
		t.Errorf("changes %v, want %s", got, want)
	}
}

func TestBreakerIgnoresDefiniteAnswers(t *testing.T) {
	f := &fakeVendor{answer: badRequest}
	g := New(Config{Pairs: []Pair{vms}, Failures: 2}, f, f)
	for range 5 {
		if _, err := g.Dispatch(context.Background(), vmsRequest()); errors.Is(err, retry.ErrHeld) {
			t.Fatal("a permanent error (the vendor is up) opened the breaker")
		}
	}
	if n := len(f.calls()); n != 5 {
		t.Errorf("%d calls, want 5", n)
	}
}

func TestUnknownPairPassesThrough(t *testing.T) {
	f := &fakeVendor{answer: systemError}
	g := New(Config{Pairs: []Pair{vms}, Failures: 1}, f, f)
	req := &messages.Request{ID: "x", API: messages.APIVMSAddQualification, Account: "nobody"}
	for range 3 {
		if _, err := g.Dispatch(context.Background(), req); errors.Is(err, retry.ErrHeld) {
			t.Fatal("an account the deployment does not have got a breaker")
		}
	}
	if len(g.States()) != 1 {
		t.Errorf("states %v: an untrusted account name must not create one", g.States())
	}
}

// At most one call per slot of 1/Rate seconds across every guard that
// shares the slots: two replicas at 10/s make no more than 10 calls in
// any one-second window, give or take one at a slot boundary.
func TestSharedRateHoldsAcrossReplicas(t *testing.T) {
	slots := &memSlots{taken: map[string]bool{}}
	f := &fakeVendor{}
	const limit = 10
	a := New(Config{Pairs: []Pair{vms}, Rate: limit, Slots: slots}, f, f)
	b := New(Config{Pairs: []Pair{vms}, Rate: limit, Slots: slots}, f, f)
	var wg sync.WaitGroup
	for i := range 24 {
		g := a
		if i%2 == 1 {
			g = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := g.Dispatch(context.Background(), vmsRequest()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	starts := f.calls()
	if most := mostInWindow(starts, time.Second); most > limit+1 {
		t.Errorf("%d calls in one second, limit %d (+1 at a slot boundary)", most, limit)
	} else {
		t.Logf("24 calls from two replicas at %d/s: at most %d in any one-second window", limit, most)
	}
}

// mostInWindow is the most calls that started within any window of d.
func mostInWindow(ts []time.Time, d time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

type memSlots struct {
	mu    sync.Mutex
	taken map[string]bool
}

func (m *memSlots) Take(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.taken[key] {
		return false, nil
	}
	m.taken[key] = true
	return true, nil
}

func TestRateLimitPacesAndHolds(t *testing.T) {
	f := &fakeVendor{}
	g := New(Config{Pairs: []Pair{vms}, Rate: 20}, f, f)
	for range 5 {
		if _, err := g.Dispatch(context.Background(), vmsRequest()); err != nil {
			t.Fatal(err)
		}
	}
	// The limit says when each call may start at the earliest: call i no
	// sooner than i/20 s after the first. (Two calls may come closer than
	// 1/20 s when the one before was late: a busy machine only delays.)
	starts := f.calls()
	for i := 1; i < len(starts); i++ {
		if since := starts[i].Sub(starts[0]); since < time.Duration(i)*45*time.Millisecond {
			t.Errorf("call %d %s after the first, want at least %d/20 s", i, since, i)
		}
	}
	// No room before the deadline: held, not sent, not waited out.
	slow := New(Config{Pairs: []Pair{vms}, Rate: 1}, f, f)
	if _, err := slow.Dispatch(context.Background(), vmsRequest()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := slow.Dispatch(ctx, vmsRequest())
	var held *HeldError
	if !errors.As(err, &held) || held.Why != WhyRate {
		t.Fatalf("err %v, want held by the rate limit", err)
	}
}

func TestThrottlingLowersTheRateAndItRecovers(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f := &fakeVendor{answer: func() error { return fmt.Errorf("FlowLimitExceeded: %w", retry.ErrThrottled) }}
	g := New(Config{Pairs: []Pair{vms}, Rate: 8, Failures: 100, Now: clock, RecoverEvery: 10 * time.Second}, f, f)
	if _, err := g.Dispatch(context.Background(), vmsRequest()); retry.ClassOf(err) != retry.ClassThrottled {
		t.Fatal(err)
	}
	rate := func() float64 { return g.States()[0].Rate }
	if r := rate(); r != 4 {
		t.Fatalf("rate %v after a throttling answer, want 4 (half of 8)", r)
	}
	advance(9 * time.Second)
	if r := rate(); r != 4 {
		t.Errorf("rate %v before a full interval, want 4", r)
	}
	advance(time.Second)
	if r := rate(); r != 5 {
		t.Errorf("rate %v after one interval, want 5 (a quarter more)", r)
	}
	advance(time.Hour)
	if r := rate(); r != 8 {
		t.Errorf("rate %v after an hour, want the configured 8", r)
	}
	// Without a configured rate, a throttling answer halves the rate of the
	// last second, not below MinRate.
	free := New(Config{Pairs: []Pair{vms}, Failures: 100, Now: clock}, f, f)
	if _, err := free.Dispatch(context.Background(), vmsRequest()); retry.ClassOf(err) != retry.ClassThrottled {
		t.Fatal(err)
	}
	if r := free.States()[0].Rate; r != 0.5 {
		t.Errorf("rate %v after one throttled call in the last second, want 0.5", r)
	}
	for range 3 {
		free.pairs[vms].lim.throttled() // as three more throttled calls would
	}
	if r := free.States()[0].Rate; r != DefaultMinRate {
		t.Errorf("rate %v after more throttled calls, want the minimum %v", r, DefaultMinRate)
	}
}

func TestPauseUntil(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		states []State
		want   time.Time
		ok     bool
	}{
		{"none", nil, time.Time{}, false},
		{"one closed", []State{{Breaker: Open, OpenUntil: t0}, {Breaker: Closed}}, time.Time{}, false},
		{"one half open", []State{{Breaker: Open, OpenUntil: t0}, {Breaker: HalfOpen}}, time.Time{}, false},
		{"all open: until the first probe", []State{{Breaker: Open, OpenUntil: t0.Add(time.Second)}, {Breaker: Open, OpenUntil: t0}}, t0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PauseUntil(tc.states)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("PauseUntil = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// KVSlots give each slot to exactly one taker, through the broker.
func TestKVSlots(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "RATE", TTL: time.Minute, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	s := KVSlots{KV: kv}
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.Take(context.Background(), "vms.abc.123")
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Errorf("%d takers won one slot, want 1", won.Load())
	}
}

// A wait cut short (a shutdown, the call's deadline) is held: nothing was
// sent, and the filing must not take the call for one in flight.
func TestCancelledWaitIsHeld(t *testing.T) {
	f := &fakeVendor{}
	g := New(Config{Pairs: []Pair{vms}, Rate: 1}, f, f)
	if _, err := g.Dispatch(context.Background(), vmsRequest()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err := g.Dispatch(ctx, vmsRequest())
	if !errors.Is(err, retry.ErrHeld) || retry.ClassOf(err) != retry.ClassHeld {
		t.Fatalf("err %v (class %s), want held", err, retry.ClassOf(err))
	}
	if n := len(f.calls()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// A probe that panics is reported as a failure: the breaker opens again
// and lets the next probe through later, instead of waiting for ever.
func TestPanickingProbeDoesNotWedgeTheBreaker(t *testing.T) {
	f := &fakeVendor{answer: systemError}
	g := New(Config{Pairs: []Pair{vms}, Failures: 1, OpenFor: 100 * time.Millisecond}, f, f)
	if _, err := g.Dispatch(context.Background(), vmsRequest()); retry.ClassOf(err) != retry.ClassTransient {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	f.mu.Lock()
	f.answer = func() error { panic("a bug in the client") }
	f.mu.Unlock()
	func() {
		defer func() { _ = recover() }()
		_, _ = g.Dispatch(context.Background(), vmsRequest())
	}()
	f.mu.Lock()
	f.answer = nil
	f.mu.Unlock()
	time.Sleep(150 * time.Millisecond)
	if _, err := g.Dispatch(context.Background(), vmsRequest()); err != nil {
		t.Fatalf("after a panicking probe: %v, want the next probe to go through", err)
	}
}

func TestAgree(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	stale := 15 * time.Second
	open := func(until time.Duration) Vote { return Vote{Until: now.Add(until), At: now.Add(-time.Second)} }
	for _, tc := range []struct {
		name  string
		live  map[string]time.Time
		votes map[string]Vote
		want  time.Time
		ok    bool
	}{
		{"no replica", nil, nil, time.Time{}, false},
		{"one replica, all open", map[string]time.Time{"a": now}, map[string]Vote{"a": open(10 * time.Second)}, now.Add(10 * time.Second), true},
		{"another replica not all open", map[string]time.Time{"a": now, "b": now}, map[string]Vote{"a": open(10 * time.Second), "b": {At: now}}, time.Time{}, false},
		{"another replica has not voted", map[string]time.Time{"a": now, "b": now}, map[string]Vote{"a": open(10 * time.Second)}, time.Time{}, false},
		{"a stale vote", map[string]time.Time{"a": now}, map[string]Vote{"a": {Until: now.Add(time.Hour), At: now.Add(-time.Minute)}}, time.Time{}, false},
		{"a gone replica does not count", map[string]time.Time{"a": now, "dead": now.Add(-time.Hour)}, map[string]Vote{"a": open(10 * time.Second)}, now.Add(10 * time.Second), true},
		{"both open: until the first probe", map[string]time.Time{"a": now, "b": now}, map[string]Vote{"a": open(10 * time.Second), "b": open(5 * time.Second)}, now.Add(5 * time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Agree(tc.live, tc.votes, now, stale)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("Agree = %v, %v; want %v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// pagedReader pages a list, calling pace before every page after the first.
type pagedReader struct{ pages, paced int }

func (p *pagedReader) ReconcilePaced(ctx context.Context, req *messages.Request, pace func(context.Context) error) (dispatch.Finding, error) {
	for i := range p.pages {
		if i > 0 && pace != nil {
			if err := pace(ctx); err != nil {
				return dispatch.Finding{}, err
			}
			p.paced++
		}
	}
	return dispatch.Finding{}, nil
}

// A read of many pages takes a rate-limit slot per page, not one for all.
func TestReadPagesArePaced(t *testing.T) {
	f, r := &fakeVendor{}, &pagedReader{pages: 4}
	g := New(Config{Pairs: []Pair{vms}, Rate: 20}, f, r)
	start := time.Now()
	if _, err := g.Reconcile(context.Background(), vmsRequest()); err != nil {
		t.Fatal(err)
	}
	if r.paced != 3 || time.Since(start) < 140*time.Millisecond {
		t.Errorf("%d pages paced in %s; want 3 after the first, at 20/s at least 150 ms", r.paced, time.Since(start))
	}
}
