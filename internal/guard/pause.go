package guard

import (
	"context"
	"fmt"
	"iter"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/messages"
)

// The pause by agreement: the breakers' changes become audit events, and
// the shared consumer is paused on the server while every live replica
// votes that all its vendor accounts' breakers are open.

// Audit events of the breakers (not about one request): published on
// <prefix>.audit.breaker.<vendor>.<key of the account>.<event>.
const (
	EventBreakerOpen     = "breaker_open"
	EventBreakerHalfOpen = "breaker_half_open"
	EventBreakerClosed   = "breaker_closed"
)

// votePrefix names the pause votes in the health bucket (probe keys have
// no dot).
const votePrefix = "breakers."

// Ballot is the bucket the replicas vote in (the health bucket, a
// jetstream.KeyValue): the probe keys of the live replicas and their votes.
type Ballot interface {
	PutString(ctx context.Context, key, value string) (uint64, error)
	Entries(ctx context.Context) (iter.Seq2[string, Entry], error)
}

// Entry is one key of the Ballot: its value and when it was written.
type Entry struct {
	Value   string
	Created time.Time
}

// Pauser pauses and resumes the shared consumer on the server.
type Pauser interface {
	Pause(ctx context.Context, until time.Time) error
	Resume(ctx context.Context) error
}

// Gauges record the breakers and the pause (*metrics.Metrics).
type Gauges interface {
	Guard(vendor, account string, state int, rate float64)
	Paused(paused bool)
}

// WatchConfig configures a Watch.
type WatchConfig struct {
	Guard *Guard
	// Owner is this replica's key in the Ballot (its probe key).
	Owner    string
	Ballot   Ballot // nil: never pause
	Pauser   Pauser
	Gauges   Gauges
	Interval time.Duration // between refreshes; a vote older than 3 intervals is stale
	Timeout  time.Duration // bounds each broker operation
	// Emit publishes one audit event about key and derives its log line.
	Emit func(ctx context.Context, key string, ev messages.AuditEvent)
	Log  *zap.Logger
	Now  func() time.Time
}

// Watch turns the guard's breaker changes into their effects.
type Watch struct {
	cfg    WatchConfig
	paused bool
}

// NewWatch returns a Watch.
func NewWatch(cfg WatchConfig) *Watch {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	return &Watch{cfg: cfg}
}

// Run works until ctx ends; every interval it also refreshes the gauges
// (a breaker turns half-open, and a rate recovers, without a change). It
// leaves no pause behind this replica: another may be able to file.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	w.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			if w.paused {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timeout)
				w.resume(rctx)
				cancel()
			}
			return
		case c := <-w.cfg.Guard.Changes():
			w.changed(ctx, c)
			w.refresh(ctx)
		case <-t.C:
			w.refresh(ctx)
		}
	}
}

// BreakerEvent is the audit event of one breaker change.
func BreakerEvent(c Change) messages.AuditEvent {
	event := map[BreakerState]string{Open: EventBreakerOpen, HalfOpen: EventBreakerHalfOpen, Closed: EventBreakerClosed}[c.To]
	msg := fmt.Sprintf("%s account %q: %s → %s", c.Vendor, c.Account, c.From, c.To)
	switch c.To {
	case Open:
		msg += fmt.Sprintf("; calls held back (nothing sent) until %s", c.Until.UTC().Format(time.RFC3339))
	case HalfOpen:
		msg += "; probing"
	case Closed:
		msg += "; calls flow again"
	}
	return messages.AuditEvent{SchemaVersion: messages.SchemaVersion, API: messages.API("breaker." + c.Vendor), Account: c.Account,
		Event: event, Time: c.At.UTC(), Message: msg}
}

func (w *Watch) changed(ctx context.Context, c Change) {
	ectx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	w.cfg.Emit(ectx, c.Pair.String(), BreakerEvent(c))
}

// refresh updates the gauges and pauses or resumes the consumer.
func (w *Watch) refresh(ctx context.Context) {
	states := w.cfg.Guard.States()
	for _, s := range states {
		r := s.Rate
		if math.IsInf(r, 1) {
			r = -1
		}
		w.cfg.Gauges.Guard(s.Vendor, s.Account, map[BreakerState]int{Closed: 0, HalfOpen: 1, Open: 2}[s.Breaker], r)
	}
	until, all := PauseUntil(states)
	until, all = w.agree(ctx, until, all)
	switch {
	case all: // (Agree lets no pause run past its time)
		pctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
		err := w.cfg.Pauser.Pause(pctx, until)
		cancel()
		if err != nil {
			w.cfg.Log.Warn("could not pause the consumer", zap.Error(err))
			return
		}
		if !w.paused {
			w.cfg.Log.Warn("every vendor account's breaker is open: the shared consumer is paused on the server", zap.Time("until", until))
		}
		w.paused = true
		w.cfg.Gauges.Paused(true)
	case !all && w.paused:
		w.resume(ctx)
	}
}

// agree publishes this replica's vote and returns whether every live
// replica agrees to pause, and until when (Agree). Without a ballot (or
// when it cannot be read) there is no pause.
func (w *Watch) agree(ctx context.Context, until time.Time, all bool) (time.Time, bool) {
	if w.cfg.Ballot == nil {
		return time.Time{}, false
	}
	vote := "-"
	if all {
		vote = until.UTC().Format(time.RFC3339Nano)
	}
	vctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	if _, err := w.cfg.Ballot.PutString(vctx, votePrefix+w.cfg.Owner, vote); err != nil {
		return time.Time{}, false
	}
	entries, err := w.cfg.Ballot.Entries(vctx)
	if err != nil {
		return time.Time{}, false
	}
	live, votes := map[string]time.Time{}, map[string]Vote{}
	for key, e := range entries {
		name, isVote := strings.CutPrefix(key, votePrefix)
		if !isVote {
			live[key] = e.Created
			continue
		}
		v := Vote{At: e.Created}
		if t, err := time.Parse(time.RFC3339Nano, e.Value); err == nil {
			v.Until = t
		}
		votes[name] = v
	}
	return Agree(live, votes, w.cfg.Now(), 3*w.cfg.Interval)
}

func (w *Watch) resume(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	err := w.cfg.Pauser.Resume(rctx)
	cancel()
	if err != nil {
		w.cfg.Log.Warn("could not resume the consumer", zap.Error(err))
		return
	}
	w.paused = false
	w.cfg.Gauges.Paused(false)
	w.cfg.Log.Info("the shared consumer is resumed: a vendor account's breaker lets calls through")
}

// Detail is the breakers' line of /readyz: a replica whose vendor is down
// is ready (it holds the requests back), and says so.
func (g *Guard) Detail() string {
	var open []string
	for _, s := range g.States() {
		if s.Breaker != Closed {
			open = append(open, fmt.Sprintf("%s %s", s.Pair, s.Breaker))
		}
	}
	if len(open) == 0 {
		return "breakers: all closed"
	}
	return "breakers: " + strings.Join(open, ", ")
}

// KVBallot is a Ballot in a JetStream KV bucket.
type KVBallot struct{ jetstream.KeyValue }

// Entries lists the bucket's keys with their values; a key deleted while
// it is listed is left out.
func (b KVBallot) Entries(ctx context.Context) (iter.Seq2[string, Entry], error) {
	lister, err := b.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	return func(yield func(string, Entry) bool) {
		for key := range lister.Keys() {
			e, err := b.Get(ctx, key)
			if err != nil {
				continue
			}
			if !yield(key, Entry{Value: string(e.Value()), Created: e.Created()}) {
				_ = lister.Stop()
				return
			}
		}
	}, nil
}

// ConsumerPauser pauses the durable consumer Durable of Stream.
type ConsumerPauser struct {
	JS              jetstream.JetStream
	Stream, Durable string
}

func (p ConsumerPauser) Pause(ctx context.Context, until time.Time) error {
	_, err := p.JS.PauseConsumer(ctx, p.Stream, p.Durable, until)
	return err
}

func (p ConsumerPauser) Resume(ctx context.Context) error {
	_, err := p.JS.ResumeConsumer(ctx, p.Stream, p.Durable)
	return err
}
