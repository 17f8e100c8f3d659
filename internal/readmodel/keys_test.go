package readmodel_test

import (
	"context"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

// TestARequestIDCannotTakeARejectionsKey: a request rejected without a usable id is
// keyed "seq:<n>"; a submitter may name its own request "seq:<n>" (the id
// rules allow ':'), and the two filings become one row.
func TestARequestIDCannotTakeARejectionsKey(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "m.db")
	follow(t, m, js)
	at := time.Now().UTC().Truncate(time.Millisecond)
	publishResult(t, js, messages.Result{RequestID: "", StreamSeq: 7, API: messages.APIVMSAddQualification, Account: "default",
		Status: messages.StatusRejected, ReceivedAt: at, CompletedAt: at,
		Error: &messages.ResultError{Code: "InvalidRequest", Class: messages.ClassInvalid}})
	publishResult(t, js, messages.Result{RequestID: "seq:7", API: messages.APIVMSAddQualification, Account: "default",
		Status: messages.StatusSucceeded, ReceivedAt: at.Add(time.Second), CompletedAt: at.Add(2 * time.Second)})
	eventually(t, "both results applied", func() bool {
		a, _ := m.Applied(context.Background())
		return a["FILING_RESULTS"] >= 2
	})
	p, err := m.Filings(context.Background(), readmodel.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Filings) != 2 {
		t.Errorf("two filings, %d listed: %+v (counts %v)", len(p.Filings), p.Filings, counts(t, m, readmodel.Filter{}))
	}
}
