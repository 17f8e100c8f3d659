package filing_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// loseOnce makes the first call after arm() look lost without sending it.
type loseOnce struct {
	inner filing.Dispatcher
	armed atomic.Bool
}

func (l *loseOnce) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	if l.armed.CompareAndSwap(true, false) {
		return dispatch.Outcome{}, filingtest.AnswerLost(req.API)
	}
	return l.inner.Dispatch(ctx, req)
}

// The SMS list has no creation time: an identical signature ident filed
// earlier must not be taken for a new request whose answer was lost. The
// records listed before the new request's first call are its baseline;
// with only the earlier one listed, the new request is filed again (once)
// and gets its own id.
func TestEarlierIdenticalSMSFilingIsNotThisOne(t *testing.T) {
	lose := &loseOnce{}
	h := newHarness(t, harnessOpts{reconcile: &filing.ReconcileConfig{Window: 200 * time.Millisecond, Reads: 2},
		upstream: func(d filing.Dispatcher) filing.Dispatcher { lose.inner = d; return lose }})
	h.run()
	h.publish(messages.APISMSApplySignatureIdent, "sms-earlier", example(t, messages.APISMSApplySignatureIdent, "sms-earlier"))
	first := h.results(1, 10*time.Second)["sms-earlier"]
	if first.Status != messages.StatusSucceeded {
		t.Fatalf("the earlier filing: %+v", first)
	}
	lose.armed.Store(true)
	h.publish(messages.APISMSApplySignatureIdent, "sms-new", example(t, messages.APISMSApplySignatureIdent, "sms-new"))
	got := h.results(2, 20*time.Second)["sms-new"]
	if got.Status != messages.StatusSucceeded || !got.Refiled || got.Reconciled {
		t.Fatalf("result %+v (error %+v): want succeeded by filing it again, not reconciled", got, got.Error)
	}
	if string(got.Result) == string(first.Result) {
		t.Errorf("the new request got the earlier filing's record %s", got.Result)
	}
	if n := len(h.sb.State().SignatureIdents); n != 2 {
		t.Errorf("the vendor holds %d signature idents, want 2 (one per request)", n)
	}
}

// The baseline is read once, before the first call: a copy of a request
// whose outcome is recorded is answered from the ledger without a read.
func TestBaselineReadOnceNotPerCopy(t *testing.T) {
	h := newHarness(t, harnessOpts{reconcile: &filing.ReconcileConfig{Window: 200 * time.Millisecond, Reads: 2}})
	h.run()
	data := example(t, messages.APISMSApplySignatureIdent, "sms-once")
	h.publish(messages.APISMSApplySignatureIdent, "sms-once", data)
	h.results(1, 10*time.Second)
	if n := h.sb.CountCalls(sandbox.SignatureIdentListAPI); n != 1 {
		t.Fatalf("%d baseline reads for one filing, want 1", n)
	}
	for i := range 3 { // copies: the same request, other message ids
		h.publish(messages.APISMSApplySignatureIdent, fmt.Sprintf("copy-%d", i), data)
	}
	deadline := time.Now().Add(10 * time.Second)
	for countEvents(h.audit("sms-once"), messages.EventDuplicate) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := countEvents(h.audit("sms-once"), messages.EventDuplicate); got != 3 {
		t.Fatalf("%d duplicate events, want one per copy", got)
	}
	if n := h.sb.CountCalls(sandbox.SignatureIdentListAPI); n != 1 {
		t.Errorf("%d reads after three copies, want still 1", n)
	}
}
