// Package embedded runs an in-process NATS server with JetStream, used by
// the consumer when no NATS URL is configured so that it runs anywhere: the
// store lives under a local directory (./data by default) and the server
// listens on 127.0.0.1:4222, where cmd/publisher's default URL finds it.
//
// The embedded server has no authentication and no TLS, so by default it
// only listens on a loopback address: anyone who can reach it could publish
// filing requests (filed with the company's vendor credentials) and read
// results and audit events. Serving other hosts is what a real NATS
// deployment is for; AllowNonLoopback exists for containers whose network
// is private to the consumer.
//
// Durability: the server syncs every JetStream write to disk before it
// acknowledges it (sync_interval: always; see docs/configuration.md).
package embedded

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultListen       = "127.0.0.1:4222"
	DefaultStoreDir     = "./data"
	DefaultServerName   = "qualfile"
	DefaultReadyTimeout = 10 * time.Second
)

// Config configures the embedded server. The zero Config is usable.
type Config struct {
	// StoreDir is the JetStream store directory, created if missing;
	// DefaultStoreDir when empty. A server started again on the same
	// directory finds its streams and messages.
	StoreDir string
	// Listen is the client address, host:port; DefaultListen when empty.
	// Port 0 picks a free port (see Server.ClientURL). The host must be
	// "localhost" or a loopback IP unless AllowNonLoopback is set.
	Listen string
	// AllowNonLoopback permits a listen address reachable from other
	// hosts, including an empty host (every interface). Only set it when
	// the network is private: the server has no authentication or TLS.
	AllowNonLoopback bool
	// ServerName names the server in logs and JetStream metadata;
	// DefaultServerName when empty.
	ServerName string
	// Logger receives the server's log lines (notices at info level,
	// traces at debug); nil discards them. A fatal error of the server
	// (cannot listen, cannot open the store) is logged as an error and
	// returned by Start, never an exit of the process.
	Logger *zap.Logger
	// ReadyTimeout bounds how long Start waits for the server to accept
	// connections; DefaultReadyTimeout when zero.
	ReadyTimeout time.Duration
}

// Server is a running embedded server.
type Server struct {
	ns   *server.Server
	once sync.Once
}

// Start starts the server and waits until it accepts connections with
// JetStream enabled, ctx ends, or cfg.ReadyTimeout passes. On failure
// nothing is left running and the error wraps one of the sentinels, e.g.
// ErrListen naming the address when the port is in use.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.Listen = cmp.Or(cfg.Listen, DefaultListen)
	cfg.StoreDir = cmp.Or(cfg.StoreDir, DefaultStoreDir)
	cfg.ServerName = cmp.Or(cfg.ServerName, DefaultServerName)
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if !cfg.AllowNonLoopback && !isLoopback(host) {
		return nil, fmt.Errorf("%w: %q; use a 127.0.0.1 or localhost address, or a NATS server with authentication (nats.url)", ErrNonLoopback, cfg.Listen)
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStoreDir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName:             cfg.ServerName,
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               cfg.StoreDir,
		SyncAlways:             true, // fsync before every ack (sync_interval: always)
		NoSigs:                 true, // the caller owns signal handling
		NoLog:                  true, // no default logger; ours is set below
		DisableJetStreamBanner: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	logs := &logAdapter{next: cfg.Logger.Sugar(), fatal: make(chan string, 1)}
	ns.SetLoggerV2(logs, false, false, false)
	go ns.Start()

	fail := func(err error) (*Server, error) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
	deadline := time.NewTimer(cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case msg := <-logs.fatal:
			// A server that failed this way never gets ready.
			if strings.Contains(msg, "Error listening on port") {
				return fail(fmt.Errorf("%w on %s: %s (is another NATS server or consumer running there?)", ErrListen, cfg.Listen, msg))
			}
			return fail(fmt.Errorf("%w: %s", ErrStart, msg))
		case <-ctx.Done():
			return fail(fmt.Errorf("embedded NATS: %w while starting", ctx.Err()))
		case <-deadline.C:
			return fail(fmt.Errorf("%w: not ready for connections on %s within %s", ErrStart, cfg.Listen, cfg.ReadyTimeout))
		case <-tick.C:
		}
		if ns.ReadyForConnections(time.Millisecond) {
			if !ns.JetStreamEnabled() {
				return fail(fmt.Errorf("%w: JetStream is not enabled", ErrStart))
			}
			return &Server{ns: ns}, nil
		}
	}
}

// splitListen parses a host:port listen address.
func splitListen(addr string) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q: %w", ErrBadListen, addr, err)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: %q: port must be 0 to 65535", ErrBadListen, addr)
	}
	return host, port, nil
}

// isLoopback reports whether host is "localhost" or a loopback IP. An empty
// host (every interface) is not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ClientURL is the URL clients connect to, with the actual port when Listen
// asked for port 0, e.g. "nats://127.0.0.1:4222".
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server and waits until it is down: client connections
// are closed and the JetStream store is flushed. It may be called more than
// once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
}

// logAdapter forwards the server's log lines to zap and turns fatal ones
// into errors for Start.
type logAdapter struct {
	next  *zap.SugaredLogger
	fatal chan string
}

var _ server.Logger = (*logAdapter)(nil)

func (l *logAdapter) Noticef(format string, v ...any) { l.next.Infof(format, v...) }
func (l *logAdapter) Warnf(format string, v ...any)   { l.next.Warnf(format, v...) }
func (l *logAdapter) Errorf(format string, v ...any)  { l.next.Errorf(format, v...) }
func (l *logAdapter) Debugf(format string, v ...any)  { l.next.Debugf(format, v...) }
func (l *logAdapter) Tracef(format string, v ...any)  { l.next.Debugf(format, v...) }

// Fatalf logs a fatal message as an error and then hands the first one to
// Start; it never exits. The order matters: Start returns as soon as it
// receives the message, and by then the line must be in the caller's log
// (the channel send is what orders the two).
func (l *logAdapter) Fatalf(format string, v ...any) {
	l.next.Errorf(format, v...)
	select {
	case l.fatal <- fmt.Sprintf(format, v...):
	default:
	}
}
