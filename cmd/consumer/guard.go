package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// pairsOf are the vendor accounts of the configuration.
func pairsOf(accounts map[string]config.ResolvedAccount) []guard.Pair {
	var ps []guard.Pair
	for name, a := range accounts {
		if a.Volcengine != nil {
			ps = append(ps, guard.Pair{Vendor: "vms", Account: name}, guard.Pair{Vendor: "sms", Account: name})
		}
		if a.Douyin != nil {
			ps = append(ps, guard.Pair{Vendor: "douyin", Account: name})
		}
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
	return ps
}

// openSlots opens the KV bucket of the shared rate-limit slots, when a
// rate is configured: a slot is a key, kept for a minute.
func openSlots(ctx context.Context, js jetstream.JetStream, cfg *config.Config) (guard.Slots, error) {
	if cfg.Limits.Rate <= 0 {
		return nil, nil
	}
	b := queue.BucketNames(messages.Subjects{Prefix: cfg.Subjects.Prefix})
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: b.Rate, Description: "qualfile: slots of the vendors' rate limits, shared by the replicas",
		TTL: slotTTL(cfg), Storage: jetstream.MemoryStorage, Replicas: cfg.Streams.Replicas, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("rate bucket %s: %w", b.Rate, err)
	}
	return guard.KVSlots{KV: kv}, nil
}

// slotTTL is how long a slot's key is kept: past the furthest slot a call
// may take ahead of time (its call timeout) and a slot's width, so that no
// key expires before its time and is taken twice.
func slotTTL(cfg *config.Config) time.Duration {
	width := time.Duration(float64(time.Second) / cfg.Limits.Rate)
	return max(time.Minute, cfg.Consumer.CallTimeout+2*width)
}

// breakerWatch turns the guard's breaker changes into their effects: one
// audit event per change (logs and metrics derived from it), and the
// shared consumer paused on the server while every vendor account's
// breaker is open.
type breakerWatch struct {
	g        *guard.Guard
	votes    jetstream.KeyValue // the health bucket: replicas' probe keys and their pause votes
	owner    string
	interval time.Duration
	js       jetstream.JetStream
	subjects messages.Subjects
	stream   string
	durable  string
	log      *zap.Logger
	m        *metrics.Metrics
	timeout  time.Duration
	paused   bool
}

// run works until ctx ends; every interval it also refreshes the metrics
// (a breaker turns half-open, and a rate recovers, without a change event).
func (w *breakerWatch) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	w.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			if w.paused {
				// Leave no pause behind this replica: another may be able to file.
				rctx, cancel := context.WithTimeout(context.Background(), w.timeout)
				w.resume(rctx)
				cancel()
			}
			return
		case c := <-w.g.Changes():
			w.changed(ctx, c)
			w.refresh(ctx)
		case <-t.C:
			w.refresh(ctx)
		}
	}
}

// Audit events of the breakers (not about one request): published on
// <prefix>.audit.breaker.<vendor>.<key of the account>.<event>.
const (
	eventBreakerOpen     = "breaker_open"
	eventBreakerHalfOpen = "breaker_half_open"
	eventBreakerClosed   = "breaker_closed"
)

func (w *breakerWatch) changed(ctx context.Context, c guard.Change) {
	event := map[guard.BreakerState]string{guard.Open: eventBreakerOpen, guard.HalfOpen: eventBreakerHalfOpen, guard.Closed: eventBreakerClosed}[c.To]
	msg := fmt.Sprintf("%s account %q: %s → %s", c.Vendor, c.Account, c.From, c.To)
	switch c.To {
	case guard.Open:
		msg += fmt.Sprintf("; calls held back (nothing sent) until %s", c.Until.UTC().Format(time.RFC3339))
	case guard.HalfOpen:
		msg += "; probing"
	case guard.Closed:
		msg += "; calls flow again"
	}
	ev := messages.AuditEvent{SchemaVersion: messages.SchemaVersion, API: messages.API("breaker." + c.Vendor), Account: c.Account,
		Event: event, Time: c.At.UTC(), Message: msg}
	data, err := json.Marshal(ev)
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, w.timeout)
		_, err = w.js.PublishMsg(pctx, &nats.Msg{Subject: w.subjects.Audit(ev.API, event, c.Vendor+"/"+c.Account), Data: data})
		cancel()
	}
	level := zap.InfoLevel
	if c.To == guard.Open {
		level = zap.WarnLevel
	}
	fields := []zap.Field{zap.String("vendor", c.Vendor), zap.String("account", c.Account), zap.String("from", string(c.From)), zap.String("to", string(c.To))}
	if err != nil {
		fields = append(fields, zap.NamedError("audit_error", err))
	}
	w.log.Check(level, event).Write(append(fields, zap.String("message", msg))...)
}

// refresh updates the metrics and pauses or resumes the consumer.
func (w *breakerWatch) refresh(ctx context.Context) {
	states := w.g.States()
	for _, s := range states {
		r := s.Rate
		if math.IsInf(r, 1) {
			r = -1
		}
		w.m.Guard(s.Vendor, s.Account, map[guard.BreakerState]int{guard.Closed: 0, guard.HalfOpen: 1, guard.Open: 2}[s.Breaker], r)
	}
	until, all := guard.PauseUntil(states)
	until, all = w.agree(ctx, until, all)
	switch {
	case all && until.After(time.Now()):
		pctx, cancel := context.WithTimeout(ctx, w.timeout)
		_, err := w.js.PauseConsumer(pctx, w.stream, w.durable, until)
		cancel()
		if err != nil {
			w.log.Warn("could not pause the consumer", zap.Error(err))
			return
		}
		if !w.paused {
			w.log.Warn("every vendor account's breaker is open: the shared consumer is paused on the server", zap.Time("until", until))
		}
		w.paused = true
		w.m.Paused(true)
	case !all && w.paused:
		w.resume(ctx)
	}
}

// votePrefix names the pause votes in the health bucket (probe keys have
// no dot).
const votePrefix = "breakers."

// agree publishes this replica's vote and returns whether every live
// replica agrees to pause, and until when (guard.Agree). Without the
// bucket (or when it cannot be read) there is no pause.
func (w *breakerWatch) agree(ctx context.Context, until time.Time, all bool) (time.Time, bool) {
	if w.votes == nil {
		return time.Time{}, false
	}
	vote := "-"
	if all {
		vote = until.UTC().Format(time.RFC3339Nano)
	}
	vctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	if _, err := w.votes.PutString(vctx, votePrefix+jshealth.ProbeKey(w.owner), vote); err != nil {
		return time.Time{}, false
	}
	lister, err := w.votes.ListKeys(vctx)
	if err != nil {
		return time.Time{}, false
	}
	live, votes := map[string]time.Time{}, map[string]guard.Vote{}
	for key := range lister.Keys() {
		e, err := w.votes.Get(vctx, key)
		if err != nil {
			continue
		}
		name, isVote := strings.CutPrefix(key, votePrefix)
		if !isVote {
			live[key] = e.Created()
			continue
		}
		v := guard.Vote{At: e.Created()}
		if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil {
			v.Until = t
		}
		votes[name] = v
	}
	return guard.Agree(live, votes, time.Now(), 3*w.interval)
}

func (w *breakerWatch) resume(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	_, err := w.js.ResumeConsumer(rctx, w.stream, w.durable)
	cancel()
	if err != nil {
		w.log.Warn("could not resume the consumer", zap.Error(err))
		return
	}
	w.paused = false
	w.m.Paused(false)
	w.log.Info("the shared consumer is resumed: a vendor account's breaker lets calls through")
}

// breakerDetail is the breakers' line of /readyz: a replica whose vendor
// is down is ready (it holds the requests back), and says so.
func breakerDetail(g *guard.Guard) string {
	var open []string
	for _, s := range g.States() {
		if s.Breaker != guard.Closed {
			open = append(open, fmt.Sprintf("%s %s", s.Pair, s.Breaker))
		}
	}
	if len(open) == 0 {
		return "breakers: all closed"
	}
	return "breakers: " + strings.Join(open, ", ")
}
