package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/buildinfo"
	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/embedded"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// run wires the consumer and blocks until ctx ends and shutdown is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // usage goes where the caller asked for it, below
	configPath := fs.String("config", getenv("QUALFILE_CONFIG"), "YAML configuration file (env QUALFILE_CONFIG)")
	useSandbox := fs.Bool("sandbox", false, "start the built-in vendor simulator and point every account at it (embedded NATS server only)")
	sandboxExternal := fs.Bool("sandbox-with-external-nats", false, "DANGER: let --sandbox use the configured NATS server; the simulator then answers every request queued there")
	natsURL := fs.String("nats-url", "", "NATS URL, or \"embedded\" (overrides config)")
	embeddedNATS := fs.Bool("embedded", false, "start the embedded NATS server (loopback only, for trying qualfile out; --sandbox implies it)")
	concurrency := fs.Int("concurrency", 0, "requests handled at once (overrides config)")
	adminListen := fs.String("admin-listen", "", "admin listener for /metrics, /healthz, /readyz (overrides config)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (overrides config)")
	storeDir := fs.String("store-dir", "", "embedded server store directory (overrides config)")
	version := fs.Bool("version", false, "print the version, the commit and the Go version, and exit")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: consumer [flags]   (configuration: --config FILE, QUALFILE_* variables; see the README)")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil
		}
		usage(stderr)
		return err
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read())
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := checkFlags(fs); err != nil {
		return err
	}

	cfg, err := config.Load(*configPath, getenv)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if *concurrency > 0 {
		cfg.Consumer.Concurrency = *concurrency
	}
	if *adminListen != "" {
		cfg.Admin.Listen = *adminListen
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if *storeDir != "" {
		cfg.Embedded.StoreDir = *storeDir
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The embedded server is a choice, never a fallback: a production
	// configuration that lost its URL must not quietly file nothing
	// against an isolated server with a green /readyz.
	switch {
	case cfg.NATS.URL == config.EmbeddedURL:
		cfg.NATS.URL = ""
	case cfg.NATS.URL == "" && !*embeddedNATS && !*useSandbox:
		return errNoNATS
	case cfg.NATS.URL != "" && *embeddedNATS:
		return errors.New("--embedded with a NATS URL configured (--nats-url, QUALFILE_NATS_URL or nats.url): choose one")
	}
	if err := checkSandbox(*useSandbox, *sandboxExternal, cfg.NATS.URL); err != nil {
		return err
	}
	// Secrets are read now, before any server starts: a missing key file
	// is a start-up error, not something found once the streams are up.
	var accounts map[string]config.ResolvedAccount
	if !*useSandbox {
		if accounts, err = cfg.ResolveAccounts(getenv, os.ReadFile); err != nil {
			return err
		}
	}

	log, err := newLogger(cfg.Log.Level, cfg.Log.Development, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	owner, err := replicaID()
	if err != nil {
		return err
	}
	bi := buildinfo.Read()
	// Every line says which service, build and replica wrote it.
	log = log.With(zap.String("service", "qualfile-consumer"), zap.String("version", bi.Version), zap.String("replica", owner))

	// NATS: the configured server, or an embedded one.
	url := cfg.NATS.URL
	if url == "" {
		srv, err := embedded.Start(ctx, embedded.Config{StoreDir: cfg.Embedded.StoreDir, Listen: cfg.Embedded.Listen, Logger: natsLogger{log.Named("nats-server").Sugar()}})
		if err != nil {
			return fmt.Errorf("embedded NATS server: %w", err)
		}
		defer srv.Shutdown()
		url = srv.ClientURL()
		log.Info("embedded NATS server started", zap.String("url", url), zap.String("store_dir", cfg.Embedded.StoreDir))
	}
	natsOpts, err := cfg.NATSOptions(getenv)
	if err != nil {
		return err
	}
	natsOpts = append(natsOpts,
		nats.Name("qualfile-consumer"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				log.Info("NATS connection closed") // a shutdown, not a fault
				return
			}
			log.Warn("NATS disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", zap.String("url", c.ConnectedUrlRedacted())) }),
	)
	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	// Audit events and results are sent asynchronously and their acks
	// awaited together; an ack that never comes is given up after this
	// (the handler has stopped waiting long before), so none is kept.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(time.Minute))
	if err != nil {
		return err
	}

	subjects := messages.Subjects{Prefix: cfg.Subjects.Prefix}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	done, err := queue.EnsureStreams(setupCtx, js, queue.StreamsConfig{
		Subjects:        subjects,
		Replicas:        cfg.Streams.Replicas,
		DuplicateWindow: time.Duration(cfg.Streams.DuplicateWindow),
		AuditMaxAge:     time.Duration(cfg.Streams.AuditMaxAge),
		ResultsMaxAge:   time.Duration(cfg.Streams.ResultsMaxAge),
		DeadMaxAge:      time.Duration(cfg.Streams.DeadMaxAge),
	})
	if err != nil {
		return err
	}
	log.Info("streams ready", zap.Any("streams", done))
	cons, err := queue.EnsureConsumer(setupCtx, js, queue.ConsumerConfig{
		Subjects:      subjects,
		Durable:       cfg.Consumer.Durable,
		AckWait:       time.Duration(cfg.Consumer.AckWait),
		MaxAckPending: cfg.Consumer.MaxAckPending,
	})
	if err != nil {
		return err
	}
	st, err := openState(setupCtx, js, cfg)
	if err != nil {
		return err
	}
	led := st.ledger
	log.Info("buckets ready", zap.String("ledger", led.Bucket()), zap.Duration("ledger_max_age_ms", cfg.Ledger.MaxAge))
	if legacy, err := findLegacyBuckets(setupCtx, js); err != nil {
		log.Warn("could not look for buckets of an older version", zap.Error(err))
	} else if len(legacy) > 0 {
		log.Warn("buckets of an older version exist and are not used: their ledger entries no longer prevent a second filing (see the README, Upgrading)",
			zap.Strings("buckets", legacy), zap.String("ledger", led.Bucket()))
	}

	// Accounts: the vendors, or the sandbox.
	if *useSandbox {
		if *sandboxExternal {
			log.Warn("--sandbox-with-external-nats: the simulator answers every request queued on this NATS server, real ones included",
				zap.String("nats", nc.ConnectedUrlRedacted()), zap.String("subjects", subjects.AllRequests()))
		}
		sb, err := sandbox.New(sandbox.Config{})
		if err != nil {
			return err
		}
		if err := sb.Start(); err != nil {
			return err
		}
		defer sb.Close()
		log.Info("sandbox started", zap.String("url", sb.URL()))
		accounts = cfg.WithSandbox(sb.URL(), sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret)
	}
	hc := dispatch.NewHTTPClient(cfg.Consumer.Concurrency)
	defer hc.CloseIdleConnections()
	clients, err := config.Clients(accounts, st.tokens, hc)
	if err != nil {
		return err
	}
	for name, a := range accounts {
		log.Info("account", zap.String("name", name), zap.Bool("volcengine", a.Volcengine != nil), zap.Bool("douyin", a.Douyin != nil))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	m.Preset(filing.MetricLabels())
	m.Build(bi.Version, bi.Commit, bi.GoVersion)

	// Tracing: off unless the standard OTel environment names an OTLP
	// endpoint.
	tp, err := tracing.Setup(setupCtx, getenv, "qualfile-consumer", bi.Version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing: flushing the last spans failed", zap.Error(err))
		}
	}()
	if ep := firstOf(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), getenv("OTEL_EXPORTER_OTLP_ENDPOINT")); ep != "" && !strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		shown := "(unparsable)"
		if u, err := neturl.Parse(ep); err == nil {
			shown = u.Redacted()
		}
		log.Info("tracing: spans are exported over OTLP/HTTP", zap.String("endpoint", shown))
	}

	disp := dispatch.New(clients)
	// The vendors are protected from us: a breaker and a rate limit per
	// vendor account, in front of every call and read.
	slots, err := openSlots(setupCtx, js, cfg)
	if err != nil {
		return err
	}
	l := cfg.Limits
	grd := guard.New(guard.Config{Pairs: pairsOf(accounts), Failures: l.Breaker.Failures, OpenFor: l.Breaker.OpenFor,
		Probes: l.Breaker.Probes, Rate: l.Rate, Slots: slots, MinRate: l.MinRate, RecoverEvery: l.RecoverEvery}, disp, disp)
	reconcile := filing.ReconcileConfig{Window: cfg.Reconcile.Window, Reads: cfg.Reconcile.Reads,
		ClockSkew: cfg.Reconcile.ClockSkew, KeepAmbiguous: !cfg.Reconcile.Refile}
	if cfg.Reconcile.Enabled {
		reconcile.Reader = grd
	}
	proc, err := filing.New(filing.Config{
		Subjects:      subjects,
		Policy:        cfg.RetryPolicy(),
		MaxDeliver:    cfg.Consumer.MaxDeliver,
		Owner:         owner,
		InFlightLease: time.Duration(cfg.Consumer.AckWait),
		RedactResults: cfg.Streams.RedactResults,
		CallTimeout:   cfg.Consumer.CallTimeout,
		MaxPayload:    int(nc.MaxPayload()),
		Objects:       st.objects,
		Files:         st.files,
		FilesBucket:   queue.BucketNames(subjects).Files,
		Reconcile:     reconcile,
		Tracer:        tp.Tracer("github.com/qualfile/qualfile/internal/filing"),
	}, grd, led, js, nc, log, m)
	if err != nil {
		return err
	}

	// JetStream health: a replica whose JetStream requests keep failing
	// (its server cut off from the cluster majority, frozen, …) says so in
	// /readyz and moves to another server.
	probe, err := jshealth.OpenProbe(setupCtx, js, jshealth.ProbeConfig{Bucket: queue.BucketNames(subjects).Health, Replicas: cfg.Streams.Replicas, Key: owner})
	if err != nil {
		return err
	}
	health, err := jshealth.New(jshealth.Config{
		Probe:     probe,
		Reconnect: nc.ForceReconnect,
		Interval:  cfg.NATS.Health.Interval,
		Timeout:   cfg.NATS.Health.Timeout,
		Failures:  cfg.NATS.Health.Failures,
		Report:    reportHealth(log, nc),
		Metrics:   m,
	})
	if err != nil {
		return err
	}
	if servers := nc.Servers(); len(servers) < 2 && cfg.Streams.Replicas > 1 {
		log.Warn("only one NATS server known: the JetStream health watch cannot move this replica to another server; list every server in nats.url",
			zap.Strings("servers", servers))
	}
	votes, err := js.KeyValue(setupCtx, queue.BucketNames(subjects).Health)
	if err != nil {
		return fmt.Errorf("health bucket: %w", err)
	}
	healthCtx, stopHealthCtx := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() { defer close(healthDone); health.Run(healthCtx) }()
	backlogDone := make(chan struct{})
	go func() { defer close(backlogDone); watchBacklog(healthCtx, cons, m, cfg.NATS.Health.Interval) }()
	breakersDone := make(chan struct{})
	bw := &breakerWatch{g: grd, votes: votes, owner: owner, interval: cfg.NATS.Health.Interval, js: js, subjects: subjects,
		stream: queue.StreamNames(subjects).Requests, durable: cfg.Consumer.Durable, log: log, m: m, timeout: cfg.NATS.Health.Timeout}
	go func() { defer close(breakersDone); bw.run(healthCtx, cfg.NATS.Health.Interval) }()
	stopHealth := func() { stopHealthCtx(); <-healthDone; <-backlogDone; <-breakersDone }
	defer stopHealth()

	stopAdmin, err := startAdmin(cfg.Admin, reg, nc, js, subjects, health.Err, func() string { return breakerDetail(grd) }, log)
	if err != nil {
		return err
	}
	defer stopAdmin()

	log.Info("consumer ready", zap.String("nats", nc.ConnectedUrlRedacted()), zap.String("durable", cfg.Consumer.Durable),
		zap.Int("concurrency", cfg.Consumer.Concurrency), zap.String("admin", cfg.Admin.Listen))
	fmt.Fprintf(stdout, "qualfile consumer ready: nats %s, subjects %s\n", nc.ConnectedUrlRedacted(), subjects.AllRequests())

	err = queue.Consume(ctx, cons, func(ctx context.Context, msg jetstream.Msg) { proc.Handle(ctx, msg) }, queue.LoopConfig{
		Concurrency: cfg.Consumer.Concurrency,
		Batch:       cfg.Consumer.FetchBatch,
		AckWait:     time.Duration(cfg.Consumer.AckWait),
		Grace:       time.Duration(cfg.Consumer.ShutdownGrace),
		OnError:     func(err error) { log.Warn("pull", zap.Error(err)) },
	})
	stopHealth()
	log.Info("stopped pulling; draining the connection")
	if derr := drain(nc, 10*time.Second); derr != nil {
		log.Warn("drain", zap.Error(derr))
	}
	log.Info("consumer stopped")
	return err
}

// checkSandbox refuses --sandbox with a NATS URL (from --nats-url,
// QUALFILE_NATS_URL or nats.url): the simulator would join that server's
// shared durable consumer and "file" the real requests queued there. Only
// --sandbox-with-external-nats allows it.
func checkSandbox(sandbox, external bool, natsURL string) error {
	switch {
	case external && !sandbox:
		return errExternalWithoutSandbox
	case sandbox && natsURL != "" && !external:
		return fmt.Errorf("%w: a NATS URL is configured (--nats-url, QUALFILE_NATS_URL or nats.url), and the simulator would take and answer the requests queued there, real ones included; "+
			"remove the URL to use the embedded server, or add --sandbox-with-external-nats if that server only holds test traffic", errSandboxExternalNATS)
	}
	return nil
}

// replicaID names this process in the ledger: host, pid and a random part,
// so that a restarted process (in a container, often pid 1 again) is never
// taken for the one that died mid-call.
func replicaID() (string, error) {
	host, _ := os.Hostname()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]), nil
}

// drain drains nc and waits until it is closed.
func drain(nc *nats.Conn, timeout time.Duration) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-time.After(timeout):
		return errors.New("drain timed out")
	}
}

// checkFlags refuses flag values that cannot be meant, instead of falling
// back to the configuration's: a flag given is a flag obeyed.
func checkFlags(fs *flag.FlagSet) error {
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "concurrency":
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("--concurrency %s: must be at least 1", v))
			}
		case "config", "nats-url", "admin-listen", "log-level", "store-dir":
			if strings.TrimSpace(v) == "" {
				errs = append(errs, fmt.Errorf("--%s: must not be empty", f.Name))
			}
		}
	})
	return errors.Join(errs...)
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
