package filing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// The fault matrix: every effect point × every fault × each of the five
// apis × each upstream outcome, each run to quiescence on an embedded
// server and the sandbox, with crashed processes replaced by fresh ones on
// the same broker. After each case the invariants of the pipeline are
// checked; the test prints the size of the matrix and every violation.

// The vendor's behaviours for the first call of a case are those of the
// generated schedules (world_test.go), and one of the matrix's own.
const outcomeStorm callOutcome = "storm" // SystemError until the request has waited in the broker once

var outcomes = []callOutcome{outcomeOK, outcomeTransient, outcomeThrottled, outcomePermanent, outcomeLost, outcomeUnfiled, outcomeStorm}

type matrixCase struct {
	n       int
	point   filingtest.Point
	fault   filingtest.Fault
	api     messages.API
	outcome callOutcome
}

func (c matrixCase) name() string {
	return fmt.Sprintf("%s/%s/%s/%s", c.point, c.fault, c.api, c.outcome)
}

func matrixCases() []matrixCase {
	var cs []matrixCase
	for _, p := range filingtest.Points {
		for _, f := range filingtest.FaultKinds {
			for _, api := range messages.APIs() {
				for _, o := range outcomes {
					cs = append(cs, matrixCase{n: len(cs), point: p, fault: f, api: api, outcome: o})
				}
			}
		}
	}
	return cs
}

// upstream plays the vendor's part for the first call of a case and counts
// what the vendor accepted.
type upstream struct {
	inner   filing.Dispatcher
	outcome callOutcome
	mu      sync.Mutex
	calls   int
	filed   int // calls the vendor acted on
}

func (u *upstream) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	u.mu.Lock()
	u.calls++
	first, storm := u.calls == 1, u.calls <= filingtest.FastPolicy().MaxAttempts
	u.mu.Unlock()
	if u.outcome == outcomeStorm && storm {
		return dispatch.Outcome{}, fmt.Errorf("SystemError: %w", retry.ErrTransient)
	}
	if err := vendorError(u.outcome, req.API); first && u.outcome != outcomeLost && err != nil {
		return dispatch.Outcome{}, err // (an answer lost after the vendor acted: below)
	}
	out, err := u.inner.Dispatch(ctx, req)
	if err == nil {
		u.mu.Lock()
		u.filed++
		u.mu.Unlock()
	}
	if first && u.outcome == outcomeLost {
		return dispatch.Outcome{}, filingtest.AnswerLost(req.API)
	}
	return out, err
}

// answers counts the successful answers that reached a live process.
type answers struct {
	inner filing.Dispatcher
	f     *filingtest.Faults
	n     *atomic.Int32
}

func (a answers) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	out, err := a.inner.Dispatch(ctx, req)
	if err == nil && !a.f.Dead() {
		a.n.Add(1)
	}
	return out, err
}

// incarnation is one process of a case: a crashed one knew what it was
// told only until it died.
type incarnation struct {
	f        *filingtest.Faults
	answered atomic.Int32
}

type matrixEnv struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string
	sb     *sandbox.Server
}

type matrixStats struct {
	mu                   sync.Mutex
	run, fired, violated int
	byPoint              map[filingtest.Point]int
}

func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault matrix runs for a few minutes")
	}
	cases := matrixCases()
	t.Logf("fault matrix: %d cases = %d effect points × %d faults × %d apis × %d upstream outcomes",
		len(cases), len(filingtest.Points), len(filingtest.FaultKinds), len(messages.APIs()), len(outcomes))
	const workers = 16
	srv := natstest.Server(t)
	envs := make([]matrixEnv, workers)
	for w := range envs {
		nc := natstest.Connect(t, srv)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		envs[w] = matrixEnv{nc: nc, js: js, prefix: fmt.Sprintf("fm%d", w), sb: filingtest.StartSandbox(t)}
	}
	stats := &matrixStats{byPoint: map[filingtest.Point]int{}}
	work := make(chan matrixCase)
	var wg sync.WaitGroup
	for w := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				t.Run(c.name(), func(t *testing.T) { runMatrixCase(t, envs[w], c, stats) })
			}
		}()
	}
	start := time.Now()
	for _, c := range cases {
		work <- c
	}
	close(work)
	wg.Wait()
	points := make([]string, 0, len(stats.byPoint))
	for p, n := range stats.byPoint {
		points = append(points, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(points)
	t.Logf("fault matrix: %d cases run in %s; the fault fired in %d (%s); %d cases with violations",
		stats.run, time.Since(start).Round(time.Second), stats.fired, strings.Join(points, ", "), stats.violated)
}

// runMatrixCase runs one case to quiescence and checks the invariants.
func runMatrixCase(t *testing.T, env matrixEnv, c matrixCase, stats *matrixStats) {
	env.sb.Reset()
	id := fmt.Sprintf("fm-%d", c.n)
	in := &filingtest.Injector{Point: c.point, Fault: c.fault}
	if c.point == filingtest.PointRead {
		// The ledger is read again after a write whose reply was lost.
		in.Setup = []filingtest.Shot{{Point: filingtest.PointWriteCalling, Fault: filingtest.FaultAfter}}
	}
	stored := filingtest.NewStored()
	tokens := douyin.NewMemoryStore() // the sandbox forgets its tokens at every case
	var violations []string
	var vmu sync.Mutex
	violate := func(format string, args ...any) {
		vmu.Lock()
		defer vmu.Unlock()
		violations = append(violations, fmt.Sprintf(format, args...))
	}
	var incs []*incarnation
	up := &upstream{outcome: c.outcome}
	subjects := messages.Subjects{Prefix: env.prefix}

	// A message is settled for good only once its outcome is in the ledger
	// and its result is stored.
	var led *ledger.Ledger
	onSettle := func(_ jetstream.Msg, action string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e, err := led.Get(ctx, "", id)
		if err != nil || e.State != ledger.StateDone {
			violate("%s before the outcome is in the ledger (entry %s, %v)", action, e.State, err)
		}
		if stored.Results(id) == 0 {
			violate("%s before the result is stored", action)
		}
	}
	crashed := make(chan struct{}, 4)
	var p *filingtest.Pipeline
	var stop func()
	generation := 0
	start := func() {
		generation++
		f := &filingtest.Faults{In: in, Stored: stored, OnSettle: onSettle, OnCrash: func() { crashed <- struct{}{} }, AsyncTimeout: 250 * time.Millisecond}
		inc := &incarnation{f: f}
		incs = append(incs, inc)
		p = filingtest.New(t, filingtest.Options{
			NC: env.nc, Prefix: env.prefix, Sandbox: env.sb, Tokens: tokens, Faults: f,
			Owner: fmt.Sprintf("%s-%d", id, generation), AckWait: time.Second, Grace: 300 * time.Millisecond, Concurrency: 4,
			// Reconciliation on, with a short settling window.
			Reconcile: &filing.ReconcileConfig{Window: 300 * time.Millisecond, Reads: 3},
			Config: func(cfg *filing.Config) {
				cfg.PublishTimeout, cfg.RecordTimeout, cfg.TroubleTimeout, cfg.CallTimeout = 250*time.Millisecond, 1500*time.Millisecond, 200*time.Millisecond, time.Second
			},
			Upstream: func(real filing.Dispatcher) filing.Dispatcher {
				up.mu.Lock()
				up.inner = real
				up.mu.Unlock()
				return up
			},
			Dispatcher: func(d filing.Dispatcher) filing.Dispatcher { return answers{inner: d, f: f, n: &inc.answered} },
		})
		led = p.Ledger
		stop = p.Run()
	}
	start()
	p.Publish(c.api, id, filingtest.Example(t, c.api, id))

	quiet := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !quiet {
		select {
		case <-crashed:
			stop() // the process is gone; a fresh one carries on
			start()
			continue
		case <-time.After(50 * time.Millisecond):
		}
		quiet = quiescent(env, subjects, id, p)
	}
	stop()

	stats.mu.Lock()
	stats.run++
	if in.Fired() {
		stats.fired++
		stats.byPoint[c.point]++
	}
	stats.mu.Unlock()

	if !quiet {
		violate("not settled within 30s: the request is stranded")
	}
	var live, dead, crashes int
	for _, inc := range incs {
		if inc.f.Dead() {
			crashes++
			dead += int(inc.answered.Load())
		} else {
			live += int(inc.answered.Load())
		}
	}
	checkOutcome(p, c, id, up, live, dead, crashes, violate)
	if len(violations) > 0 {
		stats.mu.Lock()
		stats.violated++
		stats.mu.Unlock()
		for _, v := range violations {
			t.Error(v)
		}
	}
}

// quiescent: the request stream is empty, nothing is pending or unacked,
// and the request has a result.
func quiescent(env matrixEnv, subjects messages.Subjects, id string, p *filingtest.Pipeline) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if p.Count(p.Streams.Requests) != 0 {
		return false
	}
	ci, err := p.Durable.Info(ctx)
	if err != nil || ci.NumAckPending != 0 || ci.NumPending != 0 {
		return false
	}
	_, err = env.js.Stream(ctx, p.Streams.Results)
	return err == nil && len(p.Results()[id]) > 0
}

// checkOutcome checks the invariants of a settled case.
func checkOutcome(p *filingtest.Pipeline, c matrixCase, id string, up *upstream, live, dead, crashes int, violate func(string, ...any)) {
	// Exactly one final outcome; copies of one outcome byte for byte equal.
	var raw [][]byte
	for _, m := range p.StreamMsgs(p.Streams.Results) {
		var r messages.Result
		if json.Unmarshal(m.Data, &r) == nil && r.RequestID == id {
			raw = append(raw, m.Data)
		}
	}
	results := p.Results()[id]
	for i := range results {
		for j := range i {
			if results[i].CompletedAt.Equal(results[j].CompletedAt) && !bytes.Equal(raw[i], raw[j]) {
				violate("two copies of one outcome differ:\n%s\n%s", raw[i], raw[j])
			}
		}
	}
	final, ok := filingtest.Final(results)
	if !ok {
		violate("%d results and no single final one: %s", len(results), statuses(results))
		return
	}
	// At most one call the vendor acted on per id, unless it is a read.
	up.mu.Lock()
	filed := up.filed
	up.mu.Unlock()
	if calls := p.Sandbox.CountCalls(c.api); !c.api.Resendable() && (calls > 1 || filed > 1) {
		violate("the vendor saw %d calls and acted on %d", calls, filed)
	}
	// The outcome is true. Ambiguous is no outcome but a lack of
	// knowledge: allowed only where the one process that knew died.
	ambiguous := final.Error != nil && final.Error.Class == messages.ClassAmbiguous
	switch {
	case live > 0 && final.Status != messages.StatusSucceeded:
		violate("the vendor's success reached a process that lived on, but the final result is %s", describeResult(final))
	case dead > 0 && final.Status != messages.StatusSucceeded && !ambiguous:
		violate("the vendor's success reached a process that then died, and the final result is %s", describeResult(final))
	case final.Status == messages.StatusSucceeded && filed == 0:
		violate("succeeded, but the vendor never accepted the call")
	case final.Status != messages.StatusSucceeded && !ambiguous && filed > 0 && !c.api.Resendable():
		violate("the vendor acted on it, but the final result is %s", describeResult(final))
	case ambiguous && c.api.Reconcilable() && crashes == 0:
		// The vendor's records are readable in every case: they settle it,
		// unless a process died knowing what they cannot tell (that the
		// one refile it wrote was never sent).
		violate("the result is %s, although reading the vendor's records settles it", describeResult(final))
	case c.outcome == outcomeLost && c.api.Reconcilable() && final.Status == messages.StatusSucceeded && !final.Reconciled && live+dead == 0:
		violate("the answer was lost and the result %+v is not marked reconciled", final)
	}
	// The audit events alone tell the story: received, each attempt, the
	// final outcome.
	evs := p.Audit(id)
	if filingtest.CountEvents(evs, messages.EventReceived) == 0 {
		violate("no received event")
	}
	stored := map[string]bool{} // every event once: a copy published again is dropped by the stream
	for _, ev := range evs {
		switch {
		case ev.ID == "":
			violate("a %s event without an identity", ev.Event)
		case stored[ev.ID]:
			violate("event %s stored twice", ev.ID)
		}
		stored[ev.ID] = true
	}
	// Two events with one identity would be one to the stream: the
	// ledger's trail, which nothing deduplicates, tells.
	if e, err := p.Ledger.Get(context.Background(), "", id); err == nil {
		ids := map[string]bool{}
		for _, ev := range e.Trail {
			if ev.ID != "" && ids[ev.ID] {
				violate("two events of the trail have the identity %s", ev.ID)
			}
			ids[ev.ID] = true
		}
	}
	attempts := map[int]bool{}
	var last *messages.AuditEvent
	for i, ev := range evs {
		switch ev.Event {
		case messages.EventAttempt:
			attempts[ev.Attempt] = true
		case messages.EventSucceeded, messages.EventFailed, messages.EventRejected, messages.EventAmbiguous, messages.EventSettled, messages.EventReconciled:
			last = &evs[i]
		}
	}
	for n := 1; n <= len(attempts); n++ {
		if !attempts[n] {
			violate("attempt events %v are not numbered 1..%d", attempts, len(attempts))
			break
		}
	}
	if final.Attempts > len(attempts)+1 {
		violate("the result counts %d attempts, the trail %d", final.Attempts, len(attempts))
	}
	if last == nil || last.Status != final.Status {
		violate("the last outcome event %+v does not match the final result %s", last, describeResult(final))
	}
}

func describeResult(r messages.Result) string {
	if r.Error == nil {
		return string(r.Status)
	}
	return fmt.Sprintf("%s (%s %s: %s)", r.Status, r.Error.Class, r.Error.Code, r.Error.Message)
}

func statuses(rs []messages.Result) string {
	var s []string
	for _, r := range rs {
		s = append(s, describeResult(r)+" at "+r.CompletedAt.Format(time.RFC3339Nano))
	}
	return strings.Join(s, "; ")
}
