package filing_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// flakyLedger fails some ledger writes the way a NATS leader election does:
// either the write is lost, or it lands and the reply is lost.
type flakyLedger struct {
	*ledger.Ledger
	mu        sync.Mutex
	failDone  int // next writes to done that fail without landing
	lostReply int // next writes to calling that land, then report an error
	panicDone int // next writes to done that panic without landing
}

var errBroker = errors.New("nats: timeout")

func (f *flakyLedger) Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	to := next.State
	if to == ledger.StateDone && f.panicDone > 0 {
		f.panicDone--
		panic("a bug in the done write")
	}
	if to == ledger.StateDone && f.failDone > 0 {
		f.failDone--
		return ledger.Entry{}, errBroker
	}
	out, err := f.Ledger.Put(ctx, prev, next)
	if err == nil && to == ledger.StateCalling && f.lostReply > 0 {
		f.lostReply--
		return ledger.Entry{}, errBroker
	}
	return out, err
}

// TestAPanicWithAnOutcomeInHandRecordsItFromMemory: a write of the
// vendor's answer that panics (a bug) hands the message back; the
// redelivery records the answer this replica remembers, without a second
// call and without taking its own call for lost.
func TestAPanicWithAnOutcomeInHandRecordsItFromMemory(t *testing.T) {
	h := newHarness(t, harnessOpts{wrapLedger: func(l *ledger.Ledger) filing.Ledger {
		return &flakyLedger{Ledger: l, panicDone: 1}
	}})
	h.run()
	h.publish(messages.APIDouyinAddRole, "panic-1", example(t, messages.APIDouyinAddRole, "panic-1"))
	r := h.results(1, 15*time.Second)["panic-1"]
	if r.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v (error %+v): want the remembered success", r, r.Error)
	}
	if n := h.sb.CountCalls(messages.APIDouyinAddRole); n != 1 {
		t.Fatalf("sandbox saw %d filings, want 1", n)
	}
}

// TestLedgerHiccupsLoseNoOutcome: a result the ledger fails to take a few
// times is still recorded, and a "calling" write whose reply was lost does
// not make the request ambiguous; the vendor is called exactly once. With
// no time to retry in the handler, the message is handed back and the
// redelivery is settled from what this replica remembers.
func TestLedgerHiccupsLoseNoOutcome(t *testing.T) {
	for _, tc := range []struct {
		name                string
		failDone, lostReply int
		record              time.Duration
	}{
		{"done write fails", 3, 0, 0},
		{"calling reply lost", 0, 1, 0},
		{"done write fails, handed back", 1, 0, time.Nanosecond},
		{"calling reply lost, handed back", 0, 1, time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{wrapLedger: func(l *ledger.Ledger) filing.Ledger {
				return &flakyLedger{Ledger: l, failDone: tc.failDone, lostReply: tc.lostReply}
			}, config: func(c *filing.Config) {
				if tc.record > 0 {
					// No time to retry in the handler: what it knows goes
					// with the message back to the broker, in memory.
					c.RecordTimeout, c.TroubleTimeout = tc.record, tc.record
				}
			}})
			h.run()
			h.publish(messages.APIVMSAddQualification, "hiccup-1", example(t, messages.APIVMSAddQualification, "hiccup-1"))
			r := h.results(1, 15*time.Second)["hiccup-1"]
			if r.Status != messages.StatusSucceeded {
				t.Fatalf("result %+v (error %+v)", r, r.Error)
			}
			if n := h.sb.CountCalls(messages.APIVMSAddQualification); n != 1 {
				t.Fatalf("sandbox saw %d filings, want 1", n)
			}
		})
	}
}

// claimFails fails the first n ledger claims, as a broker without a
// ledger stream does: nobody received them (a claim that may have landed
// is kept trying in the handler instead, see keep).
type claimFails struct {
	filing.Ledger
	mu sync.Mutex
	n  int
}

func (c *claimFails) ClaimEntry(ctx context.Context, e ledger.Entry) (ledger.Entry, bool, error) {
	c.mu.Lock()
	fail := c.n > 0
	c.n--
	c.mu.Unlock()
	if fail {
		return ledger.Entry{}, false, fmt.Errorf("ledger: claiming %q: %w", e.RequestID, nats.ErrNoResponders)
	}
	return c.Ledger.ClaimEntry(ctx, e)
}

// TestBrokerTroubleNeverStrands: a request handed back again and again
// because NATS itself fails must not run out of deliveries on the server
// and sit in the stream with no result: it is filed once the broker is
// back, however many deliveries that took.
func TestBrokerTroubleNeverStrands(t *testing.T) {
	const maxDeliver, failures = 2, 12
	h := newHarness(t, harnessOpts{maxDeliver: maxDeliver, wrapLedger: func(l *ledger.Ledger) filing.Ledger {
		return &claimFails{Ledger: l, n: failures}
	}, config: func(c *filing.Config) { c.TroubleTimeout = time.Nanosecond }})
	h.run()
	h.publish(messages.APIVMSAddQualification, "trouble-1", example(t, messages.APIVMSAddQualification, "trouble-1"))
	r := h.results(1, 20*time.Second)["trouble-1"]
	if r.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v", r)
	}
	if evs := h.audit("trouble-1"); evs[0].Delivery <= maxDeliver+3 {
		t.Errorf("received on delivery %d; the test wants more deliveries than the old server limit", evs[0].Delivery)
	}
}
