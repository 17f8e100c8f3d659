package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// buildQualfile builds the real consumer binary from the repository at
// root into dir, as the tests of cmd/consumer do (CGO_ENABLED=0).
func buildQualfile(ctx context.Context, root, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	path := filepath.Join(dir, "qualfile-consumer")
	cmd := exec.CommandContext(ctx, gobin, "build", "-C", root, "-o", path, "./cmd/consumer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/consumer: %w\n%s", err, out)
	}
	return path, nil
}

// qualfileSettings are the consumer settings of one qualfile run.
type qualfileSettings struct {
	concurrency, fetchBatch, maxAckPending int
}

// settingsFor scales the pull to the concurrency: qualfile's defaults (16
// per pull, 1,024 unacknowledged) up to 64 handlers, then a quarter of the
// concurrency per pull (at most 256) and twice it unacknowledged, so that
// the pulls keep up with many handlers waiting on a slow upstream.
func settingsFor(concurrency int) qualfileSettings {
	return qualfileSettings{
		concurrency:   concurrency,
		fetchBatch:    min(256, max(16, concurrency/4)),
		maxAckPending: max(1024, 2*concurrency),
	}
}

// qualfileConfig is the consumer's YAML: the bench's NATS server, the
// run's prefix, an admin port of its own, and one account whose three
// vendor endpoints are the upstream. Secrets come from the environment.
// Everything else is qualfile's default: validation, the ledger, signed
// Volcengine requests, the audit trail and stored results all on.
func (b *bench) qualfileConfig(prefix, admin string, s qualfileSettings) string {
	return fmt.Sprintf(`nats:
  url: %q
subjects:
  prefix: %s
streams:
  replicas: %d
consumer:
  concurrency: %d
  fetch_batch: %d
  max_ack_pending: %d
  shutdown_grace: 2s
admin:
  listen: %q
  pprof: %t
log:
  level: info
accounts:
  default:
    volcengine:
      access_key_id_env: %s
      secret_access_key_env: %s
      region: cn-north-1
      vms_endpoint: %q
      sms_endpoint: %q
    douyin:
      app_id: %s
      app_secret_env: %s
      base_url: %q
`, b.nats.url, prefix, b.o.Replicas, s.concurrency, s.fetchBatch, s.maxAckPending, admin, b.o.Profile != "",
		envAccessKeyID, envSecretAccessKey, b.up.url, b.up.url, benchAppID, envAppSecret, b.up.url)
}

// startQualfile starts the consumer binary for a run and waits until its
// /readyz answers 200. Its log (JSON lines, info level, as in production)
// goes to a file in the bench's temporary directory, removed with it, so
// that the driver spends no CPU on it.
func (b *bench) startQualfile(ctx context.Context, prefix string, concurrency int) (*child, error) {
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(b.tmp, prefix+".yaml")
	if err := os.WriteFile(cfgPath, []byte(b.qualfileConfig(prefix, admin, settingsFor(concurrency))), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(b.tmp, prefix+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(b.qualfileBin, "--config", cfgPath)
	cmd.Env = append(cleanEnv(),
		envAccessKeyID+"="+benchAccessKeyID,
		envSecretAccessKey+"="+benchSecretAccessKey,
		envAppSecret+"="+benchAppSecret,
	)
	cmd.Stderr = logFile
	ch, err := b.procs.start("qualfile "+prefix, cmd)
	if err != nil {
		return nil, err
	}
	ch.logPath, ch.admin = logPath, admin
	if err := waitReadyz(ctx, ch, "http://"+admin+"/readyz", 60*time.Second); err != nil {
		ch.stop(5 * time.Second)
		return nil, err
	}
	return ch, nil
}

// waitReadyz polls url until it answers 200, the process exits, or timeout.
func waitReadyz(ctx context.Context, ch *child, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return nil
			}
		}
		if done, werr := ch.exited(); done {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", ch.name, werr, ch.logTail(30))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not 200 within %s:\n%s", ch.name, url, timeout, ch.logTail(30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr is a free loopback address for an admin listener.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// profile writes a CPU profile of the qualfile child over the next d to
// path, through its admin listener's /debug/pprof/profile.
func profile(ctx context.Context, ch *child, d time.Duration, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", ch.admin, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 10*time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
