// Package consumer is the qualfile consumer as a library. New builds
// everything from a configuration and its dependencies — streams, the
// shared durable consumer, the buckets, the vendors' clients behind their
// breakers and rate limits, the pipeline, the health watches — in this one
// place, for the binary, the tests and the integration suite alike; Run
// consumes until its context ends and shuts down in order.
package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/buildinfo"
	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// SetupTimeout bounds creating the streams, the consumer and the buckets.
const SetupTimeout = 30 * time.Second

// Deps are what the consumer is built from besides its configuration.
type Deps struct {
	// Conn is the connection to NATS (required); its owner closes it.
	Conn *nats.Conn
	// Accounts are the vendor accounts, their secrets resolved (or the
	// sandbox's: config.WithSandbox).
	Accounts map[string]config.ResolvedAccount
	Log      *zap.Logger // default: none
	// Owner names this replica in the ledger; default host, pid and a
	// random part (ReplicaID).
	Owner string
	// Registry receives the metrics, and the admin listener serves it;
	// default a registry of its own.
	Registry *prometheus.Registry
	Tracer   trace.Tracer // default: none
	// Ready, when set, is called once Run has started its watches and
	// begins to pull.
	Ready func()
	// Tokens keeps the Douyin access tokens; default the shared KV store.
	Tokens douyin.TokenStore
	// ConsoleLink, in the sandbox, logs a link that signs its first
	// visitor in to the console as an operator.
	ConsoleLink bool
	Seams       Seams
}

// Seams let a test put fault injectors between the pipeline and what it
// uses, and tune the pipeline's timeouts; nil leaves each as built.
type Seams struct {
	Dispatcher func(filing.Dispatcher) filing.Dispatcher // around the guarded vendors
	Reader     func(filing.Reconciler) filing.Reconciler // around the guarded reads
	Ledger     func(*ledger.Ledger) filing.Ledger
	Publisher  func(filing.Publisher) filing.Publisher
	Msg        func(jetstream.Msg) jetstream.Msg // every delivery, its settles and heartbeat
	Processor  func(*filing.Config)
	Health     func(jshealth.Change) // told every change of the JetStream health watch
	PullError  func(error)           // told every failed pull the loop goes on after
}

// Consumer is one replica. Its fields are what it was built from, for
// tests and tooling to look at; nothing changes them after New.
type Consumer struct {
	JS        jetstream.JetStream
	Subjects  messages.Subjects
	Ledger    *ledger.Ledger
	Objects   jetstream.ObjectStore // dead-letter bodies too big for a message
	Durable   jetstream.Consumer
	Guard     *guard.Guard
	Processor *filing.Processor
	Health    *jshealth.Watcher
	Metrics   *metrics.Metrics

	cfg      *config.Config
	deps     Deps
	log      *zap.Logger
	nc       *nats.Conn
	registry *prometheus.Registry
	pause    *guard.Watch
	requests jetstream.Stream
	depsErr  atomic.Pointer[error] // what is missing and could not be recreated (dependencies.go)
	closers  []func()
}

// New builds a consumer from a validated configuration.
func New(ctx context.Context, cfg *config.Config, deps Deps) (*Consumer, error) {
	if deps.Conn == nil {
		return nil, errors.New("consumer: Deps.Conn is required")
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Owner == "" {
		owner, err := ReplicaID()
		if err != nil {
			return nil, err
		}
		deps.Owner = owner
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	c := &Consumer{cfg: cfg, deps: deps, log: deps.Log, nc: deps.Conn, registry: deps.Registry,
		Subjects: messages.Subjects{Prefix: cfg.Subjects.Prefix}}
	if err := c.build(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Consumer) build(ctx context.Context) error {
	cfg, deps, log := c.cfg, c.deps, c.log
	// Audit events and results are sent asynchronously and their acks
	// awaited together; an ack that never comes is given up after this
	// (the handler has stopped waiting long before), so none is kept.
	js, err := jetstream.New(c.nc, jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return err
	}
	c.JS = js
	ctx, cancel := context.WithTimeout(ctx, SetupTimeout)
	defer cancel()
	durable, b, err := c.ensure(ctx)
	if err != nil {
		return err
	}
	c.Durable = durable
	if c.requests, err = js.Stream(ctx, queue.StreamNames(c.Subjects).Requests); err != nil {
		return err
	}
	c.Ledger, c.Objects = b.ledger, b.objects
	log.Info("buckets ready", zap.String("ledger", c.Ledger.Bucket()), zap.Duration("ledger_max_age_ms", cfg.Ledger.MaxAge))
	warnLegacyBuckets(ctx, js, log, c.Ledger.Bucket())

	hc := dispatch.NewHTTPClient(cfg.Consumer.Concurrency)
	c.closers = append(c.closers, hc.CloseIdleConnections)
	var tokens douyin.TokenStore = b.tokens
	if deps.Tokens != nil {
		tokens = deps.Tokens
	}
	clients, err := config.Clients(deps.Accounts, tokens, hc)
	if err != nil {
		return err
	}
	for name, a := range deps.Accounts {
		log.Info("account", zap.String("name", name), zap.Bool("volcengine", a.Volcengine != nil), zap.Bool("douyin", a.Douyin != nil))
	}
	c.Metrics = metrics.New(c.registry)
	c.Metrics.Preset(filing.MetricLabels())
	bi := buildinfo.Read()
	c.Metrics.Build(bi.Version, bi.Commit, bi.GoVersion)

	// The vendors are protected from us: a breaker and a rate limit per
	// vendor account, in front of every call and read.
	vendors := dispatch.New(clients)
	l := cfg.Limits
	c.Guard = guard.New(guard.Config{Pairs: pairsOf(deps.Accounts), Failures: l.Breaker.Failures, OpenFor: l.Breaker.OpenFor,
		Probes: l.Breaker.Probes, Rate: l.Rate, Slots: b.slots, MinRate: l.MinRate, RecoverEvery: l.RecoverEvery}, vendors, vendors)
	if err := c.buildProcessor(); err != nil {
		return err
	}
	if err := c.buildWatches(ctx); err != nil {
		return err
	}
	stopAdmin, err := startAdmin(cfg.Admin, c.registry, c.nc, c.notReady, c.Guard.Detail, log)
	if err != nil {
		return err
	}
	c.closers = append(c.closers, stopAdmin)
	return nil
}

// buildProcessor builds the pipeline, the seams in place.
func (c *Consumer) buildProcessor() error {
	cfg, s := c.cfg, c.deps.Seams
	var disp filing.Dispatcher = c.Guard
	var reader filing.Reconciler = c.Guard
	var led filing.Ledger = c.Ledger
	var pub filing.Publisher = c.JS
	if s.Dispatcher != nil {
		disp = s.Dispatcher(disp)
	}
	if s.Reader != nil {
		reader = s.Reader(reader)
	}
	if s.Ledger != nil {
		led = s.Ledger(c.Ledger)
	}
	if s.Publisher != nil {
		pub = s.Publisher(pub)
	}
	reconcile := filing.ReconcileConfig{Window: cfg.Reconcile.Window, Reads: cfg.Reconcile.Reads, KeepAmbiguous: !cfg.Reconcile.Refile}
	if cfg.Reconcile.Enabled {
		reconcile.Reader = reader
	}
	pc := filing.Config{
		Subjects:      c.Subjects,
		Policy:        cfg.RetryPolicy(),
		Requests:      c.requests,
		ReplyTo:       cfg.Consumer.ReplyTo,
		Tenants:       c.tenants(),
		MaxDeliver:    cfg.Consumer.MaxDeliver,
		Owner:         c.deps.Owner,
		InFlightLease: cfg.Consumer.Lease,
		RedactResults: cfg.Streams.RedactResults,
		CallTimeout:   cfg.Consumer.CallTimeout,
		MaxPayload:    int(c.nc.MaxPayload()),
		Objects:       c.Objects,
		Files:         c.fileStores(),
		Reconcile:     reconcile,
		Tracer:        c.deps.Tracer,
	}
	if s.Processor != nil {
		s.Processor(&pc)
	}
	var err error
	c.Processor, err = filing.New(pc, disp, led, pub, c.nc, c.log, c.Metrics)
	return err
}

// buildWatches builds the JetStream health watch (a replica whose
// JetStream requests keep failing says so in /readyz and moves to another
// server) and the breakers' pause by agreement.
func (c *Consumer) buildWatches(ctx context.Context) error {
	cfg, health := c.cfg, c.cfg.NATS.Health
	bucket := queue.BucketNames(c.Subjects).Health
	probe, err := jshealth.OpenProbe(ctx, c.JS, jshealth.ProbeConfig{Bucket: bucket, Replicas: cfg.Streams.Replicas, Key: c.deps.Owner})
	if err != nil {
		return err
	}
	report := reportHealth(c.log, c.nc)
	if s := c.deps.Seams.Health; s != nil {
		report = func(ch jshealth.Change) { reportHealth(c.log, c.nc)(ch); s(ch) }
	}
	if c.Health, err = jshealth.New(jshealth.Config{Probe: probe, Reconnect: c.nc.ForceReconnect, Interval: health.Interval,
		Timeout: health.Timeout, Failures: health.Failures, Report: report, Metrics: c.Metrics}); err != nil {
		return err
	}
	if servers := c.nc.Servers(); len(servers) < 2 && cfg.Streams.Replicas > 1 {
		c.log.Warn("only one NATS server known: the JetStream health watch cannot move this replica to another server; list every server in nats.url",
			zap.Strings("servers", servers))
	}
	votes, err := c.JS.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("health bucket: %w", err)
	}
	c.pause = guard.NewWatch(guard.WatchConfig{Guard: c.Guard, Owner: jshealth.ProbeKey(c.deps.Owner), Ballot: guard.KVBallot{KeyValue: votes},
		Pauser: guard.ConsumerPauser{JS: c.JS, Stream: queue.StreamNames(c.Subjects).Requests, Durable: cfg.Consumer.Durable},
		Gauges: c.Metrics, Interval: health.Interval, Timeout: health.Timeout, Emit: c.emit, Log: c.log})
	return nil
}

// Run consumes until ctx ends, then lets in-flight work finish within the
// shutdown grace period and stops everything it started.
func (c *Consumer) Run(ctx context.Context) error {
	cfg := c.cfg
	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	var watches sync.WaitGroup
	watches.Go(func() { c.Health.Run(watchCtx) })
	watches.Go(func() { c.pause.Run(watchCtx) })
	watches.Go(func() { watchBacklog(watchCtx, c.Durable, c.Metrics, cfg.NATS.Health.Interval) })
	watches.Go(func() { c.watchDependencies(watchCtx, cfg.NATS.Health.Interval) })
	defer func() {
		stopWatches()
		watches.Wait()
	}()
	// Operators' orders are served while requests are: by every replica,
	// with the consumer's rights.
	orders, err := control.Start(c.nc, control.Config{Subjects: c.Subjects, JS: c.JS, Ledger: c.Ledger, Requests: c.requests,
		Objects: c.Objects, Recorder: c.Processor, ReplyTo: roles.Inbox(roles.Operator, c.Subjects), Tenants: c.tenants(), Log: c.log})
	if err != nil {
		return fmt.Errorf("consumer: the operators' control service: %w", err)
	}
	defer orders.Stop()
	if c.cfg.Console.Listen != "" {
		stopConsole, err := c.startConsole(ctx, orders)
		if err != nil {
			return err
		}
		defer stopConsole()
	}
	c.log.Info("consumer ready", zap.String("nats", c.nc.ConnectedUrlRedacted()), zap.String("durable", cfg.Consumer.Durable),
		zap.Int("concurrency", cfg.Consumer.Concurrency), zap.String("admin", cfg.Admin.Listen))
	if c.deps.Ready != nil {
		c.deps.Ready()
	}
	onError := func(err error) { c.log.Warn("pull", zap.Error(err)) }
	if s := c.deps.Seams.PullError; s != nil {
		onError = func(err error) { c.log.Warn("pull", zap.Error(err)); s(err) }
	}
	return queue.Consume(ctx, c.Durable, func(ctx context.Context, msg jetstream.Msg) { c.Processor.Handle(ctx, msg) }, queue.LoopConfig{
		Concurrency: cfg.Consumer.Concurrency,
		Batch:       cfg.Consumer.FetchBatch,
		AckWait:     cfg.Consumer.AckWait,
		Grace:       cfg.Consumer.ShutdownGrace,
		OnError:     onError,
		Wrap:        c.deps.Seams.Msg,
	})
}

// Close releases what New opened (the admin listener, idle vendor
// connections), after Run has returned; the NATS connection is its
// owner's to drain.
func (c *Consumer) Close() {
	for _, f := range c.closers {
		f()
	}
	c.closers = nil
}

// emit publishes an audit event that is not about one request (a
// breaker's change) and derives its log line from it.
func (c *Consumer) emit(ctx context.Context, key string, ev messages.AuditEvent) {
	data, err := json.Marshal(ev)
	if err == nil {
		_, err = c.JS.PublishMsg(ctx, &nats.Msg{Subject: c.Subjects.Audit(ev.API, ev.Event, key), Data: data})
	}
	level := zap.InfoLevel
	if ev.Event == guard.EventBreakerOpen {
		level = zap.WarnLevel
	}
	fields := []zap.Field{zap.String("vendor", strings.TrimPrefix(string(ev.API), "breaker.")), zap.String("account", ev.Account), zap.String("message", ev.Message)}
	if err != nil {
		fields = append(fields, zap.NamedError("audit_error", err))
	}
	c.log.Check(level, ev.Event).Write(fields...)
}

// ReplicaID names this process in the ledger: host, pid and a random
// part, so that a restarted process (in a container, often pid 1 again)
// is never taken for the one that died mid-call.
func ReplicaID() (string, error) {
	host, _ := os.Hostname()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]), nil
}

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

// fileStores are each tenant's files, as the pipeline takes them: its
// subjects of the file stream.
func (c *Consumer) fileStores() map[string]filing.FileStore {
	stream := queue.StreamNames(c.Subjects).Files
	out := map[string]filing.FileStore{}
	for _, tenant := range tenantsOf(c.deps.Accounts) {
		out[tenant] = filing.FileStore{Store: &files.Chunks{JS: c.JS, Stream: stream, Subject: c.Subjects.For(tenant).Files()}, Bucket: stream}
	}
	return out
}

// tenants names the tenant of each account.
func (c *Consumer) tenants() map[string]string {
	out := make(map[string]string, len(c.deps.Accounts))
	for name, a := range c.deps.Accounts {
		out[name] = a.Tenant
	}
	return out
}

// tenantsOf are the default tenant ("") and every tenant an account names.
func tenantsOf(accounts map[string]config.ResolvedAccount) []string {
	ts := []string{""}
	for _, a := range accounts {
		if !slices.Contains(ts, a.Tenant) {
			ts = append(ts, a.Tenant)
		}
	}
	slices.Sort(ts)
	return ts
}
