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
