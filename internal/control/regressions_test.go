package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Defects a review of the control service found, each kept from coming
// back.

// TestAnOrderPublishesOnlyItsOwnEvents: the writer of a done entry
// publishes its trail without noting it out; an order on it publishes its
// own event only, never the outcome's again (past the audit stream's
// duplicate window they would be stored twice, and counted twice at once).
func TestAnOrderPublishesOnlyItsOwnEvents(t *testing.T) {
	for _, a := range []control.Action{control.ActionRemove, control.ActionResolve} {
		t.Run(string(a), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			p, _ := failing(t, fmt.Errorf("SystemError: %w", retry.ErrTransient), func(o *filingtest.Options) { o.Registry = reg })
			id := "dup-1"
			deadFiling(t, p, id)
			ctx := context.Background()
			// Past the duplicate window: shrink it.
			s, err := p.JS.Stream(ctx, p.Streams.Audit)
			if err != nil {
				t.Fatal(err)
			}
			cfg := s.CachedInfo().Config
			cfg.Duplicates = 100 * time.Millisecond
			if _, err := p.JS.UpdateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			before := counter(reg, "qualfile_dead_letters_total")
			o := control.Order{RequestID: id, Reason: "r"}
			if a == control.ActionResolve {
				o.Decision = messages.DecisionAbandoned
			}
			if _, err := p.Order(a, o); err != nil {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for _, ev := range p.Audit(id) {
				if seen[ev.ID]++; seen[ev.ID] > 1 {
					t.Errorf("event %s %d stored twice", ev.Event, ev.Seq)
				}
			}
			if after := counter(reg, "qualfile_dead_letters_total"); after != before {
				t.Errorf("dead_letters_total %v -> %v after an order", before, after)
			}
		})
	}
}

func counter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// TestAReplayOfAClaimedEntryIsRecorded: a letter whose entry is only
// claimed is replayed without moving the entry; its event goes out beside
// the trail.
func TestAReplayOfAClaimedEntryIsRecorded(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	id := "claimed-1"
	if _, _, err := p.Ledger.Claim(context.Background(), id, messages.APIVMSAddQualification, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(p.Subjects.Dead(messages.APIVMSAddQualification))
	m.Data = filingtest.Example(t, messages.APIVMSAddQualification, id)
	m.Header.Set(messages.HeaderRequestID, id)
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Order(control.ActionReplay, control.Order{RequestID: id, Reason: "vendor back"})
	if err != nil || len(rep.Items) != 1 || rep.Items[0].Skipped != "" {
		t.Fatalf("replay: %+v %v", rep, err)
	}
	filingtest.WaitFor(t, 10*time.Second, "settled", func() bool { return len(p.Results()[id]) > 0 && p.Drained() })
	evs := p.Audit(id)
	if n := filingtest.CountEvents(evs, messages.EventReplayed); n != 1 {
		t.Fatalf("1 replay carried out, %d replayed events", n)
	}
}

// TestAskKeepsThePartialReport: what was done before a failure reaches
// the operator with the failure.
func TestAskKeepsThePartialReport(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	s := messages.Subjects{}
	sub, err := nc.Subscribe(control.Subject(s, "alice", control.ActionReplay), func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(control.HeaderErrorCode, "503")
		r.Header.Set(control.HeaderError, "publishing the request: timeout")
		r.Data = []byte(`{"items":[{"seq":1,"request_id":"a","done":"replayed as filing.request.x seq 9"}]}`)
		_ = m.RespondMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	rep, err := control.Ask(context.Background(), nc, s, "alice", control.ActionReplay, control.Order{All: true, Reason: "r"})
	if !errors.Is(err, control.ErrUnavailable) || len(rep.Items) != 1 || rep.Items[0].Done == "" {
		t.Fatalf("%+v %v", rep, err)
	}
}

// slowDone holds the pipeline once, right after its write of a done entry
// landed: the replica is still to publish the dead letter, the events and
// the result.
type slowDone struct {
	filing.Ledger
	wrote, hold chan struct{}
	once        sync.Once
}

func (s *slowDone) Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error) {
	e, err := s.Ledger.Put(ctx, prev, next)
	if err == nil && next.State == ledger.StateDone {
		s.once.Do(func() { close(s.wrote); <-s.hold })
	}
	return e, err
}

// TestAnOutcomeGoingOutIsNotResolved: an operator cannot resolve a
// filing whose writer has yet to publish its dead letter and result (the
// trail already readable): told to try again, and once it is settled the
// resolution removes the letter and its result is the last. An abandoned
// filing is replayed only by force.
func TestAnOutcomeGoingOutIsNotResolved(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	sd := &slowDone{wrote: make(chan struct{}), hold: make(chan struct{})}
	p := filingtest.New(t, filingtest.Options{NC: nc, MaxDeliver: 1,
		Ledger: func(l *ledger.Ledger) filing.Ledger { sd.Ledger = l; return sd },
		Upstream: func(filing.Dispatcher) filing.Dispatcher {
			return filingtest.DispatcherFunc(func(context.Context, *messages.Request) (dispatch.Outcome, error) {
				return dispatch.Outcome{}, fmt.Errorf("cut off: %w", retry.ErrAmbiguous)
			})
		}})
	p.Run()
	var released sync.Once
	release := func() { released.Do(func() { close(sd.hold) }) }
	t.Cleanup(release)
	id := "race-1"
	p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	<-sd.wrote
	abandon := control.Order{RequestID: id, Decision: messages.DecisionAbandoned, Reason: "give up"}
	if rep, err := p.Order(control.ActionResolve, abandon); !errors.Is(err, control.ErrUnavailable) || !strings.Contains(err.Error(), "still being settled") {
		t.Fatalf("resolve while the outcome goes out: %+v %v", rep, err)
	}
	release()
	filingtest.WaitFor(t, 10*time.Second, "dead-lettered and settled", func() bool { return len(p.Dead()) == 1 && p.Drained() })
	letter := p.Dead()[0]
	if rep, err := p.Order(control.ActionResolve, abandon); err != nil || len(rep.Items) != 2 {
		t.Fatalf("resolve once settled: %+v %v", rep, err)
	}
	rs := p.Results()[id]
	if len(p.Dead()) != 0 || rs[len(rs)-1].Resolution == nil {
		t.Fatalf("dead letters %d; the last result %+v", len(p.Dead()), rs[len(rs)-1])
	}
	// A copy of its letter is not replayed without force: the vendor may
	// hold it.
	m := nats.NewMsg(letter.Subject)
	m.Data = letter.Data
	m.Header.Set(messages.HeaderRequestID, id)
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Order(control.ActionReplay, control.Order{All: true, Reason: "tidy up"})
	if err != nil || len(rep.Items) != 1 || !rep.Items[0].Forcible || !strings.Contains(rep.Items[0].Skipped, "resolved by") {
		t.Fatalf("replay of an abandoned filing without force: %+v %v", rep, err)
	}
}

// TestOrdersAnsweredOnlyIntoTheOperatorsInbox: the consumer answers with
// its own rights, so an order whose reply subject is not the operators'
// inbox (a ledger key, a stream API) is not served.
func TestOrdersAnsweredOnlyIntoTheOperatorsInbox(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "victim-1", filingtest.Example(t, messages.APIVMSAddQualification, "victim-1"))
	p.WaitResults(1, 10*time.Second)
	p.Order(control.ActionRemove, control.Order{Seq: 999999}) // wait for the service
	for _, reply := range []string{"$KV." + p.Buckets.Ledger + ".victim-1", "$JS.API.STREAM.DELETE." + p.Streams.Requests, "_INBOX.elsewhere"} {
		m := nats.NewMsg(control.Subject(p.Subjects, "alice", control.ActionRemove))
		m.Reply = reply
		m.Data = []byte(`{"seq":999999,"reason":"r"}`)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if e, err := p.Ledger.Get(context.Background(), "", "victim-1"); err != nil || e.State != ledger.StateDone {
		t.Fatalf("the ledger entry: %+v %v", e, err)
	}
	if _, err := p.JS.Stream(context.Background(), p.Streams.Requests); err != nil {
		t.Fatalf("the request stream: %v", err)
	}
}

// TestAReplayOfAnotherTenantsAccountIsRefused: a letter whose account is
// not its tenant's (any more: the account was given to a tenant since) is
// not replayed, so that its entry is never re-armed for a request the
// consumer would reject.
func TestAReplayOfAnotherTenantsAccountIsRefused(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, Tenants: map[string]string{"acme-vms": "acme"}})
	p.Run()
	var body map[string]any
	_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, "moved-1"), &body)
	body["account"] = "acme-vms"
	m := nats.NewMsg(p.Subjects.Dead(messages.APIVMSAddQualification))
	m.Data, _ = json.Marshal(body)
	m.Header.Set(messages.HeaderRequestID, "moved-1")
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Order(control.ActionReplay, control.Order{RequestID: "moved-1"})
	if err != nil || len(rep.Items) != 1 || !strings.Contains(rep.Items[0].Skipped, "not its tenant's") {
		t.Fatalf("replay: %+v %v", rep, err)
	}
	s, err := p.JS.Stream(context.Background(), p.Streams.Requests)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.LastSeq != 0 {
		t.Fatalf("the request stream after the refused replay: %+v %v", info.State, err)
	}
}
