package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// TestConsumerRestartRedelivers stops the consumer gracefully in the middle
// of 300 requests and starts a new one on a new connection: the requests it
// had not finished are redelivered and every request is filed exactly once.
func TestConsumerRestartRedelivers(t *testing.T) {
	const total = 300
	api := messages.APIVMSAddQualification
	n := startServer(t)
	nc := connect(t, "first", n.url)
	waitJetStream(t, newJetStream(t, nc.Conn), 30*time.Second)
	sb := filingtest.StartSandbox(t)
	sb.Inject(sandbox.Fault{API: api, Latency: 5 * time.Millisecond})
	first := newPipeline(t, filingtest.Options{NC: nc.Conn, Owner: "first", Sandbox: sb})
	for i := range total {
		id := fmt.Sprintf("restart-%03d", i)
		first.Publish(api, id, filingtest.Example(t, api, id))
	}

	stop := first.Run()
	deadline := time.Now().Add(60 * time.Second)
	for sb.CountCalls(api) < total/3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls within 60s", sb.CountCalls(api))
		}
		time.Sleep(time.Millisecond)
	}
	stop() // SIGTERM: stop pulling, hand back what was not started, finish in-flight work
	atStop := sb.CountCalls(api)
	t.Logf("first consumer stopped after %d calls, %d results", atStop, first.Count(first.Streams.Results))
	if atStop >= total {
		t.Fatalf("the consumer finished before it was stopped (%d calls); the test proves nothing", atStop)
	}

	nc2 := connect(t, "second", n.url)
	second := newPipeline(t, filingtest.Options{NC: nc2.Conn, Owner: "second", Sandbox: sb})
	second.Run()
	second.WaitResults(total, 90*time.Second)

	got := second.Results()
	if len(got) != total {
		t.Errorf("results for %d request ids, want %d", len(got), total)
	}
	owners := map[string]int{}
	for i := range total {
		id := fmt.Sprintf("restart-%03d", i)
		rs := got[id]
		if len(rs) != 1 || rs[0].Status != messages.StatusSucceeded {
			t.Errorf("%s: %+v, want one succeeded result", id, rs)
			continue
		}
		e, err := second.Ledger.Get(context.Background(), "", id)
		if err != nil {
			t.Fatal(err)
		}
		owners[e.Owner]++
	}
	t.Logf("filed by %v", owners)
	if owners["first"] == 0 || owners["second"] == 0 {
		t.Errorf("owners %v: both consumers should have filed requests", owners)
	}
	if calls := sb.CountCalls(api); calls != total {
		t.Fatalf("the sandbox saw %d filings for %d requests", calls, total)
	}
}
