package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tokenkv"
)

// pipeline is one consumer replica: queue + filing + ledger + tokenkv +
// dispatch and the JetStream health watch on one NATS connection, wired
// like the daemon (and like internal/filing's harness), with the sandbox as
// every vendor.
type pipeline struct {
	tb       testing.TB
	js       jetstream.JetStream
	nc       *nats.Conn
	sb       *sandbox.Server
	led      *ledger.Ledger
	subjects messages.Subjects
	streams  queue.Streams
	buckets  queue.Buckets
	cons     jetstream.Consumer
	proc     *filing.Processor
	ackWait  time.Duration
	health   *jshealth.Watcher

	healthMu  sync.Mutex
	healthLog []healthChange
}

// healthChange is one change the health watch reported, and when.
type healthChange struct {
	at time.Time
	jshealth.Change
}

// Health watch timing of the test replicas: a replica whose server cannot
// serve JetStream is not ready, and moves, within about
// healthFailures × (healthInterval + healthTimeout).
const (
	healthInterval = time.Second
	healthTimeout  = time.Second
	healthFailures = 3
)

type pipelineOpts struct {
	nc         *nats.Conn // required
	replicas   int        // streams and KV buckets; default 1
	maxDeliver int        // default 5
	owner      string     // the replica's name in the ledger; default the test name
	sb         *sandbox.Server
	policy     retry.Policy
}

// fastPolicy keeps retries and redeliveries in the milliseconds.
func fastPolicy() retry.Policy {
	return retry.Policy{
		InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxElapsedTime: time.Second,
		MaxAttempts: 4, MaxThrottleInterval: 40 * time.Millisecond,
		RedeliveryBase: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond,
	}
}

// setupTimeout bounds creating the streams, the consumer and the buckets.
const setupTimeout = 30 * time.Second

func newPipeline(tb testing.TB, o pipelineOpts) *pipeline {
	tb.Helper()
	if o.nc == nil {
		tb.Fatal("newPipeline: no connection")
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 5
	}
	if o.replicas == 0 {
		o.replicas = 1
	}
	if o.policy.InitialInterval == 0 {
		o.policy = fastPolicy()
	}
	if o.owner == "" {
		o.owner = tb.Name()
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	p := &pipeline{tb: tb, js: newJetStream(tb, o.nc), nc: o.nc, subjects: messages.Subjects{Prefix: "filing"}, ackWait: 5 * time.Second}
	p.streams = queue.StreamNames(p.subjects)
	p.buckets = queue.BucketNames(p.subjects)
	if _, err := queue.EnsureStreams(ctx, p.js, queue.StreamsConfig{Subjects: p.subjects, Replicas: o.replicas}); err != nil {
		tb.Fatal(err)
	}
	cons, err := queue.EnsureConsumer(ctx, p.js, queue.ConsumerConfig{Subjects: p.subjects, AckWait: p.ackWait, MaxDeliver: o.maxDeliver, MaxAckPending: 64})
	if err != nil {
		tb.Fatal(err)
	}
	p.cons = cons
	if p.led, err = ledger.Open(ctx, p.js, ledger.Config{Bucket: p.buckets.Ledger, Replicas: o.replicas}); err != nil {
		tb.Fatal(err)
	}
	tokens, err := tokenkv.Open(ctx, p.js, tokenkv.Config{Bucket: p.buckets.Tokens, LockBucket: p.buckets.TokenLocks, Replicas: o.replicas})
	if err != nil {
		tb.Fatal(err)
	}
	p.sb = o.sb
	if p.sb == nil {
		p.sb = startSandbox(tb)
	}
	accounts, err := dispatch.FromResolved(config.Default().WithSandbox(p.sb.URL(),
		sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret), tokens)
	if err != nil {
		tb.Fatal(err)
	}
	disp := dispatch.New(accounts)
	p.proc, err = filing.New(filing.Config{
		Subjects: p.subjects, Policy: o.policy, MaxDeliver: o.maxDeliver, Owner: o.owner, InFlightLease: p.ackWait,
	}, disp, p.led, p.js, p.nc, zaptest.NewLogger(tb, zaptest.Level(zapcore.WarnLevel)).Named(o.owner), nil)
	if err != nil {
		tb.Fatal(err)
	}
	probe, err := jshealth.OpenProbe(ctx, p.js, jshealth.ProbeConfig{Bucket: queue.BucketNames(p.subjects).Health, Replicas: o.replicas, Key: o.owner})
	if err != nil {
		tb.Fatal(err)
	}
	p.health, err = jshealth.New(jshealth.Config{
		Probe: probe, Reconnect: p.nc.ForceReconnect,
		Interval: healthInterval, Timeout: healthTimeout, Failures: healthFailures,
		Report: func(c jshealth.Change) {
			p.healthMu.Lock()
			p.healthLog = append(p.healthLog, healthChange{time.Now(), c})
			p.healthMu.Unlock()
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// healthChanges returns what the health watch reported so far.
func (p *pipeline) healthChanges() []healthChange {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	return append([]healthChange(nil), p.healthLog...)
}

// startSandbox starts the vendor simulator on a loopback port.
func startSandbox(tb testing.TB) *sandbox.Server {
	tb.Helper()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := sb.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sb.Close() })
	return sb
}

// run starts the consume loop and the health watch until the test ends or
// stop is called; stop is the graceful shutdown (stop pulling, finish
// in-flight work, ack).
func (p *pipeline) run() (stop func()) {
	owner := p.proc.Owner()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := queue.Consume(ctx, p.cons, func(ctx context.Context, m jetstream.Msg) { p.proc.Handle(ctx, m) },
			queue.LoopConfig{Concurrency: 16, AckWait: p.ackWait, Grace: 5 * time.Second, OnError: func(err error) { p.tb.Logf("%s: pull: %v", owner, err) }})
		if err != nil {
			p.tb.Errorf("%s: the consume loop ended: %v", owner, err)
		}
	}()
	go func() {
		defer wg.Done()
		p.health.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	p.tb.Cleanup(stop)
	return stop
}

// examplePath is examples/<api>.json, or examples/invalid/<api>.json.
func examplePath(api messages.API, invalid bool) string {
	if invalid {
		return filepath.Join("..", "examples", "invalid", string(api)+".json")
	}
	return filepath.Join("..", "examples", string(api)+".json")
}

// example returns examples/<api>.json with the given id.
func example(tb testing.TB, api messages.API, id string) []byte {
	tb.Helper()
	b, err := os.ReadFile(examplePath(api, false))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	m["id"], _ = json.Marshal(id)
	out, _ := json.Marshal(m)
	return out
}

// publish publishes a request with Nats-Msg-Id = id, retrying while the
// cluster is failing over (the message id makes a retry safe).
func (p *pipeline) publish(api messages.API, id string, data []byte) {
	p.tb.Helper()
	m := nats.NewMsg(p.subjects.Request(api))
	m.Data = data
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := p.js.PublishMsg(ctx, m, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("publish %s: %v", id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// resultCount is the number of messages in the result stream, or -1 when
// the stream cannot be asked right now.
func (p *pipeline) resultCount() int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := p.js.Stream(ctx, p.streams.Results)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// waitResults waits until the result stream holds at least want messages.
func (p *pipeline) waitResults(want int, timeout time.Duration) {
	p.tb.Helper()
	deadline := time.Now().Add(timeout)
	n := 0
	for {
		if n = p.resultCount(); n >= want {
			return
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("%d results after %s, want %d", n, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// results reads every stored result, grouped by request id.
func (p *pipeline) results() map[string][]messages.Result {
	p.tb.Helper()
	out := map[string][]messages.Result{}
	for _, m := range p.streamMsgs(p.streams.Results) {
		var r messages.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			p.tb.Fatal(err)
		}
		out[r.RequestID] = append(out[r.RequestID], r)
	}
	return out
}

// streamMsgs reads every message of a stream. A read that fails (a
// cluster electing a leader after a fault answers 503 for a moment) is
// started again, for up to a minute.
func (p *pipeline) streamMsgs(name string) []*jetstream.RawStreamMsg {
	p.tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := p.tryStreamMsgs(name)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("reading stream %s: %v", name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (p *pipeline) tryStreamMsgs(name string) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := p.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", seq, err)
		}
		out = append(out, m)
	}
	return out, nil
}
