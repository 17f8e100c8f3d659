// Package filingtest runs the consumer for tests, built by consumer.New as
// the binary builds it (the health watch, the backlog watch and the pause
// vote included), with the sandbox as every vendor, on a NATS connection
// the test provides: an embedded server (internal/natstest) or a
// container (integration/). It reads the streams back, and wraps the
// pipeline's effects with injectable faults (faults.go).
package filingtest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/consumer"
	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// Options configures New: the configuration of the consumer a test runs,
// and the fault injectors it puts in. NC is required; everything else has
// a default.
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
	// Tenants are accounts beside "default" (the default tenant's) and the
	// tenant that owns each, all on the sandbox.
	Tenants map[string]string
	// Tokens is the Douyin token store; default the shared KV store.
	Tokens douyin.TokenStore
	// Registry receives the consumer's metrics (Pipeline.Metrics).
	Registry *prometheus.Registry
	// Config adjusts the processor's configuration before it is built.
	Config func(*filing.Config)
	// Faults, when set, wraps the processor's effects.
	Faults *Faults
	// Upstream wraps the guarded vendors (inside Faults); Dispatcher wraps
	// what the processor calls (outside Faults).
	Upstream, Dispatcher func(filing.Dispatcher) filing.Dispatcher
	// Reconcile, when set, turns reconciliation on with these settings;
	// its Reader defaults to the guarded vendors' reads, and Reader (when
	// set) wraps what the processor reads through.
	Reconcile *filing.ReconcileConfig
	Reader    func(filing.Reconciler) filing.Reconciler
	// Guard, when set, configures the vendors' breakers and rate limits
	// (its Pairs and Slots are the consumer's own); without it no breaker
	// ever opens.
	Guard *guard.Config
	// Ledger, when set, wraps the ledger the processor uses.
	Ledger func(*ledger.Ledger) filing.Ledger
	// Health, when set, configures the JetStream health watch (Interval,
	// Timeout, Failures); HealthChanges lists what it reported.
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

// Pipeline is one consumer replica, built by consumer.New as the binary
// builds it, and what a test reads back.
type Pipeline struct {
	*consumer.Consumer
	TB      testing.TB
	NC      *nats.Conn
	Sandbox *sandbox.Server
	Streams queue.Streams
	Buckets queue.Buckets
	opts    Options

	healthMu  sync.Mutex
	healthLog []HealthChange

	opMu sync.Mutex
	opNC *nats.Conn // OperatorConn
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

// New builds a consumer replica through consumer.New; Run starts it.
func New(tb testing.TB, o Options) *Pipeline {
	tb.Helper()
	if o.NC == nil {
		tb.Fatal("filingtest: Options.NC is required")
	}
	if o.Policy.InitialInterval == 0 {
		o.Policy = FastPolicy()
	}
	if o.Owner == "" {
		o.Owner = tb.Name()
	}
	if o.Logger == nil {
		o.Logger = Logger(tb)
	}
	p := &Pipeline{TB: tb, NC: o.NC, Sandbox: o.Sandbox, opts: o}
	if p.Sandbox == nil {
		p.Sandbox = StartSandbox(tb)
	}
	c, err := consumer.New(context.Background(), o.config(), consumer.Deps{
		Conn: o.NC, Owner: o.Owner, Registry: o.Registry, Tokens: o.Tokens, Log: o.Logger.Named(o.Owner), Seams: o.seams(p),
		Accounts: o.accounts().WithSandbox(p.Sandbox.URL(),
			sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	p.Consumer = c
	p.Streams, p.Buckets = queue.StreamNames(c.Subjects), queue.BucketNames(c.Subjects)
	return p
}

// accounts is a configuration naming the test's accounts and their
// tenants.
func (o Options) accounts() *config.Config {
	c := config.Default()
	c.Accounts = map[string]config.Account{}
	for name, tenant := range o.Tenants {
		c.Accounts[name] = config.Account{Tenant: tenant}
	}
	return c
}

// config is the consumer's configuration: the defaults, with the test's
// choices and timings fit for a sandbox that answers at once.
func (o Options) config() *config.Config {
	cfg := config.Default()
	cfg.Admin.Listen = ""
	if o.Prefix != "" {
		cfg.Subjects.Prefix = o.Prefix
	}
	setOr(&cfg.Streams.Replicas, o.Replicas, 1)
	setOr(&cfg.Consumer.MaxDeliver, o.MaxDeliver, 5)
	setOr(&cfg.Consumer.MaxAckPending, o.MaxAckPending, 256)
	setOr(&cfg.Consumer.Concurrency, o.Concurrency, 16)
	setOr(&cfg.Consumer.AckWait, o.AckWait, 5*time.Second)
	cfg.Consumer.Lease = cfg.Consumer.AckWait
	setOr(&cfg.Consumer.ShutdownGrace, o.Grace, 5*time.Second)
	// The sandbox answers at once; a short call timeout keeps the
	// in-flight lease (retry budget + call timeout) short in tests.
	cfg.Consumer.CallTimeout = 5 * time.Second
	cfg.Reconcile.Enabled = o.Reconcile != nil
	if rc := o.Reconcile; rc != nil {
		r := &cfg.Reconcile
		setOr(&r.Window, rc.Window, r.Window)
		setOr(&r.Reads, rc.Reads, r.Reads)
		r.Refile = !rc.KeepAmbiguous
	}
	l := &cfg.Limits
	// No breaker opens, and throttling slows nothing, unless the test asks
	// for a guard.
	l.Breaker.Failures, l.MinRate = math.MaxInt32, math.Inf(1)
	if g := o.Guard; g != nil {
		setOr(&l.Breaker.Failures, g.Failures, guard.DefaultFailures)
		setOr(&l.Breaker.OpenFor, g.OpenFor, l.Breaker.OpenFor)
		setOr(&l.Breaker.Probes, g.Probes, l.Breaker.Probes)
		setOr(&l.RecoverEvery, g.RecoverEvery, l.RecoverEvery)
		l.Rate = g.Rate
		if g.MinRate > 0 {
			l.MinRate = g.MinRate
		}
	}
	if h := o.Health; h != nil {
		hc := &cfg.NATS.Health
		setOr(&hc.Interval, h.Interval, hc.Interval)
		setOr(&hc.Timeout, h.Timeout, hc.Timeout)
		setOr(&hc.Failures, h.Failures, hc.Failures)
	}
	return cfg
}

// setOr sets *p to v, or to def when v is zero.
func setOr[T comparable](p *T, v, def T) { *p = cmp.Or(v, def) }

// seams puts the test's fault injectors in.
func (o Options) seams(p *Pipeline) consumer.Seams {
	s := consumer.Seams{
		Dispatcher: func(d filing.Dispatcher) filing.Dispatcher {
			if o.Upstream != nil {
				d = o.Upstream(d)
			}
			if o.Faults != nil {
				d = o.Faults.Dispatcher(d)
			}
			if o.Dispatcher != nil {
				d = o.Dispatcher(d)
			}
			return d
		},
		Ledger: func(l *ledger.Ledger) filing.Ledger {
			var led filing.Ledger = l
			if o.Ledger != nil {
				led = o.Ledger(l)
			}
			if o.Faults != nil {
				led = o.Faults.Ledger(led)
			}
			return led
		},
		Processor: func(cfg *filing.Config) {
			cfg.Policy = o.Policy
			if o.Config != nil {
				o.Config(cfg)
			}
		},
		Health: func(c jshealth.Change) {
			p.healthMu.Lock()
			p.healthLog = append(p.healthLog, HealthChange{time.Now(), c})
			p.healthMu.Unlock()
		},
		PullError: o.OnPullError,
	}
	if rc := o.Reconcile; rc != nil && (rc.Reader != nil || o.Reader != nil) {
		s.Reader = func(r filing.Reconciler) filing.Reconciler {
			if rc.Reader != nil {
				r = rc.Reader
			}
			if o.Reader != nil {
				r = o.Reader(r)
			}
			return r
		}
	}
	if f := o.Faults; f != nil {
		s.Publisher, s.Msg = f.Publisher, f.Msg
	}
	return s
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

// Run starts the consumer until the test ends or stop is called; stop is
// the graceful shutdown (stop pulling, finish in-flight work, settle).
func (p *Pipeline) Run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Consumer.Run(ctx); err != nil && p.opts.OnLoopError != nil {
			p.opts.OnLoopError(err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	p.TB.Cleanup(stop)
	return stop
}

// Operator is the name under which a test gives operators' orders.
const Operator = "tester"

// OperatorConn is a connection to p's server with the operators' inbox
// prefix, as an operator's tool has (the consumer answers orders only
// there).
func (p *Pipeline) OperatorConn() *nats.Conn {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.opNC == nil {
		nc, err := nats.Connect(p.NC.ConnectedUrl(), nats.CustomInboxPrefix(roles.Inbox(roles.Operator, p.Subjects)))
		if err != nil {
			p.TB.Fatalf("the operator's connection: %v", err)
		}
		p.TB.Cleanup(nc.Close)
		p.opNC = nc
	}
	return p.opNC
}

// Order gives an operator's order to the consumers' control service (its
// reason "test" unless given), waiting up to 5 s for a replica to serve
// it.
func (p *Pipeline) Order(a control.Action, o control.Order) (control.Report, error) {
	if o.Reason == "" {
		o.Reason = "test"
	}
	nc := p.OperatorConn()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		rep, err := control.Ask(ctx, nc, p.Subjects, Operator, a, o)
		cancel()
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			return rep, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitFor polls cond until it holds, failing the test when timeout passes
// first.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Drained reports whether the request stream is empty and nothing is
// pending or unacknowledged.
func (p *Pipeline) Drained() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ci, err := p.Durable.Info(ctx)
	return err == nil && p.Count(p.Streams.Requests) == 0 && ci.NumPending == 0 && ci.NumAckPending == 0
}

// DispatcherFunc adapts a function to filing.Dispatcher.
type DispatcherFunc func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)

func (f DispatcherFunc) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	return f(ctx, req)
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
	p.retry(30*time.Second, 100*time.Millisecond, "publish "+id, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := p.JS.PublishMsg(ctx, m, jetstream.WithMsgID(id))
		return err
	})
}

// retry runs op until it succeeds, for at most d, pausing between tries;
// then the test fails with the last error.
func (p *Pipeline) retry(d, pause time.Duration, what string, op func() error) {
	p.TB.Helper()
	deadline := time.Now().Add(d)
	for {
		err := op()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.TB.Fatalf("%s: %v", what, err)
		}
		time.Sleep(pause)
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
	WaitFor(p.TB, timeout, fmt.Sprintf("fewer than %d results", want), func() bool { return p.Count(p.Streams.Results) >= want })
}

// Results reads every stored result, grouped by request id, in order.
func (p *Pipeline) Results() map[string][]messages.Result {
	p.TB.Helper()
	out := map[string][]messages.Result{}
	for _, r := range decodeAll[messages.Result](p, p.Streams.Results) {
		out[r.RequestID] = append(out[r.RequestID], r)
	}
	return out
}

// decodeAll reads every message of a stream as a T.
func decodeAll[T any](p *Pipeline, stream string) []T {
	p.TB.Helper()
	var out []T
	for _, m := range p.StreamMsgs(stream) {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			p.TB.Fatal(err)
		}
		out = append(out, v)
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
	evs := decodeAll[messages.AuditEvent](p, p.Streams.Audit)
	return slices.DeleteFunc(evs, func(ev messages.AuditEvent) bool { return ev.RequestID != id })
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
func (p *Pipeline) StreamMsgs(name string) (out []*jetstream.RawStreamMsg) {
	p.TB.Helper()
	p.retry(p.opts.ReadRetry, 250*time.Millisecond, "reading stream "+name, func() (err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err = queue.Read(ctx, p.JS, name, "")
		return err
	})
	return out
}
