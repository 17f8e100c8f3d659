package filing_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

// Tests for the defects of the state-machine issue, each on the whole
// pipeline (embedded server, sandbox).

// TestPoisonSubjectAndPanicDoNotStopTheConsumer: a message on a subject
// token that is not valid UTF-8, with a body that does not decode, once
// made the metrics panic and killed the process at every redelivery. It is
// dead-lettered; a handler that panics dead-letters its message (with a
// failed result); and the consumer goes on with the next request.
func TestPoisonSubjectAndPanicDoNotStopTheConsumer(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	reg := prometheus.NewRegistry()
	var panics atomic.Int32
	p := filingtest.New(t, filingtest.Options{NC: nc, Registry: reg, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			if req.ID == "panics-1" {
				panics.Add(1)
				panic("boom")
			}
			return real.Dispatch(ctx, req)
		})
	}})
	p.Run()
	if err := nc.Publish("filing.request.\xff", []byte("\xff\xfe not json")); err != nil {
		t.Fatal(err)
	}
	p.Publish(messages.APIVMSAddQualification, "panics-1", filingtest.Example(t, messages.APIVMSAddQualification, "panics-1"))
	p.Publish(messages.APIVMSAddQualification, "after-1", filingtest.Example(t, messages.APIVMSAddQualification, "after-1"))
	filingtest.WaitFor(t, 15*time.Second, "three messages settled", func() bool { return p.Drained() && len(p.Dead()) == 2 && len(p.Results()) == 2 })

	if r := p.Results()["after-1"]; r[0].Status != messages.StatusSucceeded {
		t.Errorf("the request after the poison ones: %+v", r)
	}
	if r := p.Results()["panics-1"]; r[0].Status != messages.StatusFailed || r[0].Error.Code != "InternalError" {
		t.Errorf("the request whose handler panicked: %+v", r)
	}
	if n := panics.Load(); n != 1 {
		t.Errorf("the panicking handler ran %d times, want 1", n)
	}
	var letters []string
	for _, d := range p.Dead() {
		letters = append(letters, d.Subject+" "+d.Reason)
	}
	want := []string{"filing.dead.unknown undecodable message: not valid UTF-8", "filing.dead.vms.add_qualification internal error: boom"}
	if strings.Join(letters, "|") != strings.Join(want, "|") {
		t.Errorf("dead letters %q, want %q", letters, want)
	}
	// Every label value is valid.
	if _, err := reg.Gather(); err != nil {
		t.Errorf("metrics: %v", err)
	}
}

// TestCopiesOfOneIdSettle: many copies of one id published without
// Nats-Msg-Id once left hundreds stranded in the request stream. Each copy
// now waits in process for the one in hand and is answered from the
// ledger, on its first delivery. (The vendor answers in 300 ms, so that
// the copies surely find the id in hand: a copy handed back would show
// on every run, not only when the copies happen to race.)
func TestCopiesOfOneIdSettle(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, Concurrency: 64, Upstream: slowUpstream(300 * time.Millisecond)})
	const copies = 300
	data := filingtest.Example(t, messages.APIVMSAddQualification, "copies-1")
	for range copies {
		m := nats.NewMsg(p.Subjects.Request(messages.APIVMSAddQualification))
		m.Data = data
		if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	p.Run()
	filingtest.WaitFor(t, 20*time.Second, "every copy settled", func() bool { return p.Drained() })
	if calls := p.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
		t.Errorf("%d vendor calls for one id, want 1", calls)
	}
	if rs := p.Results()["copies-1"]; len(rs) != 1 || rs[0].Status != messages.StatusSucceeded {
		t.Errorf("results %+v, want one succeeded", rs)
	}
	evs := p.Audit("copies-1")
	if n := filingtest.CountEvents(evs, messages.EventDuplicate); n != copies-1 {
		t.Errorf("%d duplicate events, want %d", n, copies-1)
	}
	for _, ev := range evs {
		if ev.Delivery != 1 {
			t.Fatalf("a copy was delivered %d times (%s): copies must not burn deliveries", ev.Delivery, ev.Event)
		}
	}
}

// TestReusedIdIsRejected: a request that reuses the id of another request
// (another api, or the same api with another payload) is rejected with its
// own code, never answered with the other request's result.
func TestReusedIdIsRejected(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "reuse-1", filingtest.Example(t, messages.APIVMSAddQualification, "reuse-1"))
	p.WaitResults(1, 10*time.Second)
	other := filingtest.Example(t, messages.APISMSApplySignatureIdent, "reuse-1")
	m := nats.NewMsg(p.Subjects.Request(messages.APISMSApplySignatureIdent))
	m.Data = other
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// The same api with another payload.
	var env map[string]any
	_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, "reuse-1"), &env)
	env["payload"].(map[string]any)["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "另一家公司"
	changed, _ := json.Marshal(env)
	m = nats.NewMsg(p.Subjects.Request(messages.APIVMSAddQualification))
	m.Data = changed
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	filingtest.WaitFor(t, 10*time.Second, "three results", func() bool { return len(p.Results()["reuse-1"]) == 3 && p.Drained() })
	rs := p.Results()["reuse-1"]
	if rs[0].Status != messages.StatusSucceeded {
		t.Fatalf("first request: %+v", rs[0])
	}
	for _, r := range rs[1:] {
		if r.Status != messages.StatusRejected || r.Error.Code != "IdReused" || r.Result != nil {
			t.Errorf("a reuse of the id: %+v (%+v), want rejected IdReused without the first request's result", r, r.Error)
		}
	}
	if rs[1].API == rs[2].API {
		t.Errorf("the reuses' results name apis %s and %s, want each its own", rs[1].API, rs[2].API)
	}
	if n := p.Sandbox.CountCalls(""); n != 1 {
		t.Errorf("%d vendor calls, want 1", n)
	}
}

// bigRequest is a valid SMS request of about size bytes: its business
// licence is an inline file.
func bigRequest(tb testing.TB, id string, size int) []byte {
	tb.Helper()
	var env map[string]any
	if err := json.Unmarshal(filingtest.Example(tb, messages.APISMSApplySignatureIdent, id), &env); err != nil {
		tb.Fatal(err)
	}
	cert := env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)
	base, _ := json.Marshal(env)
	n := (size - len(base)) / 4 * 3
	cert["fileContent"] = "data:image/png;base64," + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x89}, n))
	out, _ := json.Marshal(env)
	return out
}

// TestOversizedDeadLetterIsNotStranded: the dead letter of a request near
// max_payload did not fit in a message, so the request sat in the stream
// with no result and no dead letter. Its body now goes to the object
// store, and the dead letter can be replayed from there.
func TestOversizedDeadLetterIsNotStranded(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	var lost atomic.Bool
	lost.Store(true)
	p := filingtest.New(t, filingtest.Options{NC: nc, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			if lost.Load() {
				return dispatch.Outcome{}, filingtest.AnswerLost(req.API) // ambiguous: dead-lettered
			}
			return real.Dispatch(ctx, req)
		})
	}})
	p.Run()
	limit := int(nc.MaxPayload())
	big := bigRequest(t, "big-1", limit-600)
	p.Publish(messages.APISMSApplySignatureIdent, "big-1", big)
	undecodable := bytes.Repeat([]byte("x"), limit-600)
	if err := nc.Publish(p.Subjects.Request(messages.APIVMSAddQualification), undecodable); err != nil {
		t.Fatal(err)
	}
	filingtest.WaitFor(t, 15*time.Second, "both dead-lettered", func() bool { return p.Drained() && len(p.Dead()) == 2 })
	for _, d := range p.Dead() {
		if d.BodyObject == "" || len(d.Data) != 0 {
			t.Fatalf("dead letter %d (%s) has %d body bytes and object %q; want its body in the object store", d.Sequence, d.RequestID, len(d.Data), d.BodyObject)
		}
		body, err := p.Objects.GetBytes(context.Background(), d.BodyObject)
		if err != nil {
			t.Fatal(err)
		}
		want := undecodable
		if d.RequestID == "big-1" {
			want = big
		}
		if !bytes.Equal(body, want) {
			t.Errorf("dead letter %s: the object store holds %d bytes, want the original %d", d.RequestID, len(body), len(want))
		}
	}
	// A letter that names another letter's object (a forged header) names
	// none: its body's object is named from its own digest.
	forged := nats.NewMsg(p.Subjects.Dead(messages.APIVMSAddQualification))
	forged.Header.Set(messages.HeaderBodyObject, p.Dead()[0].BodyObject)
	forged.Header.Set(messages.HeaderBodySHA256, strings.Repeat("ab", 32))
	forged.Header.Set(messages.HeaderOrigSequence, "7")
	if _, err := p.JS.PublishMsg(context.Background(), forged); err != nil {
		t.Fatal(err)
	}
	if dead := p.Dead(); len(dead) != 3 || dead[2].BodyObject != "" {
		t.Fatalf("the forged letter names object %q", dead[len(dead)-1].BodyObject)
	}
	// The replay reads the body back.
	lost.Store(false)
	replayed, err := p.Order(control.ActionReplay, control.Order{RequestID: "big-1", Force: true})
	if err != nil || len(replayed.Items) != 1 || replayed.Items[0].Skipped != "" {
		t.Fatalf("replay: %+v %v", replayed, err)
	}
	filingtest.WaitFor(t, 10*time.Second, "the replay succeeded", func() bool {
		f, ok := filingtest.Final(p.Results()["big-1"])
		return ok && f.Status == messages.StatusSucceeded
	})
}

// cutAfter cuts a replica off the broker right after one ledger write to
// state lands, and reports that write as failed: the write that timed out
// but landed.
type cutAfter struct {
	filing.Ledger
	f    *filingtest.Faults
	to   ledger.State
	once sync.Once
}

func (c *cutAfter) Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error) {
	out, err := c.Ledger.Put(ctx, prev, next)
	cut := false
	if next.State == c.to && err == nil {
		c.once.Do(func() { c.f.Cut(); cut = true })
	}
	if cut {
		return ledger.Entry{}, filingtest.ErrLostReply
	}
	return out, err
}

// ClaimEntry cuts after a claim that creates the entry in state to (a
// request's first move to "calling" is its claim).
func (c *cutAfter) ClaimEntry(ctx context.Context, e ledger.Entry) (ledger.Entry, bool, error) {
	out, created, err := c.Ledger.ClaimEntry(ctx, e)
	cut := false
	if created && out.State == c.to && err == nil {
		c.once.Do(func() { c.f.Cut(); cut = true })
	}
	if cut {
		return ledger.Entry{}, false, filingtest.ErrLostReply
	}
	return out, created, err
}

// twoReplicas starts replica a (cut off at will, one handler) and replica
// b on one embedded server; a's recording budget outlasts the cut.
func twoReplicas(t *testing.T, aUpstream func(filing.Dispatcher) filing.Dispatcher, aLedger func(*ledger.Ledger, *filingtest.Faults) filing.Ledger) (a, b *filingtest.Pipeline, fa *filingtest.Faults) {
	_, nc, srv := natstest.JetStream(t)
	fa = &filingtest.Faults{}
	quick := func(cfg *filing.Config) {
		cfg.PublishTimeout, cfg.RecordTimeout, cfg.CallTimeout = 300*time.Millisecond, 30*time.Second, 2*time.Second
	}
	a = filingtest.New(t, filingtest.Options{NC: nc, Owner: "replica-a", AckWait: time.Second, Concurrency: 1, Faults: fa, Config: quick,
		Upstream: aUpstream, Ledger: func(l *ledger.Ledger) filing.Ledger {
			if aLedger == nil {
				return l
			}
			return aLedger(l, fa)
		}})
	b = filingtest.New(t, filingtest.Options{NC: natstest.Connect(t, srv), Owner: "replica-b", AckWait: time.Second, Sandbox: a.Sandbox, Config: quick})
	return a, b, fa
}

// settledAfterAmbiguous waits for another replica's ambiguous result, heals
// the cut replica, and checks that its knowledge settled the request: one
// vendor call, a final succeeded result that supersedes the ambiguous one,
// and a settled audit event.
func settledAfterAmbiguous(t *testing.T, a, b *filingtest.Pipeline, fa *filingtest.Faults, id string) {
	t.Helper()
	filingtest.WaitFor(t, 15*time.Second, "replica b records the request as ambiguous", func() bool {
		rs := b.Results()[id]
		return len(rs) == 1 && rs[0].Error != nil && rs[0].Error.Class == messages.ClassAmbiguous
	})
	ambiguous := b.Results()[id][0]
	fa.Heal()
	filingtest.WaitFor(t, 20*time.Second, "replica a settles it", func() bool { return len(b.Results()[id]) == 2 && b.Drained() })
	rs := b.Results()[id]
	final, ok := filingtest.Final(rs)
	if !ok || final.Status != messages.StatusSucceeded || !final.Supersedes.Equal(ambiguous.CompletedAt) || !final.CompletedAt.After(ambiguous.CompletedAt) {
		t.Fatalf("results %s; want a later succeeded one superseding the ambiguous one", statuses(rs))
	}
	if calls := a.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
		t.Errorf("the vendor saw %d calls, want 1", calls)
	}
	if n := filingtest.CountEvents(b.Audit(id), messages.EventSettled); n != 1 {
		t.Errorf("%d settled events, want 1", n)
	}
	if e, err := b.Ledger.Get(context.Background(), "", id); err != nil || e.Result == nil || e.Result.Status != messages.StatusSucceeded {
		t.Errorf("ledger: %+v %v", e, err)
	}
}

// TestKnownSuccessSettlesAmbiguous (defect 12): a replica that got the
// vendor's success but was cut off before recording it, while the other
// replica took the redelivery and recorded "ambiguous", settles the request
// once it is back: its result supersedes the ambiguous one.
func TestKnownSuccessSettlesAmbiguous(t *testing.T) {
	var fa *filingtest.Faults
	a, b, f := twoReplicas(t, func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			out, err := real.Dispatch(ctx, req)
			fa.Cut() // the answer is in; the broker is gone
			return out, err
		})
	}, nil)
	fa = f
	a.Run()
	id := "known-1"
	a.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 10*time.Second, "replica a called the vendor", func() bool { return a.Sandbox.CountCalls(messages.APIVMSAddQualification) == 1 })
	b.Run()
	settledAfterAmbiguous(t, a, b, fa, id)
}

// TestUnsentCallSettlesAmbiguous (defect 13): a replica whose "calling"
// write timed out but landed never called; the other replica took the
// redelivery and recorded "ambiguous". The first one knows nothing was
// sent under that write, so once back it files the request, once, and its
// result supersedes the ambiguous one.
func TestUnsentCallSettlesAmbiguous(t *testing.T) {
	a, b, fa := twoReplicas(t, nil, func(l *ledger.Ledger, f *filingtest.Faults) filing.Ledger {
		return &cutAfter{Ledger: l, f: f, to: ledger.StateCalling}
	})
	a.Run()
	id := "unsent-1"
	a.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 10*time.Second, "replica a's calling write landed", func() bool {
		e, err := a.Ledger.Get(context.Background(), "", id)
		return err == nil && e.State == ledger.StateCalling
	})
	b.Run()
	settledAfterAmbiguous(t, a, b, fa, id)
	if calls := a.Sandbox.Calls(); len(calls) != 1 || !strings.Contains(string(calls[0].Body), "QualificationEntity") {
		t.Errorf("vendor calls %d", len(calls))
	}
}
