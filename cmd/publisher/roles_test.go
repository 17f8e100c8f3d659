package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// TestThePermissionsFileIsGenerated: deploy/nats/permissions.conf is what
// `publisher permissions` prints for the default prefix.
func TestThePermissionsFileIsGenerated(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cli(t, "", "", "permissions")
	if code != 0 || out != string(want) {
		t.Errorf("exit %d %s; deploy/nats/permissions.conf differs from `publisher permissions`: run go run ./cmd/publisher permissions > deploy/nats/permissions.conf", code, errOut)
	}
	// Only the roles asked for: nats-server refuses a variable no user
	// refers to.
	code, conf, _ := cli(t, "", "", "permissions", "--role", "consumer", "--role", "submitter")
	path := filepath.Join(t.TempDir(), "server.conf")
	conf += "authorization { users = [\n{ user: c, password: c, permissions: $FILING_CONSUMER }\n{ user: s, password: s, permissions: $FILING_SUBMITTER }\n] }\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ProcessConfigFile(path); code != 0 || err != nil {
		t.Errorf("the permissions of two roles, each given a user: exit %d, %v", code, err)
	}
	if code, _, _ := cli(t, "", "", "permissions", "--role", "root"); code != 2 {
		t.Errorf("an unknown role: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, "", "", "permissions", "--prefix", "a.>"); code != 2 {
		t.Errorf("a wildcard prefix: exit %d, want 2", code)
	}
	// Two names that would make one variable: a name is lower-case
	// letters, digits and _ only.
	for _, name := range []string{"a-b", "Alice", "a.b", ""} {
		if code, _, _ := cli(t, "", "", "permissions", "--operator", name); code != 2 {
			t.Errorf("operator %q: exit %d, want 2", name, code)
		}
	}
}

// operatorName is the operator of rolesServer.
const operatorName = "alice"

// rolesServer starts a nats-server whose users qualfile-<role> (password
// pw-<role>) have exactly the permissions `publisher permissions --prefix
// prefix --operator alice` prints, and returns its URL for a role.
func rolesServer(t *testing.T, prefix string) func(roles.Role) string {
	t.Helper()
	s := messages.Subjects{Prefix: prefix}
	var gs []roles.Grantee
	for _, r := range roles.All {
		gs = append(gs, roles.Grantee{Role: r, Operator: operatorName})
	}
	as := permsServer(t, s, gs, "permissions", "--prefix", prefix, "--operator", operatorName)
	return func(r roles.Role) string { return as(roles.Grantee{Role: r, Operator: operatorName}) }
}

// permsServer starts a nats-server with the permissions `publisher args`
// prints, a user (password pw) for each of gs, and returns its URL for one.
func permsServer(t *testing.T, s messages.Subjects, gs []roles.Grantee, args ...string) func(roles.Grantee) string {
	t.Helper()
	code, conf, errOut := cli(t, "", "", args...)
	if code != 0 {
		t.Fatalf("permissions: %s", errOut)
	}
	var users []string
	for _, g := range gs {
		users = append(users, fmt.Sprintf("{ user: %s, password: pw, permissions: $%s }", g.User(), g.Variable(s)))
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "server.conf")
	conf += "\nauthorization { users = [\n" + strings.Join(users, "\n") + "\n] }\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the generated permissions do not load: %v", err)
	}
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, filepath.Join(dir, "js"), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return func(g roles.Grantee) string {
		u, _ := url.Parse(srv.ClientURL())
		u.User = url.UserPassword(g.User(), "pw")
		return u.String()
	}
}

// connectAs connects as role r, with its inbox prefix, and collects the
// permission violations the server reports.
func connectAs(t *testing.T, u string, r roles.Role, s messages.Subjects) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 100)
	nc, err := nats.Connect(u, nats.CustomInboxPrefix(roles.Inbox(r, s)), nats.PermissionErrOnSubscribe(true), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", r, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// TestRolesOnARealServer runs a server with the generated permissions
// (under a prefix other than the default, so that nothing is written for
// one prefix only): the consumer files what a submitter sends, with its
// ledger, results, audit trail and dead letters; the submitter, the
// operator and the auditor each do through the publisher what their role
// needs; and each is refused, by the server, what it must not do.
func TestRolesOnARealServer(t *testing.T) {
	const prefix = "acme.filing"
	s := messages.Subjects{Prefix: prefix}
	as := rolesServer(t, prefix)
	consumerNC, consumerErrs := connectAs(t, as(roles.Consumer), roles.Consumer, s)
	go func() {
		for err := range consumerErrs {
			t.Logf("consumer: %v", err)
		}
	}()
	p := filingtest.New(t, filingtest.Options{NC: consumerNC, Owner: "roles", Prefix: prefix})
	p.Run()
	const st = "ACME_FILING"

	// What each role needs.
	ok := func(r roles.Role, args ...string) string {
		t.Helper()
		code, out, errOut := cli(t, as(r), "", append(args, "--prefix", prefix)...)
		if code != 0 {
			t.Fatalf("%s: publisher %s: exit %d: %s%s", r, strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	out := ok(roles.Submitter, "send", "--api", "vms.add_qualification", "--file", examplePath("vms.add_qualification.json"), "--wait")
	if !strings.Contains(out, `"status": "succeeded"`) {
		t.Errorf("the submitter's send --wait: %s", out)
	}
	// Sent again: the copy is dropped, and its stored result read by
	// subject, as the submitter may.
	if again := ok(roles.Submitter, "send", "--api", "vms.add_qualification", "--file", examplePath("vms.add_qualification.json"), "--wait"); again != out {
		t.Errorf("the submitter's copy sent --wait: %s, want the first result %s", again, out)
	}
	// The auditor lists the filings, and finds this one by its merchant.
	if got := ok(roles.Auditor, "list", "--cache", filepath.Join(t.TempDir(), "list.db"), "--q", "m-1001"); !strings.Contains(got, "example-vms-add-0001") {
		t.Errorf("the auditor's list: %s", got)
	}
	// Its files handed over on the file stream (every fileContent longer
	// than 64 bytes), fetched by the consumer.
	out = ok(roles.Submitter, "send", "--api", "sms.apply_signature_ident", "--file", examplePath("sms.apply_signature_ident.json"), "--inline-max", "64", "--wait")
	if !strings.Contains(out, `"status": "succeeded"`) {
		t.Errorf("the submitter's send of files: %s", out)
	}
	for _, r := range []roles.Role{roles.Auditor, roles.Operator} {
		if out := ok(r, "trail", "--id", "example-vms-add-0001", "--inbox-prefix", roles.Inbox(r, s)); !strings.Contains(out, "result: succeeded") {
			t.Errorf("the %s's trail: %s", r, out)
		}
	}
	submitterNC, _ := connectAs(t, as(roles.Submitter), roles.Submitter, s)
	if err := submitterNC.Publish(s.Request(messages.APISMSApplySignatureIdent), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := ok(roles.Auditor, "dead", "list", "--inbox-prefix", roles.Inbox(roles.Auditor, s))
		if strings.Contains(out, "undecodable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the auditor's dead list: %s", out)
		}
	}
	ok(roles.Operator, "dead", "show", "--seq", "1", "--raw")
	// The operator's orders, carried out by the consumer, on the record
	// under the name the operator's permissions bind.
	if out := ok(roles.Operator, "dead", "rm", "--seq", "1", "--operator", operatorName, "--reason", "not a request"); !strings.Contains(out, "dead seq 1 (): removed") {
		t.Errorf("the operator's dead rm: %s", out)
	}
	var removed []messages.AuditEvent
	for _, m := range p.StreamMsgs(st + "_AUDIT") {
		var ev messages.AuditEvent
		if json.Unmarshal(m.Data, &ev) == nil && ev.Event == messages.EventDeadRemoved {
			removed = append(removed, ev)
		}
	}
	if len(removed) != 1 || removed[0].Operator != operatorName || removed[0].Reason != "not a request" {
		t.Errorf("the removal's events: %+v", removed)
	}
	if code, _, errOut := cli(t, as(roles.Operator), "", "dead", "rm", "--seq", "1", "--operator", "bob", "--reason", "r", "--prefix", prefix); code == 0 {
		t.Errorf("the operator gave an order as bob: %s", errOut)
	}

	// What each role must not do: the server refuses it.
	type attempt struct {
		what    string
		subject string // what the server names in its refusal
		do      func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error
	}
	sub := func(subject string) func(context.Context, *nats.Conn, jetstream.JetStream) error {
		return func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
			s, err := nc.SubscribeSync(subject)
			if err == nil {
				_, err = s.NextMsg(2 * time.Second)
			}
			if !errors.Is(err, nats.ErrPermissionViolation) {
				return nil // subscribed, and waited in vain for a message or a refusal
			}
			return err
		}
	}
	pub := func(subject string) func(context.Context, *nats.Conn, jetstream.JetStream) error {
		return func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
			_, err := js.Publish(ctx, subject, []byte(`{}`))
			return err
		}
	}
	api := func(subject string) func(context.Context, *nats.Conn, jetstream.JetStream) error {
		return func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
			_, err := nc.RequestWithContext(ctx, subject, []byte(`{}`))
			return err
		}
	}
	everyone := []attempt{
		{"read every inbox", "_INBOX.>", sub("_INBOX.>")},
		{"read the consumer's inbox", roles.Inbox(roles.Consumer, s) + ".>", sub(roles.Inbox(roles.Consumer, s) + ".>")},
		{"read the requests as they are sent", prefix + ".request.>", sub(prefix + ".request.>")},
		{"read a token", "$JS.API.DIRECT.GET.KV_" + st + "_TOKENS.$KV." + st + "_TOKENS.default", api("$JS.API.DIRECT.GET.KV_" + st + "_TOKENS.$KV." + st + "_TOKENS.default")},
		{"write a token", "$KV." + st + "_TOKENS.default", pub("$KV." + st + "_TOKENS.default")},
		{"write a rate slot", "$KV." + st + "_RATE.x", pub("$KV." + st + "_RATE.x")},
		{"delete the work-queue consumer", "$JS.API.CONSUMER.DELETE." + st + "_REQUESTS.qualfile", api("$JS.API.CONSUMER.DELETE." + st + "_REQUESTS.qualfile")},
		{"create a consumer on the requests", "$JS.API.CONSUMER.CREATE." + st + "_REQUESTS.thief", api("$JS.API.CONSUMER.CREATE." + st + "_REQUESTS.thief")},
		{"pull requests", "$JS.API.CONSUMER.MSG.NEXT." + st + "_REQUESTS.qualfile", api("$JS.API.CONSUMER.MSG.NEXT." + st + "_REQUESTS.qualfile")},
		{"purge the file stream", "$JS.API.STREAM.PURGE." + st + "_FILES", api("$JS.API.STREAM.PURGE." + st + "_FILES")},
		{"list the file stream", "$JS.API.STREAM.INFO." + st + "_FILES", api("$JS.API.STREAM.INFO." + st + "_FILES")},
		{"read a file chunk", "$JS.API.DIRECT.GET." + st + "_FILES.acme.filing.file.x.y.0", api("$JS.API.DIRECT.GET." + st + "_FILES.acme.filing.file.x.y.0")},
		{"read the file stream through a consumer", "$JS.API.CONSUMER.CREATE." + st + "_FILES.x", api("$JS.API.CONSUMER.CREATE." + st + "_FILES.x")},
		{"delete a stream", "$JS.API.STREAM.DELETE." + st + "_RESULTS", api("$JS.API.STREAM.DELETE." + st + "_RESULTS")},
		{"publish a result", prefix + ".result.vms.add_qualification.x", pub(prefix + ".result.vms.add_qualification.x")},
		{"publish an audit event", prefix + ".audit.vms.add_qualification.x.succeeded", pub(prefix + ".audit.vms.add_qualification.x.succeeded")},
		{"publish a dead letter", prefix + ".dead.vms.add_qualification", pub(prefix + ".dead.vms.add_qualification")},
		{"delete a consumer of the results (another system's durable)", "$JS.API.CONSUMER.DELETE." + st + "_RESULTS.downstream", api("$JS.API.CONSUMER.DELETE." + st + "_RESULTS.downstream")},
		{"read stored files by sequence", "$JS.API.STREAM.MSG.GET." + st + "_FILES", api("$JS.API.STREAM.MSG.GET." + st + "_FILES")},
	}
	refusals := map[roles.Role][]attempt{
		roles.Submitter: append(everyone,
			attempt{"give an operator's order", prefix + ".control.alice.remove", api(prefix + ".control.alice.remove")},
			attempt{"write the ledger", "$KV." + st + "_LEDGER.example-vms-add-0001", pub("$KV." + st + "_LEDGER.example-vms-add-0001")},
			attempt{"read the ledger", "$JS.API.DIRECT.GET.KV_" + st + "_LEDGER.$KV." + st + "_LEDGER.example-vms-add-0001", api("$JS.API.DIRECT.GET.KV_" + st + "_LEDGER.$KV." + st + "_LEDGER.example-vms-add-0001")},
			attempt{"remove a dead letter", "$JS.API.STREAM.MSG.DELETE." + st + "_DEAD", api("$JS.API.STREAM.MSG.DELETE." + st + "_DEAD")}),
		roles.Auditor: append(everyone,
			attempt{"give an operator's order", prefix + ".control.alice.remove", api(prefix + ".control.alice.remove")},
			attempt{"write the ledger", "$KV." + st + "_LEDGER.example-vms-add-0001", pub("$KV." + st + "_LEDGER.example-vms-add-0001")},
			attempt{"send a request", prefix + ".request.vms.add_qualification", pub(prefix + ".request.vms.add_qualification")},
			attempt{"remove a dead letter", "$JS.API.STREAM.MSG.DELETE." + st + "_DEAD", api("$JS.API.STREAM.MSG.DELETE." + st + "_DEAD")},
			attempt{"hand a file over", prefix + ".file.x.y.0", pub(prefix + ".file.x.y.0")}),
		roles.Operator: append(everyone,
			attempt{"give an order as another operator", prefix + ".control.bob.resolve", api(prefix + ".control.bob.resolve")},
			attempt{"write the ledger", "$KV." + st + "_LEDGER.example-vms-add-0001", pub("$KV." + st + "_LEDGER.example-vms-add-0001")},
			attempt{"send a request", prefix + ".request.vms.add_qualification", pub(prefix + ".request.vms.add_qualification")},
			attempt{"remove a dead letter itself", "$JS.API.STREAM.MSG.DELETE." + st + "_DEAD", api("$JS.API.STREAM.MSG.DELETE." + st + "_DEAD")},
			attempt{"purge the dead letters' bodies", "$JS.API.STREAM.PURGE.OBJ_" + st + "_OBJECTS", api("$JS.API.STREAM.PURGE.OBJ_" + st + "_OBJECTS")},
			attempt{"write a dead letter's body", "$O." + st + "_OBJECTS.M.x", pub("$O." + st + "_OBJECTS.M.x")}),
		// The consumer of this deployment, on another deployment's
		// streams (a consumer named after one of its own).
		roles.Consumer: {
			{"read another deployment's ledger", "$JS.API.CONSUMER.CREATE.KV_FILING_LEDGER.KV_" + st + "_LEDGER.x",
				api("$JS.API.CONSUMER.CREATE.KV_FILING_LEDGER.KV_" + st + "_LEDGER.x")},
			{"delete another deployment's stream", "$JS.API.STREAM.DELETE.FILING_REQUESTS", api("$JS.API.STREAM.DELETE.FILING_REQUESTS")},
		},
	}
	var wg sync.WaitGroup
	for r, attempts := range refusals {
		nc, errs := connectAs(t, as(r), r, s)
		js, _ := jetstream.New(nc)
		for _, a := range attempts {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			done := make(chan error, 1)
			wg.Go(func() { defer cancel(); done <- a.do(ctx, nc, js) })
			refused := false
			for !refused {
				select {
				case err := <-errs:
					refused = strings.Contains(err.Error(), "ermissions") && strings.Contains(err.Error(), `"`+a.subject+`"`)
				case err := <-done:
					if err == nil {
						t.Errorf("%s may %s", r, a.what)
					}
					done = nil // its refusal may still be on its way
				case <-time.After(3 * time.Second):
					t.Errorf("%s: %s: no refusal by the server", r, a.what)
					refused = true
				}
			}
		}
	}
	wg.Wait()

	// Nothing was lost: the work-queue consumer is there, and a request
	// sent now is filed.
	ok(roles.Submitter, "send", "--api", "douyin.get_class_auth", "--file", examplePath("douyin.get_class_auth.json"), "--wait")
}
