package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// TestTracesAreExported: with OTEL_EXPORTER_OTLP_ENDPOINT set (the standard
// OTel setting) the consumer exports its spans over OTLP/HTTP; without it,
// it exports nothing.
func TestTracesAreExported(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint("exporter ", on), func(t *testing.T) {
			var posts, protobuf atomic.Int32
			collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v1/traces" && r.Method == http.MethodPost {
					posts.Add(1)
					if r.Header.Get("Content-Type") == "application/x-protobuf" {
						protobuf.Add(1)
					}
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer collector.Close()

			srv := natstest.Server(t)
			sb := filingtest.StartSandbox(t)
			cfg := fmt.Sprintf("accounts:\n  default:\n    volcengine:\n      access_key_id: %s\n      secret_access_key_env: TEST_VOLC_SK\n      vms_endpoint: %s\n      sms_endpoint: %s\n",
				sandbox.DefaultAccessKeyID, sb.URL(), sb.URL())
			cfgPath := filepath.Join(t.TempDir(), "consumer.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"QUALFILE_NATS_URL": srv.ClientURL(), "QUALFILE_ADMIN_LISTEN": "", "TEST_VOLC_SK": sandbox.DefaultSecretAccessKey}
			if on {
				env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.URL
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stdout, stderr syncBuffer
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, []string{"--config", cfgPath}, func(k string) string { return env[k] }, &stdout, &stderr)
			}()
			filingtest.WaitFor(t, 20*time.Second, "the consumer to be ready", func() bool { return strings.Contains(stdout.String(), "ready") })

			nc := natstest.Connect(t, srv)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(ctx, "filing.request.vms.add_qualification", filingtest.Example(t, messages.APIVMSAddQualification, "otel-1")); err != nil {
				t.Fatal(err)
			}
			filingtest.WaitFor(t, 20*time.Second, "the result", func() bool { return len(readAllResults(t, js)) == 1 })
			cancel() // the consumer flushes its spans on the way out
			if err := <-errc; err != nil {
				t.Fatalf("run: %v", err)
			}
			switch {
			case on && (posts.Load() == 0 || protobuf.Load() != posts.Load()):
				t.Errorf("the collector got %d posts (%d protobuf), want the consumer's spans", posts.Load(), protobuf.Load())
			case !on && posts.Load() != 0:
				t.Errorf("the collector got %d posts with tracing off", posts.Load())
			}
			if on && !strings.Contains(stderr.String(), "spans are exported over OTLP/HTTP") {
				t.Error("the log does not say where spans go")
			}
		})
	}
}
