package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// TestTenantsOnARealServer runs a server with the permissions `publisher
// permissions --tenant acme --tenant bolt` prints: each tenant's
// submitter files with its own accounts and reads its own results, and
// the server refuses it the other tenant's subjects, inbox and results,
// and the consumer a request for the other's account.
func TestTenantsOnARealServer(t *testing.T) {
	s := messages.Subjects{}
	as, p := tenantsDeployment(t, "acme", "bolt", "")
	acme, bolt, deflt := submitter("acme"), submitter("bolt"), submitter("")
	p.Run()

	// An example, for an account.
	exampleOf := func(api messages.API, account string) string {
		b, err := os.ReadFile(examplePath(string(api) + ".json"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), account+".json")
		if err := os.WriteFile(path, bytes.Replace(b, []byte(`"account": "default"`), []byte(`"account": "`+account+`"`), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	example := func(account string) string { return exampleOf(messages.APIVMSAddQualification, account) }
	code, out, errOut := cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "vms.add_qualification", "--file", example("acme-vms"), "--wait")
	if code != 0 || !strings.Contains(out, `"status": "succeeded"`) || !strings.Contains(out, `"tenant": "acme"`) {
		t.Fatalf("acme files with its account: exit %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "vms.add_qualification", "--file", example("bolt-vms"), "--wait")
	if code != 1 || !strings.Contains(out, "AccountNotPermitted") {
		t.Fatalf("acme files with bolt's account: exit %d %s %s", code, out, errOut)
	}
	if n := p.Sandbox.CountCalls(messages.APIVMSAddQualification); n != 1 {
		t.Fatalf("the vendor saw %d calls, want 1", n)
	}
	// The same id, bolt's: another filing.
	if code, out, errOut = cli(t, as(bolt), "", "send", "--tenant", "bolt", "--api", "vms.add_qualification", "--file", example("bolt-vms"), "--wait"); code != 0 {
		t.Fatalf("bolt files with its account: exit %d %s %s", code, out, errOut)
	}

	// acme's files go to the file stream on its own subjects, which the
	// consumer reads.
	code, out, errOut = cli(t, as(acme), "", "send", "--tenant", "acme", "--api", "sms.apply_signature_ident", "--file",
		exampleOf(messages.APISMSApplySignatureIdent, "acme-vms"), "--inline-max", "64", "--wait")
	if code != 0 || !strings.Contains(out, `"status": "succeeded"`) || !strings.Contains(errOut, "obj://FILING_FILES/") {
		t.Fatalf("acme files with its files stored apart: exit %d %s %s", code, out, errOut)
	}

	// acme's connection, with its inbox.
	errs := make(chan error, 100)
	connect := func(u, inbox string) *nats.Conn {
		nc, err := nats.Connect(u, nats.CustomInboxPrefix(inbox), nats.PermissionErrOnSubscribe(true), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	nc := connect(as(acme), roles.TenantInbox(s, "acme"))
	key := messages.IDKey("example-vms-add-0001")
	own := "$JS.API.DIRECT.GET." + p.Streams.Results + "." + s.For("acme").Result(messages.APIVMSAddQualification) + "." + key
	if m, err := nc.Request(own, nil, 5*time.Second); err != nil || !strings.Contains(string(m.Data), `"tenant":"acme"`) {
		t.Fatalf("acme reads its own result: %v %v", m, err)
	}
	refused := func(what, subject string, do func() error) {
		t.Helper()
		err := do()
		select {
		case e := <-errs:
			if strings.Contains(e.Error(), "ermissions") && strings.Contains(e.Error(), `"`+subject+`"`) {
				return
			}
			t.Errorf("acme may %s: %v (async %v)", what, err, e)
		case <-time.After(3 * time.Second):
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("acme may %s: %v", what, err)
			}
		}
	}
	request := func(subject string) func() error {
		return func() error {
			_, err := nc.Request(subject, []byte(`{}`), 2*time.Second)
			return err
		}
	}
	subscribe := func(subject string) func() error {
		return func() error {
			sub, err := nc.SubscribeSync(subject)
			if err == nil {
				_, err = sub.NextMsg(2 * time.Second)
			}
			return err
		}
	}
	boltResult := "$JS.API.DIRECT.GET." + p.Streams.Results + "." + s.For("bolt").Result(messages.APIVMSAddQualification) + "." + key
	refused("read bolt's result", boltResult, request(boltResult))
	refused("send bolt's requests", s.For("bolt").Request(messages.APIVMSAddQualification), func() error {
		return nc.Publish(s.For("bolt").Request(messages.APIVMSAddQualification), filingtest.Example(t, messages.APIVMSAddQualification, "x"))
	})
	refused("send the default tenant's requests", s.Request(messages.APIVMSAddQualification), func() error {
		return nc.Publish(s.Request(messages.APIVMSAddQualification), filingtest.Example(t, messages.APIVMSAddQualification, "x"))
	})
	refused("read bolt's replies", roles.TenantInbox(s, "bolt")+".>", subscribe(roles.TenantInbox(s, "bolt")+".>"))
	refused("read every result", "$JS.API.CONSUMER.CREATE."+p.Streams.Results, request("$JS.API.CONSUMER.CREATE."+p.Streams.Results))
	refused("look at the file stream", "$JS.API.STREAM.INFO.FILING_FILES", request("$JS.API.STREAM.INFO.FILING_FILES"))
	refused("read a file chunk by subject", "$JS.API.DIRECT.GET.FILING_FILES.filing.file.acme.x.y.0", request("$JS.API.DIRECT.GET.FILING_FILES.filing.file.acme.x.y.0"))
	refused("purge the file stream", "$JS.API.STREAM.PURGE.FILING_FILES", request("$JS.API.STREAM.PURGE.FILING_FILES"))
	refused("hand a file over on bolt's subjects", "filing.file.bolt.x.y.0", func() error { return nc.Publish("filing.file.bolt.x.y.0", []byte("x")) })
	refused("hand a file over on the default tenant's subjects", "filing.file.x.y.0", func() error { return nc.Publish("filing.file.x.y.0", []byte("x")) })
	refused("read a result by sequence", "$JS.API.DIRECT.GET."+p.Streams.Results, request("$JS.API.DIRECT.GET."+p.Streams.Results))

	// The default tenant's submitter reaches no tenant's subjects, even
	// with a tenant's name where its api's vendor would be, or a literal
	// wildcard in a direct get's subject.
	dnc := connect(as(deflt), roles.TenantInbox(s, ""))
	nc = dnc // request uses this connection now
	forged := filingtest.Example(t, messages.APIVMSAddQualification, "example-vms-add-0001")
	refused("send a request on acme's subjects (the default's have two tokens)", "filing.request.acme.x", func() error { return dnc.Publish("filing.request.acme.x", forged) })
	acmeAll := "$JS.API.DIRECT.GET." + p.Streams.Results + ".filing.result.acme.vms.>"
	refused("read acme's results with a literal wildcard", acmeAll, request(acmeAll))
	acmeUnknown := "$JS.API.DIRECT.GET." + p.Streams.Results + ".filing.result.acme.unknown." + key
	refused("read acme's unknown-api results", acmeUnknown, request(acmeUnknown))
	if m, err := dnc.Request("$JS.API.DIRECT.GET."+p.Streams.Results+"."+s.Result(messages.APIVMSAddQualification)+"."+key, nil, 5*time.Second); err != nil || strings.Contains(string(m.Data), `"tenant"`) {
		t.Errorf("the default tenant reads a result of its own id: %v %v", m, err)
	}
}

// submitter is the submitter of tenant ("" the default tenant's).
func submitter(tenant string) roles.Grantee {
	return roles.Grantee{Role: roles.Submitter, Tenant: tenant}
}

// tenantsDeployment starts a server with the permissions `publisher
// permissions --role consumer --role submitter --tenant T ...` prints for
// tenants ("" the default tenant), a user for the consumer and each
// submitter, and a consumer (not yet running) with an account <T>-vms for
// each named tenant; it returns each grantee's URL and the consumer.
func tenantsDeployment(t *testing.T, tenants ...string) (func(roles.Grantee) string, *filingtest.Pipeline) {
	t.Helper()
	s := messages.Subjects{}
	consumer := roles.Grantee{Role: roles.Consumer}
	gs := []roles.Grantee{consumer}
	args := []string{"permissions", "--role", "consumer", "--role", "submitter"}
	accounts := map[string]string{}
	for _, tenant := range tenants {
		gs = append(gs, submitter(tenant))
		args = append(args, "--tenant", tenant)
		if tenant != "" {
			accounts[tenant+"-vms"] = tenant
		}
	}
	as := permsServer(t, s, gs, args...)
	consumerNC, _ := connectAs(t, as(consumer), roles.Consumer, s)
	return as, filingtest.New(t, filingtest.Options{NC: consumerNC, Owner: "tenants", Tenants: accounts})
}
