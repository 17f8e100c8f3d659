// Package jshealth watches whether JetStream can serve this replica, and
// moves the replica's NATS connection when it cannot: after Failures
// consecutive failed probes the replica is not ready (Err, for /readyz)
// and is moved to another server, then again after twice as many further
// failures each time. docs/observability.md (JetStream health watch)
// explains why a cut-off server needs this.
package jshealth

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/qualfile/qualfile/internal/metrics"
)

// Defaults of Config.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultFailures = 3
)

// MaxMoveFactor bounds how far apart repeated moves get: after the first
// move, the next comes after 2, 4, … and at most MaxMoveFactor times
// Failures further failures.
const MaxMoveFactor = 8

// Config configures a Watcher.
type Config struct {
	// Probe makes one JetStream request; an error is a failed probe.
	// Required.
	Probe func(ctx context.Context) error
	// Reconnect forces the client to another server of its pool
	// (nats.Conn.ForceReconnect); nil only reports.
	Reconnect func() error
	// Interval is the time between the end of one probe and the start of
	// the next; default DefaultInterval.
	Interval time.Duration
	// Timeout bounds one probe; default DefaultTimeout.
	Timeout time.Duration
	// Failures is the number of consecutive failed probes after which the
	// replica is not ready and the client is moved; default
	// DefaultFailures.
	Failures int
	// Report, when set, is told about every change: readiness lost or
	// regained, and every forced reconnect. It is called from the
	// goroutine that probes, never concurrently with itself.
	Report func(Change)
	// Metrics receives the state (nil records nothing).
	Metrics *metrics.Metrics
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.Failures = cmp.Or(c.Failures, DefaultFailures)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports whether c, after defaults, is usable. Every error it
// returns matches ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Probe == nil:
		return fmt.Errorf("%w: no probe", ErrInvalidConfig)
	case c.Interval < 0:
		return fmt.Errorf("%w: negative interval %s", ErrInvalidConfig, c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("%w: negative timeout %s", ErrInvalidConfig, c.Timeout)
	case c.Failures < 1:
		return fmt.Errorf("%w: failures %d, at least 1", ErrInvalidConfig, c.Failures)
	}
	return nil
}

// Status is the Watcher's state.
type Status struct {
	// Ready is false after Failures consecutive failed probes, until the
	// next success.
	Ready bool
	// Failures is the number of consecutive failed probes (0 after a
	// success).
	Failures int
	// LastError is the error of the last failed probe (nil after a
	// success).
	LastError error
	// LastSuccess is when the last probe succeeded; zero before the first.
	LastSuccess time.Time
	// Since is when the Watcher was created: the age of a replica that has
	// never had a successful probe.
	Since time.Time
	// Probes and Reconnects count the probes made and the reconnects
	// forced.
	Probes, Reconnects int
}

// ChangeKind says what a Change reports.
type ChangeKind int

// The kinds of Change.
const (
	// BecameNotReady: Failures consecutive probes failed.
	BecameNotReady ChangeKind = iota + 1
	// BecameReady: a probe succeeded after the replica was not ready.
	BecameReady
	// Reconnected: a reconnect was forced (ReconnectErr says whether the
	// client accepted it).
	Reconnected
)

func (k ChangeKind) String() string {
	switch k {
	case BecameNotReady:
		return "not ready"
	case BecameReady:
		return "ready"
	case Reconnected:
		return "reconnect forced"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change is one reported change, with the status after it.
type Change struct {
	Kind         ChangeKind
	Status       Status
	ReconnectErr error // for Reconnected
}

// Watcher probes JetStream and keeps the readiness derived from it. Its
// methods are safe for concurrent use.
type Watcher struct {
	cfg Config
	mu  sync.Mutex
	st  Status
	// The next move comes at this many consecutive failures; the one
	// after it moveStep failures later, and so on, the step doubling.
	nextMove, moveStep int
}

// New returns a Watcher that is ready until its probes say otherwise (the
// caller has just set up its streams, so JetStream answered a moment ago).
func New(cfg Config) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	w := &Watcher{cfg: cfg, st: Status{Ready: true, Since: cfg.Now()}, nextMove: cfg.Failures, moveStep: cfg.Failures}
	cfg.Metrics.JetStreamHealth(true, 0)
	return w, nil
}

// Run probes every Interval until ctx ends, starting at once. It returns
// when ctx ends, after the probe in flight (cancelled with ctx) has
// returned.
func (w *Watcher) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		w.Check(ctx)
		timer.Reset(w.cfg.Interval)
	}
}

// Check runs one probe (bounded by Timeout), updates the state from its
// outcome, forces a reconnect when this failure reaches the next move
// (Failures, then twice as many further failures each time), and returns
// the new status. A probe cut short because ctx
// ended (shutdown) counts for nothing.
func (w *Watcher) Check(ctx context.Context) Status {
	pctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	err := w.cfg.Probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return w.Status()
	}
	now := w.cfg.Now()

	var changes []Change
	w.mu.Lock()
	w.st.Probes++
	reconnect := false
	if err == nil {
		w.st.Failures, w.st.LastError, w.st.LastSuccess = 0, nil, now
		w.nextMove, w.moveStep = w.cfg.Failures, w.cfg.Failures
		if !w.st.Ready {
			w.st.Ready = true
			changes = append(changes, Change{Kind: BecameReady, Status: w.st})
		}
	} else {
		w.st.Failures++
		w.st.LastError = err
		if w.st.Failures >= w.cfg.Failures && w.st.Ready {
			w.st.Ready = false
			changes = append(changes, Change{Kind: BecameNotReady, Status: w.st})
		}
		if w.st.Failures >= w.nextMove && w.cfg.Reconnect != nil {
			reconnect = true
			w.moveStep = min(2*w.moveStep, MaxMoveFactor*w.cfg.Failures)
			w.nextMove = w.st.Failures + w.moveStep
		}
	}
	st := w.st
	w.mu.Unlock()
	w.cfg.Metrics.JetStreamHealth(st.Ready, st.Failures)

	if reconnect {
		rerr := w.cfg.Reconnect()
		w.cfg.Metrics.JetStreamReconnect()
		w.mu.Lock()
		w.st.Reconnects++
		st = w.st
		w.mu.Unlock()
		changes = append(changes, Change{Kind: Reconnected, Status: st, ReconnectErr: rerr})
	}
	if w.cfg.Report != nil {
		for _, c := range changes {
			w.cfg.Report(c)
		}
	}
	return st
}

// Status returns the current state.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// Err is nil while the replica is ready, and otherwise a *NotReadyError
// saying why: the failures, the time since the last success and the last
// probe error.
func (w *Watcher) Err() error {
	st := w.Status()
	if st.Ready {
		return nil
	}
	return &NotReadyError{Failures: st.Failures, LastSuccess: st.LastSuccess, Since: st.Since, Now: w.cfg.Now(), Err: st.LastError}
}
