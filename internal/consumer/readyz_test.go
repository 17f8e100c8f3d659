package consumer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// TestReadyzFollowsJetStreamHealth: /readyz turns 503, with the watcher's
// reason, after the configured number of failed JetStream probes, although
// the connection is up and every stream exists; a successful probe makes
// it ready again.
func TestReadyzFollowsJetStreamHealth(t *testing.T) {
	js, nc, _ := natstest.JetStream(t)
	subjects := messages.Subjects{Prefix: "filing"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subjects}); err != nil {
		t.Fatal(err)
	}
	var probeErr error
	reconnects := 0
	w, err := jshealth.New(jshealth.Config{
		Probe:     func(context.Context) error { return probeErr },
		Reconnect: func() error { reconnects++; return nil },
		Failures:  3,
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := natstest.FreeAddr(t)
	stop, err := startAdmin(config.AdminConfig{Listen: addr}, prometheus.NewRegistry(), nc, w.Err, func() string { return "breakers: all closed" }, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	w.Check(ctx)
	if code, body := readyz(); code != http.StatusOK || !strings.Contains(body, "ready") {
		t.Fatalf("healthy: %d %q", code, body)
	}
	probeErr = errors.New("nats: timeout")
	for i := 1; i <= 3; i++ {
		w.Check(ctx)
		code, body := readyz()
		if i < 3 && code != http.StatusOK {
			t.Fatalf("after %d failed probes: %d %q, want still ready", i, code, body)
		}
		if i == 3 && (code != http.StatusServiceUnavailable || !strings.Contains(body, "3 consecutive probe failures") ||
			!strings.Contains(body, "last success") || !strings.Contains(body, "nats: timeout")) {
			t.Fatalf("after 3 failed probes: %d %q, want 503 with the reason", code, body)
		}
	}
	if reconnects != 1 {
		t.Errorf("%d reconnects forced, want 1", reconnects)
	}
	probeErr = nil
	w.Check(ctx)
	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("after a successful probe: %d %q, want ready", code, body)
	}
}

// TestPprofOnlyWhenAskedFor: the admin listener serves Go's profiles only
// with admin.pprof.
func TestPprofOnlyWhenAskedFor(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	for _, on := range []bool{false, true} {
		addr := natstest.FreeAddr(t)
		stop, err := startAdmin(config.AdminConfig{Listen: addr, Pprof: on}, prometheus.NewRegistry(), nc, func() error { return nil }, func() string { return "" }, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		stop()
		served := resp.StatusCode == http.StatusOK && strings.Contains(string(b), "goroutine profile")
		if served != on {
			t.Errorf("admin.pprof %v: /debug/pprof/goroutine answered %d, served %v", on, resp.StatusCode, served)
		}
	}
}
