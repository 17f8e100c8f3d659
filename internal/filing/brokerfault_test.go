package filing_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
)

// flakyLedger fails some ledger writes the way a NATS leader election does:
// either the write is lost, or it lands and the reply is lost.
type flakyLedger struct {
	*ledger.Ledger
	mu        sync.Mutex
	failDone  int // next writes to done that fail without landing
	lostReply int // next writes to calling that land, then report an error
}

var errBroker = errors.New("nats: timeout")

func (f *flakyLedger) Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	to := next.State
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

// TestLedgerHiccupsLoseNoOutcome: a result the ledger fails to take a few
// times is still recorded, and a "calling" write whose reply was lost does
// not make the request ambiguous; the vendor is called exactly once.
func TestLedgerHiccupsLoseNoOutcome(t *testing.T) {
	for _, tc := range []struct {
		name                string
		failDone, lostReply int
	}{
		{"done write fails", 3, 0},
		{"calling reply lost", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{wrapLedger: func(l *ledger.Ledger) filing.Ledger {
				return &flakyLedger{Ledger: l, failDone: tc.failDone, lostReply: tc.lostReply}
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
