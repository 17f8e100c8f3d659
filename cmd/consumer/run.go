package main

import (
	"context"
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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/buildinfo"
	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/consumer"
	"github.com/qualfile/qualfile/internal/embedded"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// run reads the flags and the configuration, starts what they choose (an
// embedded server, the sandbox) and runs the consumer until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, getenv, stdout, stderr)
	if f == nil || err != nil {
		return err
	}
	cfg, err := f.config(getenv)
	if err != nil {
		return err
	}
	// Secrets are read now, before any server starts: a missing key file
	// is a start-up error, not something found once the streams are up.
	var accounts map[string]config.ResolvedAccount
	if !f.sandbox {
		if accounts, err = cfg.ResolveAccounts(getenv, os.ReadFile); err != nil {
			return err
		}
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Development, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	owner, err := consumer.ReplicaID()
	if err != nil {
		return err
	}
	bi := buildinfo.Read()
	// Every line says which service, build and replica wrote it.
	log = log.With(zap.String("service", "qualfile-consumer"), zap.String("version", bi.Version), zap.String("replica", owner))

	url := cfg.NATS.URL
	if url == "" {
		srv, err := embedded.Start(ctx, embedded.Config{StoreDir: cfg.Embedded.StoreDir, Listen: cfg.Embedded.Listen, Logger: log.Named("nats-server")})
		if err != nil {
			return fmt.Errorf("embedded NATS server: %w", err)
		}
		defer srv.Shutdown()
		url = srv.ClientURL()
		log.Info("embedded NATS server started", zap.String("url", url), zap.String("store_dir", cfg.Embedded.StoreDir))
	}
	nc, err := connect(url, cfg, getenv, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if f.sandbox {
		if f.sandboxExternal {
			log.Warn("--sandbox-with-external-nats: the simulator answers every request queued on this NATS server, real ones included",
				zap.String("nats", nc.ConnectedUrlRedacted()), zap.String("subjects", messages.Subjects{Prefix: cfg.Subjects.Prefix}.AllRequests()))
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
		if cfg.Console.Listen == "" && !f.sandboxExternal {
			cfg.Console.Listen = sandboxConsole // the quick start's: its store beside the embedded server's
		}
		accounts = cfg.WithSandbox(sb.URL(), sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret)
	}
	tp, err := startTracing(ctx, getenv, bi.Version, log)
	if err != nil {
		return err
	}
	defer tp.stop()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	subjects := messages.Subjects{Prefix: cfg.Subjects.Prefix}
	c, err := consumer.New(ctx, cfg, consumer.Deps{Conn: nc, Accounts: accounts, Log: log, Owner: owner, Registry: reg, ConsoleLink: f.sandbox,
		Tracer: tp.Tracer("github.com/qualfile/qualfile/internal/filing"),
		Ready: func() {
			fmt.Fprintf(stdout, "qualfile consumer ready: nats %s, subjects %s\n", nc.ConnectedUrlRedacted(), subjects.AllRequests())
		}})
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Run(ctx)
	log.Info("stopped pulling; draining the connection")
	if derr := drain(nc, 10*time.Second); derr != nil {
		log.Warn("drain", zap.Error(derr))
	}
	log.Info("consumer stopped")
	return err
}

// sandboxConsole is where --sandbox serves the console unless configured.
const sandboxConsole = "127.0.0.1:8089"

// flags are the command line's choices.
type flags struct {
	fs                       *flag.FlagSet
	configPath, natsURL      string
	adminListen, logLevel    string
	storeDir                 string
	concurrency              int
	sandbox, sandboxExternal bool
	embedded                 bool
}

// parseFlags reads the command line; nil flags and a nil error mean that
// it was answered already (--help, --version).
func parseFlags(args []string, getenv func(string) string, stdout, stderr io.Writer) (*flags, error) {
	f := &flags{fs: flag.NewFlagSet("consumer", flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Discard) // usage goes where the caller asked for it, below
	fs.StringVar(&f.configPath, "config", getenv("QUALFILE_CONFIG"), "YAML configuration file (env QUALFILE_CONFIG)")
	fs.BoolVar(&f.sandbox, "sandbox", false, "start the built-in vendor simulator and point every account at it (embedded NATS server only)")
	fs.BoolVar(&f.sandboxExternal, "sandbox-with-external-nats", false, "DANGER: let --sandbox use the configured NATS server; the simulator then answers every request queued there")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS URL, or \"embedded\" (overrides config)")
	fs.BoolVar(&f.embedded, "embedded", false, "start the embedded NATS server (loopback only, for trying qualfile out; --sandbox implies it)")
	fs.IntVar(&f.concurrency, "concurrency", 0, "requests handled at once (overrides config)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "admin listener for /metrics, /healthz, /readyz (overrides config)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides config)")
	fs.StringVar(&f.storeDir, "store-dir", "", "embedded server store directory (overrides config)")
	version := fs.Bool("version", false, "print the version, the commit and the Go version, and exit")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: consumer [flags]   (configuration: --config FILE, QUALFILE_* variables; see docs/configuration.md)")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return nil, nil
		}
		usage(stderr)
		return nil, err
	}
	if *version {
		fmt.Fprintln(stdout, buildinfo.Read())
		return nil, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return f, checkFlags(fs)
}

// config loads the configuration, with the flags' overrides, and checks
// the choice of NATS server and sandbox.
func (f *flags) config(getenv func(string) string) (*config.Config, error) {
	cfg, err := config.Load(f.configPath, getenv)
	if err != nil {
		return nil, err
	}
	override := func(p *string, v string) {
		if v != "" {
			*p = v
		}
	}
	override(&cfg.NATS.URL, f.natsURL)
	override(&cfg.Admin.Listen, f.adminListen)
	override(&cfg.Log.Level, f.logLevel)
	override(&cfg.Embedded.StoreDir, f.storeDir)
	if f.concurrency > 0 {
		cfg.Consumer.Concurrency = f.concurrency
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The embedded server is a choice, never a fallback: a production
	// configuration that lost its URL must not quietly file nothing
	// against an isolated server with a green /readyz.
	switch {
	case cfg.NATS.URL == config.EmbeddedURL:
		cfg.NATS.URL = ""
	case cfg.NATS.URL == "" && !f.embedded && !f.sandbox:
		return nil, errNoNATS
	case cfg.NATS.URL != "" && f.embedded:
		return nil, errors.New("--embedded with a NATS URL configured (--nats-url, QUALFILE_NATS_URL, NATS_URL or nats.url): choose one")
	}
	return cfg, checkSandbox(f.sandbox, f.sandboxExternal, cfg.NATS.URL)
}

// checkSandbox refuses --sandbox with a NATS URL unless
// --sandbox-with-external-nats (errSandboxExternalNATS says why).
func checkSandbox(sandbox, external bool, natsURL string) error {
	switch {
	case external && !sandbox:
		return errExternalWithoutSandbox
	case sandbox && natsURL != "" && !external:
		return fmt.Errorf("%w: a NATS URL is configured (--nats-url, QUALFILE_NATS_URL, NATS_URL or nats.url), and the simulator would take and answer the requests queued there, real ones included; "+
			"remove the URL to use the embedded server, or add --sandbox-with-external-nats if that server only holds test traffic", errSandboxExternalNATS)
	}
	return nil
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

// connect connects to NATS as the configuration says, logging the
// connection's changes.
func connect(url string, cfg *config.Config, getenv func(string) string, log *zap.Logger) (*nats.Conn, error) {
	opts, err := cfg.NATSOptions(getenv)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name("qualfile-consumer"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				log.Info("NATS connection closed") // a shutdown, not a fault
				return
			}
			log.Warn("NATS disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", zap.String("url", c.ConnectedUrlRedacted())) }),
		// The server's asynchronous errors (a permission refused, a slow
		// consumer) go to the log as every other line does, never to
		// stderr as the client would print them.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			fields := []zap.Field{zap.String("error", messages.Truncate(err.Error(), 300))}
			if sub != nil {
				fields = append(fields, zap.String("subject", messages.Truncate(sub.Subject, 200)))
			}
			log.Warn("NATS reported an error", fields...)
		}),
	)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", config.RedactURLs(url), err)
	}
	return nc, nil
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

// tracer is the tracing provider and how to flush it at the end.
type tracer struct {
	tracing.Provider
	stop func()
}

// startTracing exports spans over OTLP/HTTP when the standard OTel
// environment names an endpoint; otherwise it traces nothing.
func startTracing(ctx context.Context, getenv func(string) string, version string, log *zap.Logger) (tracer, error) {
	tp, err := tracing.Setup(ctx, getenv, "qualfile-consumer", version)
	if err != nil {
		return tracer{}, err
	}
	ep := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if ep == "" {
		ep = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if ep != "" && !strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		shown := "(unparsable)"
		if u, err := neturl.Parse(ep); err == nil {
			shown = u.Redacted()
		}
		log.Info("tracing: spans are exported over OTLP/HTTP", zap.String("endpoint", shown))
	}
	return tracer{Provider: tp, stop: func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("tracing: flushing the last spans failed", zap.Error(err))
		}
	}}, nil
}
