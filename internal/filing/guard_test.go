package filing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// During a vendor outage the breaker holds calls back: the vendor sees a
// few calls, not one per request per retry; the held deliveries do not
// count toward the dead-letter limit (max_deliver 3 here, far fewer than
// the deliveries the outage takes); and once it ends every request
// succeeds.
func TestOutageIsHeldBackNotHammered(t *testing.T) {
	policy := retry.Policy{InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxElapsedTime: time.Second,
		MaxAttempts: 2, MaxThrottleInterval: 40 * time.Millisecond, RedeliveryBase: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond}
	h := newHarness(t, harnessOpts{maxDeliver: 3, policy: policy,
		guard: &guard.Config{Failures: 3, OpenFor: 400 * time.Millisecond}})
	outage := h.sb.Inject(sandbox.Fault{Code: "SystemError"})
	h.run()
	const n = 20
	for i := range n {
		id := fmt.Sprintf("outage-%02d", i)
		h.publish(messages.APIVMSAddQualification, id, example(t, messages.APIVMSAddQualification, id))
	}
	time.Sleep(3 * time.Second) // about seven breaker periods of outage
	during := h.sb.CountCalls(messages.APIVMSAddQualification)
	h.sb.RemoveFault(outage)
	got := h.results(n, 20*time.Second)
	for id, r := range got {
		if r.Status != messages.StatusSucceeded {
			t.Errorf("%s: %s %+v, want succeeded once the outage ended", id, r.Status, r.Error)
		}
	}
	// Without the breaker: 20 requests × 2 attempts per delivery × a
	// delivery every 50-200 ms for 3 s is hundreds of calls. With it: the
	// failures that open it, then about one probe per open period.
	if during > 3+2*(3000/400+1) {
		t.Errorf("the vendor saw %d calls during the outage, want at most %d", during, 3+2*(3000/400+1))
	}
	t.Logf("calls during a 3 s outage for %d requests: %d", n, during)
	if dead := h.Dead(); len(dead) != 0 {
		t.Errorf("%d dead letters: held deliveries must not count toward max_deliver", len(dead))
	}
	held, events := 0, []string{}
	for _, ev := range h.audit("outage-00") {
		events = append(events, ev.Event+"/"+ev.Class)
		if ev.Event == messages.EventDeferred && ev.Class == string(retry.ClassHeld) {
			held++
		}
	}
	if held == 0 {
		t.Errorf("no deferred (held) event in the trail of outage-00: %v", events)
	}
	// An attempt event is a call the vendor saw: a held call is none.
	attempts := 0
	for i := range n {
		for _, ev := range h.audit(fmt.Sprintf("outage-%02d", i)) {
			if ev.Event == messages.EventAttempt {
				attempts++
			}
		}
	}
	if calls := h.sb.CountCalls(messages.APIVMSAddQualification); attempts != calls {
		t.Errorf("%d attempt events, but the vendor saw %d calls", attempts, calls)
	}
}
