// Package filing handles one filing request from the request stream. The
// decisions are made by a deterministic core without I/O (decide.go); a
// thin runner (this file) performs each step it asks for — ledger read or
// write, upstream call, publish, settle — and feeds the answer back. Every
// state change emits one audit event, and the logs and metrics are derived
// from that emission (events.go).
package filing

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Dispatcher makes one upstream call for a validated request.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)
}

// Reconciler reads the vendor's records to learn whether a create whose
// answer was lost was filed (*dispatch.Dispatcher).
type Reconciler interface {
	Reconcile(ctx context.Context, req *messages.Request, since time.Time) (dispatch.Finding, error)
}

// Ledger is the idempotency ledger (*ledger.Ledger).
type Ledger interface {
	ClaimEntry(ctx context.Context, e ledger.Entry) (ledger.Entry, bool, error)
	Create(ctx context.Context, e ledger.Entry) (ledger.Entry, error)
	Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error)
	Get(ctx context.Context, id string) (ledger.Entry, error)
}

// Publisher publishes to JetStream: one message, waiting for the stream's
// ack, or several sent at once (PublishMsgAsync, in order on one
// connection) whose acks are awaited together.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Replier sends a result to a request's reply subject over core NATS.
type Replier interface {
	PublishMsg(msg *nats.Msg) error
}

// Objects stores the body of a dead letter too big to travel in it.
type Objects interface {
	PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error)
}

// Config configures a Processor.
type Config struct {
	Subjects messages.Subjects
	Policy   retry.Policy
	// MaxDeliver: a retryable failure on this delivery is dead-lettered.
	MaxDeliver int
	// Owner names this replica in the ledger; unique per process.
	Owner string
	// InFlightLease is at least how long a "calling" entry of another
	// replica is taken to be still in flight (normally the consumer's
	// AckWait). The lease is never shorter than one delivery's calls can
	// last: the in-process retry budget plus CallTimeout.
	InFlightLease time.Duration
	// PublishTimeout bounds each publish and ledger operation (default 10s).
	PublishTimeout time.Duration
	// RecordTimeout is how long a replica keeps trying to record what would
	// otherwise be lost — a vendor's answer, a call it knows it never sent
	// — before it hands the message back (default 2 min).
	RecordTimeout time.Duration
	// TroubleTimeout is how long other broker trouble is retried in process
	// before the message is handed back (default 2s).
	TroubleTimeout time.Duration
	// CallTimeout bounds one upstream call (default 1 min); the clients
	// have their own timeouts (10 s by default).
	CallTimeout time.Duration
	// MaxPayload is the server's max_payload (default 1 MiB): a dead letter
	// that would not fit keeps its body in Objects.
	MaxPayload int
	// Objects holds oversized dead-letter bodies; nil drops such a body
	// from its dead letter (keeping its size and digest).
	Objects Objects
	// Files holds the SMS files too large for a message (the
	// <PREFIX>_FILES object store, named FilesBucket); nil refuses every
	// request that references one.
	Files       files.Store
	FilesBucket string
	// RedactResults redacts the vendor's answer (messages.Redact) in the
	// result, before it is recorded or published.
	RedactResults bool
	// Tracer makes a span of each delivery, with children for the ledger
	// steps, the vendor calls and reads and the publishes; nil traces
	// nothing. Results and audit events carry the delivery's trace context.
	Tracer trace.Tracer
	// Reconcile settles a VMS or SMS create whose answer was lost by
	// reading the vendor's records; without a Reader such a request ends
	// ambiguous, for an operator.
	Reconcile ReconcileConfig
	Now       func() time.Time
}

// ReconcileConfig configures reconciliation (see the README,
// "Reconciliation").
type ReconcileConfig struct {
	// Reader reads the vendor's records; nil turns reconciliation off.
	Reader Reconciler
	// Window is the settling window (default 30s): a record just written
	// may not be listed at once, so Reads reads are spread over it, the
	// last at its end.
	Window time.Duration
	// Reads is the number of answered reads in the window (default 4).
	Reads int
	// ClockSkew: a record created up to this long before the request was
	// first claimed still counts as this filing (default 2 min).
	ClockSkew time.Duration
	// KeepAmbiguous: a request whose record is absent after the window
	// ends ambiguous, for an operator, instead of being filed again once.
	KeepAmbiguous bool
}

// Processor handles request messages. It is safe for concurrent use.
type Processor struct {
	cfg     Config
	lim     limits
	disp    Dispatcher
	ledger  Ledger
	js      Publisher
	reply   Replier
	log     *zap.Logger
	metrics *metrics.Metrics
	mem     *memory
	active  atomic.Int64 // handlers running
}

// New returns a Processor.
func New(cfg Config, disp Dispatcher, l Ledger, js Publisher, reply Replier, log *zap.Logger, m *metrics.Metrics) (*Processor, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PublishTimeout, 10*time.Second)
	def(&cfg.RecordTimeout, 2*time.Minute)
	def(&cfg.TroubleTimeout, 2*time.Second)
	def(&cfg.InFlightLease, time.Minute)
	def(&cfg.CallTimeout, time.Minute)
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Owner == "" {
		return nil, errors.New("filing: Config.Owner is required")
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	rc := cfg.Reconcile
	def(&rc.Window, 30*time.Second)
	def(&rc.ClockSkew, 2*time.Minute)
	if rc.Reads <= 0 {
		rc.Reads = 4
	}
	cfg.Reconcile = rc
	lim := limits{
		maxDeliver: cfg.MaxDeliver, hardLimit: max(cfg.MaxDeliver, 1) + queue.BrokerReserve,
		lease:        max(cfg.InFlightLease, cfg.Policy.Budget()+cfg.CallTimeout),
		recordBudget: cfg.RecordTimeout, troubleBudget: cfg.TroubleTimeout, policy: cfg.Policy, owner: cfg.Owner,
		redactResults: cfg.RedactResults,
		reconcile: reconcileRules{on: rc.Reader != nil, window: rc.Window, reads: rc.Reads, skew: rc.ClockSkew,
			keepAmbiguous: rc.KeepAmbiguous},
	}
	if cfg.Files != nil {
		// Files held in the object store are fetched with the entry
		// "calling", before the call: the lease covers that too.
		lim.lease += cfg.CallTimeout
	}
	if lim.reconcile.on {
		// A replica that reconciles holds the entry "calling" through its
		// window: the lease covers it, and its last read.
		lim.lease += rc.Window + cfg.CallTimeout
	}
	return &Processor{cfg: cfg, lim: lim, disp: disp, ledger: l, js: js, reply: reply, log: log, metrics: m,
		mem: newMemory(max(10*cfg.RecordTimeout, time.Hour))}, nil
}

// Active is the number of deliveries being handled right now, a replica
// still settling what it knows included.
func (p *Processor) Active() int { return int(p.active.Load()) }

// Owner is the replica's name in the ledger.
func (p *Processor) Owner() string { return p.cfg.Owner }

// Msg is what the processor needs of a JetStream message.
type Msg interface {
	Metadata() (*jetstream.MsgMetadata, error)
	Data() []byte
	Headers() nats.Header
	Subject() string
	DoubleAck(ctx context.Context) error
	NakWithDelay(delay time.Duration) error
	TermWithReason(reason string) error
}

// maxSteps bounds the steps of one delivery: a loop in the core is a bug,
// and a bug must not spin forever.
const maxSteps = 10000

// Handle processes one delivery and settles it. ctx is the work context: it
// is cancelled only when the shutdown grace period is over.
func (p *Processor) Handle(ctx context.Context, msg Msg) {
	p.metrics.InFlightAdd(1)
	defer p.metrics.InFlightAdd(-1)
	p.active.Add(1)
	defer p.active.Add(-1)
	r := &runner{p: p, ctx: ctx, msg: msg, k: p.safeKnown(msg)}
	r.startSpan()
	defer r.span.End()
	defer r.release()
	for n := 0; ; n++ {
		r.k.now, r.k.stopping = p.cfg.Now().UTC(), ctx.Err() != nil
		s, ok := r.decide()
		if !ok || n > maxSteps {
			// The core itself failed; there is nothing left to decide with.
			r.log().Error("decision core failed; handing the message back", zap.Int("steps", n))
			r.settle(step{kind: stepSettle, action: retry.ActionNakWithDelay, delay: p.cfg.Policy.RedeliveryMax, reason: "internal error"})
			return
		}
		if s.kind == stepSettle {
			r.settle(s)
			return
		}
		r.perform(s)
	}
}

// safeKnown is newKnown, with a panic on untrusted bytes turned into
// knowledge (the message is dead-lettered).
func (p *Processor) safeKnown(msg Msg) (k *known) {
	defer func() {
		if v := recover(); v != nil {
			k = &known{lim: p.lim, delivery: 1, now: p.cfg.Now().UTC(), panicked: bound(fmt.Sprint(v), 300), panics: 1}
			k.receivedAt = k.now
		}
	}()
	return p.newKnown(msg)
}

// newKnown reads what a message says about itself.
func (p *Processor) newKnown(msg Msg) *known {
	k := &known{lim: p.lim, delivery: 1, now: p.cfg.Now().UTC()}
	k.receivedAt = k.now
	subjectAPI, _ := p.cfg.Subjects.APIFromRequestSubject(msg.Subject())
	if subjectAPI.Valid() {
		k.subjectAPI = subjectAPI // an unknown one never becomes a label, a field or a subject
	}
	if md, err := msg.Metadata(); err == nil {
		k.seq, k.delivery = md.Sequence.Stream, int(md.NumDelivered)
		if !md.Timestamp.IsZero() {
			k.receivedAt = md.Timestamp.UTC()
		}
	}
	if k.delivery > 1 {
		p.metrics.Redelivery(apiLabel(k.subjectAPI))
	}
	req, err := messages.ParseRequest(msg.Data())
	if err != nil {
		k.parseErr = err
		return k
	}
	k.req = req
	if err := req.ValidateFor(subjectAPI); err != nil {
		k.invalid = err
		return k
	}
	k.fingerprint = Fingerprint(req)
	return k
}

// runner performs the steps of one delivery.
type runner struct {
	p    *Processor
	ctx  context.Context // the work context
	msg  Msg
	k    *known
	held bool            // this handler holds the id in memory
	tctx context.Context // the delivery's span, for its children and the messages it publishes
	span trace.Span
}

// decide runs the core, turning a panic into knowledge.
func (r *runner) decide() (s step, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if r.k.panicked != "" {
				ok = false // the panic path itself panicked
				return
			}
			r.panicked(v)
			s, ok = r.decide()
		}
	}()
	if r.k.req != nil && r.k.invalid == nil && !r.held && r.k.panicked == "" {
		r.acquire()
	}
	return decide(r.k), true
}

func (r *runner) panicked(v any) {
	r.k.panicked = bound(fmt.Sprint(v), 300)
	r.k.panics++
	r.log().Error("panic while handling a message; it is dead-lettered", zap.String("panic", r.k.panicked), zap.ByteString("stack", debug.Stack()))
}

// perform does one step and writes its answer into known.
func (r *runner) perform(s step) {
	defer func() {
		if v := recover(); v != nil {
			r.panicked(v)
		}
	}()
	k := r.k
	var err error
	span := r.stepSpan(s)
	if span != nil {
		defer func() { r.endStepSpan(span, s, err) }()
	}
	switch s.kind {
	case stepWaitLocal:
		r.waitLocal()
	case stepSleep:
		t := time.NewTimer(s.delay)
		select {
		case <-t.C:
		case <-r.ctx.Done():
		}
		t.Stop()
	case stepCall:
		r.call()
	case stepReconcile:
		r.reconcile()
	case stepFiles:
		err = r.fetchFiles()
	case stepBaseline:
		r.readBaseline()
	case stepRemoveFiles:
		r.removeFiles()
	case stepClaim:
		err = r.claim(s.entry)
	case stepRead:
		err = r.read()
	case stepWrite:
		err = r.write(s.entry)
	case stepEmit:
		err = r.emit(s.result)
	case stepEvent:
		if err = r.publishEvent(s.event); err == nil {
			k.eventDone = true
		}
	case stepDeadLetter:
		if err = r.deadLetter(s.dead); err == nil {
			k.deadDone = true
		}
	case stepResult:
		if err = r.publishResult(s.result); err == nil {
			k.resultDone = true
		}
	}
	switch {
	case err == nil:
		if s.kind != stepSleep && s.kind != stepWaitLocal {
			k.failures, k.troubleSince = 0, time.Time{}
		}
	case errors.Is(err, ledger.ErrConflict):
		k.stale = true
		k.conflicts++
	case errors.Is(err, ledger.ErrBadTransition) || errors.As(err, new(*ledger.DecodeError)):
		// Not the broker: a bug or a corrupt entry; retrying cannot help.
		r.panicked(err)
	default:
		if k.failures == 0 {
			k.troubleSince = k.now
		}
		k.failed, k.failErr = s.kind, err
		k.failures++
		r.log().Warn("broker operation failed", zap.Stringer("op", s.kind), zap.Int("failures", k.failures), zap.Error(err))
	}
	r.remember()
}

// acquire takes the request's id in this replica's memory.
func (r *runner) acquire() {
	rec, wait := r.p.mem.acquire(r.k.req.ID)
	r.k.busy, r.held = wait != nil, wait == nil
	if r.held && (rec.fingerprint == "" || rec.fingerprint == r.k.fingerprint) {
		r.k.mem = rec // what is remembered is about this very request
	}
}

// waitLocal waits for this replica's other handler of the id to let go.
func (r *runner) waitLocal() {
	for {
		rec, wait := r.p.mem.acquire(r.k.req.ID)
		if wait == nil {
			r.held, r.k.busy = true, false
			if rec.fingerprint == "" || rec.fingerprint == r.k.fingerprint {
				r.k.mem = rec
			}
			return
		}
		select {
		case <-wait:
		case <-r.ctx.Done():
			return
		}
	}
}

// remember mirrors the delivery's recollection into the replica's memory.
func (r *runner) remember() {
	if r.held {
		r.p.mem.update(r.k.req.ID, r.k.mem)
	}
}

// release lets go of the id, keeping what the ledger may lack.
func (r *runner) release() {
	if r.held {
		r.p.mem.release(r.k.req.ID, r.k.mem, r.k.keep(), r.p.cfg.Now())
	}
}

// settle is the one place that acks, naks or terminates a delivery; what
// to do was decided by the core.
func (r *runner) settle(s step) {
	var err error
	switch s.action {
	case retry.ActionAck:
		ctx, cancel := context.WithTimeout(context.Background(), r.p.cfg.PublishTimeout)
		err = r.msg.DoubleAck(ctx)
		cancel()
	case retry.ActionNakWithDelay:
		err = r.msg.NakWithDelay(s.delay)
	case retry.ActionTerm, retry.ActionDeadLetter:
		err = r.msg.TermWithReason(s.reason)
	}
	r.span.SetAttributes(attribute.String("qualfile.settle", s.action.String()), attribute.String("qualfile.settle_reason", spanValue(s.reason)))
	if res := r.k.mem.outcome; res != nil {
		r.span.SetAttributes(attribute.String("qualfile.status", string(res.Status)))
	}
	r.log().Debug("settled", zap.Stringer("action", s.action), zap.Duration("delay_ms", s.delay), zap.String("reason", s.reason))
	if err != nil {
		// The broker redelivers after AckWait; the ledger makes that safe.
		r.log().Warn("settle failed; the message will be redelivered", zap.Stringer("action", s.action), zap.Error(err))
	}
}

// call makes one upstream attempt.
func (r *runner) call() {
	k := r.k
	k.callDue = false
	if k.attempts == 0 {
		k.callStart = k.now
	}
	k.mem.dispatched, k.mem.answered = true, false
	r.remember() // before the call: a crash of this handler must not forget it
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	start := r.p.cfg.Now()
	out, err := r.p.disp.Dispatch(ctx, k.req)
	cancel()
	took := r.p.cfg.Now().Sub(start)
	if retry.ClassOf(err) == retry.ClassHeld {
		// Held back before it was sent: no attempt, nothing in flight.
		k.mem.dispatched = false
		k.held, k.heldFor = err, heldDelay(err)
		k.now = r.p.cfg.Now().UTC()
		return
	}
	k.attempts++
	k.entry.Attempts++
	k.lastOut, k.lastErr, k.lastClass = out, err, retry.ClassOf(err)
	k.cutShort = err != nil && r.ctx.Err() != nil && k.lastClass != retry.ClassAmbiguous
	k.mem.answered = !k.cutShort && k.lastClass != retry.ClassAmbiguous
	k.now = r.p.cfg.Now().UTC()
	k.pending = append(k.pending, k.attemptEvent(took))
}

// reconcile makes one read of the vendor's records.
func (r *runner) reconcile() {
	k := r.k
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	f, err := r.p.cfg.Reconcile.Reader.Reconcile(ctx, k.req, k.claimedAt().Add(-k.lim.reconcile.skew))
	cancel()
	k.now = r.p.cfg.Now().UTC()
	k.noteRead(f, err, k.now)
}

// readBaseline lists the SMS records that match the request before its
// first call. A failed read leaves the baseline unknown: the create goes
// on, and a lost answer then goes to an operator.
func (r *runner) readBaseline() {
	k := r.k
	k.baselineDone = true
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	defer cancel()
	f, err := r.p.cfg.Reconcile.Reader.Reconcile(ctx, k.req, time.Time{})
	k.now = r.p.cfg.Now().UTC()
	if err != nil || f.Undated > 0 {
		return
	}
	k.baseline, k.baselineKnown = make([]string, 0, len(f.Records)), true
	for _, rec := range f.Records {
		k.baseline = append(k.baseline, rec.ID)
	}
}

// fetchFiles fetches and checks the request's files held in the object
// store. A file that cannot be used rejects the request; a store that
// cannot be read is broker trouble (the error returned).
func (r *runner) fetchFiles() error {
	k := r.k
	if r.p.cfg.Files == nil {
		k.filesErr = &messages.ValidationError{Fields: []messages.FieldError{{Field: "payload",
			Problem: "references files in an object store, and this consumer has none configured"}}}
		return nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.p.cfg.CallTimeout)
	defer cancel()
	err := files.Fetch(ctx, r.p.cfg.Files, r.p.cfg.FilesBucket, k.req)
	var ve *messages.ValidationError
	switch {
	case errors.As(err, &ve):
		k.filesErr = err
		return nil
	case err != nil:
		return err
	}
	k.filesDone = true
	return nil
}

// removeFiles removes the request's files once its outcome is final. A
// failure is only logged: the bucket's max age removes them anyway.
func (r *runner) removeFiles() {
	k := r.k
	k.filesRemoved = true
	if r.p.cfg.Files == nil {
		return
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if err := files.Remove(ctx, r.p.cfg.Files, r.p.cfg.FilesBucket, k.req); err != nil {
		r.log().Warn("could not remove the request's files from the object store; they expire with the bucket", zap.Error(err))
	}
}
