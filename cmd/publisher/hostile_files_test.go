package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// capture is a Store that only notes the names Offload gives.
type capture struct{ names []string }

func (c *capture) Put(_ context.Context, name string, _ []byte) error {
	c.names = append(c.names, name)
	return nil
}
func (c *capture) Get(context.Context, string, int64) ([]byte, error) { return nil, files.ErrNotFound }
func (c *capture) Delete(context.Context, string) error               { return nil }

// acmeDoc is the SMS example for acme's account, and what an attacker who
// knows the document can compute in advance: the request's id and the
// names of its offloaded files (64-byte threshold, as sent below).
func acmeDoc(t *testing.T) (path, id string, refs []messages.FileRef, names []string) {
	b, err := os.ReadFile(examplePath("sms.apply_signature_ident.json"))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"account": "default"`), []byte(`"account": "acme-vms"`), 1)
	path = filepath.Join(t.TempDir(), "acme.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ID      string          `json:"id"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	_, refs, err = files.Offload(context.Background(), c, "FILING_FILES", doc.ID, doc.Payload, 64)
	if err != nil || len(c.names) == 0 {
		t.Fatalf("offload: %v", err)
	}
	return path, doc.ID, refs, c.names
}

// TestAnotherTenantCannotDropAFilesChunk: bolt's submitter, on its own
// file subjects, publishes a message with the message id a chunk of
// acme's would have if chunks had message ids (the stream's duplicate
// window is every tenant's): acme's file is stored all the same, and its
// request filed.
func TestAnotherTenantCannotDropAFilesChunk(t *testing.T) {
	s := messages.Subjects{}
	as, p := tenantsDeployment(t, "acme", "bolt")
	acme, bolt := submitter("acme"), submitter("bolt")
	p.Run()

	path, _, _, names := acmeDoc(t)
	nc, err := nats.Connect(as(bolt), nats.CustomInboxPrefix(roles.TenantInbox(s, "bolt")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	m := nats.NewMsg("filing.file.bolt.x.y.0") // bolt's own subject
	m.Data = []byte("x")
	m.Header.Set(jetstream.MsgIDHeader, "file:filing.file.acme."+names[0]+".0")
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("bolt publishes on its own subject: %v", err)
	}

	code, out, errOut := cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "sms.apply_signature_ident", "--file", path, "--inline-max", "64", "--wait")
	if code != 0 || !strings.Contains(out, `"status": "succeeded"`) {
		t.Fatalf("acme's honest request, after bolt published on its own subject: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestTheDefaultTenantCannotUseATenantsFile: the default tenant's
// submitter sends a request of acme's id whose reference names
// "acme.<sha256>.<key>" (pointing into acme's subjects): it is rejected,
// and acme's own request, sent after, is filed with its files intact.
func TestTheDefaultTenantCannotUseATenantsFile(t *testing.T) {
	s := messages.Subjects{}
	as, p := tenantsDeployment(t, "acme", "")
	acme, deflt := submitter("acme"), submitter("")
	p.Run()

	_, id, refs, names := acmeDoc(t)
	// acme hands its files over (its request is not sent yet).
	anc, err := nats.Connect(as(acme), nats.CustomInboxPrefix(roles.TenantInbox(s, "acme")))
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	ajs, _ := jetstream.New(anc)
	b, _ := os.ReadFile(examplePath("sms.apply_signature_ident.json"))
	var doc struct {
		Payload json.RawMessage `json:"payload"`
	}
	_ = json.Unmarshal(b, &doc)
	if _, _, err := files.Offload(context.Background(), &files.Chunks{JS: ajs, Stream: "FILING_FILES", Subject: s.For("acme").Files()}, "FILING_FILES", id, doc.Payload, 64); err != nil {
		t.Fatal(err)
	}

	// The default tenant's request: same id (ids are per tenant), the
	// references pointing into acme's subjects.
	forged := string(b)
	var payload map[string]any
	_ = json.Unmarshal(doc.Payload, &payload)
	out, _, _ := files.Offload(context.Background(), &capture{}, "FILING_FILES", id, doc.Payload, 64)
	forgedPayload := string(out)
	for i, n := range names {
		forgedPayload = strings.ReplaceAll(forgedPayload, "obj://FILING_FILES/"+n+`"`, "obj://FILING_FILES/acme."+n+`"`)
		_ = refs[i]
	}
	var env map[string]any
	_ = json.Unmarshal([]byte(forged), &env)
	env["payload"] = json.RawMessage(forgedPayload)
	data, _ := json.Marshal(env)
	path := filepath.Join(t.TempDir(), "forged.json")
	_ = os.WriteFile(path, data, 0o600)
	code, outS, errOut := cli(t, as(deflt), "", "send", "--api", "sms.apply_signature_ident", "--file", path, "--wait")
	if code != 1 || !strings.Contains(outS, "not named by its SHA-256") {
		t.Errorf("a default-tenant request naming acme's files: exit %d %s %s", code, outS, errOut)
	}
	// acme's request, now.
	apath, _, _, _ := acmeDoc(t)
	code, outS, errOut = cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "sms.apply_signature_ident", "--file", apath, "--inline-max", "64", "--wait")
	if !strings.Contains(outS, `"status": "succeeded"`) {
		t.Errorf("acme's own request after the default tenant's: exit %d %s %s", code, outS, errOut)
	}
}

// TestNoOtherTenantsNameLeaksFromAnExpectation: the server's refusal of
// a publish that expects another last message id says the stream's last
// message id; bolt's submitter learns nothing of acme's files or requests
// from it (chunks carry no message id, and requests' are digests).
func TestNoOtherTenantsNameLeaksFromAnExpectation(t *testing.T) {
	s := messages.Subjects{}
	as, _ := tenantsDeployment(t, "acme", "bolt") // the consumer is not running: acme's files stay
	acme, bolt := submitter("acme"), submitter("bolt")
	path, _, _, names := acmeDoc(t)
	// acme hands over its files (the consumer is not running: they stay).
	code, _, errOut := cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "sms.apply_signature_ident", "--file", path, "--inline-max", "64")
	if code != 0 {
		t.Fatalf("acme: %d %s", code, errOut)
	}
	nc, err := nats.Connect(as(bolt), nats.CustomInboxPrefix(roles.TenantInbox(s, "bolt")))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	m := nats.NewMsg("filing.file.bolt.x.y.0")
	m.Data = []byte("x")
	m.Header.Set(jetstream.ExpectedLastMsgIDHeader, "nothing")
	_, err = js.PublishMsg(context.Background(), m)
	t.Logf("bolt's probe: %v", err)
	if err != nil && strings.Contains(err.Error(), names[0]) {
		t.Errorf("bolt learned acme's file name %s (its SHA-256 and acme's request key)", names[0])
	}
	m = nats.NewMsg(s.For("bolt").Request(messages.APIVMSAddQualification))
	m.Data = []byte("{}")
	m.Header.Set(jetstream.ExpectedLastMsgIDHeader, "nothing")
	_, err = js.PublishMsg(context.Background(), m)
	t.Logf("bolt's probe of the requests stream: %v", err)
	if err != nil && strings.Contains(err.Error(), "example-sms-apply-0001") {
		t.Errorf("bolt learned acme's request id: %v", err)
	}
}
