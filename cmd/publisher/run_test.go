package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// cli runs the publisher with the given stdin and returns its exit status
// and output.
func cli(t *testing.T, url string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if url != "" && len(args) > 0 && args[0] != "validate" {
		args = append(args, "--nats-url", url)
	}
	err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(stdin), &stdout, &stderr)
	return exitCode(err, &stderr), stdout.String(), stderr.String()
}

func setup(t *testing.T) (jetstream.JetStream, *nats.Conn, string) {
	t.Helper()
	js, nc, srv := natstest.JetStream(t)
	if _, err := queue.EnsureStreams(context.Background(), js, queue.StreamsConfig{Subjects: messages.Subjects{Prefix: "filing"}}); err != nil {
		t.Fatal(err)
	}
	return js, nc, srv.ClientURL()
}

func examplePath(parts ...string) string {
	return filepath.Join(append([]string{"..", "..", "examples"}, parts...)...)
}

func TestValidate(t *testing.T) {
	code, out, _ := cli(t, "", "", "validate", "--api", "sms.apply_signature_ident", "--file", examplePath("sms.apply_signature_ident.json"))
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("valid example: %d %s", code, out)
	}
	code, out, _ = cli(t, "", "", "validate", "--api", "sms.apply_signature_ident", "--file", examplePath("invalid", "sms.apply_signature_ident.json"))
	if code != 1 || !strings.Contains(out, "7 problem(s)") || !strings.Contains(out, "payload.powerOfAttorney: required when purpose is 2") {
		t.Fatalf("invalid example: %d %s", code, out)
	}
	code, _, errOut := cli(t, "", "", "validate", "--api", "nope", "--file", "x")
	if code != 2 || !strings.Contains(errOut, "--api must be one of") {
		t.Fatalf("bad api: %d %s", code, errOut)
	}
}

func TestSendNDJSONBarePayloads(t *testing.T) {
	js, _, url := setup(t)
	b, err := os.ReadFile(examplePath("douyin.get_class_auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload json.RawMessage `json:"payload"`
	}
	_ = json.Unmarshal(b, &env)
	var compact, spaced bytes.Buffer
	_ = json.Compact(&compact, env.Payload)
	_ = json.Indent(&spaced, env.Payload, "", "  ")
	var other map[string]any
	_ = json.Unmarshal(env.Payload, &other)
	other["merchant_entity_id"] = "E_7216554566647824422" // another request
	otherLine, _ := json.Marshal(other)
	// The same payload twice (once with other whitespace), then another.
	oneLine := strings.ReplaceAll(spaced.String(), "\n", "")
	stdin := compact.String() + "\n" + oneLine + "\n" + string(otherLine) + "\n"
	code, out, errOut := cli(t, url, stdin, "send", "--api", "douyin.get_class_auth", "--file", "-", "--account", "default")
	if code != 0 {
		t.Fatalf("send: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 published lines, got %q", out)
	}
	var ps []published
	for _, line := range lines {
		var p published
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.Stream != "FILING_REQUESTS" || !strings.HasPrefix(p.ID, "c-") {
			t.Fatalf("line %q: %+v %v", line, p, err)
		}
		ps = append(ps, p)
	}
	if ps[0].ID != ps[1].ID || !ps[1].Duplicate || ps[0].Duplicate {
		t.Errorf("the same payload sent twice: %+v, %+v; want one id, the copy dropped", ps[0], ps[1])
	}
	if ps[2].ID == ps[0].ID || ps[2].Duplicate || ps[2].Sequence != 2 {
		t.Errorf("another payload: %+v; want its own id, stored as message 2", ps[2])
	}
	s, _ := js.Stream(context.Background(), "FILING_REQUESTS")
	for _, p := range []published{ps[0], ps[2]} {
		m, err := s.GetMsg(context.Background(), p.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		req, err := messages.ParseRequest(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), req.MsgID(""); got != want {
			t.Fatalf("Nats-Msg-Id %q, want %q (of the id and the fingerprint)", got, want)
		}
		if err := req.ValidateFor(messages.APIDouyinGetClassAuth); err != nil || req.ID != p.ID || req.Account != "default" || req.SubmittedAt.IsZero() {
			t.Fatalf("envelope %+v: %v", req, err)
		}
	}

	// --id names the one request; it cannot name several.
	code, out, errOut = cli(t, url, compact.String(), "send", "--api", "douyin.get_class_auth", "--file", "-", "--id", "mine-1")
	if code != 0 || !strings.Contains(out, `"id":"mine-1"`) {
		t.Errorf("--id: %d %s %s", code, out, errOut)
	}
	if code, _, errOut = cli(t, url, stdin, "send", "--api", "douyin.get_class_auth", "--file", "-", "--id", "mine-2"); code != 2 || !strings.Contains(errOut, "--id names one request") {
		t.Errorf("--id with 3 requests: %d %s", code, errOut)
	}
}

// TestSendWait answers requests like a consumer would and checks the exit
// status: 0 when succeeded, 1 when failed.
func TestSendWait(t *testing.T) {
	js, nc, url := setup(t)
	var status atomic.Value // read by the subscription's goroutine
	status.Store(messages.StatusSucceeded)
	answered := map[string]bool{} // as the consumer, which never sees a copy the stream dropped
	sub, err := nc.Subscribe("filing.request.>", func(m *nats.Msg) {
		req, err := messages.ParseRequest(m.Data)
		if err != nil || req.ReplyTo == "" || answered[req.ID] {
			return
		}
		answered[req.ID] = true
		data, _ := json.Marshal(messages.Result{RequestID: req.ID, API: req.API, Status: status.Load().(messages.Status), Attempts: 1, Result: json.RawMessage(`{"id":9007199254740993}`)})
		_, _ = js.Publish(context.Background(), messages.Subjects{}.ResultFor(req.API, req.ID), data)
		_ = nc.Publish(req.ReplyTo, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	code, out, errOut := cli(t, url, "", "send", "--api", "sms.apply_signature_ident", "--file", examplePath("sms.apply_signature_ident.json"), "--wait", "--timeout", "5s")
	if code != 0 || !strings.Contains(out, `"id": 9007199254740993`) || !strings.Contains(errOut, "published example-sms-apply-0001") {
		t.Fatalf("succeeded: %d\n%s\n%s", code, out, errOut)
	}
	// The same id again: dropped as a duplicate, its stored result read
	// and printed (the README's loop after its quick start).
	if code, out, errOut = cli(t, url, "", "send", "--api", "sms.apply_signature_ident", "--file", examplePath("sms.apply_signature_ident.json"), "--wait", "--timeout", "5s"); code != 0 ||
		!strings.Contains(errOut, "already published") || !strings.Contains(out, `"id": 9007199254740993`) {
		t.Fatalf("duplicate: %d %s %s", code, out, errOut)
	}
	// Several requests, one JSON line per result, and a summary.
	b, _ := os.ReadFile(examplePath("sms.apply_signature_ident.json"))
	var many []string
	for _, id := range []string{"bulk-1", "bulk-2", "bulk-3"} {
		var env map[string]json.RawMessage
		_ = json.Unmarshal(b, &env)
		env["id"], _ = json.Marshal(id)
		line, _ := json.Marshal(env)
		many = append(many, string(line))
	}
	code, out, errOut = cli(t, url, strings.Join(many, "\n")+"\n", "send", "--api", "sms.apply_signature_ident", "--file", "-", "--wait", "--timeout", "5s", "--output", "json")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], `{"`) ||
		!strings.Contains(errOut, "publisher: 3 of 3 sent, 0 duplicate(s); 3 succeeded, 0 rejected, 0 failed") {
		t.Fatalf("bulk --output json: %d\n%s\n%s", code, out, errOut)
	}
	status.Store(messages.StatusFailed)
	doc := strings.Replace(string(b), "example-sms-apply-0001", "example-sms-apply-0002", 1)
	if code, out, _ = cli(t, url, doc, "send", "--api", "sms.apply_signature_ident", "--file", "-", "--wait", "--timeout", "5s"); code != 1 || !strings.Contains(out, `"status": "failed"`) {
		t.Fatalf("failed: %d %s", code, out)
	}
	sub.Unsubscribe()
	doc = strings.Replace(string(b), "example-sms-apply-0001", "example-sms-apply-0003", 1)
	if code, _, errOut = cli(t, url, doc, "send", "--api", "sms.apply_signature_ident", "--file", "-", "--wait", "--timeout", "200ms"); code != 2 || !strings.Contains(errOut, "no result within") {
		t.Fatalf("timeout: %d %s", code, errOut)
	}
	if code, _, errOut = cli(t, "nats://127.0.0.1:1", doc, "send", "--api", "sms.apply_signature_ident", "--file", "-"); code != 2 || !strings.Contains(errOut, "connect") {
		t.Fatalf("no server: %d %s", code, errOut)
	}
	if code, _, errOut = cli(t, url, doc, "send", "--api", "vms.add_qualification", "--file", "-"); code != 2 || !strings.Contains(errOut, "--api is") {
		t.Fatalf("api mismatch: %d %s", code, errOut)
	}
}

// TestDeadListAndReplay: the operator lists the dead letters and has the
// consumer replay them; an ambiguous one only when forced.
func TestDeadListAndReplay(t *testing.T) {
	_, nc, url := setup(t)
	var fail atomic.Bool
	fail.Store(true)
	p := filingtest.New(t, filingtest.Options{NC: nc, MaxDeliver: 1, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			switch {
			case !fail.Load():
				return real.Dispatch(ctx, req)
			case strings.Contains(req.ID, "ambiguous"):
				return dispatch.Outcome{}, fmt.Errorf("cut off: %w", retry.ErrAmbiguous)
			}
			return dispatch.Outcome{}, fmt.Errorf("SystemError: %w", retry.ErrTransient)
		})
	}})
	p.Run()
	for _, id := range []string{"req-transient", "req-ambiguous"} {
		p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	}
	filingtest.WaitFor(t, 10*time.Second, "two dead letters", func() bool { return len(p.Dead()) == 2 && p.Drained() })
	fail.Store(false)

	code, out, _ := cli(t, url, "", "dead", "list")
	if code != 0 || !strings.Contains(out, `"request_id":"req-transient"`) || !strings.Contains(out, `"class":"ambiguous"`) {
		t.Fatalf("list: %d %s", code, out)
	}
	order := []string{"--operator", "tester", "--reason", "the vendor is back"}
	code, out, errOut := cli(t, url, "", append([]string{"dead", "replay", "--id", "req-transient"}, order...)...)
	if code != 0 || !strings.Contains(out, "(req-transient): replayed as filing.request.vms.add_qualification") {
		t.Fatalf("replay: %d %s %s", code, out, errOut)
	}
	code, _, errOut = cli(t, url, "", append([]string{"dead", "replay", "--all"}, order...)...)
	if code != 1 || !strings.Contains(errOut, "ambiguous") || !strings.Contains(errOut, "--force") {
		t.Fatalf("ambiguous without force: %d %s", code, errOut)
	}
	if code, out, _ = cli(t, url, "", append([]string{"dead", "replay", "--all", "--force"}, order...)...); code != 0 || !strings.Contains(out, "req-ambiguous") {
		t.Fatalf("force: %d %s", code, out)
	}
	filingtest.WaitFor(t, 10*time.Second, "both filed", func() bool {
		a, _ := filingtest.Final(p.Results()["req-transient"])
		b, _ := filingtest.Final(p.Results()["req-ambiguous"])
		return a.Status == messages.StatusSucceeded && b.Status == messages.StatusSucceeded
	})
	for _, id := range []string{"req-transient", "req-ambiguous"} {
		if n := filingtest.CountEvents(p.Audit(id), messages.EventReplayed); n != 1 {
			t.Errorf("%s: %d replayed events, want 1", id, n)
		}
	}
	for _, args := range [][]string{
		{"dead", "replay", "--reason", "r", "--operator", "tester"},       // neither --id nor --all
		{"dead", "replay", "--all", "--operator", "tester"},               // no reason
		{"dead", "replay", "--all", "--reason", "r"},                      // no operator
		{"resolve", "--id", "x", "--reason", "r", "--operator", "tester"}, // no decision
	} {
		if code, _, errOut := cli(t, url, "", args...); code != 2 {
			t.Errorf("%s: exit %d, want 2: %s", strings.Join(args, " "), code, errOut)
		}
	}
}

// TestHelpAndVersionExitZero: -h, --help and help on the binary and on
// every subcommand print a usage on stdout and exit 0; --version prints
// the build; an unknown flag is a usage error (exit 2).
func TestHelpAndVersionExitZero(t *testing.T) {
	getenv := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "publisher send"},
		{[]string{"-h"}, "publisher send"},
		{[]string{"help"}, "publisher send"},
		{[]string{"send", "--help"}, "usage: publisher send"},
		{[]string{"send", "-h"}, "-api"},
		{[]string{"validate", "--help"}, "usage: publisher validate"},
		{[]string{"dead", "--help"}, "publisher dead replay"},
		{[]string{"dead", "list", "--help"}, "usage: publisher dead list"},
		{[]string{"dead", "replay", "-h"}, "-force"},
		{[]string{"--version"}, "qualfile "},
		{[]string{"version"}, "qualfile "},
	} {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(context.Background(), tc.args, getenv, strings.NewReader(""), &stdout, &stderr), &stderr)
		if code != 0 || !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and %q", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	if code := exitCode(run(context.Background(), []string{"send", "--bogus"}, getenv, strings.NewReader(""), io.Discard, &stderr), &stderr); code != 2 || !strings.Contains(stderr.String(), "-bogus") {
		t.Errorf("send --bogus: exit %d, stderr %q; want 2 naming the flag", code, stderr.String())
	}
}

// TestNATSURLAndContexts: the publisher finds its server through NATS_URL,
// and through a nats CLI context (--context or NATS_CONTEXT) read from
// $XDG_CONFIG_HOME/nats/context, as the nats command does; a flag given
// wins over the context.
func TestNATSURLAndContexts(t *testing.T) {
	_, _, url := setup(t)
	cfg := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cfg, "nats", "context"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctxFile, _ := json.Marshal(map[string]string{"url": url, "description": "test"})
	if err := os.WriteFile(filepath.Join(cfg, "nats", "context", "q.json"), ctxFile, 0o600); err != nil {
		t.Fatal(err)
	}
	badFile, _ := json.Marshal(map[string]string{"url": "nats://127.0.0.1:1"})
	if err := os.WriteFile(filepath.Join(cfg, "nats", "context", "bad.json"), badFile, 0o600); err != nil {
		t.Fatal(err)
	}
	send := func(env map[string]string, args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		args = append([]string{"send", "--api", "vms.add_qualification", "--file", examplePath("vms.add_qualification.json")}, args...)
		err := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
		return exitCode(err, &stderr), stderr.String()
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"NATS_URL", map[string]string{"NATS_URL": url}, nil, 0},
		{"--context", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "q"}, 0},
		{"NATS_CONTEXT", map[string]string{"XDG_CONFIG_HOME": cfg, "NATS_CONTEXT": "q"}, nil, 0},
		{"--nats-url over the context", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "bad", "--nats-url", url}, 0},
		{"a context that does not exist", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "nope"}, 2},
		{"a context naming a path", map[string]string{"XDG_CONFIG_HOME": cfg}, []string{"--context", "../q"}, 2},
	} {
		// Each send publishes the example again; the duplicate window
		// drops copies, which is still exit 0 without --wait.
		if code, errOut := send(tc.env, tc.args...); code != tc.code {
			t.Errorf("%s: exit %d, want %d: %s", tc.name, code, tc.code, errOut)
		}
	}
}

// TestDeadShowAndRm: dead list names each letter's api and age; dead show
// prints a letter with its body redacted (--raw as stored); dead rm
// removes the letters of an id, or an undecodable letter by sequence.
func TestDeadShowAndRm(t *testing.T) {
	js, nc, url := setup(t)
	ctx := context.Background()
	filingtest.New(t, filingtest.Options{NC: nc}).Run()
	put := func(id, body string) {
		m := nats.NewMsg("filing.dead.sms.apply_signature_ident")
		m.Data = []byte(body)
		if id != "" {
			m.Header.Set(messages.HeaderRequestID, id)
		}
		m.Header.Set(messages.HeaderDeadClass, messages.ClassInvalid)
		m.Header.Set(messages.HeaderDeadReason, "test")
		m.Header.Set(messages.HeaderDeadAt, time.Now().Add(-90*time.Second).UTC().Format(time.RFC3339Nano))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	put("req-pii", `{"id":"req-pii","api":"sms.apply_signature_ident","payload":{"legalPerson":{"personName":"张三","personIDCard":"110101199003078515"}}}`)
	put("", `not json at all`)

	code, out, _ := cli(t, url, "", "dead", "list")
	if code != 0 || !strings.Contains(out, `"api":"sms.apply_signature_ident"`) || !strings.Contains(out, `"age":"1m3`) {
		t.Errorf("list: %d %s", code, out)
	}
	code, out, _ = cli(t, url, "", "dead", "show", "--id", "req-pii")
	if code != 0 || !strings.Contains(out, `"request_id": "req-pii"`) || strings.Contains(out, "110101199003078515") || strings.Contains(out, "张三") {
		t.Errorf("show: %d %s", code, out)
	}
	if code, out, _ = cli(t, url, "", "dead", "show", "--id", "req-pii", "--raw"); code != 0 || !strings.Contains(out, "110101199003078515") {
		t.Errorf("show --raw: %d %s", code, out)
	}
	if code, out, _ = cli(t, url, "", "dead", "show", "--seq", "2", "--raw"); code != 0 || !strings.Contains(out, `"body_text": "not json at all"`) {
		t.Errorf("show --seq 2 --raw: %d %s", code, out)
	}
	if code, _, _ = cli(t, url, "", "dead", "show"); code != 2 {
		t.Errorf("show without --id or --seq: exit %d, want 2", code)
	}
	order := []string{"--operator", "tester", "--reason", "settled by hand"}
	if code, out, errOut := cli(t, url, "", append([]string{"dead", "rm", "--seq", "2"}, order...)...); code != 0 || !strings.Contains(out, "dead seq 2 (): removed") {
		t.Errorf("rm --seq 2: %d %s %s", code, out, errOut)
	}
	if code, out, _ = cli(t, url, "", append([]string{"dead", "rm", "--id", "req-pii"}, order...)...); code != 0 || !strings.Contains(out, "dead seq 1 (req-pii): removed") {
		t.Errorf("rm --id: %d %s", code, out)
	}
	if code, _, errOut := cli(t, url, "", append([]string{"dead", "rm", "--id", "req-pii"}, order...)...); code != 1 || !strings.Contains(errOut, "no dead letter") {
		t.Errorf("rm again: %d %s", code, errOut)
	}
	if s, err := js.Stream(ctx, "FILING_DEAD"); err != nil {
		t.Fatal(err)
	} else if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("dead-letter stream after rm: %+v %v", info.State, err)
	}
}

// TestTrail follows one filing through the real pipeline: its ledger
// state, its audit events in order (and no other request's), its result;
// as a timeline and as JSON. An id nobody sent is exit 1.
func TestTrail(t *testing.T) {
	_, nc, srv := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	for _, id := range []string{"trail-1", "trail-2"} {
		p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	}
	p.WaitResults(2, 15*time.Second)
	url := srv.ClientURL()

	code, out, errOut := cli(t, url, "", "trail", "--id", "trail-1", "--output", "json")
	if code != 0 {
		t.Fatalf("trail: %d %s", code, errOut)
	}
	var got struct {
		Found  bool `json:"found"`
		Ledger struct {
			State string `json:"state"`
		} `json:"ledger"`
		Events []struct {
			Seq       uint64 `json:"seq"`
			RequestID string `json:"request_id"`
			Event     string `json:"event"`
		} `json:"events"`
		Result  messages.Result   `json:"result"`
		Results []messages.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var kinds []string
	for _, ev := range got.Events {
		if ev.RequestID != "trail-1" {
			t.Errorf("event of %s in trail-1's trail", ev.RequestID)
		}
		kinds = append(kinds, ev.Event)
	}
	if len(got.Results) != 1 || got.Results[0].RequestID != "trail-1" || got.Results[0].Status != messages.StatusSucceeded {
		t.Errorf("trail-1's results: %+v", got.Results)
	}
	if !got.Found || got.Ledger.State != "done" || got.Result.Status != messages.StatusSucceeded ||
		strings.Join(kinds, ",") != "received,attempt,succeeded" {
		t.Errorf("trail-1: found %v, ledger %q, result %s, events %v", got.Found, got.Ledger.State, got.Result.Status, kinds)
	}
	code, out, _ = cli(t, url, "", "trail", "--id", "trail-1")
	for _, want := range []string{"request trail-1", "ledger: done, 1 attempt(s)", "received", "attempt 1 ok", "succeeded", "result: succeeded", "QualificationNo", "dead letters: none"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q (exit %d):\n%s", want, code, out)
		}
	}
	if code, out, _ = cli(t, url, "", "trail", "--id", "never-sent"); code != 1 || !strings.Contains(out, "nothing known") {
		t.Errorf("an unknown id: %d %s", code, out)
	}
	// An id that breaks the rules: its rejection is found all the same.
	p.Publish(messages.APIVMSAddQualification, "x", []byte(`{"id":"not a valid/id","api":"vms.add_qualification","payload":{}}`))
	p.WaitResults(3, 15*time.Second)
	if code, out, _ = cli(t, url, "", "trail", "--id", "not a valid/id"); code != 0 || !strings.Contains(out, "result: rejected") || !strings.Contains(out, "never in the ledger") {
		t.Errorf("an id that breaks the rules: %d %s", code, out)
	}
}

// TestSendResubmitsAChangedRequest: a changed request sent again under
// the same --id is published (a resubmission, which the consumer files
// when the first ended with nothing filed); an identical copy is dropped.
func TestSendResubmitsAChangedRequest(t *testing.T) {
	_, _, url := setup(t)
	b, err := os.ReadFile(examplePath("douyin.get_class_auth.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload map[string]any `json:"payload"`
	}
	_ = json.Unmarshal(b, &env)
	first, _ := json.Marshal(env.Payload)
	env.Payload["merchant_entity_id"] = "E_7216554566647824422"
	second, _ := json.Marshal(env.Payload)
	for i, tc := range []struct {
		payload []byte
		dup     bool
	}{{first, false}, {second, false}, {second, true}} {
		code, out, errOut := cli(t, url, string(tc.payload)+"\n", "send", "--api", "douyin.get_class_auth", "--file", "-", "--id", "fixed-1")
		var p published
		if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil || p.ID != "fixed-1" || p.Duplicate != tc.dup {
			t.Fatalf("send %d: %d %q %s: want duplicate %v", i+1, code, out, errOut, tc.dup)
		}
	}
}

// TestErrorsNameTheCause: a prefix no stream takes and a server that
// cannot be reached are said so, naming the subject and the server
// (its password not).
func TestErrorsNameTheCause(t *testing.T) {
	_, _, url := setup(t)
	send := []string{"send", "--api", "vms.add_qualification", "--file", examplePath("vms.add_qualification.json")}
	if code, _, errOut := cli(t, url, "", append(send, "--prefix", "wrong")...); code == 0 ||
		!strings.Contains(errOut, "no stream stores wrong.request.vms.add_qualification") || !strings.Contains(errOut, "QUALFILE_SUBJECT_PREFIX") {
		t.Errorf("a wrong prefix: %d %s", code, errOut)
	}
	if code, _, errOut := cli(t, "", "", append(send, "--nats-url", "nats://qualfile:s3cret@127.0.0.1:1")...); code == 0 ||
		!strings.Contains(errOut, "127.0.0.1:1") || strings.Contains(errOut, "s3cret") {
		t.Errorf("an unreachable server: %d %s", code, errOut)
	}
}
