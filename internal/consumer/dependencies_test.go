package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

// TestMissingDependenciesAreRecreated: a ledger bucket and a results
// stream deleted under a running consumer are recreated within a health
// interval, and the next request is filed and answered as before.
func TestMissingDependenciesAreRecreated(t *testing.T) {
	js, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, Health: &jshealth.Config{Interval: 200 * time.Millisecond}})
	p.Run()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, "FILING_LEDGER"); err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "FILING_RESULTS"); err != nil {
		t.Fatal(err)
	}
	filingtest.WaitFor(t, 10*time.Second, "the ledger bucket and the results stream recreated", func() bool {
		_, errL := js.KeyValue(ctx, "FILING_LEDGER")
		_, errR := js.Stream(ctx, "FILING_RESULTS")
		return errL == nil && errR == nil
	})
	id := "after-1"
	p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 10*time.Second, "the request filed", func() bool {
		f, ok := filingtest.Final(p.Results()[id])
		return ok && f.Status == messages.StatusSucceeded
	})
	if _, err := p.Ledger.Get(ctx, "", id); err != nil {
		t.Errorf("ledger entry of %s: %v", id, err)
	}
}
