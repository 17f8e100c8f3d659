package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Replays against the whole pipeline (embedded server, sandbox).

// TestConcurrentReplaysDuringACallFileOnce: an operator's replay used to
// purge the ledger entry while the consumer was calling, so that the
// consumer's success could not be recorded and the next delivery called
// the vendor again. Replays re-arm the entry with compare-and-set (of two
// at once, one wins), and a known outcome is recorded over an entry that a
// forced replay re-armed mid-call: one call.
func TestConcurrentReplaysDuringACallFileOnce(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	inCall := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	var fail atomic.Bool
	fail.Store(true)
	p := filingtest.New(t, filingtest.Options{NC: nc, MaxDeliver: 1, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			if fail.Load() {
				return dispatch.Outcome{}, fmt.Errorf("SystemError: %w", retry.ErrTransient)
			}
			once.Do(func() { close(inCall); <-release })
			return real.Dispatch(ctx, req)
		})
	}})
	p.Run()
	id := "replay-race-1"
	p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	filingtest.WaitFor(t, 10*time.Second, "dead-lettered after its only delivery", func() bool { return len(p.Dead()) == 1 && p.Drained() })
	letter := p.Dead()[0]
	fail.Store(false)

	// Two operators replay at once.
	var wg sync.WaitGroup
	replays := make([][]operator.Replayed, 2)
	for i := range replays {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replays[i], _ = operator.Replay(context.Background(), p.JS, p.Ledger, p.Objects, p.Subjects, id, false)
		}()
	}
	wg.Wait()
	t.Logf("two replays at once: %s; %s", replayedSummary(replays[0]), replayedSummary(replays[1]))
	<-inCall
	// A third operator, with a copy of the letter, forces a replay while
	// the vendor is being called.
	m := nats.NewMsg(letter.Subject)
	m.Data = letter.Data
	if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	forced, err := operator.Replay(context.Background(), p.JS, p.Ledger, p.Objects, p.Subjects, id, true)
	if err != nil || len(forced) != 1 || forced[0].Skipped != "" {
		t.Fatalf("forced replay during the call: %s %v", replayedSummary(forced), err)
	}
	close(release)
	filingtest.WaitFor(t, 15*time.Second, "settled", func() bool {
		f, ok := filingtest.Final(p.Results()[id])
		return ok && f.Status == messages.StatusSucceeded && p.Drained()
	})
	if calls := p.Sandbox.CountCalls(messages.APIVMSAddQualification); calls != 1 {
		t.Fatalf("the vendor saw %d AddQualification calls, want 1", calls)
	}
}

func replayedSummary(rs []operator.Replayed) string {
	var out []string
	for _, r := range rs {
		if r.Skipped != "" {
			out = append(out, fmt.Sprintf("dead %d skipped: %s", r.Dead.Sequence, r.Skipped))
		} else {
			out = append(out, fmt.Sprintf("dead %d replayed as request %d", r.Dead.Sequence, r.Sequence))
		}
	}
	return "[" + strings.Join(out, "; ") + "]"
}

// TestForgedDeadLetterCannotRedirectAReplay: a dead letter is untrusted:
// its headers cannot send a replay elsewhere or purge another request's
// ledger entry, and a body that is not the recorded request is refused.
func TestForgedDeadLetterCannotRedirectAReplay(t *testing.T) {
	_, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "victim-1", filingtest.Example(t, messages.APIVMSAddQualification, "victim-1"))
	p.WaitResults(1, 10*time.Second)
	sub, err := nc.SubscribeSync("evil.>")
	if err != nil {
		t.Fatal(err)
	}
	forge := func(body []byte) {
		m := nats.NewMsg(p.Subjects.Dead(messages.APIVMSAddQualification))
		m.Data = body
		m.Header.Set(messages.HeaderOrigSubject, "evil.subject")
		m.Header.Set(messages.HeaderRequestID, "victim-1")
		m.Header.Set(messages.HeaderDeadClass, messages.ClassTransient)
		if _, err := p.JS.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	forge([]byte("arbitrary bytes"))
	var env map[string]any
	_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, "victim-1"), &env)
	env["payload"].(map[string]any)["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "冒名公司"
	other, _ := json.Marshal(env)
	forge(other)
	forge(filingtest.Example(t, messages.APISMSApplySignatureIdent, "other-1"))

	out, err := operator.Replay(context.Background(), p.JS, p.Ledger, p.Objects, p.Subjects, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		t.Logf("dead seq %d: id %q subject %q skipped %q", r.Dead.Sequence, r.RequestID, r.Subject, r.Skipped)
		if r.Skipped == "" && (r.RequestID != "other-1" || r.Subject != p.Subjects.Request(messages.APISMSApplySignatureIdent)) {
			t.Errorf("replayed %+v", r)
		}
	}
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("a replay was published to %s", m.Subject)
	}
	if e, err := p.Ledger.Get(context.Background(), "victim-1"); err != nil || e.State != ledger.StateDone || e.Result.Status != messages.StatusSucceeded {
		t.Errorf("the victim's ledger entry: %+v %v", e, err)
	}
}
