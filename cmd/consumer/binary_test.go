package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/sandbox"
)

// consumerBin is the consumer binary built once for the tests that run the
// real process (TestSIGTERMLosesNothing, TestSIGKILLOneOfTwoReplicas).
var consumerBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// consumerBinary builds the consumer (CGO_ENABLED=0) on first use and
// returns its path; TestMain removes it when the tests are over.
func consumerBinary(t *testing.T) string {
	t.Helper()
	b := &consumerBin
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "qualfile-consumer-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		path := filepath.Join(dir, "consumer")
		build := exec.Command("go", "build", "-o", path, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		b.path = path
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// startConsumer starts the binary with env and args, stops it when the
// test ends, and waits until it says it is ready.
func startConsumer(t *testing.T, name, bin string, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "consumer ready") {
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", name, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd, &out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if consumerBin.dir != "" {
		_ = os.RemoveAll(consumerBin.dir)
	}
	os.Exit(code)
}

// startSandbox starts a vendor simulator in the test process, outside
// every replica, so that it sees every call; it stops when the test ends.
func startSandbox(t *testing.T) *sandbox.Server {
	t.Helper()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb
}

// writeConfig writes a consumer configuration, head followed by the
// default account with both vendors at vendor (its secrets from the
// environment, sandboxEnv), and returns its path.
func writeConfig(t *testing.T, head, vendor string) string {
	t.Helper()
	cfg := head + fmt.Sprintf(`accounts:
  default:
    volcengine:
      access_key_id: %s
      secret_access_key_env: TEST_VOLC_SK
      vms_endpoint: %s
      sms_endpoint: %s
    douyin:
      app_id: %s
      app_secret_env: TEST_DOUYIN_SECRET
      base_url: %s
`, sandbox.DefaultAccessKeyID, vendor, vendor, sandbox.DefaultAppID, vendor)
	path := filepath.Join(t.TempDir(), "consumer.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sandboxEnv is the environment of a replica of writeConfig's
// configuration.
func sandboxEnv(extra ...string) []string {
	return append(append(os.Environ(), "TEST_VOLC_SK="+sandbox.DefaultSecretAccessKey, "TEST_DOUYIN_SECRET="+sandbox.DefaultAppSecret), extra...)
}
