package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
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

	cfg := fmt.Sprintf(`nats:
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
    open_for: 2s
accounts:
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
`, sandbox.DefaultAccessKeyID, sb.URL(), sb.URL(), sandbox.DefaultAppID, sb.URL())
	cfgPath := filepath.Join(t.TempDir(), "consumer.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	env := map[string]string{"QUALFILE_NATS_URL": srv.ClientURL(), "QUALFILE_ADMIN_LISTEN": admin,
		"TEST_VOLC_SK": sandbox.DefaultSecretAccessKey, "TEST_DOUYIN_SECRET": sandbox.DefaultAppSecret}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
	waitFor(t, 20*time.Second, "the consumer to be ready", func() bool { return strings.Contains(stdout.String(), "ready") })

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
	waitFor(t, 20*time.Second, "the consumer to be paused on the server", paused)
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
	waitFor(t, 30*time.Second, "every request to succeed after the outage", func() bool {
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
	for _, m := range streamMessages(t, js, "FILING_AUDIT", "filing.audit.breaker.>") {
		var ev messages.AuditEvent
		if json.Unmarshal(m.Data(), &ev) == nil {
			events[ev.Event]++
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(m.Data()))
		if err == nil {
			err = sch.Validate(doc)
		}
		if err != nil {
			t.Errorf("breaker event %s does not match schemas/audit-event.schema.json: %v", m.Data(), err)
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

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMessages reads the messages of stream on filter.
func streamMessages(t *testing.T, js jetstream.JetStream, stream, filter string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for {
		b, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range b.Messages() {
			out = append(out, m)
			got++
		}
		if got == 0 {
			return out
		}
	}
}
