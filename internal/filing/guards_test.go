package filing_test

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

// slowUpstream makes every call take d.
func slowUpstream(d time.Duration) func(filing.Dispatcher) filing.Dispatcher {
	return func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return dispatch.Outcome{}, ctx.Err()
			}
			return real.Dispatch(ctx, req)
		})
	}
}

// TestInFlightLeaseHoldsBackAnotherReplica: when a replica's heartbeat is
// lost mid-call, the broker redelivers to another replica; it must not
// call too while the first one's call may still be running — a call
// longer than the lease, kept alive by renewals, and whatever the second
// replica's clock says (hours ahead or behind).
func TestInFlightLeaseHoldsBackAnotherReplica(t *testing.T) {
	for _, skew := range []time.Duration{0, 4 * time.Minute, -4 * time.Minute, 3 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			_, nc, srv := natstest.JetStream(t)
			call := func(cfg *filing.Config) { cfg.CallTimeout = 5 * time.Second }
			a := filingtest.New(t, filingtest.Options{NC: nc, Owner: "replica-a", AckWait: time.Second, Concurrency: 1, Config: call,
				Faults: &filingtest.Faults{DropHeartbeats: true}, Upstream: slowUpstream(2500 * time.Millisecond)})
			b := filingtest.New(t, filingtest.Options{NC: natstest.Connect(t, srv), Owner: "replica-b", AckWait: time.Second, Sandbox: a.Sandbox,
				Config: func(cfg *filing.Config) {
					call(cfg)
					cfg.Now = func() time.Time { return time.Now().Add(skew) }
				}})
			a.Run()
			id := "lease-1"
			a.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
			time.Sleep(200 * time.Millisecond) // a has it
			b.Run()
			filingtest.WaitFor(t, 20*time.Second, "settled", func() bool {
				f, ok := filingtest.Final(b.Results()[id])
				return ok && f.Status == messages.StatusSucceeded && b.Drained()
			})
			if calls := a.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
				t.Fatalf("the vendor saw %d calls, want 1", calls)
			}
			if n := len(b.Results()[id]); n != 1 {
				t.Errorf("%d results, want 1: %s", n, statuses(b.Results()[id]))
			}
		})
	}
}

// TestHeartbeatKeepsALongCall: a call longer than the ack wait is kept
// alive with InProgress: the message is delivered once.
func TestHeartbeatKeepsALongCall(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, AckWait: time.Second, Upstream: slowUpstream(2500 * time.Millisecond),
		Config: func(cfg *filing.Config) { cfg.CallTimeout = 5 * time.Second }})
	m := p.Metrics
	p.Run()
	id := "long-1"
	p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 15*time.Second, "settled", func() bool { return len(p.Results()[id]) == 1 && p.Drained() })
	var c dto.Metric
	if err := m.Redeliveries.WithLabelValues(string(messages.APIVMSAddQualification)).Write(&c); err != nil {
		t.Fatal(err)
	}
	if n := c.GetCounter().GetValue(); n != 0 {
		t.Errorf("%v redeliveries of a message whose handler was alive", n)
	}
	for _, ev := range p.Audit(id) {
		if ev.Delivery != 1 {
			t.Errorf("event %s on delivery %d", ev.Event, ev.Delivery)
		}
	}
}
