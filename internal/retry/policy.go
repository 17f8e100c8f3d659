package retry

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Defaults applied to zero fields of a Policy.
const (
	DefaultInitialInterval     = 200 * time.Millisecond
	DefaultMultiplier          = 2.0
	DefaultMaxInterval         = 5 * time.Second
	DefaultRandomizationFactor = 0.2
	DefaultMaxElapsedTime      = 15 * time.Second
	DefaultMaxAttempts         = 4
	DefaultThrottleMultiplier  = 4.0
	DefaultMaxThrottleInterval = 30 * time.Second
	DefaultRedeliveryBase      = 5 * time.Second
	DefaultRedeliveryMax       = 10 * time.Minute
)

// Policy is the backoff policy: a few quick in-process attempts (Wait), then
// broker-side redelivery delays (RedeliveryDelay, Decide).
//
// The zero Policy is usable: every zero field takes the Default* value.
// Negative values are invalid: call Validate once where the Policy is built;
// the other methods do not (their results for an invalid Policy are
// unspecified). A Policy is a value; its methods do not modify it and may be
// called concurrently, provided the Rand hook is safe for concurrent use
// (the default is).
//
// Jitter: a delay d becomes d × (1 − f + 2f·r), r uniform in [0, 1) from
// Rand, f = RandomizationFactor, and is then clamped to the applicable cap
// (MaxInterval, MaxThrottleInterval or RedeliveryMax), so no delay ever
// exceeds its cap. Because a zero RandomizationFactor means "default", jitter
// is switched off with NoJitter instead.
type Policy struct {
	// InitialInterval is the wait after the first failed attempt.
	InitialInterval time.Duration
	// Multiplier scales the wait after each further attempt, and the
	// redelivery delay after each further delivery. Must be >= 1.
	Multiplier float64
	// MaxInterval caps the in-process wait (before the throttle multiplier).
	MaxInterval time.Duration
	// RandomizationFactor is the jitter fraction f, in [0, 1].
	RandomizationFactor float64
	// NoJitter disables jitter: every delay is exact.
	NoJitter bool
	// MaxElapsedTime is the in-process budget, counted from the start of
	// the first attempt, attempts and waits included. Wait never allows a
	// wait that would overrun it.
	MaxElapsedTime time.Duration
	// MaxAttempts is the number of in-process attempts at most.
	MaxAttempts int
	// ThrottleMultiplier multiplies the next delay after a throttled error.
	// Must be >= 1.
	ThrottleMultiplier float64
	// MaxThrottleInterval caps an in-process wait after a throttled error.
	// Must be >= MaxInterval.
	MaxThrottleInterval time.Duration
	// RedeliveryBase is the broker-side delay after the first delivery.
	RedeliveryBase time.Duration
	// RedeliveryMax caps the broker-side delay. Must be >= RedeliveryBase.
	RedeliveryMax time.Duration

	// Rand returns a jitter value in [0, 1). Nil means math/rand/v2.Float64.
	Rand func() float64
}

// withDefaults returns p with every zero field replaced by its default.
func (p Policy) withDefaults() Policy {
	p.InitialInterval = cmp.Or(p.InitialInterval, DefaultInitialInterval)
	p.Multiplier = cmp.Or(p.Multiplier, DefaultMultiplier)
	p.MaxInterval = cmp.Or(p.MaxInterval, DefaultMaxInterval)
	p.RandomizationFactor = cmp.Or(p.RandomizationFactor, DefaultRandomizationFactor)
	p.MaxElapsedTime = cmp.Or(p.MaxElapsedTime, DefaultMaxElapsedTime)
	p.MaxAttempts = cmp.Or(p.MaxAttempts, DefaultMaxAttempts)
	p.ThrottleMultiplier = cmp.Or(p.ThrottleMultiplier, DefaultThrottleMultiplier)
	p.MaxThrottleInterval = cmp.Or(p.MaxThrottleInterval, DefaultMaxThrottleInterval)
	p.RedeliveryBase = cmp.Or(p.RedeliveryBase, DefaultRedeliveryBase)
	p.RedeliveryMax = cmp.Or(p.RedeliveryMax, DefaultRedeliveryMax)
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// Validate reports whether p, after defaults, is usable. Every error it
// returns wraps ErrBadPolicy.
func (p Policy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadPolicy}, args...)...)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"InitialInterval", p.InitialInterval},
		{"MaxInterval", p.MaxInterval},
		{"MaxElapsedTime", p.MaxElapsedTime},
		{"MaxThrottleInterval", p.MaxThrottleInterval},
		{"RedeliveryBase", p.RedeliveryBase},
		{"RedeliveryMax", p.RedeliveryMax},
	} {
		if d.v < 0 {
			return bad("%s %s is negative", d.name, d.v)
		}
	}
	if p.MaxAttempts < 0 {
		return bad("MaxAttempts %d is negative", p.MaxAttempts)
	}
	// Written so that NaN fails too.
	if !(p.Multiplier == 0 || p.Multiplier >= 1) || math.IsInf(p.Multiplier, 0) {
		return bad("Multiplier %v is not >= 1", p.Multiplier)
	}
	if !(p.ThrottleMultiplier == 0 || p.ThrottleMultiplier >= 1) || math.IsInf(p.ThrottleMultiplier, 0) {
		return bad("ThrottleMultiplier %v is not >= 1", p.ThrottleMultiplier)
	}
	if !(p.RandomizationFactor >= 0 && p.RandomizationFactor <= 1) {
		return bad("RandomizationFactor %v is not in [0, 1]", p.RandomizationFactor)
	}
	q := p.withDefaults()
	if q.MaxInterval < q.InitialInterval {
		return bad("MaxInterval %s is less than InitialInterval %s", q.MaxInterval, q.InitialInterval)
	}
	if q.MaxThrottleInterval < q.MaxInterval {
		return bad("MaxThrottleInterval %s is less than MaxInterval %s", q.MaxThrottleInterval, q.MaxInterval)
	}
	if q.RedeliveryMax < q.RedeliveryBase {
		return bad("RedeliveryMax %s is less than RedeliveryBase %s", q.RedeliveryMax, q.RedeliveryBase)
	}
	return nil
}

// Budget is MaxElapsedTime after defaults: every in-process attempt Wait
// allows starts within it.
func (p Policy) Budget() time.Duration { return p.withDefaults().MaxElapsedTime }

// Wait is the in-process wait after failed attempt n (1-based) of class c,
// elapsed after the first attempt began: the wait before attempt n+1. ok is
// false when the caller should give up instead (MaxAttempts made, the wait
// would overrun MaxElapsedTime, or c is not retryable).
//
// The wait comes from a backoff.ExponentialBackOff (InitialInterval,
// Multiplier, MaxInterval); after a throttled error it is multiplied by
// ThrottleMultiplier and capped by MaxThrottleInterval; then jitter is
// applied.
func (p Policy) Wait(n int, c Class, elapsed time.Duration) (wait time.Duration, ok bool) {
	p = p.withDefaults()
	if !c.Retryable() || n >= p.MaxAttempts {
		return 0, false
	}
	if wait = p.delay(n, c); elapsed+wait > p.MaxElapsedTime {
		return 0, false
	}
	return wait, true
}

// Backoff is the wait after failure n (1-based) of class c on the
// policy's exponential schedule, jittered and capped like Wait's, without
// Wait's attempt and budget limits: for a loop bounded otherwise (the
// settling window of a reconciliation).
func (p Policy) Backoff(n int, c Class) time.Duration {
	return p.withDefaults().delay(max(n, 1), c)
}

// delay is the jittered wait after attempt n; p must have its defaults.
func (p Policy) delay(n int, c Class) time.Duration {
	// The library computes the bare exponential sequence; jitter and
	// throttle are applied here so that jitter uses the Rand hook.
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMultiplier(p.Multiplier),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxElapsedTime(0),
	)
	var next time.Duration
	for range n {
		next = b.NextBackOff()
	}
	limit := p.MaxInterval
	if c == ClassThrottled {
		next = min(scale(next, p.ThrottleMultiplier), p.MaxThrottleInterval)
		limit = p.MaxThrottleInterval
	}
	return p.jitter(next, limit)
}

// RedeliveryDelay is the broker-side delay (for NakWithDelay) after the
// given delivery failed: RedeliveryBase for delivery 1, multiplied by
// Multiplier for each further delivery, multiplied by ThrottleMultiplier
// when throttled, capped at RedeliveryMax, then jittered (and clamped to
// RedeliveryMax again). A delivery below 1 counts as 1.
func (p Policy) RedeliveryDelay(delivery int, throttled bool) time.Duration {
	p = p.withDefaults()
	if delivery < 1 {
		delivery = 1
	}
	f := float64(p.RedeliveryBase) * math.Pow(p.Multiplier, float64(delivery-1))
	if throttled {
		f *= p.ThrottleMultiplier
	}
	d := p.RedeliveryMax
	if f < float64(p.RedeliveryMax) {
		d = time.Duration(f)
	}
	return p.jitter(d, p.RedeliveryMax)
}

// jitter randomizes d by ±RandomizationFactor (unless NoJitter) and clamps
// the result to limit. p must have its defaults applied.
func (p Policy) jitter(d, limit time.Duration) time.Duration {
	if !p.NoJitter && p.RandomizationFactor > 0 {
		r := p.Rand()
		r = max(0, min(r, 1))
		f := p.RandomizationFactor
		d = time.Duration(float64(d) * (1 - f + 2*f*r))
	}
	return max(0, min(d, limit))
}

// scale multiplies d by m without overflowing.
func scale(d time.Duration, m float64) time.Duration {
	f := float64(d) * m
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}
