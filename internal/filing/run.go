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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

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
	k.fingerprint = req.Fingerprint()
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
