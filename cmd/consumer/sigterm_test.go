package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// TestSIGTERMLosesNothing runs the real binary: 1,000 requests are queued,
// the consumer gets SIGTERM a third of the way through, a second consumer
// finishes the rest. Every request has a succeeded result and the vendor
// (a sandbox outside both processes) saw exactly 1,000 filings.
func TestSIGTERMLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the consumer binary")
	}
	const n = 1000
	dir := t.TempDir()
	bin := consumerBinary(t)

	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Start(); err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Latency: 3 * time.Millisecond})

	cfg := fmt.Sprintf(`accounts:
  default:
    volcengine:
      access_key_id: %s
      secret_access_key_env: TEST_VOLC_SK
      vms_endpoint: %s
      sms_endpoint: %s
`, sandbox.DefaultAccessKeyID, sb.URL(), sb.URL())
	cfgPath := filepath.Join(dir, "consumer.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := natstest.FreeAddr(t)
	env := append(os.Environ(),
		"TEST_VOLC_SK="+sandbox.DefaultSecretAccessKey,
		"QUALFILE_NATS_URL=embedded",
		"QUALFILE_EMBEDDED_LISTEN="+natsAddr,
		"QUALFILE_STORE_DIR="+filepath.Join(dir, "data"),
		"QUALFILE_ADMIN_LISTEN=",
		"QUALFILE_CONCURRENCY=32",
	)
	start := func(name string) (*exec.Cmd, *syncBuffer) {
		return startConsumer(t, name, bin, env, "--config", cfgPath, "--admin-listen", natstest.FreeAddr(t))
	}

	first, firstOut := start("first consumer")
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "vms.add_qualification.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env0 map[string]json.RawMessage
	if err := json.Unmarshal(example, &env0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("term-%04d", i)
		env0["id"], _ = json.Marshal(id)
		data, _ := json.Marshal(env0)
		if _, err := js.PublishAsync("filing.request.vms.add_qualification", data, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("publishing timed out")
	}
	for sb.CountCalls(messages.APIVMSAddQualification) < n/3 {
		time.Sleep(time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nc.Close() // the embedded server goes away with the first consumer
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("first consumer exited with %v\n%s", err, firstOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("first consumer did not stop after SIGTERM")
	}
	atStop := sb.CountCalls(messages.APIVMSAddQualification)
	t.Logf("SIGTERM after %d filings", atStop)
	if atStop >= n {
		t.Fatalf("all %d filed before the signal; the test proves nothing", atStop)
	}

	start("second consumer")
	nc, err = nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	results := map[string]messages.Status{}
	for len(results) < n && time.Now().Before(deadline) {
		results = map[string]messages.Status{}
		for _, r := range readAllResults(t, js) {
			results[r.RequestID] = r.Status
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(results) != n {
		t.Fatalf("%d results for %d requests", len(results), n)
	}
	for id, st := range results {
		if st != messages.StatusSucceeded {
			t.Fatalf("%s: %s", id, st)
		}
	}
	if calls := sb.CountCalls(messages.APIVMSAddQualification); calls != n {
		t.Fatalf("the vendor saw %d filings for %d requests", calls, n)
	}
}
