package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Operators' orders against the whole pipeline (embedded server, sandbox,
// the consumer serving its control service).

// failing is a running pipeline whose vendor fails every call with err
// until fail is cleared; each request is delivered once. opts, if any,
// adjust its options.
func failing(t *testing.T, err error, opts ...func(*filingtest.Options)) (*filingtest.Pipeline, *atomic.Bool) {
	t.Helper()
	_, nc, _ := natstest.JetStream(t)
	var fail atomic.Bool
	fail.Store(true)
	o := filingtest.Options{NC: nc, MaxDeliver: 1, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			if fail.Load() {
				return dispatch.Outcome{}, err
			}
			return real.Dispatch(ctx, req)
		})
	}}
	for _, f := range opts {
		f(&o)
	}
	p := filingtest.New(t, o)
	p.Run()
	return p, &fail
}

// deadFiling files id and waits for its dead letter.
func deadFiling(t *testing.T, p *filingtest.Pipeline, id string) {
	t.Helper()
	p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 10*time.Second, "dead-lettered", func() bool {
		for _, d := range p.Dead() {
			if d.RequestID == id {
				return p.Drained()
			}
		}
		return false
	})
}

// TestConcurrentReplaysDuringACallFileOnce: an operator's replay used to
// purge the ledger entry while the consumer was calling, so that the
// consumer's success could not be recorded and the next delivery called
// the vendor again. Replays re-arm the entry with compare-and-set (of two
// at once, one wins), and a known outcome is recorded over an entry that a
// forced replay re-armed mid-call: one call.
func TestConcurrentReplaysDuringACallFileOnce(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	inCall := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var fail atomic.Bool
	fail.Store(true)
	p := filingtest.New(t, filingtest.Options{NC: nc, MaxDeliver: 1, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			if fail.Load() {
				return dispatch.Outcome{}, fmt.Errorf("SystemError: %w", retry.ErrTransient)
			}
			once.Do(func() { close(inCall); <-release })
			return real.Dispatch(ctx, req)
		})
	}})
	p.Run()
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before the consumer stops
	id := "replay-race-1"
	deadFiling(t, p, id)
	letter := p.Dead()[0]
	fail.Store(false)

	// Two operators replay at once.
	var wg sync.WaitGroup
	replays := make([]control.Report, 2)
	for i := range replays {
		wg.Go(func() { replays[i], _ = p.Order(control.ActionReplay, control.Order{RequestID: id}) })
	}
	wg.Wait()
	t.Logf("two replays at once: %+v; %+v", replays[0], replays[1])
	<-inCall
	// A third operator, with a copy of the letter, forces a replay while
	// the vendor is being called.
	m := nats.NewMsg(letter.Subject)
	m.Data = letter.Data
	m.Header.Set(messages.HeaderRequestID, id)
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	forced, err := p.Order(control.ActionReplay, control.Order{RequestID: id, Force: true})
	if err != nil || len(forced.Items) != 1 || forced.Items[0].Skipped != "" {
		t.Fatalf("forced replay during the call: %+v %v", forced, err)
	}
	released.Do(func() { close(release) })
	filingtest.WaitFor(t, 15*time.Second, "settled", func() bool {
		f, ok := filingtest.Final(p.Results()[id])
		return ok && f.Status == messages.StatusSucceeded && p.Drained()
	})
	if calls := p.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
		t.Fatalf("the vendor saw %d AddQualification calls, want 1", calls)
	}
}

// TestForgedDeadLetterCannotRedirectAReplay: a dead letter is untrusted:
// its headers cannot send a replay elsewhere or purge another request's
// ledger entry, and a body that is not the recorded request is refused.
func TestForgedDeadLetterCannotRedirectAReplay(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "victim-1", filingtest.Example(t, messages.APIVMSAddQualification, "victim-1"))
	p.WaitResults(1, 10*time.Second)
	sub, err := nc.SubscribeSync("evil.>")
	if err != nil {
		t.Fatal(err)
	}
	forge := func(body []byte) {
		m := nats.NewMsg(p.Subjects.Dead(messages.APIVMSAddQualification))
		m.Data = body
		m.Header.Set(messages.HeaderOrigSubject, "evil.subject")
		m.Header.Set(messages.HeaderRequestID, "victim-1")
		m.Header.Set(messages.HeaderDeadClass, messages.ClassTransient)
		if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	forge([]byte("arbitrary bytes"))
	var env map[string]any
	_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, "victim-1"), &env)
	env["payload"].(map[string]any)["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "冒名公司"
	other, _ := json.Marshal(env)
	forge(other)
	forge(filingtest.Example(t, messages.APISMSApplySignatureIdent, "other-1"))

	out, err := p.Order(control.ActionReplay, control.Order{All: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range out.Items {
		t.Logf("dead seq %d: id %q done %q skipped %q", it.Seq, it.RequestID, it.Done, it.Skipped)
		if it.Skipped == "" && (it.RequestID != "other-1" || !strings.Contains(it.Done, p.Subjects.Request(messages.APISMSApplySignatureIdent)+" ")) {
			t.Errorf("replayed %+v", it)
		}
	}
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("a replay was published to %s", m.Subject)
	}
	if e, err := p.Ledger.Get(context.Background(), "", "victim-1"); err != nil || e.State != ledger.StateDone || e.Result.Status != messages.StatusSucceeded {
		t.Errorf("the victim's ledger entry: %+v %v", e, err)
	}
}

// lastEvents are the last n events of id's trail as stored.
func lastEvents(p *filingtest.Pipeline, id string, n int) []messages.AuditEvent {
	evs := p.Audit(id)
	return evs[max(0, len(evs)-n):]
}

// TestResolveEndsTheTrailWithTheDecision: an operator's decision on a
// failed filing is its outcome from then on: the ledger answers a copy of
// the request with it, the result stream's latest result carries it, and
// the trail ends with it, the operator's name taken from the subject and
// the reason from the order; the filing's dead letter is removed on the
// record; giving the order again records nothing twice.
func TestResolveEndsTheTrailWithTheDecision(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		order   control.Order
		status  messages.Status
		failure string // the class of the outcome resolved
	}{
		{"ambiguous, found filed", fmt.Errorf("cut off: %w", retry.ErrAmbiguous),
			control.Order{Decision: messages.DecisionFiled, Record: "QUA-FOUND-1", Reason: "the console lists it, filed at 10:02"},
			messages.StatusSucceeded, messages.ClassAmbiguous},
		{"retries exhausted, abandoned", fmt.Errorf("SystemError: %w", retry.ErrTransient),
			control.Order{Decision: messages.DecisionAbandoned, Reason: "the merchant withdrew"},
			messages.StatusFailed, messages.ClassTransient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := failing(t, tc.err)
			id := "resolve-1"
			deadFiling(t, p, id)
			first, _ := filingtest.Final(p.Results()[id])
			if first.Error == nil || first.Error.Class != tc.failure {
				t.Fatalf("the outcome to resolve: %+v", first)
			}
			o := tc.order
			o.RequestID = id
			rep, err := p.Order(control.ActionResolve, o)
			if err != nil || len(rep.Items) != 2 || !strings.HasPrefix(rep.Items[0].Done, "resolved") || rep.Items[1].Done != "removed" {
				t.Fatalf("resolve: %+v %v", rep, err)
			}
			filingtest.WaitFor(t, 5*time.Second, "the resolution's result", func() bool {
				f, _ := filingtest.Final(p.Results()[id])
				return f.Resolution != nil
			})
			final, _ := filingtest.Final(p.Results()[id])
			r := final.Resolution
			if final.Status != tc.status || !final.Supersedes.Equal(first.CompletedAt) || r.Operator != filingtest.Operator ||
				r.Reason != o.Reason || r.Decision != o.Decision || r.Record != o.Record {
				t.Fatalf("the final result %+v, resolution %+v", final, r)
			}
			if tc.status == messages.StatusFailed && (final.Error == nil || final.Error.Code != "Abandoned") {
				t.Fatalf("an abandoned filing's error: %+v", final.Error)
			}
			if len(p.Dead()) != 0 {
				t.Fatalf("dead letters left: %+v", p.Dead())
			}
			evs := lastEvents(p, id, 2)
			if len(evs) != 2 || evs[0].Event != messages.EventResolved || evs[0].Operator != filingtest.Operator || evs[0].Reason != o.Reason ||
				evs[0].Status != tc.status || evs[1].Event != messages.EventDeadRemoved || evs[1].Operator != filingtest.Operator {
				t.Fatalf("the trail ends %+v", evs)
			}
			// Again: nothing new is recorded.
			before := len(p.Audit(id))
			again, err := p.Order(control.ActionResolve, o)
			if err != nil || len(again.Items) != 1 || !strings.HasPrefix(again.Items[0].Done, "already resolved") {
				t.Fatalf("resolve again: %+v %v", again, err)
			}
			// A copy of the request is answered with the decision, the
			// vendor not called again.
			calls := p.Sandbox.CountCalls("")
			p.Publish(messages.APIVMSAddQualification, id+"-copy", filingtest.Example(t, messages.APIVMSAddQualification, id))
			filingtest.WaitFor(t, 5*time.Second, "the copy answered", func() bool {
				return filingtest.CountEvents(p.Audit(id), messages.EventDuplicate) == 1 && p.Drained()
			})
			if n := p.Sandbox.CountCalls(""); n != calls {
				t.Fatalf("the vendor was called %d times for the copy", n-calls)
			}
			if n := len(p.Audit(id)); n != before+1 {
				t.Fatalf("%d events after the order again and a copy, want %d", n, before+1)
			}
			e, err := p.Ledger.Get(context.Background(), "", id)
			if err != nil || e.Result.Resolution == nil || e.Emitted != len(e.Trail) {
				t.Fatalf("the ledger entry: %+v %v", e, err)
			}
		})
	}
}

// TestResolveRefusesWhatIsNotTheOperatorsToDecide: a success, a
// rejection and a filing without an outcome are not resolved; an id never
// received is no match.
func TestResolveRefusesWhatIsNotTheOperatorsToDecide(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "ok-1", filingtest.Example(t, messages.APIVMSAddQualification, "ok-1"))
	p.Publish(messages.APIVMSAddQualification, "bad-1", []byte(`{"id":"bad-1","api":"vms.add_qualification","payload":{}}`))
	p.WaitResults(2, 10*time.Second)
	if _, _, err := p.Ledger.Claim(context.Background(), "held-1", messages.APIVMSAddQualification, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	abandon := control.Order{Decision: messages.DecisionAbandoned, Reason: "no"}
	for id, want := range map[string]string{"ok-1": "it succeeded", "bad-1": "", "held-1": "it has no outcome yet"} {
		o := abandon
		o.RequestID = id
		rep, err := p.Order(control.ActionResolve, o)
		if id == "bad-1" { // a rejection is recorded by the stream, not the ledger
			if !errors.Is(err, control.ErrNoMatch) {
				t.Errorf("%s: %+v %v, want ErrNoMatch", id, rep, err)
			}
			continue
		}
		if err != nil || len(rep.Items) != 1 || !strings.HasPrefix(rep.Items[0].Skipped, want) {
			t.Errorf("%s: %+v %v, want skipped %q", id, rep, err, want)
		}
	}
	o := abandon
	o.RequestID = "never-1"
	if _, err := p.Order(control.ActionResolve, o); !errors.Is(err, control.ErrNoMatch) {
		t.Errorf("an id never received: %v, want ErrNoMatch", err)
	}
}

// TestRemoveIsOnTheRecord: a removed dead letter leaves an event with the
// operator bound by the subject (whatever the body claims) and the
// reason; an undecodable message's letter too.
func TestRemoveIsOnTheRecord(t *testing.T) {
	p, _ := failing(t, fmt.Errorf("SystemError: %w", retry.ErrTransient))
	deadFiling(t, p, "rm-1")
	p.Publish(messages.APIVMSAddQualification, "junk", []byte("\xff not json"))
	filingtest.WaitFor(t, 10*time.Second, "two dead letters", func() bool { return len(p.Dead()) == 2 && p.Drained() })
	junk := p.Dead()[1]
	// A body that claims another operator is read for its order only.
	p.Order(control.ActionRemove, control.Order{Seq: 999999}) // wait for the service
	m := nats.NewMsg(control.Subject(p.Subjects, "bob", control.ActionRemove))
	m.Data = []byte(`{"request_id":"rm-1","reason":"filed by hand","operator":"alice"}`)
	reply, err := p.OperatorConn().RequestMsg(m, 10*time.Second)
	if err != nil || reply.Header.Get(control.HeaderErrorCode) != "" {
		t.Fatalf("remove: %v %v %s", err, reply.Header, reply.Data)
	}
	evs := lastEvents(p, "rm-1", 1)
	if len(evs) != 1 || evs[0].Event != messages.EventDeadRemoved || evs[0].Operator != "bob" || evs[0].Reason != "filed by hand" || evs[0].Seq == 0 {
		t.Fatalf("the trail ends %+v", evs)
	}
	rep, err := p.Order(control.ActionRemove, control.Order{Seq: junk.Sequence, Reason: "not a request"})
	if err != nil || len(rep.Items) != 1 || rep.Items[0].Done != "removed" {
		t.Fatalf("remove the undecodable letter: %+v %v", rep, err)
	}
	if len(p.Dead()) != 0 {
		t.Fatalf("dead letters left: %+v", p.Dead())
	}
	if _, err := p.Order(control.ActionRemove, control.Order{RequestID: "rm-1"}); !errors.Is(err, control.ErrNoMatch) {
		t.Fatalf("removing it again: %v, want ErrNoMatch", err)
	}
}

// TestOrdersAreChecked: an order that breaks a rule is refused, by the
// client and again by the service, naming what is wrong.
func TestOrdersAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name   string
		action control.Action
		order  control.Order
		field  string
	}{
		{"no reason", control.ActionRemove, control.Order{Seq: 1}, "reason"},
		{"blank reason", control.ActionReplay, control.Order{Seq: 1, Reason: "  "}, "reason"},
		{"nothing chosen", control.ActionReplay, control.Order{Reason: "r"}, "request_id"},
		{"two chosen", control.ActionRemove, control.Order{Seq: 1, RequestID: "a", Reason: "r"}, "request_id"},
		{"remove all", control.ActionRemove, control.Order{All: true, Reason: "r"}, "request_id"},
		{"resolve without decision", control.ActionResolve, control.Order{RequestID: "a", Reason: "r"}, "decision"},
		{"filed without record", control.ActionResolve, control.Order{RequestID: "a", Decision: messages.DecisionFiled, Reason: "r"}, "record"},
		{"abandoned with record", control.ActionResolve, control.Order{RequestID: "a", Decision: messages.DecisionAbandoned, Record: "x", Reason: "r"}, "record"},
		{"resolve by seq", control.ActionResolve, control.Order{Seq: 3, Decision: messages.DecisionAbandoned, Reason: "r"}, "request_id"},
		{"forced remove", control.ActionRemove, control.Order{Seq: 1, Force: true, Reason: "r"}, "force"},
		{"bad id", control.ActionReplay, control.Order{RequestID: "a b", Reason: "r"}, "request_id"},
		{"unknown action", "purge", control.Order{Seq: 1, Reason: "r"}, "action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.order.Validate(tc.action)
			var ve *messages.ValidationError
			if !errors.Is(err, control.ErrInvalidOrder) || !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("Validate: %v, want ErrInvalidOrder naming %s", err, tc.field)
			}
		})
	}
	// The service checks again what a client did not.
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Order(control.ActionRemove, control.Order{Seq: 999999}) // wait for the service
	for subject, body := range map[string]string{
		control.Subject(p.Subjects, "bob", control.ActionRemove):  `{"seq":1}`,
		control.Subject(p.Subjects, "bob", control.ActionResolve): `not json`,
		control.Subject(p.Subjects, "b$b", control.ActionRemove):  `{"seq":1,"reason":"r"}`,
	} {
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		reply, err := p.OperatorConn().RequestMsg(m, 10*time.Second)
		if err != nil || reply.Header.Get(control.HeaderErrorCode) != "400" {
			t.Errorf("%s %s: %v %v", subject, body, err, reply.Header)
		}
	}
}

// TestOrdersOnATenantsFiling: a tenant's dead letter is replayed on its
// tenant's subject, and its filing resolved in its tenant's ledger and
// trail; the same id of another tenant is not touched.
func TestOrdersOnATenantsFiling(t *testing.T) {
	p, fail := failing(t, fmt.Errorf("SystemError: %w", retry.ErrTransient), func(o *filingtest.Options) { o.Tenants = map[string]string{"acme-vms": "acme"} })
	const api = messages.APIVMSAddQualification
	for _, tenant := range []string{"acme", ""} {
		var m map[string]any
		_ = json.Unmarshal(filingtest.Example(t, api, "x-1"), &m)
		if tenant != "" {
			m["account"] = "acme-vms"
		}
		msg := nats.NewMsg(p.Subjects.For(tenant).Request(api))
		msg.Data, _ = json.Marshal(m)
		if _, err := p.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	filingtest.WaitFor(t, 10*time.Second, "two dead letters", func() bool { return len(p.Dead()) == 2 && p.Drained() })
	fail.Store(false)
	rep, err := p.Order(control.ActionReplay, control.Order{RequestID: "x-1", Tenant: "acme"})
	if err != nil || len(rep.Items) != 1 || !strings.Contains(rep.Items[0].Done, p.Subjects.For("acme").Request(api)+" ") {
		t.Fatalf("replay of acme's x-1: %+v %v", rep, err)
	}
	filingtest.WaitFor(t, 10*time.Second, "acme's x-1 filed", func() bool {
		e, err := p.Ledger.Get(context.Background(), "acme", "x-1")
		return err == nil && e.Result != nil && e.Result.Status == messages.StatusSucceeded && p.Drained()
	})
	rep, err = p.Order(control.ActionResolve, control.Order{RequestID: "x-1", Decision: messages.DecisionAbandoned, Reason: "withdrawn"})
	if err != nil || len(rep.Items) != 2 {
		t.Fatalf("resolve the default tenant's x-1: %+v %v", rep, err)
	}
	acme, err := p.Ledger.Get(context.Background(), "acme", "x-1")
	if err != nil || acme.Result.Resolution != nil || acme.Result.Status != messages.StatusSucceeded {
		t.Fatalf("acme's x-1 after the default tenant's was resolved: %+v %v", acme, err)
	}
	for _, ev := range p.Audit("x-1") {
		if ev.Event == messages.EventReplayed && ev.Tenant != "acme" || ev.Event == messages.EventResolved && ev.Tenant != "" {
			t.Errorf("event %s of tenant %q", ev.Event, ev.Tenant)
		}
	}
	if len(p.Dead()) != 0 {
		t.Fatalf("dead letters left: %+v", p.Dead())
	}
}
