package filing_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
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
