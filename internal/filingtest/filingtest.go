// Package filingtest runs the whole consumer pipeline for tests — streams,
// the shared durable consumer, the ledger, the Douyin token store, the
// dispatcher and the filing processor, wired like the daemon, with the
// sandbox as every vendor — on a NATS connection the test provides: an
// embedded server (internal/natstest) or a container (integration/). It
// also runs the JetStream health watch when asked, reads the streams back,
// and wraps the pipeline's effects with injectable faults (faults.go).
package filingtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tokenkv"
	"github.com/qualfile/qualfile/messages"
)

// SetupTimeout bounds creating the streams, the consumer and the buckets.
const SetupTimeout = 30 * time.Second

// Options configures New. NC is required; everything else has a default.
type Options struct {
	NC            *nats.Conn
	Prefix        string // subject prefix; default "filing"
	Replicas      int    // streams and buckets; default 1
	MaxDeliver    int    // default 5
	MaxAckPending int    // of the shared consumer; default 256
	Owner         string // the replica's name in the ledger; default the test name
	Sandbox       *sandbox.Server
	Policy        retry.Policy  // default FastPolicy
	AckWait       time.Duration // default 5s; also the in-flight lease
	Concurrency   int           // default 16
	Grace         time.Duration // default 5s
	Logger        *zap.Logger   // default the test's, at warn level
	// Tokens is the Douyin token store; default the shared KV store.
	Tokens douyin.TokenStore
	// Config adjusts the processor's configuration before it is built.
	Config func(*filing.Config)
	// Faults, when set, wraps the processor's effects.
	Faults *Faults
	// Upstream wraps the real dispatcher (inside Faults); Dispatcher wraps
	// what the processor calls (outside Faults).
	Upstream, Dispatcher func(filing.Dispatcher) filing.Dispatcher
	// Reconcile, when set, turns reconciliation on with these settings;
	// its Reader defaults to the real dispatcher's reads, and Reader (when
	// set) wraps what the processor reads through.
	Reconcile *filing.ReconcileConfig
	Reader    func(filing.Reconciler) filing.Reconciler
	// Guard, when set, puts the vendors' breakers and rate limits in front
	// of the real dispatcher (inside Faults), as the consumer does: its
	// Pairs default to the sandbox's account, its Slots to the prefix's
	// rate bucket when a Rate is set. Pipeline.Guard is it.
	Guard *guard.Config
	// Ledger, when set, wraps the ledger the processor uses.
	Ledger func(*ledger.Ledger) filing.Ledger
	// Metrics, when set, receives the processor's metrics.
	Metrics *metrics.Metrics
	// Health, when set, makes Run also run the JetStream health watch, as
	// the daemon does: a jshealth.Watcher with this configuration, its
	// Probe by default a put in the prefix's health bucket under Owner,
	// its Reconnect by default NC.ForceReconnect. HealthChanges lists what
	// it reported.
	Health *jshealth.Config
	// OnPullError, when set, is told of every failed pull the consume loop
	// goes on after.
	OnPullError func(error)
	// OnLoopError, when set, is told the error the consume loop ended with
	// before Run's stop (the server closed the pull).
	OnLoopError func(error)
	// ReadRetry is how long a failed read of a stream (StreamMsgs,
	// Results, Audit) is started again, a cluster electing leaders after a
	// fault answering 503 for a moment; default 0, the test fails at once.
	ReadRetry time.Duration
}

// Pipeline is one consumer replica.
type Pipeline struct {
	TB        testing.TB
	JS        jetstream.JetStream
	NC        *nats.Conn
	Sandbox   *sandbox.Server
	Ledger    *ledger.Ledger
	Subjects  messages.Subjects
	Streams   queue.Streams
	Buckets   queue.Buckets
	Objects   jetstream.ObjectStore
	Files     jetstream.ObjectStore // the SMS files too large for a message
	Consumer  jetstream.Consumer
	Processor *filing.Processor
	// Health is the JetStream health watch (nil unless Options.Health).
	Health *jshealth.Watcher
	// Guard holds the vendors' breakers and rate limits (nil unless
	// Options.Guard).
	Guard *guard.Guard
	opts  Options

	healthMu  sync.Mutex
	healthLog []HealthChange
}

// HealthChange is one change the health watch reported, and when.
type HealthChange struct {
	At time.Time
	jshealth.Change
}

// FastPolicy keeps retries and redeliveries in the milliseconds.
func FastPolicy() retry.Policy {
	return retry.Policy{
		InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxElapsedTime: time.Second,
		MaxAttempts: 4, MaxThrottleInterval: 40 * time.Millisecond,
		RedeliveryBase: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond,
	}
}

// New sets up the streams, the consumer and the buckets, and builds a
// processor; Run starts consuming.
func New(tb testing.TB, o Options) *Pipeline {
	tb.Helper()
	if o.NC == nil {
		tb.Fatal("filingtest: Options.NC is required")
	}
	if o.MaxDeliver == 0 {
		o.MaxDeliver = 5
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Policy.InitialInterval == 0 {
		o.Policy = FastPolicy()
	}
	if o.Owner == "" {
		o.Owner = tb.Name()
	}
	if o.AckWait == 0 {
		o.AckWait = 5 * time.Second
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 256
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.Grace == 0 {
		o.Grace = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = Logger(tb)
	}
	js, err := jetstream.New(o.NC, jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), SetupTimeout)
	defer cancel()
	p := &Pipeline{TB: tb, JS: js, NC: o.NC, Subjects: messages.Subjects{Prefix: o.Prefix}, opts: o}
	p.Streams = queue.StreamNames(p.Subjects)
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: p.Subjects, Replicas: o.Replicas}); err != nil {
		tb.Fatal(err)
	}
	if p.Consumer, err = queue.EnsureConsumer(ctx, js, queue.ConsumerConfig{Subjects: p.Subjects, AckWait: o.AckWait, MaxAckPending: o.MaxAckPending}); err != nil {
		tb.Fatal(err)
	}
	p.Buckets = queue.BucketNames(p.Subjects)
	b := p.Buckets
	if p.Ledger, err = ledger.Open(ctx, js, ledger.Config{Bucket: b.Ledger, Replicas: o.Replicas}); err != nil {
		tb.Fatal(err)
	}
	p.Objects, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: b.Objects, Replicas: o.Replicas, Storage: jetstream.FileStorage})
	if err != nil {
		tb.Fatal(err)
	}
	p.Files, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: b.Files, Replicas: o.Replicas, Storage: jetstream.FileStorage})
	if err != nil {
		tb.Fatal(err)
	}
	tokens := o.Tokens
	if tokens == nil {
		if tokens, err = tokenkv.Open(ctx, js, tokenkv.Config{Bucket: b.Tokens, LockBucket: b.TokenLocks, Replicas: o.Replicas}); err != nil {
			tb.Fatal(err)
		}
	}
	p.Sandbox = o.Sandbox
	if p.Sandbox == nil {
		p.Sandbox = StartSandbox(tb)
	}
	hc := dispatch.NewHTTPClient(o.Concurrency)
	tb.Cleanup(hc.CloseIdleConnections)
	accounts, err := dispatch.FromResolved(config.Default().WithSandbox(p.Sandbox.URL(),
		sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret), tokens, hc)
	if err != nil {
		tb.Fatal(err)
	}
	direct := dispatch.New(accounts)
	var disp filing.Dispatcher = direct
	var reader filing.Reconciler = direct
	if gc := o.Guard; gc != nil {
		c := *gc
		if c.Pairs == nil {
			c.Pairs = []guard.Pair{{Vendor: "vms", Account: "default"}, {Vendor: "sms", Account: "default"}, {Vendor: "douyin", Account: "default"}}
		}
		if c.Rate > 0 && c.Slots == nil {
			kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.Rate, TTL: time.Minute, Storage: jetstream.MemoryStorage, Replicas: o.Replicas})
			if err != nil {
				tb.Fatal(err)
			}
			c.Slots = guard.KVSlots{KV: kv}
		}
		p.Guard = guard.New(c, direct, direct)
		disp, reader = p.Guard, p.Guard
	}
	var led filing.Ledger = p.Ledger
	if o.Ledger != nil {
		led = o.Ledger(p.Ledger)
	}
	var pub filing.Publisher = js
	if o.Upstream != nil {
		disp = o.Upstream(disp)
	}
	if f := o.Faults; f != nil {
		disp, led, pub = f.Dispatcher(disp), f.Ledger(led), f.Publisher(pub)
	}
	if o.Dispatcher != nil {
		disp = o.Dispatcher(disp)
	}
	cfg := filing.Config{
		Subjects: p.Subjects, Policy: o.Policy, MaxDeliver: o.MaxDeliver, Owner: o.Owner, InFlightLease: o.AckWait,
		MaxPayload: int(o.NC.MaxPayload()), Objects: p.Objects, Files: p.Files, FilesBucket: b.Files,
		// The sandbox answers at once; a short call timeout keeps the
		// in-flight lease (retry budget + call timeout) short in tests.
		CallTimeout: 5 * time.Second,
	}
	if rc := o.Reconcile; rc != nil {
		cfg.Reconcile = *rc
		if cfg.Reconcile.Reader == nil {
			cfg.Reconcile.Reader = reader
		}
		if o.Reader != nil {
			cfg.Reconcile.Reader = o.Reader(cfg.Reconcile.Reader)
		}
	}
	if o.Config != nil {
		o.Config(&cfg)
	}
	if p.Processor, err = filing.New(cfg, disp, led, pub, o.NC, o.Logger.Named(o.Owner), o.Metrics); err != nil {
		tb.Fatal(err)
	}
	if o.Health != nil {
		if p.Health, err = p.newHealth(ctx, *o.Health); err != nil {
			tb.Fatal(err)
		}
	}
	return p
}

// newHealth builds the health watch of Options.Health.
func (p *Pipeline) newHealth(ctx context.Context, cfg jshealth.Config) (*jshealth.Watcher, error) {
	if cfg.Probe == nil {
		probe, err := jshealth.OpenProbe(ctx, p.JS, jshealth.ProbeConfig{Bucket: p.Buckets.Health, Replicas: p.opts.Replicas, Key: p.opts.Owner})
		if err != nil {
			return nil, err
		}
		cfg.Probe = probe
	}
	if cfg.Reconnect == nil {
		cfg.Reconnect = p.NC.ForceReconnect
	}
	report := cfg.Report
	cfg.Report = func(c jshealth.Change) {
		p.healthMu.Lock()
		p.healthLog = append(p.healthLog, HealthChange{time.Now(), c})
		p.healthMu.Unlock()
		if report != nil {
			report(c)
		}
	}
	return jshealth.New(cfg)
}

// HealthChanges returns what the health watch reported so far.
func (p *Pipeline) HealthChanges() []HealthChange {
	p.healthMu.Lock()
	defer p.healthMu.Unlock()
	return append([]HealthChange(nil), p.healthLog...)
}

// Logger logs warnings and errors through the test (nothing in benchmarks).
func Logger(tb testing.TB) *zap.Logger {
	if _, ok := tb.(*testing.B); ok {
		return zap.NewNop()
	}
	return zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
}

// HeldLogger logs warnings and errors into memory and, when the test has
// failed, writes the last maxHeldLines of them to the test log at cleanup:
// after the test's own messages, so that the reason for a failure is not
// buried under hundreds of replica warnings.
func HeldLogger(tb testing.TB) *zap.Logger {
	h := &heldLines{}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	tb.Cleanup(func() {
		if !tb.Failed() {
			return
		}
		lines, dropped := h.take()
		tb.Logf("replica log, warnings and errors (%d earlier lines dropped):\n%s", dropped, strings.Join(lines, ""))
	})
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(h), zap.WarnLevel))
}

const maxHeldLines = 2000

// heldLines keeps the last maxHeldLines lines written to it.
type heldLines struct {
	mu      sync.Mutex
	lines   []string
	dropped int
}

func (h *heldLines) Write(b []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lines) == maxHeldLines {
		h.lines = h.lines[1:]
		h.dropped++
	}
	h.lines = append(h.lines, string(b))
	return len(b), nil
}

func (h *heldLines) take() ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lines), h.dropped
}

// StartSandbox starts the vendor simulator on a loopback port.
func StartSandbox(tb testing.TB) *sandbox.Server {
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

// Run starts the consume loop, and the health watch if there is one,
// until the test ends or stop is called; stop is the graceful shutdown
// (stop pulling, finish in-flight work, settle).
func (p *Pipeline) Run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cfg := queue.LoopConfig{Concurrency: p.opts.Concurrency, AckWait: p.opts.AckWait, Grace: p.opts.Grace, OnError: p.opts.OnPullError}
		if f := p.opts.Faults; f != nil {
			cfg.Wrap = f.Msg
		}
		err := queue.Consume(ctx, p.Consumer, func(ctx context.Context, m jetstream.Msg) { p.Processor.Handle(ctx, m) }, cfg)
		if err != nil && p.opts.OnLoopError != nil {
			p.opts.OnLoopError(err)
		}
	}()
	if p.Health != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Health.Run(ctx)
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	p.TB.Cleanup(stop)
	return stop
}

// ExamplesDir is the repository's examples/ directory.
func ExamplesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// Example returns examples/<api>.json with the given id.
func Example(tb testing.TB, api messages.API, id string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(ExamplesDir(), string(api)+".json"))
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

// Publish publishes a request with Nats-Msg-Id = id, retrying for a while
// (a cluster failing over); the message id makes a retry safe.
func (p *Pipeline) Publish(api messages.API, id string, data []byte) {
	p.TB.Helper()
	m := nats.NewMsg(p.Subjects.Request(api))
	m.Data = data
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := p.JS.PublishMsg(ctx, m, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.TB.Fatalf("publish %s: %v", id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Count is the number of messages in a stream, or -1 when it cannot be
// asked right now.
func (p *Pipeline) Count(stream string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := p.JS.Stream(ctx, stream)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// WaitResults waits until the result stream holds at least want messages.
func (p *Pipeline) WaitResults(want int, timeout time.Duration) {
	p.TB.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := p.Count(p.Streams.Results)
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			p.TB.Fatalf("%d results after %s, want %d", n, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Results reads every stored result, grouped by request id, in order.
func (p *Pipeline) Results() map[string][]messages.Result {
	p.TB.Helper()
	out := map[string][]messages.Result{}
	for _, m := range p.StreamMsgs(p.Streams.Results) {
		var r messages.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			p.TB.Fatal(err)
		}
		out[r.RequestID] = append(out[r.RequestID], r)
	}
	return out
}

// Final is the result no other result of the same request supersedes; ok
// is false unless there is exactly one such.
func Final(rs []messages.Result) (messages.Result, bool) {
	superseded := map[time.Time]bool{}
	for _, r := range rs {
		if !r.Supersedes.IsZero() {
			superseded[r.Supersedes.UTC()] = true
		}
	}
	var final []messages.Result
	for _, r := range rs {
		if !superseded[r.CompletedAt.UTC()] {
			final = append(final, r)
		}
	}
	if len(final) != 1 {
		return messages.Result{}, false
	}
	return final[0], true
}

// Audit returns the audit events of one request, in stream order.
func (p *Pipeline) Audit(id string) []messages.AuditEvent {
	p.TB.Helper()
	var out []messages.AuditEvent
	for _, m := range p.StreamMsgs(p.Streams.Audit) {
		var ev messages.AuditEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			p.TB.Fatal(err)
		}
		if ev.RequestID == id {
			out = append(out, ev)
		}
	}
	return out
}

// CountEvents counts the events of one name.
func CountEvents(evs []messages.AuditEvent, name string) int {
	n := 0
	for _, ev := range evs {
		if ev.Event == name {
			n++
		}
	}
	return n
}

// Dead returns the dead letters.
func (p *Pipeline) Dead() []operator.DeadLetter {
	p.TB.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := operator.ReadDead(ctx, p.JS, p.Subjects)
	if err != nil {
		p.TB.Fatal(err)
	}
	return d
}

// StreamMsgs reads every message of a stream. A read that fails is
// started again for Options.ReadRetry.
func (p *Pipeline) StreamMsgs(name string) []*jetstream.RawStreamMsg {
	p.TB.Helper()
	deadline := time.Now().Add(p.opts.ReadRetry)
	for {
		out, err := p.readStream(name)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			p.TB.Fatalf("reading stream %s: %v", name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (p *Pipeline) readStream(name string) ([]*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return queue.Read(ctx, p.JS, name, "")
}
