package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

// fakeClock is a manual clock whose Sleep advances it and records the waits.
type fakeClock struct {
	now    time.Time
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

func (c *fakeClock) total() time.Duration {
	var s time.Duration
	for _, d := range c.sleeps {
		s += d
	}
	return s
}

// fake returns p wired to c.
func (c *fakeClock) fake(p Policy) Policy {
	p.Now = c.Now
	p.Sleep = c.Sleep
	return p
}

// failing returns an op that always returns err and counts its calls.
func failing(err error, calls *int) func(context.Context, int) error {
	return func(context.Context, int) error {
		*calls++
		return err
	}
}

func constRand(r float64) func() float64 { return func() float64 { return r } }

func TestDefaults(t *testing.T) {
	p := Policy{}.withDefaults()
	checks := []struct {
		name      string
		got, want any
	}{
		{"InitialInterval", p.InitialInterval, 200 * ms},
		{"Multiplier", p.Multiplier, 2.0},
		{"MaxInterval", p.MaxInterval, 5 * time.Second},
		{"RandomizationFactor", p.RandomizationFactor, 0.2},
		{"NoJitter", p.NoJitter, false},
		{"MaxElapsedTime", p.MaxElapsedTime, 15 * time.Second},
		{"MaxAttempts", p.MaxAttempts, 4},
		{"ThrottleMultiplier", p.ThrottleMultiplier, 4.0},
		{"MaxThrottleInterval", p.MaxThrottleInterval, 30 * time.Second},
		{"RedeliveryBase", p.RedeliveryBase, 5 * time.Second},
		{"RedeliveryMax", p.RedeliveryMax, 10 * time.Minute},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if p.Sleep == nil || p.Now == nil || p.Rand == nil {
		t.Error("default hooks not set")
	}
	if err := (Policy{}).Validate(); err != nil {
		t.Errorf("zero Policy: Validate() = %v", err)
	}

	// Explicit values are kept.
	q := Policy{InitialInterval: time.Second, MaxAttempts: 2, RandomizationFactor: 0.5}.withDefaults()
	if q.InitialInterval != time.Second || q.MaxAttempts != 2 || q.RandomizationFactor != 0.5 {
		t.Errorf("explicit values overridden: %+v", q)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"zero", Policy{}, true},
		{"explicit", Policy{InitialInterval: ms, Multiplier: 1, MaxInterval: ms, RandomizationFactor: 1, MaxElapsedTime: time.Second, MaxAttempts: 1, ThrottleMultiplier: 1, MaxThrottleInterval: ms, RedeliveryBase: time.Second, RedeliveryMax: time.Second}, true},
		{"no jitter", Policy{NoJitter: true}, true},
		{"negative InitialInterval", Policy{InitialInterval: -1}, false},
		{"negative MaxInterval", Policy{MaxInterval: -1}, false},
		{"negative MaxElapsedTime", Policy{MaxElapsedTime: -time.Second}, false},
		{"negative MaxThrottleInterval", Policy{MaxThrottleInterval: -1}, false},
		{"negative RedeliveryBase", Policy{RedeliveryBase: -1}, false},
		{"negative RedeliveryMax", Policy{RedeliveryMax: -1}, false},
		{"negative MaxAttempts", Policy{MaxAttempts: -1}, false},
		{"multiplier below 1", Policy{Multiplier: 0.5}, false},
		{"negative multiplier", Policy{Multiplier: -2}, false},
		{"NaN multiplier", Policy{Multiplier: math.NaN()}, false},
		{"infinite multiplier", Policy{Multiplier: math.Inf(1)}, false},
		{"throttle multiplier below 1", Policy{ThrottleMultiplier: 0.9}, false},
		{"NaN throttle multiplier", Policy{ThrottleMultiplier: math.NaN()}, false},
		{"negative jitter", Policy{RandomizationFactor: -0.1}, false},
		{"jitter above 1", Policy{RandomizationFactor: 1.5}, false},
		{"NaN jitter", Policy{RandomizationFactor: math.NaN()}, false},
		{"max below initial", Policy{InitialInterval: 10 * time.Second}, false},
		{"throttle max below max", Policy{MaxThrottleInterval: time.Second}, false},
		{"redelivery max below base", Policy{RedeliveryBase: time.Hour}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("Validate() = %v, want an error matching ErrBadPolicy", err)
			}
		})
	}
}

func TestDoDelaysWithoutJitter(t *testing.T) {
	c := newFakeClock()
	p := c.fake(Policy{NoJitter: true, MaxAttempts: 10, MaxElapsedTime: time.Hour})
	var calls int
	n, err := p.Do(context.Background(), failing(ErrTransient, &calls), nil)

	want := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms, 5000 * ms}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", c.sleeps, want)
	}
	if n != 10 || calls != 10 {
		t.Errorf("attempts = %d, calls = %d, want 10", n, calls)
	}
	var ee *ExhaustedError
	if !errors.As(err, &ee) || ee.Attempts != 10 || ee.Budget {
		t.Errorf("err = %#v, want *ExhaustedError{Attempts: 10, Budget: false}", err)
	}
}

func TestDoThrottledDelays(t *testing.T) {
	c := newFakeClock()
	p := c.fake(Policy{NoJitter: true, MaxAttempts: 8, MaxElapsedTime: time.Hour})
	var calls int
	_, err := p.Do(context.Background(), failing(fmt.Errorf("429: %w", ErrThrottled), &calls), nil)

	// Base 200,400,...,5000 ×4, capped at 30s.
	want := []time.Duration{800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 20000 * ms, 20000 * ms}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", c.sleeps, want)
	}
	if ClassOf(err) != ClassThrottled {
		t.Errorf("ClassOf(err) = %q, want throttled", ClassOf(err))
	}

	// The throttle cap applies.
	c = newFakeClock()
	p = c.fake(Policy{NoJitter: true, MaxAttempts: 4, MaxElapsedTime: time.Hour, MaxThrottleInterval: 5 * time.Second})
	_, _ = p.Do(context.Background(), failing(ErrThrottled, new(int)), nil)
	want = []time.Duration{800 * ms, 1600 * ms, 3200 * ms}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("capped sleeps = %v, want %v", c.sleeps, want)
	}

	// Throttled then transient: only the wait after the throttled error grows.
	c = newFakeClock()
	p = c.fake(Policy{NoJitter: true, MaxAttempts: 3, MaxElapsedTime: time.Hour})
	errs := []error{ErrThrottled, ErrTransient, ErrTransient}
	_, _ = p.Do(context.Background(), func(_ context.Context, n int) error { return errs[n-1] }, nil)
	want = []time.Duration{800 * ms, 400 * ms}
	if !slices.Equal(c.sleeps, want) {
		t.Errorf("mixed sleeps = %v, want %v", c.sleeps, want)
	}
}

func TestDoJitter(t *testing.T) {
	base := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms}
	tests := []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"low", 0, []time.Duration{160 * ms, 320 * ms, 640 * ms, 1280 * ms, 2560 * ms, 4000 * ms, 4000 * ms}},
		{"middle", 0.5, base},
		// ×1.2, the last ones clamped to MaxInterval.
		{"high", 1, []time.Duration{240 * ms, 480 * ms, 960 * ms, 1920 * ms, 3840 * ms, 5000 * ms, 5000 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			p := c.fake(Policy{MaxAttempts: 8, MaxElapsedTime: time.Hour, Rand: constRand(tt.r)})
			_, _ = p.Do(context.Background(), failing(ErrTransient, new(int)), nil)
			if !slices.Equal(c.sleeps, tt.want) {
				t.Errorf("sleeps = %v, want %v", c.sleeps, tt.want)
			}
		})
	}

	// With the real random source every wait stays within ±20%, under the cap,
	// and the waits are not all identical to the bare sequence.
	c := newFakeClock()
	p := Policy{MaxAttempts: 8, MaxElapsedTime: time.Hour, Now: c.Now, Sleep: c.Sleep}
	for range 20 {
		c.sleeps = nil
		_, _ = p.Do(context.Background(), failing(ErrTransient, new(int)), nil)
		if len(c.sleeps) != len(base) {
			t.Fatalf("got %d sleeps, want %d", len(c.sleeps), len(base))
		}
		for i, d := range c.sleeps {
			lo := time.Duration(float64(base[i]) * 0.8)
			hi := min(time.Duration(float64(base[i])*1.2), 5*time.Second)
			if d < lo || d > hi {
				t.Errorf("sleep %d = %v, want within [%v, %v]", i, d, lo, hi)
			}
		}
	}
}

func TestDoMaxAttempts(t *testing.T) {
	for _, max := range []int{0, 1, 2, 4, 7} {
		want := max
		if max == 0 {
			want = DefaultMaxAttempts
		}
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			c := newFakeClock()
			p := c.fake(Policy{MaxAttempts: max, MaxElapsedTime: time.Hour})
			var calls int
			n, err := p.Do(context.Background(), failing(ErrTransient, &calls), nil)
			if calls != want || n != want {
				t.Errorf("calls = %d, attempts = %d, want %d", calls, n, want)
			}
			if len(c.sleeps) != want-1 {
				t.Errorf("%d sleeps, want %d", len(c.sleeps), want-1)
			}
			if !errors.Is(err, ErrExhausted) || !errors.Is(err, ErrTransient) {
				t.Errorf("err = %v, want it to match ErrExhausted and ErrTransient", err)
			}
			var ee *ExhaustedError
			if !errors.As(err, &ee) || ee.Attempts != want || ee.Budget {
				t.Errorf("err = %#v, want Attempts %d, Budget false", err, want)
			}
		})
	}
}

func TestDoBudget(t *testing.T) {
	tests := []struct {
		name      string
		budget    time.Duration
		opTime    time.Duration
		wantCalls int
		wantSleep []time.Duration
	}{
		// 200+400 = 600; +800 would be 1400 > 1000.
		{"instant op", time.Second, 0, 3, []time.Duration{200 * ms, 400 * ms}},
		// Exactly on the budget is allowed: 200+400+800 = 1400.
		{"exact fit", 1400 * ms, 0, 4, []time.Duration{200 * ms, 400 * ms, 800 * ms}},
		// Op time counts: 100 +200 +100 +400 = 800; +100 +800 > 1000.
		{"slow op", time.Second, 100 * ms, 3, []time.Duration{200 * ms, 400 * ms}},
		// Op time alone: 900 +200 > 1000, no wait at all.
		{"op eats the budget", time.Second, 900 * ms, 1, nil},
		// Default budget 15s: 200+400+800+1600+3200+5000 = 11200; +5000 > 15000.
		{"default budget", 0, 0, 7, []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			start := c.Now()
			p := c.fake(Policy{NoJitter: true, MaxAttempts: 100, MaxElapsedTime: tt.budget})
			var calls int
			n, err := p.Do(context.Background(), func(context.Context, int) error {
				calls++
				c.now = c.now.Add(tt.opTime)
				return ErrTransient
			}, nil)
			if calls != tt.wantCalls || n != tt.wantCalls {
				t.Errorf("calls = %d, attempts = %d, want %d", calls, n, tt.wantCalls)
			}
			if !slices.Equal(c.sleeps, tt.wantSleep) {
				t.Errorf("sleeps = %v, want %v", c.sleeps, tt.wantSleep)
			}
			budget := tt.budget
			if budget == 0 {
				budget = DefaultMaxElapsedTime
			}
			if c.total() > budget {
				t.Errorf("slept %v, over the budget %v", c.total(), budget)
			}
			var ee *ExhaustedError
			if !errors.As(err, &ee) || !ee.Budget || ee.Attempts != tt.wantCalls {
				t.Fatalf("err = %#v, want *ExhaustedError{Budget: true, Attempts: %d}", err, tt.wantCalls)
			}
			if ee.Elapsed != c.Now().Sub(start) {
				t.Errorf("Elapsed = %v, want %v", ee.Elapsed, c.Now().Sub(start))
			}
		})
	}

	// With jitter the budget still holds.
	for i := range 50 {
		c := newFakeClock()
		p := Policy{MaxAttempts: 100, MaxElapsedTime: 3 * time.Second, Now: c.Now, Sleep: c.Sleep}
		_, err := p.Do(context.Background(), failing(ErrThrottled, new(int)), nil)
		if c.total() > 3*time.Second {
			t.Fatalf("run %d: slept %v, over the budget", i, c.total())
		}
		if !errors.Is(err, ErrExhausted) {
			t.Fatalf("run %d: err = %v, want ErrExhausted", i, err)
		}
	}
}

func TestDoReturnsAtOnce(t *testing.T) {
	perm := &vendorError{"403", ErrPermanent}
	unclassified := errors.New("boom")
	tests := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"permanent", perm},
		{"invalid", fmt.Errorf("check: %w", ErrInvalid)},
		{"unclassified", unclassified},
		{"canceled", context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newFakeClock()
			p := c.fake(Policy{})
			var calls int
			n, err := p.Do(context.Background(), failing(tt.err, &calls), nil)
			if n != 1 || calls != 1 {
				t.Errorf("attempts = %d, calls = %d, want 1", n, calls)
			}
			if err != tt.err {
				t.Errorf("err = %v, want %v unchanged", err, tt.err)
			}
			if len(c.sleeps) != 0 {
				t.Errorf("slept %v", c.sleeps)
			}
		})
	}
}

func TestDoSucceedsAfterRetries(t *testing.T) {
	c := newFakeClock()
	p := c.fake(Policy{NoJitter: true})
	var seen []int
	n, err := p.Do(context.Background(), func(_ context.Context, attempt int) error {
		seen = append(seen, attempt)
		if attempt < 3 {
			return ErrTransient
		}
		return nil
	}, nil)
	if err != nil || n != 3 {
		t.Fatalf("Do = %d, %v; want 3, nil", n, err)
	}
	if !slices.Equal(seen, []int{1, 2, 3}) {
		t.Errorf("attempt numbers = %v, want [1 2 3]", seen)
	}
	if want := []time.Duration{200 * ms, 400 * ms}; !slices.Equal(c.sleeps, want) {
		t.Errorf("sleeps = %v, want %v", c.sleeps, want)
	}

	// A permanent error after a transient one ends it.
	c = newFakeClock()
	p = c.fake(Policy{NoJitter: true})
	errs := []error{ErrTransient, ErrPermanent}
	n, err = p.Do(context.Background(), func(_ context.Context, a int) error { return errs[a-1] }, nil)
	if n != 2 || err != ErrPermanent {
		t.Errorf("Do = %d, %v; want 2, ErrPermanent", n, err)
	}
}

func TestDoNotify(t *testing.T) {
	c := newFakeClock()
	p := c.fake(Policy{NoJitter: true, MaxAttempts: 4, MaxElapsedTime: time.Hour})
	errs := []error{ErrTransient, ErrThrottled, ErrTransient, nil}
	var got []Attempt
	n, err := p.Do(context.Background(), func(_ context.Context, a int) error {
		c.now = c.now.Add(time.Duration(a) * 10 * ms)
		return errs[a-1]
	}, func(a Attempt) { got = append(got, a) })
	if err != nil || n != 4 {
		t.Fatalf("Do = %d, %v; want 4, nil", n, err)
	}
	want := []Attempt{
		{Number: 1, Err: ErrTransient, Class: ClassTransient, Duration: 10 * ms, Next: 200 * ms},
		{Number: 2, Err: ErrThrottled, Class: ClassThrottled, Duration: 20 * ms, Next: 1600 * ms},
		{Number: 3, Err: ErrTransient, Class: ClassTransient, Duration: 30 * ms, Next: 800 * ms},
		{Number: 4, Err: nil, Class: ClassNone, Duration: 40 * ms, Final: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("notify got\n%+v\nwant\n%+v", got, want)
	}

	// Exhaustion: the last notify is Final with no Next.
	c = newFakeClock()
	p = c.fake(Policy{NoJitter: true, MaxAttempts: 2})
	got = nil
	_, _ = p.Do(context.Background(), failing(ErrTransient, new(int)), func(a Attempt) { got = append(got, a) })
	want = []Attempt{
		{Number: 1, Err: ErrTransient, Class: ClassTransient, Next: 200 * ms},
		{Number: 2, Err: ErrTransient, Class: ClassTransient, Final: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("notify got\n%+v\nwant\n%+v", got, want)
	}

	// Budget exhaustion also ends with a Final notify.
	c = newFakeClock()
	p = c.fake(Policy{NoJitter: true, MaxAttempts: 10, MaxElapsedTime: 300 * ms})
	got = nil
	_, _ = p.Do(context.Background(), failing(ErrTransient, new(int)), func(a Attempt) { got = append(got, a) })
	if len(got) != 2 || !got[1].Final || got[1].Next != 0 || got[0].Final {
		t.Errorf("budget notify = %+v, want 2 attempts, the second Final", got)
	}
}

func TestDoContextCanceledDuringSleep(t *testing.T) {
	last := &vendorError{"503", ErrTransient}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := Policy{InitialInterval: 10 * time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute}
	var notified []Attempt
	go func() {
		time.Sleep(20 * ms)
		cancel()
	}()
	start := time.Now()
	var calls int
	n, err := p.Do(ctx, failing(last, &calls), func(a Attempt) { notified = append(notified, a) })
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Do took %v after cancel", took)
	}
	if n != 1 || calls != 1 {
		t.Errorf("attempts = %d, calls = %d, want 1", n, calls)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to match context.Canceled", err)
	}
	if !errors.Is(err, ErrTransient) {
		t.Errorf("err = %v, want it to match ErrTransient", err)
	}
	var ve *vendorError
	if !errors.As(err, &ve) || ve != last {
		t.Errorf("err = %v, want it to hold the last op error", err)
	}
	if errors.Is(err, ErrExhausted) {
		t.Errorf("err = %v matches ErrExhausted", err)
	}
	if ClassOf(err) != ClassTransient {
		t.Errorf("ClassOf(err) = %q, want transient", ClassOf(err))
	}
	if len(notified) != 1 || notified[0].Final {
		t.Errorf("notified = %+v, want one non-final attempt", notified)
	}
}

func TestDoContextDeadlineDuringSleep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*ms)
	defer cancel()
	p := Policy{InitialInterval: 10 * time.Second, MaxInterval: 10 * time.Second, MaxElapsedTime: time.Minute}
	start := time.Now()
	n, err := p.Do(ctx, failing(ErrThrottled, new(int)), nil)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Do took %v after the deadline", took)
	}
	if n != 1 || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrThrottled) {
		t.Errorf("Do = %d, %v; want 1 and an error matching DeadlineExceeded and ErrThrottled", n, err)
	}
}

func TestDoContextDoneWithFakeSleep(t *testing.T) {
	// A Sleep that ignores ctx still does not lead to another attempt.
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Sleep: func(context.Context, time.Duration) error { cancel(); return nil }}
	var calls int
	n, err := p.Do(ctx, failing(ErrTransient, &calls), nil)
	if n != 1 || calls != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, ErrTransient) {
		t.Errorf("Do = %d (%d calls), %v", n, calls, err)
	}
}

func TestDoBadPolicy(t *testing.T) {
	var calls int
	n, err := Policy{Multiplier: 0.5}.Do(context.Background(), failing(nil, &calls), nil)
	if n != 0 || calls != 0 || !errors.Is(err, ErrBadPolicy) {
		t.Errorf("Do = %d (%d calls), %v; want 0, no call, ErrBadPolicy", n, calls, err)
	}
}

func TestRedeliveryDelay(t *testing.T) {
	p := Policy{NoJitter: true}
	s := time.Second
	tests := []struct {
		delivery  int
		throttled bool
		want      time.Duration
	}{
		{0, false, 5 * s},
		{1, false, 5 * s},
		{2, false, 10 * s},
		{3, false, 20 * s},
		{4, false, 40 * s},
		{5, false, 80 * s},
		{6, false, 160 * s},
		{7, false, 320 * s},
		{8, false, 600 * s},
		{9, false, 600 * s},
		{10, false, 600 * s},
		{1000, false, 600 * s},
		{1, true, 20 * s},
		{2, true, 40 * s},
		{3, true, 80 * s},
		{4, true, 160 * s},
		{5, true, 320 * s},
		{6, true, 600 * s},
		{10, true, 600 * s},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v", tt.delivery, tt.throttled), func(t *testing.T) {
			if got := p.RedeliveryDelay(tt.delivery, tt.throttled); got != tt.want {
				t.Errorf("RedeliveryDelay(%d, %v) = %v, want %v", tt.delivery, tt.throttled, got, tt.want)
			}
		})
	}

	// Custom base, multiplier and cap.
	q := Policy{NoJitter: true, RedeliveryBase: s, RedeliveryMax: 30 * s, Multiplier: 3, ThrottleMultiplier: 2}
	var got []time.Duration
	for d := 1; d <= 5; d++ {
		got = append(got, q.RedeliveryDelay(d, false), q.RedeliveryDelay(d, true))
	}
	want := []time.Duration{1 * s, 2 * s, 3 * s, 6 * s, 9 * s, 18 * s, 27 * s, 30 * s, 30 * s, 30 * s}
	if !slices.Equal(got, want) {
		t.Errorf("custom delays = %v, want %v", got, want)
	}
}

func TestRedeliveryDelayJitter(t *testing.T) {
	s := time.Second
	tests := []struct {
		r         float64
		delivery  int
		throttled bool
		want      time.Duration
	}{
		{0, 1, false, 4 * s},
		{0.5, 1, false, 5 * s},
		{1, 1, false, 6 * s},
		{0, 3, true, 64 * s},
		{1, 3, true, 96 * s},
		{0, 10, false, 480 * s},
		{1, 10, false, 600 * s}, // clamped to the cap
	}
	for _, tt := range tests {
		p := Policy{Rand: constRand(tt.r)}
		if got := p.RedeliveryDelay(tt.delivery, tt.throttled); got != tt.want {
			t.Errorf("r=%v: RedeliveryDelay(%d, %v) = %v, want %v", tt.r, tt.delivery, tt.throttled, got, tt.want)
		}
	}

	// Real random source: within ±20% and under the cap.
	var p Policy
	for d := 1; d <= 10; d++ {
		base := Policy{NoJitter: true}.RedeliveryDelay(d, false)
		for range 20 {
			got := p.RedeliveryDelay(d, false)
			lo := time.Duration(float64(base) * 0.8)
			hi := min(time.Duration(float64(base)*1.2), 10*time.Minute)
			if got < lo || got > hi {
				t.Errorf("delivery %d: %v not within [%v, %v]", d, got, lo, hi)
			}
		}
	}
}

func TestRealSleep(t *testing.T) {
	if err := sleep(context.Background(), ms); err != nil {
		t.Errorf("sleep = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleep on canceled ctx = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Error("sleep on canceled ctx did not return at once")
	}
}
