package filing_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// TestTenantsFileOnlyWithTheirOwnAccounts: a request is filed only with
// an account of the tenant whose subject it came on, and is otherwise
// rejected with its own code and never sent; a tenant's ids, results,
// trail and reply inbox are its own.
func TestTenantsFileOnlyWithTheirOwnAccounts(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, Tenants: map[string]string{"acme-vms": "acme", "bolt-vms": "bolt"}})
	p.Run()
	const api = messages.APIVMSAddQualification
	send := func(tenant, id, account, replyTo string) {
		t.Helper()
		var m map[string]any
		_ = json.Unmarshal(filingtest.Example(t, api, id), &m)
		m["account"] = account
		if replyTo != "" {
			m["reply_to"] = replyTo
		}
		data, _ := json.Marshal(m)
		subject := p.Subjects.For(tenant).Request(api)
		if tenant == "vmss" { // a typo of the default tenant's, not a tenant of this deployment
			subject = "filing.request.vmss.add_qualification"
		}
		msg := nats.NewMsg(subject)
		msg.Data = data
		if _, err := p.JS.PublishMsg(context.Background(), msg, jetstream.WithMsgID(tenant+"/"+id+"/"+account)); err != nil {
			t.Fatal(err)
		}
	}
	type want struct {
		tenant, id string
		status     messages.Status
		code       string
	}
	cases := []struct {
		tenant, id, account, replyTo string
		want                         want
	}{
		{"acme", "t-1", "acme-vms", "", want{"acme", "t-1", messages.StatusSucceeded, ""}},
		{"bolt", "t-1", "bolt-vms", "", want{"bolt", "t-1", messages.StatusSucceeded, ""}}, // the same id: another tenant's filing
		{"acme", "t-2", "bolt-vms", "", want{"acme", "t-2", messages.StatusRejected, "AccountNotPermitted"}},
		{"acme", "t-3", "default", "", want{"acme", "t-3", messages.StatusRejected, "AccountNotPermitted"}},
		{"acme", "t-4", "nope", "", want{"acme", "t-4", messages.StatusRejected, "AccountNotPermitted"}},
		{"", "t-5", "acme-vms", "", want{"", "t-5", messages.StatusRejected, "AccountNotPermitted"}},
		{"", "t-6", "default", "", want{"", "t-6", messages.StatusSucceeded, ""}},
		{"acme", "t-7", "acme-vms", "_INBOX.filing.submitter.x", want{"acme", "t-7", messages.StatusRejected, "InvalidRequest"}},
		{"acme", "t-8", "acme-vms", "_INBOX.filing.tenant.bolt.x", want{"acme", "t-8", messages.StatusRejected, "InvalidRequest"}},
		{"acme", "t-9", "acme-vms", "_INBOX.filing.tenant.acme.x", want{"acme", "t-9", messages.StatusSucceeded, ""}},
		{"vmss", "t-10", "default", "", want{"", "t-10", messages.StatusRejected, "InvalidRequest"}},
	}
	for _, c := range cases {
		send(c.tenant, c.id, c.account, c.replyTo)
	}
	filingtest.WaitFor(t, 15*time.Second, "every result", func() bool { return len(p.StreamMsgs(p.Streams.Results)) >= len(cases) && p.Drained() })
	got := map[string]messages.Result{}
	for _, m := range p.StreamMsgs(p.Streams.Results) {
		var r messages.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if m.Subject != p.Subjects.For(r.Tenant).ResultFor(api, r.RequestID) {
			t.Errorf("the result of %s/%s is on %s", r.Tenant, r.RequestID, m.Subject)
		}
		got[r.Tenant+"/"+r.RequestID] = r
	}
	for _, c := range cases {
		r, ok := got[c.want.tenant+"/"+c.want.id]
		code := ""
		if r.Error != nil {
			code = r.Error.Code
		}
		if !ok || r.Status != c.want.status || code != c.want.code {
			t.Errorf("%s on tenant %q with %s: %+v, want %s %s", c.id, c.tenant, c.account, r, c.want.status, c.want.code)
		}
	}
	if n := p.Sandbox.CountCalls(api); n != 4 {
		t.Errorf("the vendor saw %d calls, want 4 (t-1 twice, t-6, t-9)", n)
	}
	// Each tenant's trail of t-1 is its own.
	for _, tenant := range []string{"acme", "bolt"} {
		tr, err := operator.ReadTrail(context.Background(), p.JS, p.Ledger, nil, p.Subjects.For(tenant), "t-1")
		if err != nil || tr.Entry == nil || tr.Entry.Tenant != tenant || len(tr.Results) != 1 || len(tr.Events) != 3 {
			t.Fatalf("%s's trail of t-1: %+v %v", tenant, tr, err)
		}
		for _, ev := range tr.Events {
			if ev.Tenant != tenant || ev.Subject != p.Subjects.For(tenant).Audit(api, ev.Event, "t-1") {
				t.Errorf("%s's trail holds %+v", tenant, ev)
			}
		}
	}
	if tr, err := operator.ReadTrail(context.Background(), p.JS, p.Ledger, nil, p.Subjects, "t-1"); err != nil || tr.Entry != nil || len(tr.Events)+len(tr.Results) != 0 {
		t.Errorf("the default tenant's trail of t-1: %+v %v", tr, err)
	}
}
