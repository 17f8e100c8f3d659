// Package guard protects the vendors from qualfile: a circuit breaker and
// an adaptive rate limit per vendor and account, around the dispatcher. A
// call held back gets a *HeldError (nothing sent); docs/protecting-vendors.md
// describes the breaker, the shared rate limit, throttling and the pause.
package guard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Dispatcher makes one upstream call (*dispatch.Dispatcher).
type Dispatcher interface {
	Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)
}

// Reconciler reads a vendor's records, pacing each page after the first
// (*dispatch.Dispatcher).
type Reconciler interface {
	ReconcilePaced(ctx context.Context, req *messages.Request, pace func(context.Context) error) (dispatch.Finding, error)
}

// Pair is one vendor account: "vms", "sms" or "douyin", and the account's
// name in the configuration.
type Pair struct{ Vendor, Account string }

func (p Pair) String() string { return p.Vendor + "/" + p.Account }

// VendorOf is the vendor of an api: the part before the dot.
func VendorOf(api messages.API) string {
	v, _, _ := strings.Cut(string(api), ".")
	return v
}

// Defaults of Config.
const (
	DefaultFailures     = 5
	DefaultOpenFor      = 15 * time.Second
	DefaultProbes       = 1
	DefaultMinRate      = 0.2
	DefaultRecoverEvery = 10 * time.Second
)

// Config configures a Guard.
type Config struct {
	// Pairs are the deployment's vendor accounts; a request of any other
	// pair (an unknown account) passes through unguarded, to be refused by
	// the dispatcher.
	Pairs []Pair
	// Failures is the number of transient failures in a row that opens a
	// breaker; default 5.
	Failures int
	// OpenFor is how long an open breaker holds every call; default 15s.
	OpenFor time.Duration
	// Probes is the number of calls a half-open breaker lets through;
	// default 1.
	Probes int
	// Rate is the calls per second allowed per vendor account; 0 means no
	// limit (a throttling answer still slows this replica down).
	Rate float64
	// Slots shares Rate across replicas; nil limits this process only.
	Slots Slots
	// MinRate is the lowest rate throttling brings a pair to; default 0.2.
	MinRate float64
	// RecoverEvery: after a throttling answer the rate rises by a quarter
	// per interval without one, up to Rate; default 10s.
	RecoverEvery time.Duration
	// Now is the clock of the rate limits; time.Now when nil. (The
	// breakers keep real time.)
	Now func() time.Time
}

// Guard wraps a dispatcher with the breakers and rate limits. It is safe
// for concurrent use.
type Guard struct {
	cfg     Config
	inner   Dispatcher
	reader  Reconciler
	pairs   map[Pair]*pairGuard
	changes chan Change
}

// BreakerState is a breaker's state.
type BreakerState string

// Breaker states.
const (
	Closed   BreakerState = "closed"
	HalfOpen BreakerState = "half_open"
	Open     BreakerState = "open"
)

func stateOf(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return Open
	case gobreaker.StateHalfOpen:
		return HalfOpen
	}
	return Closed
}

// Change is one change of a breaker's state.
type Change struct {
	Pair
	From, To BreakerState
	At       time.Time
	// Until is when an open breaker lets its probes through.
	Until time.Time
}

// State is what the guard knows of one pair.
type State struct {
	Pair
	Breaker BreakerState
	// OpenUntil is when an open breaker lets its probes through.
	OpenUntil time.Time
	// Rate is the calls per second this replica allows itself now
	// (math.Inf(1) for none); Limit the configured one (0 for none).
	Rate, Limit float64
}

type pairGuard struct {
	pair Pair
	cb   *gobreaker.TwoStepCircuitBreaker[struct{}]
	lim  *limiter

	mu     sync.Mutex
	opened time.Time
}

// New returns a guard around inner (and reader, which may be nil).
func New(cfg Config, inner Dispatcher, reader Reconciler) *Guard {
	if cfg.Failures <= 0 {
		cfg.Failures = DefaultFailures
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = DefaultOpenFor
	}
	if cfg.Probes <= 0 {
		cfg.Probes = DefaultProbes
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = DefaultMinRate
	}
	if cfg.RecoverEvery <= 0 {
		cfg.RecoverEvery = DefaultRecoverEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	g := &Guard{cfg: cfg, inner: inner, reader: reader, pairs: map[Pair]*pairGuard{}, changes: make(chan Change, 256)}
	for _, p := range cfg.Pairs {
		if _, dup := g.pairs[p]; dup {
			continue
		}
		pg := &pairGuard{pair: p, lim: newLimiter(cfg, p)}
		pg.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        p.String(),
			MaxRequests: uint32(cfg.Probes),
			Timeout:     cfg.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(cfg.Failures) },
			IsSuccessful: func(err error) bool {
				return !breaks(err)
			},
			IsExcluded: func(err error) bool {
				return errors.Is(err, context.Canceled) || errors.Is(err, retry.ErrHeld)
			},
			OnStateChange: func(_ string, from, to gobreaker.State) { g.changed(pg, from, to) },
		})
		g.pairs[p] = pg
	}
	return g
}

// breaks reports whether err says the vendor is in trouble: transient,
// throttled, or a call whose answer never came.
func breaks(err error) bool {
	switch retry.ClassOf(err) {
	case retry.ClassTransient, retry.ClassThrottled, retry.ClassAmbiguous:
		return true
	}
	return false
}

// changed is called by the breaker, under its lock: it must not block.
func (g *Guard) changed(pg *pairGuard, from, to gobreaker.State) {
	now := time.Now()
	c := Change{Pair: pg.pair, From: stateOf(from), To: stateOf(to), At: now}
	pg.mu.Lock()
	if to == gobreaker.StateOpen {
		pg.opened = now
	}
	c.Until = pg.opened.Add(g.cfg.OpenFor)
	pg.mu.Unlock()
	select {
	case g.changes <- c:
	default: // a reader that fell 256 changes behind sees States instead
	}
}

// Changes delivers the breakers' state changes, in order. Nothing waits
// for a reader; States is always current.
func (g *Guard) Changes() <-chan Change { return g.changes }

// States returns the state of every pair, sorted.
func (g *Guard) States() []State {
	out := make([]State, 0, len(g.pairs))
	for p, pg := range g.pairs {
		s := State{Pair: p, Breaker: stateOf(pg.cb.State()), Limit: g.cfg.Rate}
		pg.mu.Lock()
		if s.Breaker == Open {
			s.OpenUntil = pg.opened.Add(g.cfg.OpenFor)
		}
		pg.mu.Unlock()
		s.Rate = pg.lim.current()
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pair.String() < out[j].Pair.String() })
	return out
}

// Dispatch makes the call unless the pair's breaker is open or its rate
// limit has no room before ctx's deadline (a *HeldError: nothing sent).
func (g *Guard) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	pg, ok := g.pairs[Pair{VendorOf(req.API), req.AccountOrDefault()}]
	if !ok {
		return g.inner.Dispatch(ctx, req)
	}
	done, err := pg.cb.Allow()
	if err != nil {
		return dispatch.Outcome{}, &HeldError{Vendor: pg.pair.Vendor, Account: pg.pair.Account, Why: WhyOpen, RetryAfter: g.openLeft(pg)}
	}
	if err := pg.lim.wait(ctx); err != nil {
		done(err) // excluded: held
		return dispatch.Outcome{}, err
	}
	defer func() {
		// A call that panicked is reported as a failure, or a half-open
		// breaker would wait for its probe's answer for ever.
		if v := recover(); v != nil {
			done(fmt.Errorf("panic in the call: %v: %w", v, retry.ErrTransient))
			panic(v)
		}
	}()
	out, err := g.inner.Dispatch(ctx, req)
	done(err)
	if retry.ClassOf(err) == retry.ClassThrottled {
		pg.lim.throttled()
	} else {
		pg.lim.called()
	}
	return out, err
}

// Reconcile reads the vendor's records under the pair's rate limit, one
// slot per page. An open breaker holds reads back too; a read's answer
// does not move the breaker.
func (g *Guard) Reconcile(ctx context.Context, req *messages.Request) (dispatch.Finding, error) {
	if pg, ok := g.pairs[Pair{VendorOf(req.API), req.AccountOrDefault()}]; ok {
		if pg.cb.State() == gobreaker.StateOpen {
			// A vendor that fails every call is not read either.
			return dispatch.Finding{}, &HeldError{Vendor: pg.pair.Vendor, Account: pg.pair.Account, Why: WhyOpen, RetryAfter: g.openLeft(pg)}
		}
		if err := pg.lim.wait(ctx); err != nil {
			return dispatch.Finding{}, err
		}
		f, err := g.reader.ReconcilePaced(ctx, req, pg.lim.wait) // each page is a call
		if retry.ClassOf(err) == retry.ClassThrottled {
			pg.lim.throttled()
		}
		return f, err
	}
	return g.reader.ReconcilePaced(ctx, req, nil)
}

// openLeft is how long an open breaker still holds calls (a half-open
// one whose probes are out: a fraction of OpenFor).
func (g *Guard) openLeft(pg *pairGuard) time.Duration {
	st := pg.cb.State() // before pg.mu: a state change takes it
	pg.mu.Lock()
	defer pg.mu.Unlock()
	left := time.Until(pg.opened.Add(g.cfg.OpenFor))
	if st != gobreaker.StateOpen || left < time.Second {
		left = max(time.Second, g.cfg.OpenFor/4)
	}
	return left
}

// PauseUntil decides whether the shared consumer should be paused on the
// server: when every pair's breaker is open, nothing can be filed, and no
// replica should pull in vain until the first of them lets its probes
// through. ok is false when any pair is not open (or there are none).
func PauseUntil(states []State) (until time.Time, ok bool) {
	for _, s := range states {
		if s.Breaker != Open {
			return time.Time{}, false
		}
		if until.IsZero() || s.OpenUntil.Before(until) {
			until = s.OpenUntil
		}
	}
	return until, len(states) > 0
}

var inf = math.Inf(1)

// asLimit is r as a rate.Limit (0 = none).
func asLimit(r float64) rate.Limit {
	if r <= 0 || math.IsInf(r, 1) {
		return rate.Inf
	}
	return rate.Limit(r)
}

// Vote is one replica's view for a pause: every vendor account's breaker
// of that replica is open until Until (zero: not all of them are), as of
// At.
type Vote struct{ Until, At time.Time }

// Agree decides whether the shared consumer may be paused: breakers live
// in each replica's memory, so one replica cut off from the vendors must
// not stop the others. Every live replica (seen within stale of now) must
// have voted recently that all its breakers are open; the pause lasts
// until the first of them lets a probe through.
func Agree(live map[string]time.Time, votes map[string]Vote, now time.Time, stale time.Duration) (until time.Time, ok bool) {
	n := 0
	for name, seen := range live {
		if now.Sub(seen) > stale {
			continue // gone: its key has not expired yet
		}
		v, voted := votes[name]
		if !voted || now.Sub(v.At) > stale || !v.Until.After(now) {
			return time.Time{}, false
		}
		if until.IsZero() || v.Until.Before(until) {
			until = v.Until
		}
		n++
	}
	return until, n > 0
}
