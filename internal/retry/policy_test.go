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

// schedule plays Wait's loop as a caller runs it: attempt n fails with
// class(n) after taking opTime, and the caller waits what Wait says until it
// says stop. It returns the waits and the number of attempts made.
func schedule(p Policy, class func(n int) Class, opTime time.Duration) (waits []time.Duration, attempts int) {
	var elapsed time.Duration
	for n := 1; ; n++ {
		elapsed += opTime
		w, ok := p.Wait(n, class(n), elapsed)
		if !ok {
			return waits, n
		}
		waits = append(waits, w)
		elapsed += w
	}
}

// always returns a class function for schedule that always answers c.
func always(c Class) func(int) Class { return func(int) Class { return c } }

func total(ds []time.Duration) (s time.Duration) {
	for _, d := range ds {
		s += d
	}
	return s
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
	if p.Rand == nil {
		t.Error("default Rand hook not set")
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

func TestWaitDelaysWithoutJitter(t *testing.T) {
	p := Policy{NoJitter: true, MaxAttempts: 10, MaxElapsedTime: time.Hour}
	waits, n := schedule(p, always(ClassTransient), 0)

	want := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, 5000 * ms, 5000 * ms, 5000 * ms}
	if !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	if n != 10 {
		t.Errorf("attempts = %d, want 10", n)
	}
	// Backoff follows the same schedule without the limits.
	for i, w := range append(want, 5000*ms) {
		if got := p.Backoff(i+1, ClassTransient); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

func TestWaitThrottledDelays(t *testing.T) {
	p := Policy{NoJitter: true, MaxAttempts: 8, MaxElapsedTime: time.Hour}
	waits, _ := schedule(p, always(ClassThrottled), 0)

	// Base 200,400,...,5000 ×4, capped at 30s.
	want := []time.Duration{800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 20000 * ms, 20000 * ms}
	if !slices.Equal(waits, want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}

	// The throttle cap applies.
	p = Policy{NoJitter: true, MaxAttempts: 4, MaxElapsedTime: time.Hour, MaxThrottleInterval: 5 * time.Second}
	waits, _ = schedule(p, always(ClassThrottled), 0)
	want = []time.Duration{800 * ms, 1600 * ms, 3200 * ms}
	if !slices.Equal(waits, want) {
		t.Errorf("capped waits = %v, want %v", waits, want)
	}

	// Throttled then transient: only the wait after the throttled error grows.
	p = Policy{NoJitter: true, MaxAttempts: 3, MaxElapsedTime: time.Hour}
	classes := []Class{ClassThrottled, ClassTransient, ClassTransient}
	waits, _ = schedule(p, func(n int) Class { return classes[n-1] }, 0)
	want = []time.Duration{800 * ms, 400 * ms}
	if !slices.Equal(waits, want) {
		t.Errorf("mixed waits = %v, want %v", waits, want)
	}
}

func TestWaitJitter(t *testing.T) {
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
			p := Policy{MaxAttempts: 8, MaxElapsedTime: time.Hour, Rand: constRand(tt.r)}
			if waits, _ := schedule(p, always(ClassTransient), 0); !slices.Equal(waits, tt.want) {
				t.Errorf("waits = %v, want %v", waits, tt.want)
			}
		})
	}

	// With the real random source every wait stays within ±20%, under the cap.
	p := Policy{MaxAttempts: 8, MaxElapsedTime: time.Hour}
	for range 20 {
		waits, _ := schedule(p, always(ClassTransient), 0)
		if len(waits) != len(base) {
			t.Fatalf("got %d waits, want %d", len(waits), len(base))
		}
		for i, d := range waits {
			lo := time.Duration(float64(base[i]) * 0.8)
			hi := min(time.Duration(float64(base[i])*1.2), 5*time.Second)
			if d < lo || d > hi {
				t.Errorf("wait %d = %v, want within [%v, %v]", i, d, lo, hi)
			}
		}
	}
}

func TestWaitMaxAttempts(t *testing.T) {
	for _, max := range []int{0, 1, 2, 4, 7} {
		want := max
		if max == 0 {
			want = DefaultMaxAttempts
		}
		t.Run(fmt.Sprint(max), func(t *testing.T) {
			waits, n := schedule(Policy{MaxAttempts: max, MaxElapsedTime: time.Hour}, always(ClassTransient), 0)
			if n != want {
				t.Errorf("attempts = %d, want %d", n, want)
			}
			if len(waits) != want-1 {
				t.Errorf("%d waits, want %d", len(waits), want-1)
			}
		})
	}
}

func TestWaitBudget(t *testing.T) {
	tests := []struct {
		name      string
		budget    time.Duration
		opTime    time.Duration
		wantCalls int
		wantWaits []time.Duration
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
			p := Policy{NoJitter: true, MaxAttempts: 100, MaxElapsedTime: tt.budget}
			waits, n := schedule(p, always(ClassTransient), tt.opTime)
			if n != tt.wantCalls {
				t.Errorf("attempts = %d, want %d", n, tt.wantCalls)
			}
			if !slices.Equal(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
			if total(waits) > p.Budget() {
				t.Errorf("waited %v, over the budget %v", total(waits), p.Budget())
			}
		})
	}

	// With jitter the budget still holds.
	for i := range 50 {
		waits, _ := schedule(Policy{MaxAttempts: 100, MaxElapsedTime: 3 * time.Second}, always(ClassThrottled), 0)
		if total(waits) > 3*time.Second {
			t.Fatalf("run %d: waited %v, over the budget", i, total(waits))
		}
	}
}

func TestWaitNotRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"permanent", &vendorError{"403", ErrPermanent}},
		{"invalid", fmt.Errorf("check: %w", ErrInvalid)},
		{"unclassified", errors.New("boom")},
		{"canceled", context.Canceled},
		{"ambiguous", ambiguousOnly{}},
		{"held", ErrHeld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, ok := (Policy{}).Wait(1, ClassOf(tt.err), 0); ok || w != 0 {
				t.Errorf("Wait(1, %q, 0) = %v, %v; want 0, false", ClassOf(tt.err), w, ok)
			}
		})
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
