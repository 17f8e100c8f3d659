package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/natstest"
)

// TestRunSandboxRefusesExternalNATS: --sandbox with a NATS URL, wherever
// the URL comes from, is refused before anything connects; the simulator
// would otherwise join that server's durable consumer and answer real
// requests.
func TestRunSandboxRefusesExternalNATS(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "consumer.yaml")
	if err := os.WriteFile(cfgPath, []byte("nats:\n  url: nats://127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr error
	}{
		{name: "--nats-url", args: []string{"--sandbox", "--nats-url", "nats://127.0.0.1:1"}, wantErr: errSandboxExternalNATS},
		{name: "QUALFILE_NATS_URL", args: []string{"--sandbox"}, env: map[string]string{"QUALFILE_NATS_URL": "nats://127.0.0.1:1"}, wantErr: errSandboxExternalNATS},
		{name: "nats.url", args: []string{"--sandbox", "--config", cfgPath}, wantErr: errSandboxExternalNATS},
		{name: "flag order", args: []string{"--nats-url", "nats://127.0.0.1:1", "--sandbox"}, wantErr: errSandboxExternalNATS},
		{name: "override without --sandbox", args: []string{"--sandbox-with-external-nats", "--nats-url", "nats://127.0.0.1:1"}, wantErr: errExternalWithoutSandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			err := run(ctx, tc.args, func(k string) string { return tc.env[k] }, &stdout, &stderr)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(stdout.String(), "ready") {
				t.Errorf("the consumer started:\n%s", stdout.String())
			}
		})
	}
}

// TestRunSandboxWithExternalNATS: the loudly named flag lets --sandbox use
// a configured server, and the consumer says so in its log.
func TestRunSandboxWithExternalNATS(t *testing.T) {
	srv := natstest.Server(t)
	env := map[string]string{"QUALFILE_ADMIN_LISTEN": natstest.FreeAddr(t), "QUALFILE_NATS_URL": srv.ClientURL()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--sandbox", "--sandbox-with-external-nats"}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(stdout.String(), "ready") {
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("consumer not ready:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if logs := stderr.String(); !strings.Contains(logs, "--sandbox-with-external-nats") || !strings.Contains(logs, `"level":"warn"`) {
		t.Errorf("no warning about the external server:\n%.3000s", logs)
	}
}
