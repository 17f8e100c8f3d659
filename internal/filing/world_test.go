package filing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The world of the generated schedules (schedule_test.go): the request
// stream and its durable consumer, the ledger's KV store, the results,
// audit and dead-letter streams and the vendor, kept in memory and run on
// the virtual clock of a synctest bubble. Replicas reach it through ports
// that inject the plan's faults. A crashed process stops at the first port
// it touches (runtime.Goexit), as a killed process stops: what it sent
// before may have landed, nothing after does.

// ackWait is the durable's AckWait (the consumer's default).
const ackWait = 10 * time.Second

type world struct {
	plan *plan
	mu   sync.Mutex
	kv   map[string]kvValue
	rev  uint64
	reqs []*reqMsg
	// The streams the consumer publishes to, by the subject's second
	// token (result, audit, dead), each deduplicating on Nats-Msg-Id.
	streams    map[string][]storedMsg
	ids        map[string]bool
	holders    map[string][]*process // by request id, the processes that wrote its entry "calling"
	up         []bool                // by replica: its process is running
	vendor     vendor
	changed    chan struct{} // closed and replaced on every change of the request stream
	events     []string      // what happened, for a failing sequence
	ops        int           // operations performed by the ports
	crashes    int
	ending     bool          // the sequence is over: what stops now did not crash
	runaway    bool          // a trail grew past maxTrail: the sequence is cut short
	lastEvent  time.Duration // when the sequence settled
	violations []string
}

type kvValue struct {
	data []byte
	rev  uint64
}

type storedMsg struct {
	subject string
	data    []byte
}

// reqMsg is a message in the request stream.
type reqMsg struct {
	seq         uint64
	subject     string
	data        []byte
	at          time.Time // the server's timestamp
	delivered   int
	current     *simDelivery // the delivery the server waits on, if any
	deadline    time.Time    // when it is delivered again without an ack or a heartbeat
	availableAt time.Time    // a nak's delay
	settled     string       // "ack" or "term"
}

func newWorld(p *plan) *world {
	return &world{plan: p, kv: map[string]kvValue{}, streams: map[string][]storedMsg{}, ids: map[string]bool{}, holders: map[string][]*process{},
		vendor:  vendor{acted: map[string]int{}, records: map[string][]record{}, calls: map[string]int{}, answers: map[string][]answerTo{}},
		changed: make(chan struct{}), up: make([]bool, len(p.offsets))}
}

// kick wakes the replicas waiting for work; w.mu is held.
func (w *world) kick() {
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *world) logf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.logfLocked(format, args...)
}

func (w *world) logfLocked(format string, args ...any) {
	w.events = append(w.events, fmt.Sprintf("%8s ", time.Since(simStart).Round(time.Millisecond))+fmt.Sprintf(format, args...))
}

func (w *world) violate(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

// publishRequest stores a request; a message id already stored is dropped,
// as the request stream's duplicate window drops it.
func (w *world) publishRequest(subject string, data []byte, msgID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if msgID != "" {
		if w.ids["request:"+msgID] {
			return
		}
		w.ids["request:"+msgID] = true
	}
	w.reqs = append(w.reqs, &reqMsg{seq: uint64(len(w.reqs) + 1), subject: subject, data: data, at: time.Now()})
	w.kick()
}

// next hands inc the first message due, if any, or says when one may be.
func (w *world) next(inc *process) (*simDelivery, time.Duration, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	wake := time.Hour
	for _, m := range w.reqs {
		if m.settled != "" {
			continue
		}
		due := m.availableAt
		if m.current != nil {
			due = m.deadline
		}
		if due.After(now) {
			wake = min(wake, due.Sub(now))
			continue
		}
		if turn := w.plan.pick(len(w.up), "deliver", m.seq, m.delivered); turn != inc.replica && w.up[turn] {
			continue // another replica's turn: the seed decides who takes which delivery
		}
		m.delivered++
		d := &simDelivery{m: m, n: m.delivered, inc: inc}
		m.current, m.deadline = d, now.Add(ackWait)
		w.logfLocked("%s takes seq %d (delivery %d)", inc, m.seq, d.n)
		return d, 0, nil
	}
	return nil, wake, w.changed
}

func (w *world) isRunaway() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.runaway
}

// quiet reports whether every request is settled and no handler runs.
func (w *world) quiet(incs []*process) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.reqs {
		if m.settled == "" {
			return false
		}
	}
	for _, inc := range incs {
		if inc.busy > 0 {
			return false
		}
	}
	return true
}

// simDelivery is one delivery of a message (filing.Msg).
type simDelivery struct {
	m   *reqMsg
	n   int
	inc *process
}

func (d *simDelivery) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: d.m.seq, Consumer: d.m.seq*100 + uint64(d.n)},
		NumDelivered: uint64(d.n), Timestamp: d.m.at}, nil
}
func (d *simDelivery) Data() []byte         { return d.m.data }
func (d *simDelivery) Headers() nats.Header { return nats.Header{} }
func (d *simDelivery) Subject() string      { return d.m.subject }

func (d *simDelivery) DoubleAck(ctx context.Context) error {
	return d.inc.do(ctx, portAck, fmt.Sprint(d.m.seq), func(w *world) error {
		if d.m.settled == "" {
			d.m.settled = "ack"
			w.logfLocked("%s acks seq %d", d.inc, d.m.seq)
			w.kick()
		}
		return nil
	})
}

func (d *simDelivery) NakWithDelay(delay time.Duration) error {
	return d.inc.do(context.Background(), portAck, fmt.Sprint(d.m.seq), func(w *world) error {
		if d.m.settled == "" && d.m.current == d {
			d.m.current, d.m.availableAt = nil, time.Now().Add(delay)
			w.logfLocked("%s naks seq %d for %s", d.inc, d.m.seq, delay)
			w.kick()
		}
		return nil
	})
}

func (d *simDelivery) TermWithReason(reason string) error {
	return d.inc.do(context.Background(), portAck, fmt.Sprint(d.m.seq), func(w *world) error {
		if d.m.settled == "" {
			d.m.settled = "term"
			w.logfLocked("%s terms seq %d: %s", d.inc, d.m.seq, reason)
			w.kick()
		}
		return nil
	})
}

// inProgress is the heartbeat of a delivery still being handled.
func (d *simDelivery) inProgress(w *world) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d.m.current == d && d.m.settled == "" {
		d.m.deadline = time.Now().Add(ackWait)
	}
}

// The ports: what each replica reaches the world through.

type port int

const (
	portKV port = iota
	portStream
	portAck
	portVendor
	ports
)

var portNames = [ports]string{"ledger", "streams", "acks", "vendor"}

// do performs one operation of inc on the world through a port, with the
// plan's faults: an outage fails it at once or makes it hang, a lost reply
// lets it land and fails it all the same, a crash stops the process
// before or after it lands.
func (inc *process) do(ctx context.Context, p port, key string, effect func(*world) error) error {
	w := inc.w
	inc.gate()
	if o, ok := w.plan.outage(p, inc.replica, time.Now()); ok {
		if !o.hang {
			return fmt.Errorf("%s outage: %w", portNames[p], nats.ErrNoResponders)
		}
		if err := sleepCtx(ctx, o.end-time.Since(simStart)); err != nil {
			inc.gate()
			return err
		}
	}
	if err := sleepCtx(ctx, time.Millisecond); err != nil {
		inc.gate()
		return err
	}
	inc.gate()
	w.mu.Lock()
	w.ops++
	inc.ops[key]++
	n := inc.ops[key] // counted per process and key: the same on a replay
	err := effect(w)
	lost := err == nil && p != portVendor && w.plan.chance(w.plan.lostReplies, "lost", inc.String(), key, n)
	crash := w.plan.chance(w.plan.crashRate, "crash", inc.String(), key, n) && w.crashes < maxCrashes
	w.mu.Unlock()
	if crash {
		inc.crash("after a " + portNames[p] + " operation")
	}
	inc.gate()
	if lost {
		return fmt.Errorf("%s reply lost: %w", portNames[p], nats.ErrTimeout)
	}
	return err
}

// gate stops the goroutine of a crashed process.
func (inc *process) gate() {
	if inc.dead() {
		runtime.Goexit()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// kvPort is the ledger's store (ledger.Store).
type kvPort struct{ inc *process }

type kvEntry struct {
	jetstream.KeyValueEntry
	value []byte
	rev   uint64
}

func (e kvEntry) Value() []byte    { return e.value }
func (e kvEntry) Revision() uint64 { return e.rev }

func (k kvPort) Bucket() string { return "SIM_LEDGER" }

func (k kvPort) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	var e kvEntry
	err := k.inc.do(ctx, portKV, key, func(w *world) error {
		v, ok := w.kv[key]
		if !ok {
			return jetstream.ErrKeyNotFound
		}
		e = kvEntry{value: v.data, rev: v.rev}
		return nil
	})
	return e, err
}

func (k kvPort) Create(ctx context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	return k.put(ctx, key, value, func(_ kvValue, ok bool) error {
		if ok {
			return jetstream.ErrKeyExists
		}
		return nil
	})
}

func (k kvPort) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	return k.put(ctx, key, value, func(v kvValue, ok bool) error {
		if !ok || v.rev != last {
			return jetstream.ErrKeyRevisionMismatch
		}
		return nil
	})
}

// put stores value as the key's next revision, if cas lets it.
func (k kvPort) put(ctx context.Context, key string, value []byte, cas func(kvValue, bool) error) (uint64, error) {
	var rev uint64
	err := k.inc.do(ctx, portKV, key, func(w *world) error {
		if err := cas(w.kv[key], w.kv[key].rev != 0); err != nil {
			return err
		}
		w.rev++
		rev = w.rev
		w.kv[key] = kvValue{data: value, rev: rev}
		w.noteCalling(k.inc, value)
		return nil
	})
	return rev, err
}

// noteCalling notes the processes that wrote an entry "calling": one that
// dies holding it leaves a call nobody can vouch for; w.mu is held.
func (w *world) noteCalling(inc *process, value []byte) {
	var e ledger.Entry
	if json.Unmarshal(value, &e) != nil {
		return
	}
	if e.State == ledger.StateCalling {
		w.holders[e.RequestID] = append(w.holders[e.RequestID], inc)
	}
	if len(e.Trail) > maxTrail && !w.runaway {
		w.runaway = true
		n := map[string]int{}
		for _, ev := range e.Trail {
			n[ev.Event]++
		}
		w.violations = append(w.violations, fmt.Sprintf("%s: the trail grows without bound: %v", e.RequestID, n))
	}
	status := ""
	if e.Result != nil {
		status = string(e.Result.Status)
	}
	w.logfLocked("%s writes %s %s %s (nonce %s, trail %d, emitted %d)", inc, e.RequestID, e.State, status, e.Nonce, len(e.Trail), e.Emitted)
}

// requestsPort reads the request stream (filing.Requests): a message is
// there until a delivery acks or terminates it.
type requestsPort struct{ inc *process }

func (r requestsPort) GetMsg(ctx context.Context, seq uint64, _ ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	var m jetstream.RawStreamMsg
	err := r.inc.do(ctx, portStream, fmt.Sprint("get ", seq), func(w *world) error {
		if seq == 0 || seq > uint64(len(w.reqs)) || w.reqs[seq-1].settled != "" {
			return jetstream.ErrMsgNotFound
		}
		m = jetstream.RawStreamMsg{Subject: w.reqs[seq-1].subject, Sequence: seq, Data: w.reqs[seq-1].data}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// streamPort publishes results, audit events and dead letters
// (filing.Publisher).
type streamPort struct{ inc *process }

func (s streamPort) PublishMsg(ctx context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	var ack jetstream.PubAck
	id := m.Header.Get(jetstream.MsgIDHeader)
	err := s.inc.do(ctx, portStream, id, func(w *world) error {
		name := strings.Split(m.Subject, ".")[1]
		ack.Stream = name
		if id != "" && w.ids[id] {
			ack.Duplicate = true
			return nil
		}
		w.ids[id] = id != ""
		w.streams[name] = append(w.streams[name], storedMsg{subject: m.Subject, data: slices.Clone(m.Data)})
		ack.Sequence = uint64(len(w.streams[name]))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &ack, nil
}

// PublishMsgAsync publishes on a goroutine of its own, as a connection
// sends on while the caller awaits the acks.
func (s streamPort) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	s.inc.gate()
	f := &future{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	s.inc.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ack, err := s.PublishMsg(ctx, m)
		if err != nil {
			f.err <- err
			return
		}
		f.ok <- ack
	})
	return f, nil
}

type future struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *future) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *future) Err() <-chan error            { return f.err }
func (f *future) Msg() *nats.Msg               { return f.msg }

// The vendor: it acts on a call when the call arrives, answers after the
// request's latency, and lists a record only after the request's listing
// lag.
type vendor struct {
	acted   map[string]int        // calls acted on, by request id
	calls   map[string]int        // calls received, by request id and fingerprint
	records map[string][]record   // by what a read matches on
	answers map[string][]answerTo // answers sent back, by request id
	n       int
}

// answerTo is an answer of the vendor and the process it reached, or
// lost on its way (inc nil).
type answerTo struct {
	inc     *process
	success bool
}

type record struct {
	id        string
	visibleAt time.Time
}

type vendorPort struct{ inc *process }

var _ filing.Dispatcher = vendorPort{}

// matchKey is what a read of the vendor's records matches a request on.
func matchKey(req *messages.Request) string {
	switch p := req.Typed().(type) {
	case *messages.VMSQualification:
		return "vms:" + p.QualificationMainInfoFormDO.QualificationEntity
	case *messages.SMSApplySignatureIdent:
		return "sms:" + p.MaterialName
	}
	return string(req.API) + ":" + req.ID
}

func (v vendorPort) Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
	inc, w := v.inc, v.inc.w
	rp := w.plan.request(req.ID)
	var what callOutcome
	var rec record
	err := inc.do(ctx, portVendor, req.ID, func(w *world) error {
		if ctx.Err() != nil {
			return fmt.Errorf("not sent: %w", errors.Join(context.Cause(ctx), retry.ErrTransient))
		}
		if !w.receivedStored(req.ID) {
			w.violations = append(w.violations, fmt.Sprintf("%s: a call went out before received was stored", req.ID))
		}
		key := req.ID + "/" + req.Fingerprint()
		n := w.vendor.calls[key]
		w.vendor.calls[key]++
		what = outcomeOK
		if n < len(rp.calls) {
			what = rp.calls[n]
		}
		if what.acts() {
			w.vendor.n++
			w.vendor.acted[req.ID]++
			rec = record{id: fmt.Sprintf("REC-%d", w.vendor.n), visibleAt: time.Now().Add(rp.lag)}
			mk := matchKey(req)
			w.vendor.records[mk] = append(w.vendor.records[mk], rec)
		}
		w.logfLocked("%s calls %s (%s): %s", inc, req.ID, req.API, what)
		return nil
	})
	if err != nil {
		if ctx.Err() == nil {
			return dispatch.Outcome{}, fmt.Errorf("connection refused: %w", retry.ErrTransient)
		}
		w.answered(req.ID, nil, false) // the client cannot tell whether it was sent
		return dispatch.Outcome{}, lostAnswer(req.API, err)
	}
	latency := rp.latency
	if what == outcomeHang {
		latency = 10 * time.Minute
	}
	if err := sleepCtx(ctx, latency); err != nil {
		w.answered(req.ID, nil, false)
		inc.gate()
		w.logf("%s: the call of %s cut short: %v", inc, req.ID, err)
		return dispatch.Outcome{}, lostAnswer(req.API, err)
	}
	if what == outcomeLost || what == outcomeUnfiled {
		inc = nil
	}
	w.answered(req.ID, inc, what.acts())
	v.inc.gate()
	if err := vendorError(what, req.API); err != nil {
		return dispatch.Outcome{}, err
	}
	res, _ := json.Marshal(map[string]string{"QualificationNo": rec.id})
	return dispatch.Outcome{Result: res, UpstreamRequestID: "up-" + rec.id}, nil
}

// vendorError is what a client says of a call the vendor answered as o
// (nil: a success).
func vendorError(o callOutcome, api messages.API) error {
	switch o {
	case outcomeTransient:
		return fmt.Errorf("SystemError: %w", retry.ErrTransient)
	case outcomeThrottled:
		return fmt.Errorf("FlowLimitExceeded: %w", retry.ErrThrottled)
	case outcomePermanent:
		return fmt.Errorf("RequestParametersError: %w", retry.ErrPermanent)
	case outcomeLost, outcomeUnfiled:
		return filingtest.AnswerLost(api)
	}
	return nil
}

// lostAnswer is what a client says of a call cut short once sent.
func lostAnswer(api messages.API, cause error) error {
	err := fmt.Errorf("call cut short: %w", errors.Join(cause, retry.ErrTransient, retry.ErrAmbiguous))
	if !api.Resendable() {
		return &dispatch.AmbiguousError{API: api, Err: err}
	}
	return err
}

func (v vendorPort) Reconcile(ctx context.Context, req *messages.Request) (dispatch.Finding, error) {
	var f dispatch.Finding
	err := v.inc.do(ctx, portVendor, "read:"+req.ID, func(w *world) error {
		for _, rec := range w.vendor.records[matchKey(req)] {
			if rec.visibleAt.After(time.Now()) {
				continue
			}
			res, _ := json.Marshal(map[string]string{"QualificationNo": rec.id})
			f.Records = append(f.Records, dispatch.Record{ID: rec.id, Outcome: dispatch.Outcome{Result: res, UpstreamRequestID: "read-" + rec.id}})
		}
		w.logfLocked("%s reads the records of %s: %d", v.inc, req.ID, len(f.Records))
		return nil
	})
	if err != nil {
		return f, fmt.Errorf("vendor read: %w", errors.Join(err, retry.ErrTransient))
	}
	return f, nil
}

func (w *world) answered(id string, inc *process, success bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.vendor.answers[id] = append(w.vendor.answers[id], answerTo{inc: inc, success: success})
}

// receivedStored reports whether the audit stream holds a received event
// of request id; w.mu is held.
func (w *world) receivedStored(id string) bool {
	for _, m := range w.streams["audit"] {
		var ev messages.AuditEvent
		if json.Unmarshal(m.data, &ev) == nil && ev.RequestID == id && ev.Event == messages.EventReceived {
			return true
		}
	}
	return false
}

// chance decides a fault of rate permille from what names one operation,
// so that a seed decides the same faults whatever the goroutines'
// interleaving.
func (p *plan) chance(permille int, what ...any) bool {
	if permille <= 0 {
		return false
	}
	h := fnv.New64a()
	fmt.Fprint(h, p.seed, what)
	return h.Sum64()%1000 < uint64(permille)
}

// pick picks one of n from what names a choice.
func (p *plan) pick(n int, what ...any) int {
	h := fnv.New64a()
	fmt.Fprint(h, p.seed, what)
	return int(h.Sum64() % uint64(n))
}

// ledgerOf reads the entry of request id as it is stored.
func (w *world) ledgerOf(id string) (ledger.Entry, bool) {
	key, _ := ledger.Key("", id)
	w.mu.Lock()
	v, ok := w.kv[key]
	w.mu.Unlock()
	var e ledger.Entry
	if !ok || json.Unmarshal(v.data, &e) != nil {
		return e, false
	}
	return e, true
}
