package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/cookiejar"

	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// syncBuffer is a concurrency-safe writer for the logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunSandboxQuickStart is the README's quick start in-process: the
// consumer with an embedded server and the sandbox files every example and
// rejects every invalid one, serves its admin endpoints, and stops cleanly.
func TestRunSandboxQuickStart(t *testing.T) {
	natsAddr, adminAddr, consoleAddr := natstest.FreeAddr(t), natstest.FreeAddr(t), natstest.FreeAddr(t)
	env := map[string]string{
		"QUALFILE_EMBEDDED_LISTEN": natsAddr,
		"QUALFILE_STORE_DIR":       t.TempDir(),
		"QUALFILE_ADMIN_LISTEN":    adminAddr,
		"QUALFILE_CONSOLE_LISTEN":  consoleAddr,
	}
	getenv := func(k string) string { return env[k] }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"--sandbox"}, getenv, &stdout, &stderr) }()

	var nc *nats.Conn
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("consumer not ready:\n%s", stderr.String())
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.CustomInboxPrefix(roles.Inbox(roles.Submitter, messages.Subjects{})))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	inbox := nc.NewRespInbox()
	results := make(chan *nats.Msg, 20)
	sub, err := nc.ChanSubscribe(inbox, results)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sent := 0
	for _, api := range messages.APIs() {
		for _, dir := range []string{"", "invalid"} {
			b, err := os.ReadFile(filepath.Join("..", "..", "examples", dir, string(api)+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var env map[string]json.RawMessage
			_ = json.Unmarshal(b, &env)
			env["reply_to"], _ = json.Marshal(inbox)
			data, _ := json.Marshal(env)
			var id string
			_ = json.Unmarshal(env["id"], &id)
			if _, err := js.Publish(ctx, "filing.request."+string(api), data, jetstream.WithMsgID(id)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	got := map[string]messages.Result{}
	for len(got) < sent {
		select {
		case m := <-results:
			var r messages.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Fatal(err)
			}
			got[r.RequestID] = r
		case <-time.After(20 * time.Second):
			t.Fatalf("got %d of %d results\n%s", len(got), sent, stderr.String())
		}
	}
	for id, r := range got {
		want := messages.StatusSucceeded
		if strings.Contains(id, "invalid") {
			want = messages.StatusRejected
		}
		if r.Status != want {
			t.Errorf("%s: status %s, want %s (%+v)", id, r.Status, want, r.Error)
		}
	}

	for _, c := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/metrics", `qualfile_requests_total{api="vms.add_qualification",outcome="succeeded"} 1`},
		{"/metrics", "qualfile_jetstream_ready 1"},
		// Every series exists from the start, at zero.
		{"/metrics", `qualfile_requests_total{api="unknown",outcome="ambiguous"} 0`},
		{"/metrics", `qualfile_dead_letters_total{api="douyin.add_role",reason="transient"} 0`},
		{"/metrics", `qualfile_build_info{commit=`},
		{"/metrics", "qualfile_consumer_pending "},
		{"/metrics", "qualfile_consumer_ack_pending "},
	} {
		resp, err := http.Get("http://" + adminAddr + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %d, want %q in\n%.2000s", c.path, resp.StatusCode, c.want, body)
		}
	}

	// The console, signed in to by the one-time link in the log, lists
	// every example.
	link := regexp.MustCompile(`"url":"(http://[^"]+/signin/once\?token=[^"]+)"`).FindStringSubmatch(stderr.String())
	if link == nil {
		t.Fatalf("no one-time sign-in link in the log:\n%s", stderr.String())
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := browser.Get(link[1])
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Count(string(page), `href="/filing?`) == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console's list (%d): %s", resp.StatusCode, page)
		}
		link[1] = "http://" + consoleAddr + "/filings" // the link works once; the session stays
		time.Sleep(100 * time.Millisecond)
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
	logs := stderr.String()
	for _, secret := range []string{"110101199003078515", "13111112222", "张三", "sandbox-app-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
	if !strings.Contains(logs, `"request_id"`) || !strings.Contains(logs, "consumer stopped") {
		t.Errorf("logs lack request ids or the stop line:\n%.3000s", logs)
	}
	// Durations are milliseconds, in the logs as in the audit events.
	if !strings.Contains(logs, `"ledger_max_age_ms":2592000000`) || !regexp.MustCompile(`"duration_ms":[0-9.]+[,}]`).MatchString(logs) {
		t.Errorf("durations in the logs are not in milliseconds:\n%.3000s", logs)
	}
	// Every line names the service, the build and the replica; a normal
	// shutdown warns of nothing.
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !strings.Contains(line, `"service":"qualfile-consumer"`) || !strings.Contains(line, `"version":`) || !strings.Contains(line, `"replica":`) {
			t.Errorf("a log line without the base fields: %s", line)
			break
		}
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			t.Errorf("a warning on a clean run and shutdown: %s", line)
		}
	}
	_ = strconv.Itoa
}

func TestRunRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("consumer:\n  concurrency: -1\naccounts:\n  default:\n    volcengine:\n      secret_access_key: literal\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--config", path}, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || strings.Contains(err.Error(), "literal") {
		t.Fatalf("err = %v; want a config error that does not echo the secret", err)
	}
}

// TestHelpVersionAndBadFlags: --help and -h print the usage on stdout and
// succeed, --version prints the build, and a flag value that cannot be
// meant is an error rather than replaced by the configuration's.
func TestHelpVersionAndBadFlags(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, getenv, &stdout, &stderr); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.HasPrefix(stdout.String(), "usage: consumer") || !strings.Contains(stdout.String(), "-concurrency") || stderr.Len() != 0 {
			t.Errorf("%v: stdout %q, stderr %q", args, stdout.String(), stderr.String())
		}
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, getenv, &stdout, io.Discard); err != nil || !strings.HasPrefix(stdout.String(), "qualfile ") || !strings.Contains(stdout.String(), runtime.Version()) {
		t.Errorf("--version: %q, %v", stdout.String(), err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "-5"}, "--concurrency -5: must be at least 1"},
		{[]string{"--concurrency", "0"}, "--concurrency 0: must be at least 1"},
		{[]string{"--concurrency", "many"}, "invalid value"},
		{[]string{"--nats-url", ""}, "--nats-url: must not be empty"},
		{[]string{"--bogus"}, "flag provided but not defined"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), tc.args, getenv, io.Discard, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

// TestEmbeddedServerIsAChoice: with no NATS URL the consumer refuses to
// start rather than quietly run an isolated embedded server; --embedded,
// nats.url: embedded or --sandbox choose it; --embedded with a URL is an
// error.
func TestEmbeddedServerIsAChoice(t *testing.T) {
	noEnv := func(string) string { return "" }
	err := run(context.Background(), nil, noEnv, io.Discard, io.Discard)
	if !errors.Is(err, errNoNATS) {
		t.Fatalf("no URL, no --embedded: %v, want errNoNATS", err)
	}
	if err := run(context.Background(), []string{"--embedded", "--nats-url", "nats://127.0.0.1:4222"}, noEnv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "choose one") {
		t.Errorf("--embedded with a URL: %v", err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"--embedded", []string{"--embedded"}, nil},
		{"nats.url: embedded", nil, map[string]string{"QUALFILE_NATS_URL": "embedded"}},
	} {
		cfgPath := filepath.Join(t.TempDir(), "consumer.yaml")
		if err := os.WriteFile(cfgPath, []byte("accounts:\n  default:\n    volcengine:\n      access_key_id: AKTEST\n      secret_access_key_env: TEST_SK\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{"QUALFILE_EMBEDDED_LISTEN": natstest.FreeAddr(t), "QUALFILE_STORE_DIR": t.TempDir(), "QUALFILE_ADMIN_LISTEN": "",
			"QUALFILE_CONFIG": cfgPath, "TEST_SK": "secret"}
		for k, v := range tc.env {
			env[k] = v
		}
		ctx, cancel := context.WithCancel(context.Background())
		var stdout syncBuffer
		errc := make(chan error, 1)
		go func() { errc <- run(ctx, tc.args, func(k string) string { return env[k] }, &stdout, io.Discard) }()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stdout.String(), "ready") && time.Now().Before(deadline) {
			select {
			case err := <-errc:
				t.Fatalf("%s: run returned: %v", tc.name, err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		cancel()
		if err := <-errc; err != nil || !strings.Contains(stdout.String(), "ready") {
			t.Errorf("%s: %v, output %q", tc.name, err, stdout.String())
		}
	}
}

// TestConfigCheckedBeforeAnythingStarts: a secret file that cannot be read
// is reported before the embedded server or anything else starts.
func TestConfigCheckedBeforeAnythingStarts(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "consumer.yaml")
	if err := os.WriteFile(cfgPath, []byte("accounts:\n  default:\n    volcengine:\n      access_key_id: AKTEST\n      secret_access_key_file: "+filepath.Join(dir, "missing")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	env := map[string]string{"QUALFILE_STORE_DIR": store, "QUALFILE_EMBEDDED_LISTEN": natstest.FreeAddr(t), "QUALFILE_ADMIN_LISTEN": ""}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--config", cfgPath, "--embedded"}, func(k string) string { return env[k] }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "secret_access_key_file") {
		t.Fatalf("run: %v, want the unreadable secret file named", err)
	}
	if _, serr := os.Stat(store); !os.IsNotExist(serr) || stderr.Len() != 0 {
		t.Errorf("something started before the configuration was checked: store %v, log %q", serr, stderr.String())
	}
}

// TestNATSErrorsGoToTheLog: an asynchronous error the server reports (a
// permission refused) is a line of the consumer's log, not the client's
// own print to stderr.
func TestNATSErrorsGoToTheLog(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	srv := natstest.Server(t)
	nc, err := connect(srv.ClientURL(), config.Default(), func(string) string { return "" }, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if nc.Opts.AsyncErrorCB == nil {
		t.Fatal("no error handler")
	}
	nc.Opts.AsyncErrorCB(nc, nil, errors.New(`nats: permissions violation: Permissions Violation for Publish to "x"`))
	if got := logs.FilterMessage("NATS reported an error").Len(); got != 1 {
		t.Errorf("%d log lines, want 1", got)
	}
}

// TestAnUnreachableServerIsNamed: the error names the server; NATS_URL
// is read as the publisher reads it.
func TestAnUnreachableServerIsNamed(t *testing.T) {
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "QUALFILE_ADMIN_LISTEN": natstest.FreeAddr(t),
		"TEST_VOLC_SK": sandbox.DefaultSecretAccessKey, "TEST_DOUYIN_SECRET": sandbox.DefaultAppSecret}
	var stdout, stderr syncBuffer
	err := run(context.Background(), []string{"--config", writeConfig(t, "", "http://127.0.0.1:1")}, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "connect to NATS at nats://127.0.0.1:1") {
		t.Fatalf("run: %v", err)
	}
}
