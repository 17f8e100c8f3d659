package consumer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/metrics"
)

// The admin listener and what feeds it: /metrics, /healthz, /readyz, the
// health watch's reports and the consumer's backlog.

// reportHealth logs the JetStream health watch's changes.
func reportHealth(log *zap.Logger, nc *nats.Conn) func(jshealth.Change) {
	return func(c jshealth.Change) {
		st := c.Status
		fields := []zap.Field{zap.Int("failures", st.Failures), zap.Time("last_success", st.LastSuccess), zap.String("nats", nc.ConnectedUrlRedacted())}
		switch c.Kind {
		case jshealth.BecameNotReady:
			log.Warn("JetStream not answering: not ready", append(fields, zap.Error(st.LastError))...)
		case jshealth.Reconnected:
			if c.ReconnectErr != nil {
				log.Error("JetStream not answering: could not force a reconnect", append(fields, zap.Error(c.ReconnectErr))...)
				return
			}
			log.Warn("JetStream not answering: moving to another NATS server", append(fields, zap.Int("reconnects", st.Reconnects))...)
		case jshealth.BecameReady:
			log.Info("JetStream answering again: ready", fields...)
		}
	}
}

// startAdmin serves /metrics, /healthz and /readyz (and /debug/pprof/ when
// asked for); an empty address disables it. /readyz fails while NATS is
// disconnected, and while notReady says why (JetStream not answering,
// something the guarantees rely on missing).
func startAdmin(ac config.AdminConfig, reg *prometheus.Registry, nc *nats.Conn, notReady func() error, detail func() string, log *zap.Logger) (func(), error) {
	addr := ac.Listen
	if addr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	if ac.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "NATS not connected", http.StatusServiceUnavailable)
			return
		}
		if err := notReady(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
		fmt.Fprintln(w, detail())
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener", zap.Error(err))
		}
	}()
	log.Info("admin listener", zap.String("addr", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// watchBacklog samples the shared consumer's pending and ack-pending
// counts into the metrics every interval, until ctx ends.
func watchBacklog(ctx context.Context, cons jetstream.Consumer, m *metrics.Metrics, interval time.Duration) {
	if interval <= 0 {
		interval = jshealth.DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, interval)
		if info, err := cons.Info(ictx); err == nil {
			m.Consumer(info.NumPending, info.NumAckPending)
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
