// Package filing handles one filing request from the request stream. The
// decisions are made by a deterministic core without I/O (decide.go); a
// thin runner (this file) performs each step it asks for — ledger read or
// write, upstream call, publish, settle — and answers with what happened
// (steps.go), which the core applies to its state. Every state change
// emits one audit event, and the logs and metrics are derived from that
// emission (events.go).
package filing

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

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
	r := &runner{p: p, ctx: ctx, msg: msg, d: p.readMessage(msg)}
	r.startSpan()
	defer r.span.End()
	defer r.release()
	r.apply(nil)
	for n := 0; ; n++ {
		var s step
		ok := n <= maxSteps // checked before the core decides: a step it decides is taken
		if ok {
			s, ok = r.decide()
		}
		if !ok {
			// The core itself failed; there is nothing left to decide with.
			r.log().Error("decision core failed; handing the message back", zap.Int("steps", n))
			r.settle(step{kind: stepSettle, settle: settleCoreFailed, delay: p.cfg.Policy.RedeliveryMax})
			return
		}
		if s.kind == stepSettle {
			r.settle(s)
			return
		}
		r.perform(s)
	}
}

// readMessage reads what a message says about itself; a panic on its
// untrusted bytes is answered like any other (the message is
// dead-lettered).
func (p *Processor) readMessage(msg Msg) (d *delivery) {
	now := p.cfg.Now()
	defer func() {
		if v := recover(); v != nil {
			d = unread(p.rules, now)
			d.apply(now, false, panicked{why: messages.Truncate(fmt.Sprint(v), 300)})
		}
	}()
	tenant, subjectAPI, _ := p.cfg.Subjects.ParseRequestSubject(msg.Subject())
	md, err := msg.Metadata()
	if err != nil {
		md = nil
	} else if md.NumDelivered > 1 {
		p.metrics.Redelivery(apiLabel(subjectAPI))
	}
	return newDelivery(p.rules, now, msg.Data(), tenant, subjectAPI, md)
}

// runner performs the steps of one delivery. It reads the core's state
// but never writes it: what it learns goes back as an answer.
type runner struct {
	p         *Processor
	ctx       context.Context // the work context
	msg       Msg
	d         *delivery
	replyData []byte          // the result the last step published, for reply_to once the core counts it
	renewal   *renewed        // the last renewal of the entry held while the last step lasted
	tctx      context.Context // the delivery's span, for its children and the messages it publishes
	span      trace.Span
}

// decide asks the core for the next step. A panic in the core is answered
// like a panic in a step; one on the way a panic takes ends the delivery
// (ok false).
func (r *runner) decide() (s step, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if r.d.panicked != "" {
				ok = false // the panic path itself panicked
				return
			}
			r.apply(r.panicked(v, nil))
			s, ok = r.decide()
		}
	}()
	return r.d.decide().detached(), true
}

// perform does one step and gives the core its answer.
func (r *runner) perform(s step) {
	span := r.stepSpan(s)
	a := r.do(s)
	if ren := r.renewal; ren != nil {
		r.renewal = nil
		r.apply(*ren)
	}
	r.apply(a)
	if err, trouble := failure(a); trouble {
		r.log().Warn("broker operation failed", zap.Stringer("op", s.kind), zap.Int("failures", r.d.trouble.failures), zap.Error(err))
	}
	if span != nil {
		r.endStepSpan(span, s, a)
	}
	if data := r.replyData; data != nil {
		r.replyData = nil
		if r.d.out.resultDone {
			r.reply(data) // stored behind all of its events
		}
	}
}

// apply gives the core an answer (nil: none), with the time and whether
// the grace period is over.
func (r *runner) apply(a answer) {
	defer func() {
		if v := recover(); v != nil {
			r.apply(r.panicked(v, nil))
		}
	}()
	r.d.apply(r.p.cfg.Now(), r.ctx.Err() != nil, a)
}

// panicked is the answer to a panic, or to a ledger error err that
// reveals a bug or a corrupt entry (retrying cannot help).
func (r *runner) panicked(v any, err error) answer {
	why := messages.Truncate(fmt.Sprint(v), 300)
	r.log().Error("panic while handling a message; it is dead-lettered", zap.String("panic", why), zap.ByteString("stack", debug.Stack()))
	return panicked{why: why, err: err}
}

// do does one step and answers with what happened.
func (r *runner) do(s step) (a answer) {
	defer func() {
		if v := recover(); v != nil {
			a = r.panicked(v, nil)
		}
	}()
	switch s.kind {
	case stepTakeID:
		return r.takeID()
	case stepSleep, stepCall, stepReconcile, stepBaseline, stepFiles:
		return r.lasting(s)
	case stepWatch:
		sleep(r.ctx, s.delay)
		return r.read()
	case stepRemoveFiles:
		return r.removeFiles()
	case stepHolder:
		return r.holder(s.seq)
	case stepClaim:
		return r.claim(s.entry)
	case stepRead:
		return r.read()
	case stepWrite:
		return r.write(s)
	case stepEmit:
		return r.emit(s.events, s.result)
	case stepEvent:
		return sent(stepEvent, r.publishEvent(s.event), eventSent{})
	case stepDeadLetter:
		return sent(stepDeadLetter, r.deadLetter(s.dead), deadLettered{})
	case stepResult:
		return sent(stepResult, r.publishResult(s.result), resultSent{})
	}
	panic("filing: a step of kind " + s.kind.String())
}

// sent is the answer to a publish: ok, or a failure with err.
func sent(op stepKind, err error, ok answer) answer {
	if err != nil {
		return failed{op: op, err: err}
	}
	return ok
}

// failure is the error an answer reports, if any, and whether it is
// broker trouble.
func failure(a answer) (err error, trouble bool) {
	switch a := a.(type) {
	case failed:
		return a.err, true
	case published:
		return a.err, a.err != nil
	case conflicted:
		return a.err, false
	case panicked:
		return a.err, false
	}
	return nil, false
}

// takeID takes the request's id in this replica's memory, waiting while
// another handler of this replica holds it, until the grace period ends.
func (r *runner) takeID() answer {
	for {
		mem, wait := r.p.mem.acquire(r.d.msg.idKey())
		switch {
		case wait == nil:
			return idTaken{mem: mem}
		case r.ctx.Err() != nil:
			return idBusy{}
		}
		select {
		case <-wait:
		case <-r.ctx.Done():
			return idBusy{} // the grace period is over: hand it back
		}
	}
}

// release lets go of the id, keeping what the ledger may lack.
func (r *runner) release() {
	if r.d.idTaken {
		rec, keep := r.d.remember()
		r.p.mem.release(r.d.msg.idKey(), rec, keep, r.p.cfg.Now())
	}
}

// settle is the one place that acks, naks or terminates a delivery; how
// was decided by the core (settlement.go).
func (r *runner) settle(s step) {
	var err error
	action, reason := s.settle.action, s.settle.reason
	switch action {
	case retry.ActionAck:
		ctx, cancel := context.WithTimeout(context.Background(), r.p.cfg.PublishTimeout)
		err = r.msg.DoubleAck(ctx)
		cancel()
	case retry.ActionNakWithDelay:
		err = r.msg.NakWithDelay(s.delay)
	case retry.ActionTerm, retry.ActionDeadLetter:
		err = r.msg.TermWithReason(reason)
	}
	r.span.SetAttributes(attribute.String("qualfile.settle", action.String()), attribute.String("qualfile.settle_reason", reason))
	if r.d.mem.outcome != nil {
		r.span.SetAttributes(attribute.String("qualfile.status", string(r.d.mem.outcome.Status)))
	}
	r.log().Debug("settled", zap.Stringer("action", action), zap.Duration("delay_ms", s.delay), zap.String("reason", reason))
	if err != nil {
		// The broker redelivers after AckWait; the ledger makes that safe.
		r.log().Warn("settle failed; the message will be redelivered", zap.Stringer("action", action), zap.Error(err))
	}
}

// call makes one upstream attempt.
func (r *runner) call(ctx context.Context) answer {
	ctx, cancel := context.WithTimeout(ctx, r.p.cfg.CallTimeout)
	start := r.p.cfg.Now()
	out, err := r.p.disp.Dispatch(ctx, r.d.msg.req)
	cancel()
	if retry.ClassOf(err) == retry.ClassHeld {
		// Held back before it was sent: no attempt, nothing in flight.
		return held{err: err}
	}
	return called{out: out, err: err, took: r.p.cfg.Now().Sub(start)}
}

// sleep waits d, or until ctx is done. A sleep decided once ctx was done
// already (past the grace period, between tries to record what would be
// lost) is slept all the same.
func sleep(ctx context.Context, d time.Duration) {
	if ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
