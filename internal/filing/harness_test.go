package filing_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// harness is the package's short names for a filingtest.Pipeline on an
// embedded server.
type harness struct {
	*filingtest.Pipeline
	js       jetstream.JetStream
	sb       *sandbox.Server
	led      *ledger.Ledger
	subjects messages.Subjects
}

type harnessOpts struct {
	maxDeliver int
	policy     retry.Policy
	nc         *nats.Conn
	owner      string
	sb         *sandbox.Server
	wrapLedger func(*ledger.Ledger) filing.Ledger
	grace      time.Duration
	config     func(*filing.Config)
	guard      *guard.Config
	reconcile  *filing.ReconcileConfig
	upstream   func(filing.Dispatcher) filing.Dispatcher
}

func newHarness(tb testing.TB, o harnessOpts) *harness {
	tb.Helper()
	if o.nc == nil {
		_, o.nc, _ = natstest.JetStream(tb)
	}
	p := filingtest.New(tb, filingtest.Options{NC: o.nc, MaxDeliver: o.maxDeliver, Policy: o.policy, Owner: o.owner, Sandbox: o.sb,
		Grace: o.grace, Config: o.config, Ledger: o.wrapLedger, Guard: o.guard, Reconcile: o.reconcile, Upstream: o.upstream})
	return &harness{Pipeline: p, js: p.JS, sb: p.Sandbox, led: p.Ledger, subjects: p.Subjects}
}

func (h *harness) run() (stop func()) { return h.Run() }

func (h *harness) publish(api messages.API, id string, data []byte) { h.Publish(api, id, data) }

func (h *harness) audit(id string) []messages.AuditEvent { return h.Audit(id) }

func (h *harness) streamMsgs(name string) []*jetstream.RawStreamMsg { return h.StreamMsgs(name) }

// results waits for results of want requests and returns the last of each.
func (h *harness) results(want int, timeout time.Duration) map[string]messages.Result {
	h.TB.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]messages.Result{}
		for id, rs := range h.Results() {
			got[id] = rs[len(rs)-1]
		}
		if len(got) >= want {
			return got
		}
		if time.Now().After(deadline) {
			h.TB.Fatalf("got %d results, want %d: %v", len(got), want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func example(tb testing.TB, api messages.API, id string) []byte {
	return filingtest.Example(tb, api, id)
}

func countEvents(evs []messages.AuditEvent, name string) int {
	return filingtest.CountEvents(evs, name)
}
