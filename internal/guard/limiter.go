package guard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Slots shares a rate limit through the broker: time is cut into slots of
// 1/Rate seconds, and a call may start only in a slot it took. Take
// reports whether the key was free (and is now taken); exactly one caller
// across all replicas gets each key (a KV create).
type Slots interface {
	Take(ctx context.Context, key string) (bool, error)
}

// slotMargin widens a slot beyond 1/Rate (5 %: 10 ms at 5/s).
const slotMargin = 0.05

// maxSlotTries bounds the slots one call tries before it gives up and is
// held (the others were all taken by other replicas).
const maxSlotTries = 64

// limiter paces one pair's calls: locally at the adaptive rate, and
// across replicas through slots at the configured one.
type limiter struct {
	cfg   Config
	key   string // the pair, as a slot key prefix
	slots Slots
	width time.Duration // of a slot; 0 without slots

	mu           sync.Mutex
	lim          *rate.Limiter
	cur          float64 // the rate allowed now; inf for none
	lastThrottle time.Time
	raised       time.Time
	recent       []time.Time // call starts within the last second
}

func newLimiter(cfg Config, p Pair) *limiter {
	sum := sha256.Sum256([]byte(p.Account))
	l := &limiter{cfg: cfg, key: p.Vendor + "." + hex.EncodeToString(sum[:8]), lim: rate.NewLimiter(asLimit(cfg.Rate), 1)}
	l.cur = l.base()
	if cfg.Rate > 0 && cfg.Slots != nil {
		// A slot is 1/Rate plus slotMargin of it: calls start at slot
		// starts, and the margin absorbs the scheduling and network delay
		// between two calls, so that Rate+1 slots never fit in a second.
		l.slots, l.width = cfg.Slots, time.Duration(float64(time.Second)/cfg.Rate*(1+slotMargin))
	}
	return l
}

func (l *limiter) base() float64 {
	if l.cfg.Rate > 0 {
		return l.cfg.Rate
	}
	return inf
}

func (l *limiter) current() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recoverLocked(l.cfg.Now())
	return l.cur
}

// wait returns when a call may start, or a *HeldError when it cannot start
// before ctx's deadline, or ctx's error when ctx ends first.
func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	l.recoverLocked(l.cfg.Now())
	lim, cur := l.lim, l.cur
	l.mu.Unlock()
	if err := lim.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return stopped(ctx)
		}
		return &HeldError{Why: WhyRate, RetryAfter: time.Duration(float64(time.Second) * max(1, 2/cur))}
	}
	if l.slots == nil {
		return nil
	}
	return l.takeSlot(ctx)
}

// takeSlot takes the next free slot and waits for its start.
func (l *limiter) takeSlot(ctx context.Context) error {
	w := int64(l.width)
	next := l.cfg.Now().UnixNano()/w + 1
	deadline, hasDeadline := ctx.Deadline()
	for range maxSlotTries {
		start := time.Unix(0, next*w)
		if hasDeadline && start.After(deadline) {
			break
		}
		ok, err := l.slots.Take(ctx, fmt.Sprintf("%s.%d", l.key, next))
		if err != nil {
			if ctx.Err() != nil {
				return stopped(ctx)
			}
			return &HeldError{Why: WhyRate + " (slot store: " + err.Error() + ")", RetryAfter: time.Second}
		}
		if ok {
			t := time.NewTimer(time.Until(start))
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return stopped(ctx)
			}
		}
		next++
	}
	return &HeldError{Why: WhyRate + " (every slot before the deadline is taken)", RetryAfter: time.Second}
}

// stopped is the error of a wait that ctx cut short (a shutdown, the
// call's deadline): held, since nothing was sent.
func stopped(ctx context.Context) error {
	return &HeldError{Why: WhyRate + " (stopped while waiting: " + ctx.Err().Error() + ")", RetryAfter: time.Second}
}

// called notes a call that was answered without throttling.
func (l *limiter) called() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.note(l.cfg.Now())
}

func (l *limiter) note(now time.Time) {
	cut := 0
	for cut < len(l.recent) && now.Sub(l.recent[cut]) > time.Second {
		cut++
	}
	l.recent = append(l.recent[cut:], now)
	if len(l.recent) > 10000 {
		l.recent = l.recent[len(l.recent)-10000:]
	}
}

// throttled halves the rate (from the rate of the last second, when no
// limit was in force), not below MinRate.
func (l *limiter) throttled() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	l.note(now)
	from := l.cur
	if math.IsInf(from, 1) {
		from = float64(len(l.recent))
	}
	l.cur = max(l.cfg.MinRate, from/2)
	l.lastThrottle, l.raised = now, now
	l.lim.SetLimit(asLimit(l.cur))
}

// recoverLocked raises the rate by a quarter per RecoverEvery since the
// last throttling answer or raise, up to the configured rate (and back to
// none past 1,000/s when none is configured).
func (l *limiter) recoverLocked(now time.Time) {
	base := l.base()
	if l.cur >= base {
		return
	}
	n := int(now.Sub(l.raised) / l.cfg.RecoverEvery)
	if n <= 0 {
		return
	}
	l.cur = min(base, l.cur*math.Pow(1.25, float64(n)))
	if math.IsInf(base, 1) && l.cur > 1000 {
		l.cur = inf
	}
	l.raised = l.raised.Add(time.Duration(n) * l.cfg.RecoverEvery)
	l.lim.SetLimit(asLimit(l.cur))
}
