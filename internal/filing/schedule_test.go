package filing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"pgregory.net/rapid"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Generated schedules: two or three replicas of the real core and runner,
// with the real ledger over a simulated store, handle a few requests in a
// simulated world (world_test.go) through a generated plan of faults —
// deliveries and redeliveries, copies, crashes at any step and restarts,
// lost replies, ledger, stream and vendor outages longer than every
// timeout (failing at once or hanging), replica clocks hours apart,
// vendor answers lost or late and records listed late, resubmissions of
// corrected requests. Time is the virtual clock of a synctest bubble, so
// hours of outage cost no wall time. After each sequence the invariants
// below are checked; rapid shrinks a failing plan and prints the seed
// that replays it (go test -run TestGeneratedSchedules -rapid.seed=N).

// simStart is the bubble's clock at its start.
var simStart = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	maxCrashes  = 6                // random crashes per sequence, at most
	simTimeout  = 4 * time.Hour    // a sequence not settled by then has a stranded request
	resubmitGap = 90 * time.Second // after the first publish, the corrected request
	concurrency = 4
	maxTrail    = 100 // events in one request's trail: more is a loop
)

// callOutcome is what the vendor does with one call.
type callOutcome string

const (
	outcomeOK        callOutcome = "ok"
	outcomeTransient callOutcome = "transient"
	outcomeThrottled callOutcome = "throttled"
	outcomePermanent callOutcome = "permanent"
	outcomeLost      callOutcome = "answer lost"    // acted on, the answer lost
	outcomeUnfiled   callOutcome = "looks lost"     // not acted on, the answer lost
	outcomeHang      callOutcome = "acts and hangs" // acted on, answered after ten minutes
)

var callOutcomes = []callOutcome{outcomeOK, outcomeTransient, outcomeThrottled, outcomePermanent, outcomeLost, outcomeUnfiled, outcomeHang}

func (o callOutcome) acts() bool { return o == outcomeOK || o == outcomeLost || o == outcomeHang }

type plan struct {
	seed        uint64
	offsets     []time.Duration // each replica's clock against true time
	restart     time.Duration   // a crashed replica starts again after it
	requests    []requestPlan
	crashes     []crashPlan
	outages     []outagePlan
	lostReplies int // permille of operations that land and whose reply is lost
	crashRate   int // permille of operations after which the process dies
}

type requestPlan struct {
	id       string
	api      messages.API
	at       time.Duration
	copies   []time.Duration // copies sent later without a message id
	resubmit bool            // first sent invalid, then corrected
	calls    []callOutcome   // the vendor's answers to the first calls; then ok
	latency  time.Duration
	lag      time.Duration // a record is listed only this long after it is made
}

type crashPlan struct {
	replica int
	at      time.Duration
}

type outagePlan struct {
	port       port
	replica    int // -1: every replica
	start, end time.Duration
	hang       bool // operations hang until it ends, rather than fail
}

func (p *plan) request(id string) requestPlan {
	for _, r := range p.requests {
		if r.id == id {
			return r
		}
	}
	return requestPlan{}
}

func (p *plan) outage(pt port, replica int, now time.Time) (outagePlan, bool) {
	at := now.Sub(simStart)
	for _, o := range p.outages {
		if o.port == pt && (o.replica < 0 || o.replica == replica) && o.start <= at && at < o.end {
			return o, true
		}
	}
	return outagePlan{}, false
}

func (p *plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, clocks %v, restart after %s, lost replies %d‰, crashes %d‰\n", p.seed, p.offsets, p.restart, p.lostReplies, p.crashRate)
	for _, r := range p.requests {
		fmt.Fprintf(&b, "  %s %s at %s: calls %v, latency %s, listed after %s, copies %v, resubmit %v\n", r.id, r.api, r.at, r.calls, r.latency, r.lag, r.copies, r.resubmit)
	}
	for _, c := range p.crashes {
		fmt.Fprintf(&b, "  crash r%d at %s\n", c.replica, c.at)
	}
	for _, o := range p.outages {
		fmt.Fprintf(&b, "  %s outage for replica %d from %s to %s (hang %v)\n", portNames[o.port], o.replica, o.start, o.end, o.hang)
	}
	return b.String()
}

func seconds(t *rapid.T, label string, lo, hi int) time.Duration {
	return time.Duration(rapid.IntRange(lo, hi).Draw(t, label)) * time.Second
}

func drawPlan(t *rapid.T) *plan {
	p := &plan{seed: rapid.Uint64().Draw(t, "seed")}
	clocks := []time.Duration{0, -3 * time.Hour, 3 * time.Hour, -2 * time.Minute, 90 * time.Second}
	for i := range rapid.IntRange(2, 3).Draw(t, "replicas") {
		p.offsets = append(p.offsets, rapid.SampledFrom(clocks).Draw(t, fmt.Sprintf("clock%d", i)))
	}
	p.restart = seconds(t, "restart", 1, 60)
	for i := range rapid.IntRange(1, 4).Draw(t, "requests") {
		r := requestPlan{id: fmt.Sprintf("q%d", i), api: rapid.SampledFrom(messages.APIs()).Draw(t, "api"), at: seconds(t, "at", 0, 30),
			calls:    rapid.SliceOfN(rapid.SampledFrom(callOutcomes), 0, 3).Draw(t, "calls"),
			latency:  rapid.SampledFrom([]time.Duration{50 * time.Millisecond, 800 * time.Millisecond, 4 * time.Second, 25 * time.Second}).Draw(t, "latency"),
			lag:      rapid.SampledFrom([]time.Duration{0, 5 * time.Second, 20 * time.Second}).Draw(t, "lag"), // within the settling window: refiling assumes so
			resubmit: rapid.Bool().Draw(t, "resubmit"),
		}
		for range rapid.IntRange(0, 2).Draw(t, "copies") {
			r.copies = append(r.copies, seconds(t, "copy", 1, 900))
		}
		p.requests = append(p.requests, r)
	}
	for range rapid.IntRange(0, 3).Draw(t, "crashes") {
		p.crashes = append(p.crashes, crashPlan{replica: rapid.IntRange(0, len(p.offsets)-1).Draw(t, "crashed"), at: seconds(t, "crash", 0, 300)})
	}
	for range rapid.IntRange(0, 3).Draw(t, "outages") {
		o := outagePlan{port: port(rapid.IntRange(0, int(ports)-1).Draw(t, "port")), replica: rapid.IntRange(-1, len(p.offsets)-1).Draw(t, "of"),
			start: seconds(t, "from", 0, 300), hang: rapid.Bool().Draw(t, "hang")}
		o.end = o.start + rapid.SampledFrom([]time.Duration{5 * time.Second, 40 * time.Second, 3 * time.Minute, 15 * time.Minute}).Draw(t, "for")
		p.outages = append(p.outages, o)
	}
	p.lostReplies = rapid.SampledFrom([]int{0, 20, 100}).Draw(t, "lost")
	p.crashRate = rapid.SampledFrom([]int{0, 0, 4, 15}).Draw(t, "crashrate")
	return p
}

// process is one process of a replica: a restart is a new one, with
// an empty memory and a new name.
type process struct {
	w            *world
	replica, gen int
	p            *filing.Processor
	crashed      atomic.Bool
	down         chan struct{} // closed when it dies
	busy         int           // deliveries being handled (w.mu)
	died         bool          // it crashed before the sequence was over (w.mu)
	ops          map[string]int
	wg           sync.WaitGroup // its goroutines
}

func (inc *process) String() string { return fmt.Sprintf("r%d.%d", inc.replica, inc.gen) }
func (inc *process) dead() bool     { return inc.crashed.Load() }

// crash kills the process: each of its goroutines stops at the next port
// it touches.
func (inc *process) crash(why string) {
	if inc.crashed.Swap(true) {
		return
	}
	close(inc.down)
	w := inc.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ending {
		return
	}
	inc.died, w.up[inc.replica] = true, false
	w.crashes++
	w.logfLocked("%s crashes %s", inc, why)
}

// sim runs one plan.
type sim struct {
	w       *world
	mu      sync.Mutex
	current []*process
	all     []*process
	done    chan struct{}
	wg      sync.WaitGroup
}

func (s *sim) start(replica, gen int) *process {
	w := s.w
	inc := &process{w: w, replica: replica, gen: gen, down: make(chan struct{}), ops: map[string]int{}}
	offset := w.plan.offsets[replica]
	now := func() time.Time { return time.Now().Add(offset) }
	// No jitter: handlers sharing one source would draw in the order they
	// happen to run, and a seed would not replay.
	p, err := filing.New(filing.Config{Policy: retry.Policy{Rand: func() float64 { return 0.5 }}, MaxDeliver: 5, Owner: inc.String(), Now: now, Requests: requestsPort{inc}, Reconcile: filing.ReconcileConfig{Reader: vendorPort{inc}}},
		vendorPort{inc}, ledger.New(kvPort{inc}, now), streamPort{inc}, nil, zap.NewNop(), nil)
	if err != nil {
		panic(err)
	}
	inc.p = p
	s.mu.Lock()
	s.current[replica] = inc
	s.all = append(s.all, inc)
	s.mu.Unlock()
	w.mu.Lock()
	w.up[replica] = true
	w.kick()
	w.mu.Unlock()
	inc.wg.Go(func() { s.pull(inc) })
	w.logf("%s starts, clock %s", inc, offset)
	return inc
}

// processes are every process started so far.
func (s *sim) processes() []*process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

// supervise keeps a replica running: a crashed process is replaced after
// the plan's restart delay.
func (s *sim) supervise(replica int) {
	for gen := 1; ; gen++ {
		inc := s.start(replica, gen)
		select {
		case <-inc.down:
		case <-s.done:
			return
		}
		select {
		case <-time.After(s.w.plan.restart):
		case <-s.done:
			return
		}
	}
}

// pull hands inc the messages due, up to its concurrency.
func (s *sim) pull(inc *process) {
	w := s.w
	for !inc.dead() {
		w.mu.Lock()
		free := inc.busy < concurrency
		var changed <-chan struct{} = w.changed
		w.mu.Unlock()
		wake := time.Hour
		if free {
			var d *simDelivery
			if d, wake, changed = w.next(inc); d != nil {
				w.mu.Lock()
				inc.busy++
				w.mu.Unlock()
				inc.wg.Go(func() { s.handle(inc, d) })
				continue
			}
		}
		t := time.NewTimer(wake)
		select {
		case <-changed:
		case <-t.C:
		case <-inc.down:
		case <-s.done:
			t.Stop()
			return
		}
		t.Stop()
	}
}

// handle runs the processor on a delivery, with the heartbeat the
// consumer's loop sends while it runs.
func (s *sim) handle(inc *process, d *simDelivery) {
	w := s.w
	finished := make(chan struct{})
	defer func() {
		close(finished)
		w.mu.Lock()
		inc.busy--
		w.kick()
		w.mu.Unlock()
	}()
	inc.wg.Go(func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-inc.down:
				return
			case <-t.C:
				d.inProgress(w)
			}
		}
	})
	inc.p.Handle(context.Background(), d)
}

// payload is the request body of a plan's request: its example, with
// fields of its own that the vendor's reads match on; broken, when it is
// the first try of a resubmission, in a way validation rejects.
func payload(tb testing.TB, r requestPlan, broken bool) []byte {
	var req map[string]any
	if err := json.Unmarshal(filingtest.Example(tb, r.api, r.id), &req); err != nil {
		tb.Fatal(err)
	}
	body := req["payload"].(map[string]any)
	switch r.api {
	case messages.APIVMSAddQualification:
		body["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "实体-" + r.id
	case messages.APISMSApplySignatureIdent:
		body["materialName"] = "资质-" + r.id
	}
	if broken {
		req["account"] = "no such account!"
	}
	out, _ := json.Marshal(req)
	return out
}

// runPlan plays a plan in a bubble and returns what went wrong.
func runPlan(t *testing.T, p *plan) (w *world, violations []string) {
	synctest.Test(t, func(t *testing.T) {
		w = newWorld(p)
		s := &sim{w: w, current: make([]*process, len(p.offsets)), done: make(chan struct{})}
		for r := range p.offsets {
			s.wg.Go(func() { s.supervise(r) })
		}
		type event struct {
			at time.Duration
			do func()
		}
		var evs []event
		for _, r := range p.requests {
			subject := messages.Subjects{}.Request(r.api)
			good := payload(t, r, false)
			first := good
			if r.resubmit {
				first = payload(t, r, true)
				evs = append(evs, event{r.at + resubmitGap, func() { w.publishRequest(subject, good, r.id+":fixed") }})
			}
			evs = append(evs, event{r.at, func() { w.publishRequest(subject, first, r.id) }})
			for _, c := range r.copies {
				evs = append(evs, event{r.at + c, func() { w.publishRequest(subject, good, "") }})
			}
		}
		for _, c := range p.crashes {
			evs = append(evs, event{c.at, func() {
				s.mu.Lock()
				inc := s.current[c.replica]
				s.mu.Unlock()
				if inc != nil {
					inc.crash("as planned")
				}
			}})
		}
		slices.SortStableFunc(evs, func(a, b event) int { return int(a.at - b.at) })
		for _, ev := range evs {
			time.Sleep(ev.at - time.Since(simStart))
			ev.do()
		}
		for !w.quiet(s.processes()) && !w.isRunaway() {
			if time.Since(simStart) > simTimeout {
				w.violate("not settled after %s: a request is stranded", simTimeout)
				break
			}
			time.Sleep(5 * time.Second)
		}
		close(s.done)
		w.mu.Lock()
		w.ending, w.lastEvent = true, time.Since(simStart)
		w.mu.Unlock()
		for _, inc := range s.processes() {
			inc.crash("at the end") // a stranded handler stops at its next step
			inc.wg.Wait()
		}
		s.wg.Wait()
		violations = append(w.violations, check(w)...)
	})
	return w, violations
}

// check checks the invariants of a settled sequence.
func check(w *world) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, fmt.Sprintf(format, args...)) }
	for _, m := range w.reqs {
		if m.settled == "" {
			bad("request message %d was never settled (%d deliveries)", m.seq, m.delivered)
		}
	}
	var results []messages.Result
	var raw [][]byte
	for _, m := range w.streams["result"] {
		var r messages.Result
		if err := json.Unmarshal(m.data, &r); err != nil {
			bad("a stored result does not decode: %v", err)
			continue
		}
		results, raw = append(results, r), append(raw, m.data)
	}
	var audit []messages.AuditEvent
	for _, m := range w.streams["audit"] {
		var ev messages.AuditEvent
		if err := json.Unmarshal(m.data, &ev); err != nil {
			bad("a stored audit event does not decode: %v", err)
			continue
		}
		audit = append(audit, ev)
	}
	for _, r := range w.plan.requests {
		var rs []messages.Result
		for i, res := range results {
			if res.RequestID != r.id {
				continue
			}
			for j, other := range results[:i] {
				if other.RequestID == r.id && other.CompletedAt.Equal(res.CompletedAt) && !bytes.Equal(raw[i], raw[j]) {
					bad("%s: two copies of one outcome differ:\n%s\n%s", r.id, raw[j], raw[i])
				}
			}
			rs = append(rs, res)
		}
		final, ok := finalOf(rs)
		if !ok {
			bad("%s: %d results and no single final one: %s", r.id, len(rs), statuses(rs))
			continue
		}
		v = append(v, checkTruth(w, r, final, rs)...)
		v = append(v, checkTrail(w, r, final, audit)...)
	}
	return v
}

// finalOf is the request's final result: the one no other supersedes. A
// rejection decided by the message alone (it failed validation; nothing
// was recorded or filed) is a verdict on that message, not on the id: a
// corrected request sent under the id has the final word.
func finalOf(rs []messages.Result) (messages.Result, bool) {
	if f, ok := filingtest.Final(rs); ok {
		return f, true
	}
	return filingtest.Final(slices.DeleteFunc(slices.Clone(rs), func(r messages.Result) bool {
		return r.Error != nil && r.Error.Code == "InvalidRequest"
	}))
}

// checkTruth: the outcome is true, and was filed at most once.
func checkTruth(w *world, r requestPlan, final messages.Result, rs []messages.Result) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, r.id+": "+fmt.Sprintf(format, args...)) }
	acted := w.vendor.acted[r.id]
	live, unknown := 0, 0 // successes held by a replica that lived on; answers nobody that lived on knows
	for _, a := range w.vendor.answers[r.id] {
		switch {
		case a.inc == nil || a.inc.died:
			unknown++
		case a.success:
			live++
		}
	}
	for _, inc := range w.holders[r.id] {
		if inc.died {
			unknown++ // it may have called, or been about to
		}
	}
	ambiguous := final.Error != nil && final.Error.Class == messages.ClassAmbiguous
	switch {
	case !r.api.Resendable() && acted > 1:
		bad("the vendor acted on %d calls", acted)
	case r.resubmit && final.Status == messages.StatusRejected:
		bad("the corrected request was not processed: %s", describeResult(final))
	case live > 0 && final.Status != messages.StatusSucceeded:
		bad("a live replica holds the vendor's success, and the final result is %s", describeResult(final))
	case final.Status == messages.StatusSucceeded && acted == 0:
		bad("succeeded, but the vendor never acted on a call")
	case final.Status != messages.StatusSucceeded && !ambiguous && acted > 0 && !r.api.Resendable():
		bad("the vendor acted on it, and the final result is %s", describeResult(final))
	}
	for _, res := range rs {
		// Superseded or not, an ambiguous outcome sends an operator to check
		// with the vendor, and is a false alarm unless nobody alive knew.
		if res.Error != nil && res.Error.Class == messages.ClassAmbiguous && unknown == 0 {
			bad("ambiguous (at %s), but every answer of the vendor reached a replica that lived on", res.CompletedAt.Format(time.RFC3339Nano))
		}
	}
	e, ok := w.ledgerOf(r.id)
	if !ok || e.State != ledger.StateDone || e.Result == nil || !e.Result.CompletedAt.Equal(final.CompletedAt) {
		bad("the ledger does not hold the final result (entry %+v)", e)
	}
	return v
}

// checkTrail: the trail is complete, each event once, in its order.
func checkTrail(w *world, r requestPlan, final messages.Result, audit []messages.AuditEvent) []string {
	var v []string
	bad := func(format string, args ...any) { v = append(v, r.id+": "+fmt.Sprintf(format, args...)) }
	e, _ := w.ledgerOf(r.id)
	ids := map[string]bool{}
	for _, ev := range e.Trail {
		if ev.ID == "" || ids[ev.ID] {
			bad("the ledger's trail holds an event without an identity or two with one: %q", ev.ID)
		}
		ids[ev.ID] = true
	}
	bySeq := map[int]messages.AuditEvent{}
	received, firstAttempt := 0, 0
	var last *messages.AuditEvent
	for i, ev := range audit {
		if ev.RequestID != r.id || ev.Seq == 0 {
			continue
		}
		if _, dup := bySeq[ev.Seq]; dup {
			bad("two stored events at position %d: %s and %s", ev.Seq, bySeq[ev.Seq].ID, ev.ID)
		}
		bySeq[ev.Seq] = ev
		switch ev.Event {
		case messages.EventReceived:
			received = cmpMin(received, ev.Seq)
		case messages.EventAttempt:
			firstAttempt = cmpMin(firstAttempt, ev.Seq)
		case messages.EventSucceeded, messages.EventFailed, messages.EventRejected, messages.EventAmbiguous, messages.EventSettled, messages.EventReconciled:
			if last == nil || ev.Seq > last.Seq {
				last = &audit[i]
			}
		}
	}
	for n := 1; n <= len(e.Trail); n++ {
		ev, ok := bySeq[n]
		switch {
		case !ok:
			bad("the trail's event %d (%s) was never stored", n, e.Trail[n-1].Event)
		case ev.ID != e.Trail[n-1].ID:
			bad("the stored event %d is %s, the ledger's %s", n, ev.ID, e.Trail[n-1].ID)
		}
	}
	if len(bySeq) > len(e.Trail) {
		bad("%d events stored, the ledger's trail holds %d", len(bySeq), len(e.Trail))
	}
	switch {
	case received == 0:
		bad("no received event")
	case firstAttempt != 0 && firstAttempt < received:
		bad("an attempt (event %d) before received (event %d)", firstAttempt, received)
	}
	if last == nil || last.Status != final.Status {
		bad("the last outcome event %+v does not match the final result %s", last, describeResult(final))
	}
	return v
}

func cmpMin(cur, n int) int {
	if cur == 0 || n < cur {
		return n
	}
	return cur
}

// TestGeneratedSchedules explores generated plans (3,000, 200 with -short,
// unless -rapid.checks says otherwise) and prints what it explored.
func TestGeneratedSchedules(t *testing.T) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		n := "3000"
		if testing.Short() {
			n = "200"
		}
		if err := flag.Set("rapid.checks", n); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = flag.Set("rapid.checks", "100") })
	}
	var sequences, ops, crashes int
	var simulated time.Duration
	start := time.Now()
	rapid.Check(t, func(rt *rapid.T) {
		p := drawPlan(rt)
		w, violations := runPlan(t, p)
		sequences++
		ops += w.ops
		crashes += w.crashes
		simulated += w.lastEvent
		if len(violations) > 0 {
			rt.Fatalf("%s\nplan:\n%s\nwhat happened (last 150):\n%s", strings.Join(violations, "\n"), p, strings.Join(tail(w.events, simLogLines()), "\n"))
		}
	})
	t.Logf("generated schedules: %d sequences, %d operations, %d crashes, %s of simulated time, in %s",
		sequences, ops, crashes, simulated.Round(time.Second), time.Since(start).Round(time.Millisecond))
}

func tail(s []string, n int) []string { return s[max(len(s)-n, 0):] }

// simLogLines is how much of what happened a failure prints: the last
// 150 lines, or all of it with QF_SIMLOG set.
func simLogLines() int {
	if os.Getenv("QF_SIMLOG") != "" {
		return 1 << 30
	}
	return 150
}

// TestScheduleRegressions replays plans the generated schedules found
// broken, each a defect of the code before the fix named.
func TestScheduleRegressions(t *testing.T) {
	s, m := time.Second, time.Minute
	for _, tc := range []struct {
		name string
		plan plan
	}{
		{"a replica clock hours ahead took the vendor's record for an earlier filing and filed again (VMS reads by creation time)", plan{
			seed: 0, offsets: []time.Duration{3 * time.Hour, -3 * time.Hour, 3 * time.Hour}, restart: s,
			requests: []requestPlan{
				{id: "q0", api: messages.APIVMSAddQualification, at: 9 * s, calls: []callOutcome{outcomeLost}, latency: 25 * s, lag: 5 * s, resubmit: true},
				{id: "q1", api: messages.APIVMSUpdateQualification, at: 4 * s, latency: 25 * s}},
			outages: []outagePlan{{port: portStream, replica: 0, start: s, end: 41 * s}}}},
		{"a replica cut off from the ledger after its claim left a call for lost that was never sent (claimed straight into calling)", plan{
			seed: 23, offsets: []time.Duration{-2 * m, -2 * m, 90 * s}, restart: 14 * s, lostReplies: 20,
			requests: []requestPlan{{id: "q0", api: messages.APIVMSUpdateQualification, at: 11 * s, calls: []callOutcome{outcomeOK, outcomeUnfiled, outcomeOK},
				latency: 800 * time.Millisecond, lag: 20 * s, copies: []time.Duration{6 * s}}},
			outages: []outagePlan{{port: portStream, replica: -1, end: 40 * s, hang: true}, {port: portKV, replica: 2, start: 13 * s, end: 3*m + 13*s}}}},
		{"a replica that died after publishing its events left their positions to another replica's events (published before recorded)", plan{
			seed: 6, offsets: []time.Duration{-2 * m, 90 * s, 90 * s}, restart: 23 * s, lostReplies: 20, crashRate: 15,
			requests: []requestPlan{
				{id: "q0", api: messages.APISMSApplySignatureIdent, at: 25 * s, calls: []callOutcome{outcomeTransient, outcomeUnfiled}, latency: 800 * time.Millisecond, lag: 20 * s, resubmit: true},
				{id: "q1", api: messages.APISMSApplySignatureIdent, at: 6 * s, latency: 25 * s, lag: 5 * s, copies: []time.Duration{13*m + 41*s}, resubmit: true},
				{id: "q2", api: messages.APISMSApplySignatureIdent, at: s, calls: []callOutcome{outcomeThrottled, outcomeUnfiled}, latency: 800 * time.Millisecond, lag: 5 * s, resubmit: true}}}},
		{"two copies past their delivery limit took a live holder's entry from each other and called on forever (no lease past the limit)", plan{
			seed: 0, offsets: []time.Duration{0, 3 * time.Hour, -2 * m}, restart: 32 * s,
			requests: []requestPlan{
				{id: "q0", api: messages.APIVMSAddQualification, at: 2 * s, latency: 800 * time.Millisecond, lag: 20 * s, resubmit: true},
				{id: "q1", api: messages.APISMSApplySignatureIdent, latency: 800 * time.Millisecond},
				{id: "q2", api: messages.APIDouyinGetClassAuth, at: s, calls: []callOutcome{outcomeHang, outcomeHang, outcomeHang}, latency: 4 * s, copies: []time.Duration{6 * s, 9*m + 18*s}},
				{id: "q3", api: messages.APIDouyinAddRole, at: 6 * s, latency: 50 * time.Millisecond, copies: []time.Duration{s, 4 * s}, resubmit: true}},
			outages: []outagePlan{{port: portKV, replica: -1, end: 15 * m}, {port: portStream, replica: 2, start: 43 * s, end: 48 * s}}}},
		{"a call went out before its received event was stored, and an emit that failed before a write looped (published before recorded)", plan{
			seed: 2, offsets: []time.Duration{-3 * time.Hour, 0, 0}, restart: m,
			requests: []requestPlan{
				{id: "q0", api: messages.APIVMSUpdateQualification, at: 27 * s, calls: []callOutcome{outcomeLost, outcomeThrottled, outcomeTransient}, latency: 25 * s, lag: 5 * s, copies: []time.Duration{9*m + 33*s}, resubmit: true},
				{id: "q1", api: messages.APIVMSUpdateQualification, at: 17 * s, calls: []callOutcome{outcomeTransient}, latency: 50 * time.Millisecond, lag: 20 * s, copies: []time.Duration{13*m + 53*s, 6*m + 29*s}}},
			crashes: []crashPlan{{0, 23 * s}, {0, 28 * s}, {2, 2 * s}},
			outages: []outagePlan{{port: portStream, replica: -1, start: 4 * s, end: 3*m + 4*s}}}},
		{"a copy took over the entry of a replica cut off from the ledger with the vendor's answer in hand, and recorded it ambiguous (copies took over)", plan{
			seed: 37185, offsets: []time.Duration{0, 90 * s}, restart: 41 * s, lostReplies: 20,
			requests: []requestPlan{
				{id: "q0", api: messages.APIDouyinAddRole, at: 28 * s, calls: []callOutcome{outcomeLost, outcomeTransient}, latency: 800 * time.Millisecond, copies: []time.Duration{3*m + 32*s, 8 * s}, resubmit: true},
				{id: "q1", api: messages.APIVMSUpdateQualification, latency: 4 * s, lag: 20 * s, copies: []time.Duration{4 * s}}},
			outages: []outagePlan{{port: portAck, replica: -1, start: 3 * s, end: 43 * s, hang: true},
				{port: portKV, replica: 1, start: 7 * s, end: 12 * s, hang: true}, {port: portKV, replica: 1, start: 2 * s, end: 42 * s, hang: true}}}},
		{"a write whose reply was lost landed unrecognised, and its events were written again: one identity for two events, one of them never stored (pending kept)", plan{
			seed: 27682220, offsets: []time.Duration{0, -3 * time.Hour}, restart: 38 * s, lostReplies: 20,
			requests: []requestPlan{
				{id: "q0", api: messages.APISMSApplySignatureIdent, at: 20 * s, calls: []callOutcome{outcomeLost, outcomeOK, outcomeUnfiled}, latency: 25 * s, lag: 20 * s, copies: []time.Duration{2*m + 36*s, 6 * s}},
				{id: "q1", api: messages.APIVMSAddQualification, at: 3 * s, calls: []callOutcome{outcomeTransient}, latency: 25 * s, lag: 20 * s, copies: []time.Duration{46 * s, 16 * s}},
				{id: "q2", api: messages.APIVMSUpdateQualification, at: 10 * s, calls: []callOutcome{outcomeTransient, outcomeUnfiled}, latency: 4 * s, resubmit: true},
				{id: "q3", api: messages.APIDouyinGetClassAuth, at: 28 * s, calls: []callOutcome{outcomeUnfiled, outcomePermanent, outcomeTransient}, latency: 800 * time.Millisecond, lag: 20 * s, copies: []time.Duration{54 * s}}},
			outages: []outagePlan{{port: portVendor, replica: -1, start: 15 * s, end: 15*m + 15*s, hang: true},
				{port: portAck, replica: 0, start: s, end: 6 * s, hang: true}, {port: portAck, replica: 1, start: 15 * s, end: 20 * s, hang: true}}}},
		{"a replica cut off from the ledger handed back an entry whose call it knew was answered, and another replica took the call for lost (knowledge handed back after the record timeout)", plan{
			seed: 32, offsets: []time.Duration{-3 * time.Hour, -3 * time.Hour, 0}, restart: 2 * s,
			requests: []requestPlan{
				{id: "q0", api: messages.APIVMSUpdateQualification, calls: []callOutcome{outcomeTransient, outcomeThrottled}, latency: 800 * time.Millisecond, lag: 5 * s},
				{id: "q1", api: messages.APIDouyinGetClassAuth, at: 14 * s, latency: 25 * s, copies: []time.Duration{s, 3 * s}},
				{id: "q2", api: messages.APIVMSUpdateQualification, at: 4 * s, latency: 800 * time.Millisecond, lag: 20 * s, copies: []time.Duration{7 * s}, resubmit: true},
				{id: "q3", api: messages.APIVMSAddQualification, at: s, calls: []callOutcome{outcomeTransient, outcomeHang}, latency: 50 * time.Millisecond, lag: 20 * s, copies: []time.Duration{8 * m}, resubmit: true}},
			crashes: []crashPlan{{1, m + 36*s}, {2, 4 * s}, {1, 2 * s}},
			outages: []outagePlan{{port: portKV, replica: -1, start: s, end: 15*m + s, hang: true}}}},
		{"a copy kept in hand while the holder's message was still in the stream kept that message's own redelivery waiting for the id on the same replica, for ever (copy kept in hand)", plan{
			seed: 0, offsets: []time.Duration{3 * time.Hour, 0}, restart: 5 * s,
			requests: []requestPlan{
				{id: "q0", api: messages.APIVMSUpdateQualification, at: 2 * s, calls: []callOutcome{outcomeOK, outcomeThrottled, outcomeTransient}, latency: 4 * s, resubmit: true},
				{id: "q1", api: messages.APIVMSAddQualification, at: s, calls: []callOutcome{outcomeHang, outcomeLost, outcomeThrottled}, latency: 4 * s, lag: 5 * s, copies: []time.Duration{14*m + 8*s, 2 * s}}},
			crashes: []crashPlan{{0, 49 * s}, {1, 25 * s}},
			outages: []outagePlan{{port: portStream, replica: -1, start: s, end: 6 * s}}}},
		{"a replica cut off from the ledger for longer than the record timeout handed back the message whose call it knew was answered, and its redelivery to another replica took the call for lost (knowledge handed back, its message still in the stream)", plan{
			seed: 6, offsets: []time.Duration{3 * time.Hour, 3 * time.Hour, 90 * s}, restart: 49 * s,
			requests: []requestPlan{
				{id: "q1", api: messages.APIDouyinAddRole, at: 9 * s, calls: []callOutcome{outcomeThrottled, outcomeThrottled, outcomeThrottled}, latency: 800 * time.Millisecond, lag: 20 * s}},
			crashes: []crashPlan{{0, s}},
			outages: []outagePlan{{port: portKV, replica: -1, start: 13 * s, end: 15*m + 13*s, hang: true}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, violations := runPlan(t, &tc.plan)
			for _, v := range violations {
				t.Error(v)
			}
			if t.Failed() {
				t.Logf("plan:\n%s\nwhat happened (last 150):\n%s", &tc.plan, strings.Join(tail(w.events, simLogLines()), "\n"))
			}
		})
	}
}
