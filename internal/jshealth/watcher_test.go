package jshealth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/natstest"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// value is the value of an unlabelled gauge or counter in reg.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		if m := mf.GetMetric()[0]; m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		} else if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// script is a fake probe that returns its errors in turn.
type script struct {
	mu   sync.Mutex
	errs []error
}

func (s *script) next(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *script) probe(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return errors.New("script: no outcome queued")
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

func TestWatcherTransitions(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	sc := &script{}
	reconnects := 0
	var changes []jshealth.Change
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	w, err := jshealth.New(jshealth.Config{
		Probe:     sc.probe,
		Reconnect: func() error { reconnects++; return nil },
		Failures:  3,
		Timeout:   time.Second,
		Report:    func(c jshealth.Change) { changes = append(changes, c) },
		Metrics:   m,
		Now:       clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	gauges := func() (ready, failures float64) {
		return value(t, reg, "qualfile_jetstream_ready"), value(t, reg, "qualfile_jetstream_probe_failures")
	}
	if err := w.Err(); err != nil || !w.Status().Ready {
		t.Fatalf("new watcher: %v, want ready", err)
	}
	if r, _ := gauges(); r != 1 {
		t.Errorf("jetstream_ready %v before any probe, want 1", r)
	}

	sc.next(nil)
	st := w.Check(context.Background())
	if !st.Ready || st.Failures != 0 || !st.LastSuccess.Equal(clk.Now()) {
		t.Fatalf("after a success: %+v", st)
	}
	lastOK := clk.Now()

	timeout := errors.New("nats: timeout")
	for i := 1; i <= 2; i++ {
		clk.Add(5 * time.Second)
		sc.next(timeout)
		st = w.Check(context.Background())
		if !st.Ready || st.Failures != i || reconnects != 0 || w.Err() != nil {
			t.Fatalf("after %d failures: %+v, %d reconnects, err %v; want still ready, no reconnect", i, st, reconnects, w.Err())
		}
	}
	if r, f := gauges(); r != 1 || f != 2 {
		t.Errorf("gauges ready %v failures %v, want 1 and 2", r, f)
	}

	// The third failure in a row: not ready, and the client is moved.
	clk.Add(5 * time.Second)
	sc.next(timeout)
	st = w.Check(context.Background())
	if st.Ready || st.Failures != 3 || st.Reconnects != 1 || reconnects != 1 {
		t.Fatalf("after 3 failures: %+v, %d reconnects; want not ready and 1 reconnect", st, reconnects)
	}
	err = w.Err()
	var nre *jshealth.NotReadyError
	if !errors.As(err, &nre) || !errors.Is(err, timeout) || !nre.LastSuccess.Equal(lastOK) {
		t.Fatalf("Err() = %#v, want a *NotReadyError wrapping the probe error with the last success", err)
	}
	for _, want := range []string{"3 consecutive probe failures", "last success 15s ago", "nats: timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err() = %q, want it to contain %q", err, want)
		}
	}
	if r, f := gauges(); r != 0 || f != 3 {
		t.Errorf("gauges ready %v failures %v, want 0 and 3", r, f)
	}
	if n := value(t, reg, "qualfile_jetstream_forced_reconnects_total"); n != 1 {
		t.Errorf("forced reconnects counter %v, want 1", n)
	}

	// Still failing on the new server: the next moves come after twice as
	// many failures each time (6 more, then 12, then at most 24), none in
	// between, so that a replica does not come round to the server it left
	// while the cluster elects new leaders.
	moves := map[int]bool{9: true, 21: true, 45: true, 69: true}
	for i := 4; i <= 70; i++ {
		before := reconnects
		sc.next(timeout)
		st = w.Check(context.Background())
		if moved := reconnects > before; moved != moves[i] {
			t.Fatalf("after %d failures: moved %v, want %v (%d reconnects)", i, moved, moves[i], reconnects)
		}
	}
	if st.Ready || st.Failures != 70 || reconnects != 5 {
		t.Fatalf("after 70 failures: %+v, %d reconnects; want not ready and 5 reconnects", st, reconnects)
	}

	// A success: ready again.
	clk.Add(time.Second)
	sc.next(nil)
	st = w.Check(context.Background())
	if !st.Ready || st.Failures != 0 || st.LastError != nil || w.Err() != nil {
		t.Fatalf("after a success: %+v, err %v; want ready", st, w.Err())
	}
	if r, f := gauges(); r != 1 || f != 0 {
		t.Errorf("gauges ready %v failures %v, want 1 and 0", r, f)
	}
	// A success starts the count again: the next run of failures moves
	// after Failures of them.
	for i := 1; i <= 3; i++ {
		before := reconnects
		sc.next(timeout)
		w.Check(context.Background())
		if moved := reconnects > before; moved != (i == 3) {
			t.Fatalf("after a success and %d failures: moved %v", i, moved)
		}
	}
	changes = changes[:len(changes)-2] // not ready, moved: checked above

	var kinds []jshealth.ChangeKind
	for _, c := range changes {
		kinds = append(kinds, c.Kind)
	}
	want := []jshealth.ChangeKind{jshealth.BecameNotReady, jshealth.Reconnected, jshealth.Reconnected, jshealth.Reconnected,
		jshealth.Reconnected, jshealth.Reconnected, jshealth.BecameReady}
	if len(kinds) != len(want) {
		t.Fatalf("changes %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("changes %v, want %v", kinds, want)
		}
	}
}

func TestWatcherReconnectError(t *testing.T) {
	sc := &script{}
	refused := errors.New("nats: connection closed")
	var got []jshealth.Change
	w, err := jshealth.New(jshealth.Config{
		Probe:     sc.probe,
		Reconnect: func() error { return refused },
		Failures:  1,
		Report:    func(c jshealth.Change) { got = append(got, c) },
	})
	if err != nil {
		t.Fatal(err)
	}
	sc.next(errors.New("no responders"))
	w.Check(context.Background())
	if len(got) != 2 || got[1].Kind != jshealth.Reconnected || !errors.Is(got[1].ReconnectErr, refused) {
		t.Fatalf("changes %+v, want not ready then a reconnect reporting its error", got)
	}
}

func TestNotReadyErrorNeverSucceeded(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	sc := &script{}
	w, err := jshealth.New(jshealth.Config{Probe: sc.probe, Failures: 2, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		clk.Add(2 * time.Second)
		sc.next(context.DeadlineExceeded)
		w.Check(context.Background())
	}
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "no success since start 4s ago") {
		t.Fatalf("Err() = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	probe := func(context.Context) error { return nil }
	tests := []struct {
		name    string
		cfg     jshealth.Config
		wantErr error
	}{
		{"probe only", jshealth.Config{Probe: probe}, nil},
		{"explicit", jshealth.Config{Probe: probe, Interval: time.Second, Timeout: time.Second, Failures: 1}, nil},
		{"no probe", jshealth.Config{}, jshealth.ErrInvalidConfig},
		{"negative failures", jshealth.Config{Probe: probe, Failures: -1}, jshealth.ErrInvalidConfig},
		{"negative interval", jshealth.Config{Probe: probe, Interval: -time.Second}, jshealth.ErrInvalidConfig},
		{"negative timeout", jshealth.Config{Probe: probe, Timeout: -time.Second}, jshealth.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if _, err := jshealth.New(jshealth.Config{}); !errors.Is(err, jshealth.ErrInvalidConfig) {
		t.Errorf("New without a probe = %v, want ErrInvalidConfig", err)
	}
}

// TestRunStopsWithContext: Run probes at once and then every interval, and
// returns when its context ends, cancelling the probe in flight, which does
// not count as a failure.
func TestRunStopsWithContext(t *testing.T) {
	var probes atomic.Int64
	block := make(chan struct{})
	w, err := jshealth.New(jshealth.Config{
		Interval: 5 * time.Millisecond,
		Timeout:  time.Minute,
		Failures: 1,
		Probe: func(ctx context.Context) error {
			if probes.Add(1) < 5 {
				return nil
			}
			close(block)
			<-ctx.Done() // the fifth probe hangs until shutdown
			return ctx.Err()
		},
		Reconnect: func() error { t.Error("reconnect forced by a probe cut short by shutdown"); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	select {
	case <-block:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d probes within 10s, want 5", probes.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if st := w.Status(); !st.Ready || st.Failures != 0 || st.Probes != 4 {
		t.Errorf("status %+v, want ready with 4 probes counted", st)
	}
}

// TestWatcherMovesConnection drives a real connection: the probe (a write
// to the health bucket on an embedded server) is made to fail three times,
// the watcher reports not ready and forces the client to reconnect, and a
// successful probe on the new connection makes it ready again.
func TestWatcherMovesConnection(t *testing.T) {
	srv := natstest.Server(t)
	var reconnects atomic.Int64
	reconnected := make(chan struct{}, 4)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnects.Add(1); reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	real, err := jshealth.OpenProbe(ctx, js, jshealth.ProbeConfig{Key: "replica-a.host:1"})
	if err != nil {
		t.Fatal(err)
	}
	var broken atomic.Bool
	w, err := jshealth.New(jshealth.Config{
		Probe: func(ctx context.Context) error {
			if broken.Load() {
				return errors.New("injected: JetStream request timed out")
			}
			return real(ctx)
		},
		Reconnect: nc.ForceReconnect,
		Failures:  3,
		Timeout:   2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Check(ctx); !st.Ready || st.Failures != 0 {
		t.Fatalf("real probe: %+v, %v", st, st.LastError)
	}
	kv, err := js.KeyValue(ctx, jshealth.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "replica-a_host_1"); err != nil || len(e.Value()) == 0 {
		t.Fatalf("probe key: %v, %v", e, err)
	}

	broken.Store(true)
	for range 3 {
		w.Check(ctx)
	}
	if w.Err() == nil {
		t.Fatal("ready after 3 failed probes")
	}
	select {
	case <-reconnected:
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not reconnect after the watcher forced it")
	}
	broken.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for w.Check(ctx); !w.Status().Ready; w.Check(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready again after the reconnect: %v", w.Err())
		}
	}
	if n := reconnects.Load(); n != 1 {
		t.Errorf("%d reconnects, want 1", n)
	}
}

// TestProbeFailsWhenServerDoesNotAnswer: with the server gone the write
// probe fails within its timeout.
func TestProbeFailsWhenServerDoesNotAnswer(t *testing.T) {
	js, _, srv := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	probe, err := jshealth.OpenProbe(ctx, js, jshealth.ProbeConfig{Key: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if err := probe(ctx); err != nil {
		t.Fatalf("probe on a working server: %v", err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer pcancel()
	start := time.Now()
	if err := probe(pctx); err == nil {
		t.Fatal("probe succeeded with the server shut down")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failed probe took %s, want it bounded by its 300ms context", d)
	}
}

func TestProbeConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     jshealth.ProbeConfig
		wantErr error
	}{
		{"zero", jshealth.ProbeConfig{}, nil},
		{"explicit", jshealth.ProbeConfig{Bucket: "H", Replicas: 5, Key: "k", MaxAge: time.Minute}, nil},
		{"replicas 6", jshealth.ProbeConfig{Replicas: 6}, jshealth.ErrInvalidConfig},
		{"negative replicas", jshealth.ProbeConfig{Replicas: -1}, jshealth.ErrInvalidConfig},
		{"negative max age", jshealth.ProbeConfig{MaxAge: -time.Second}, jshealth.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	js, _, _ := natstest.JetStream(t)
	if _, err := jshealth.OpenProbe(context.Background(), js, jshealth.ProbeConfig{Replicas: 6}); !errors.Is(err, jshealth.ErrInvalidConfig) {
		t.Errorf("OpenProbe with 6 replicas = %v, want ErrInvalidConfig", err)
	}
}
