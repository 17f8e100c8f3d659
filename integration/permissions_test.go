package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// TestDeployedPermissions runs the pipeline on a server (the image) whose
// users have exactly the permissions of deploy/nats/permissions.conf (what
// `publisher permissions` prints; cmd/publisher tests every role's rights
// and refusals on an embedded server): the consumer files requests the
// submitter sent, with its results, audit trail and ledger; the auditor
// reads a trail; the operator has the consumer remove a dead letter; and
// the submitter may not publish a result.
func TestDeployedPermissions(t *testing.T) {
	perms, err := os.ReadFile(filepath.Join("..", "deploy", "nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	users := `authorization {
  users = [
    { user: qualfile-consumer, password: consumer-secret, permissions: $FILING_CONSUMER }
    { user: qualfile-submitter, password: submitter-secret, permissions: $FILING_SUBMITTER }
    { user: qualfile-operator, password: operator-secret, permissions: $FILING_OPERATOR }
    { user: qualfile-auditor, password: auditor-secret, permissions: $FILING_AUDITOR }
  ]
}
`
	n, err := startNATSWith(t, natsImage(t), "nats", []attachment{{newNetwork(t), []string{"nats"}}},
		map[string]string{"/qualfile-permissions.conf": string(perms), "": users}, "-js", "-sd", "/data", "-n", "single")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(r roles.Role) *nats.Conn {
		user := "qualfile-" + string(r)
		nc, err := nats.Connect(n.url, nats.UserInfo(user, string(r)+"-secret"), nats.Name(user), nats.CustomInboxPrefix(roles.Inbox(r, messages.Subjects{})))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	consumer := filingtest.New(t, filingtest.Options{NC: dial(roles.Consumer), Owner: "restricted"})
	consumer.Run()

	pubNC := dial(roles.Submitter)
	pub, err := jetstream.New(pubNC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apis := []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent, messages.APIDouyinGetClassAuth}
	for _, api := range apis {
		id := "perm-" + string(api)
		if _, err := pub.Publish(ctx, messages.Subjects{}.Request(api), filingtest.Example(t, api, id), jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("the submitter sends %s: %v", api, err)
		}
	}
	// A file far beyond the server's max_payload (1 MiB by default): the
	// submitter hands it over in chunks on the file stream, the request
	// carries a reference, the consumer user fetches it and then removes
	// it.
	big := largeSMSRequest(t, ctx, &files.Chunks{JS: pub, Stream: "FILING_FILES", Subject: messages.Subjects{}.Files()}, "perm-big", 3<<20)
	if max := pubNC.MaxPayload(); int64(len(big.content)) <= max {
		t.Fatalf("the file (%d bytes) fits max_payload %d: the test proves nothing", len(big.content), max)
	}
	if _, err := pub.Publish(ctx, messages.Subjects{}.Request(messages.APISMSApplySignatureIdent), big.envelope, jetstream.WithMsgID("perm-big")); err != nil {
		t.Fatalf("the submitter sends the large request: %v", err)
	}
	apis = append(apis, messages.APISMSApplySignatureIdent)
	consumer.WaitResults(len(apis), 30*time.Second)
	for id, rs := range consumer.Results() {
		if len(rs) != 1 || rs[0].Status != messages.StatusSucceeded {
			t.Errorf("%s: %+v", id, rs)
		}
	}

	if body := lastCallBody(consumer, messages.APISMSApplySignatureIdent); !strings.Contains(string(body), big.content) {
		t.Errorf("the vendor's last SMS call (%d bytes) does not carry the %d-byte file", len(body), len(big.content))
	}
	// Looked at by the consumer: a submitter may not read the stream.
	fileStream, err := consumer.JS.Stream(ctx, "FILING_FILES")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := fileStream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("FILING_FILES after the request succeeded: %+v %v; want no chunk", info.State, err)
	}

	auditor, err := jetstream.New(dial(roles.Auditor))
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.OpenExisting(ctx, auditor, "FILING_LEDGER")
	if err != nil {
		t.Fatalf("the auditor opens the ledger: %v", err)
	}
	trail, err := operator.ReadTrail(ctx, auditor, led, nil, messages.Subjects{}, "perm-vms.add_qualification")
	if err != nil || trail.Entry == nil || trail.Entry.State != ledger.StateDone || len(trail.Events) != 3 {
		t.Errorf("the auditor's trail: %+v, %v", trail, err)
	}

	// The operator's order, carried out by the consumer with its rights:
	// an undecodable message's dead letter removed, on the record.
	if err := pubNC.Publish(messages.Subjects{}.Request(messages.APIVMSAddQualification), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	var dead []operator.DeadLetter
	for deadline := time.Now().Add(30 * time.Second); len(dead) == 0; time.Sleep(100 * time.Millisecond) {
		if dead, err = operator.ReadDead(ctx, auditor, messages.Subjects{}); err != nil || time.Now().After(deadline) {
			t.Fatalf("the auditor's dead letters: %+v %v", dead, err)
		}
	}
	rep, err := control.Ask(ctx, dial(roles.Operator), messages.Subjects{}, roles.DefaultOperator, control.ActionRemove,
		control.Order{Seq: dead[0].Sequence, Reason: "not a request"})
	if err != nil || len(rep.Items) != 1 || rep.Items[0].Done != "removed" {
		t.Fatalf("the operator's order: %+v %v", rep, err)
	}
	if left, err := operator.ReadDead(ctx, auditor, messages.Subjects{}); err != nil || len(left) != 0 {
		t.Errorf("dead letters after the order: %+v %v", left, err)
	}

	// Not allowed: the submitter publishing a result.
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := pub.Publish(short, messages.Subjects{}.Result(messages.APIVMSAddQualification), []byte(`{}`)); err == nil {
		t.Error("the submitter published a result")
	}
}

type largeRequest struct {
	envelope []byte
	content  string
}

// largeSMSRequest is the SMS example with a business certificate of about
// size bytes, offloaded to store as the publisher does.
func largeSMSRequest(t *testing.T, ctx context.Context, store files.Store, id string, size int) largeRequest {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(filingtest.Example(t, messages.APISMSApplySignatureIdent, id), &env); err != nil {
		t.Fatal(err)
	}
	content := "data:image/png;base64," + base64.StdEncoding.EncodeToString(make([]byte, size*3/4))
	env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)["fileContent"] = content
	payload, _ := json.Marshal(env["payload"])
	out, refs, err := files.Offload(ctx, store, "FILING_FILES", id, payload, files.DefaultThreshold)
	if err != nil || len(refs) != 1 {
		t.Fatalf("Offload: %v (%d refs)", err, len(refs))
	}
	env["payload"] = json.RawMessage(out)
	data, _ := json.Marshal(env)
	return largeRequest{envelope: data, content: content}
}

func lastCallBody(p *filingtest.Pipeline, api messages.API) []byte {
	var body []byte
	for _, c := range p.Sandbox.Calls() {
		if c.API == api {
			body = c.Body
		}
	}
	return body
}

// TestDeployedTenants runs the pipeline in the image with the permissions
// `publisher permissions --tenant acme --tenant bolt` prints for the
// consumer and the two tenants' submitters: acme files with its own
// account, is refused the other's (rejected, never sent), cannot send on
// bolt's subjects, and bolt cannot read acme's result.
func TestDeployedTenants(t *testing.T) {
	s := messages.Subjects{}
	gs := roles.Grantees([]roles.Role{roles.Consumer, roles.Submitter}, nil, []string{"acme", "bolt"})
	perms, err := roles.File(s, gs...)
	if err != nil {
		t.Fatal(err)
	}
	users := "authorization {\n  users = [\n"
	for _, g := range gs {
		users += fmt.Sprintf("    { user: %s, password: %s-secret, permissions: $%s }\n", g.User(), g.User(), g.Variable(s))
	}
	users += "  ]\n}\n"
	n, err := startNATSWith(t, natsImage(t), "nats", []attachment{{newNetwork(t), []string{"nats"}}},
		map[string]string{"/qualfile-permissions.conf": perms, "": users}, "-js", "-sd", "/data", "-n", "single")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(g roles.Grantee, inbox string) *nats.Conn {
		nc, err := nats.Connect(n.url, nats.UserInfo(g.User(), g.User()+"-secret"), nats.CustomInboxPrefix(inbox))
		if err != nil {
			t.Fatalf("connect as %s: %v", g.User(), err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	consumer := filingtest.New(t, filingtest.Options{NC: dial(gs[0], roles.Inbox(roles.Consumer, s)), Owner: "tenants",
		Tenants: map[string]string{"acme-vms": "acme", "bolt-vms": "bolt"}})
	consumer.Run()
	acme, err := jetstream.New(dial(gs[1], roles.TenantInbox(s, "acme")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	send := func(tenant, id, account string) error {
		var env map[string]any
		_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, id), &env)
		env["account"] = account
		data, _ := json.Marshal(env)
		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := acme.Publish(short, s.For(tenant).Request(messages.APIVMSAddQualification), data, jetstream.WithMsgID(tenant+"/"+id))
		return err
	}
	if err := send("acme", "a-1", "acme-vms"); err != nil {
		t.Fatalf("acme sends with its account: %v", err)
	}
	if err := send("acme", "a-2", "bolt-vms"); err != nil {
		t.Fatalf("acme sends with bolt's account: %v", err)
	}
	if err := send("bolt", "a-3", "bolt-vms"); err == nil {
		t.Error("acme sent on bolt's subjects")
	}
	consumer.WaitResults(2, 30*time.Second)
	for id, want := range map[string]string{"a-1": "", "a-2": "AccountNotPermitted"} {
		r, _ := filingtest.Final(consumer.Results()[id])
		code := ""
		if r.Error != nil {
			code = r.Error.Code
		}
		if r.Tenant != "acme" || code != want {
			t.Errorf("%s: %+v, want tenant acme, code %q", id, r, want)
		}
	}
	if calls := consumer.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
		t.Errorf("the vendor saw %d calls, want 1", calls)
	}
	// bolt reads acme's result by its subject: refused.
	bolt := dial(gs[2], roles.TenantInbox(s, "bolt"))
	subject := "$JS.API.DIRECT.GET.FILING_RESULTS." + s.For("acme").ResultFor(messages.APIVMSAddQualification, "a-1")
	if m, err := bolt.Request(subject, nil, 3*time.Second); err == nil {
		t.Errorf("bolt read acme's result: %s", m.Data)
	}
	if m, err := dial(gs[1], roles.TenantInbox(s, "acme")).Request(subject, nil, 5*time.Second); err != nil || !strings.Contains(string(m.Data), `"tenant":"acme"`) {
		t.Errorf("acme reads its own result: %v %v", m, err)
	}
}
