package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// TestOutagePausesTheConsumer: when every vendor account's breaker is
// open, the consumer pauses the shared durable consumer on the server, so
// that no replica pulls in vain; /readyz says which breakers are open, the
// audit stream has an event per breaker change, and once the vendors
// answer again the consumer is resumed and every request succeeds.
func TestOutagePausesTheConsumer(t *testing.T) {
	srv := natstest.Server(t)
	sb := filingtest.StartSandbox(t)
	outage := sb.Inject(sandbox.Fault{Code: "SystemError"})

	admin := startGuarded(t, srv, sb.URL(), 2*time.Second)
	ctx := context.Background()

	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Two requests of each vendor: every breaker sees two failures.
	apis := []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent, messages.APIDouyinGetClassAuth}
	n := 0
	for _, api := range apis {
		for i := range 2 {
			id := fmt.Sprintf("pause-%s-%d", api, i)
			if _, err := js.Publish(ctx, "filing.request."+string(api), filingtest.Example(t, api, id), jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	paused := func() bool {
		c, err := js.Consumer(ctx, "FILING_REQUESTS", "qualfile")
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.Paused
	}
	filingtest.WaitFor(t, 20*time.Second, "the consumer to be paused on the server", paused)
	body := httpGet(t, "http://"+admin+"/readyz")
	for _, p := range []string{"vms/default open", "sms/default open", "douyin/default open"} {
		if !strings.Contains(body, p) {
			t.Errorf("/readyz %q: want it to name %q", body, p)
		}
	}
	if m := httpGet(t, "http://"+admin+"/metrics"); !strings.Contains(m, `qualfile_breaker_state{account="default",vendor="vms"} 2`) || !strings.Contains(m, "qualfile_consumer_paused 1") {
		t.Errorf("metrics do not show the open breakers and the pause")
	}
	calls := sb.CountCalls("")

	sb.RemoveFault(outage)
	filingtest.WaitFor(t, 30*time.Second, "every request to succeed after the outage", func() bool {
		ok := 0
		for _, r := range readAllResults(t, js) {
			if r.Status == messages.StatusSucceeded {
				ok++
			}
		}
		return ok >= n
	})
	if paused() {
		t.Error("the consumer is still paused after the vendors recovered")
	}
	events := map[string]int{}
	sch := auditSchema(t)
	// A breaker's change is published by the watch that notes it, on its
	// own beat: the last closes may follow the last results.
	var breakerEvents []*jetstream.RawStreamMsg
	filingtest.WaitFor(t, 10*time.Second, "a close of every breaker", func() bool {
		breakerEvents, err = queue.Read(context.Background(), js, "FILING_AUDIT", "filing.audit.breaker.>")
		if err != nil {
			t.Fatal(err)
		}
		closed := 0
		for _, m := range breakerEvents {
			var ev messages.AuditEvent
			if json.Unmarshal(m.Data, &ev) == nil && ev.Event == "breaker_closed" {
				closed++
			}
		}
		return closed >= 3
	})
	for _, m := range breakerEvents {
		var ev messages.AuditEvent
		if json.Unmarshal(m.Data, &ev) == nil {
			events[ev.Event]++
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data))
		if err == nil {
			err = sch.Validate(doc)
		}
		if err != nil {
			t.Errorf("breaker event %s does not match schemas/audit-event.schema.json: %v", m.Data, err)
		}
	}
	if events["breaker_open"] < 3 || events["breaker_closed"] < 3 {
		t.Errorf("breaker audit events %v: want an open and a close for each of the three vendors", events)
	}
	t.Logf("vendor calls while the outage lasted: %d for %d requests; breaker events %v", calls, n, events)
}

func auditSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(filepath.Join("..", "..", "schemas", "audit-event.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// TestOneReplicaCutOffDoesNotPauseTheOthers: breakers live in each
// replica's memory. A replica that cannot reach the vendors (all its
// breakers open) pauses the shared consumer only while it is the only
// live one; once a replica that reaches them runs, the pause is lifted
// and that replica files everything.
func TestOneReplicaCutOffDoesNotPauseTheOthers(t *testing.T) {
	srv := natstest.Server(t)
	down := filingtest.StartSandbox(t)
	down.Inject(sandbox.Fault{Code: "SystemError"})
	up := filingtest.StartSandbox(t)
	ctx := context.Background()
	startGuarded(t, srv, down.URL(), 8*time.Second)
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	apis := []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent, messages.APIDouyinGetClassAuth}
	n := 0
	for _, api := range apis {
		for i := range 2 {
			id := fmt.Sprintf("cut-%s-%d", api, i)
			if _, err := js.Publish(ctx, "filing.request."+string(api), filingtest.Example(t, api, id), jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	paused := func() bool {
		c, err := js.Consumer(ctx, "FILING_REQUESTS", "qualfile")
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.Paused
	}
	filingtest.WaitFor(t, 20*time.Second, "the lone cut-off replica to pause the consumer", paused)

	startGuarded(t, srv, up.URL(), 8*time.Second)
	// The cut-off replica's breakers stay open for a while yet; with the
	// healthy replica voting against, the consumer is resumed and stays so.
	time.Sleep(time.Second)
	pausedSamples := 0
	for range 40 {
		if paused() {
			pausedSamples++
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pausedSamples > 0 {
		t.Errorf("the consumer was paused in %d of 40 samples after a healthy replica joined", pausedSamples)
	}
	filingtest.WaitFor(t, 30*time.Second, "the healthy replica to file every request", func() bool {
		ok := 0
		for _, r := range readAllResults(t, js) {
			if r.Status == messages.StatusSucceeded {
				ok++
			}
		}
		return ok >= n
	})
	if paused() {
		t.Error("the consumer is still paused although a replica reaches the vendors")
	}
	if got := up.CountCalls(""); got < n {
		t.Errorf("the reachable vendor saw %d calls, want at least %d", got, n)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// guardedConfig is a consumer configuration whose breakers open after two
// failures for 2 s, with every vendor of the default account at vendor.
func guardedConfig(t *testing.T, vendor string, openFor time.Duration) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf(`nats:
  health:
    interval: 200ms
consumer:
  retry:
    max_attempts: 1
    redelivery_base: 100ms
    redelivery_max: 500ms
limits:
  breaker:
    failures: 2
    open_for: %s
`, openFor), vendor)
}

// startGuarded runs a consumer on srv whose vendors are at vendor, until
// the test ends, and returns its admin address.
func startGuarded(t *testing.T, srv interface{ ClientURL() string }, vendor string, openFor time.Duration) string {
	t.Helper()
	cfgPath := guardedConfig(t, vendor, openFor)
	admin := natstest.FreeAddr(t)
	env := map[string]string{"QUALFILE_NATS_URL": srv.ClientURL(), "QUALFILE_ADMIN_LISTEN": admin,
		"TEST_VOLC_SK": sandbox.DefaultSecretAccessKey, "TEST_DOUYIN_SECRET": sandbox.DefaultAppSecret}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"--config", cfgPath}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
	})
	filingtest.WaitFor(t, 20*time.Second, "the consumer to be ready", func() bool { return strings.Contains(stdout.String(), "ready") })
	return admin
}
