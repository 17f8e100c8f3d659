// Package filing handles one filing request from the request stream: decode,
// validate, idempotency ledger, dispatch with retries, result, audit events,
// and the ack decision.
package filing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/retry"
)

// Dispatcher makes one upstream call for a validated request.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)
}

// Ledger is the idempotency ledger.
type Ledger interface {
	Claim(ctx context.Context, id string, api messages.API, owner string) (ledger.Entry, bool, error)
	Transition(ctx context.Context, e ledger.Entry, to ledger.State, mutate func(*ledger.Entry)) (ledger.Entry, error)
	Get(ctx context.Context, id string) (ledger.Entry, error)
}

// Publisher publishes to JetStream and waits for the stream's ack.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Replier sends a result to a request's reply subject over core NATS.
type Replier interface {
	PublishMsg(msg *nats.Msg) error
}

// Config configures a Processor.
type Config struct {
	Subjects messages.Subjects
	Policy   retry.Policy
	// MaxDeliver is the consumer's MaxDeliver; the last delivery of a
	// retryable failure is dead-lettered.
	MaxDeliver int
	// Owner names this replica in the ledger.
	Owner string
	// InFlightLease is how long a "calling" entry of another replica is
	// taken to be still in flight (normally the consumer's AckWait).
	InFlightLease time.Duration
	// PublishTimeout bounds each publish to JetStream (default 10s).
	PublishTimeout time.Duration
	// RecordTimeout bounds the retries of recording a final result in the
	// ledger (default 30s).
	RecordTimeout time.Duration
	Now           func() time.Time
}

// Processor handles request messages. It is safe for concurrent use.
type Processor struct {
	cfg     Config
	disp    Dispatcher
	ledger  Ledger
	js      Publisher
	reply   Replier
	log     *zap.Logger
	metrics *metrics.Metrics

	mu    sync.Mutex
	local map[string]*localCall // what this replica knows beyond the ledger
}

// localCall is this replica's own knowledge of a request it is handling,
// kept until the outcome is recorded in the ledger. It resolves a "calling"
// entry of this replica without guessing: a ledger write that timed out but
// landed, a result the ledger could not take, or a second delivery of a
// request still in hand.
type localCall struct {
	inFlight   bool             // a goroutine of this replica is handling it
	dispatched bool             // the vendor was called at least once
	result     *messages.Result // a final result not yet in the ledger
	event      string
	deadReason string
}

// New returns a Processor.
func New(cfg Config, disp Dispatcher, l Ledger, js Publisher, reply Replier, log *zap.Logger, m *metrics.Metrics) (*Processor, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.RecordTimeout <= 0 {
		cfg.RecordTimeout = 30 * time.Second
	}
	if cfg.InFlightLease <= 0 {
		cfg.InFlightLease = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Processor{cfg: cfg, disp: disp, ledger: l, js: js, reply: reply, log: log, metrics: m, local: map[string]*localCall{}}, nil
}

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

// Handle processes one delivery and settles it. ctx is the work context: it
// is cancelled only when the shutdown grace period is over, and then the
// delivery is handed back to the broker.
func (p *Processor) Handle(ctx context.Context, msg Msg) {
	p.metrics.InFlightAdd(1)
	defer p.metrics.InFlightAdd(-1)
	d := p.newDelivery(msg)
	decision := p.process(ctx, d)
	p.settle(d, decision)
}

// delivery is one message being handled.
type delivery struct {
	msg        Msg
	subjectAPI messages.API
	seq        uint64
	count      int // delivery count, 1-based
	receivedAt time.Time
	req        *messages.Request
	log        *zap.Logger
}

func (p *Processor) newDelivery(msg Msg) *delivery {
	d := &delivery{msg: msg, count: 1, receivedAt: p.cfg.Now().UTC()}
	d.subjectAPI, _ = p.cfg.Subjects.APIFromRequestSubject(msg.Subject())
	if md, err := msg.Metadata(); err == nil {
		d.seq = md.Sequence.Stream
		d.count = int(md.NumDelivered)
		if !md.Timestamp.IsZero() {
			d.receivedAt = md.Timestamp.UTC()
		}
	}
	d.log = p.log.With(zap.String("api", string(d.subjectAPI)), zap.Uint64("stream_seq", d.seq), zap.Int("delivery", d.count))
	if d.count > 1 {
		p.metrics.Redelivery(string(d.subjectAPI))
	}
	return d
}

// settle is the one place that acks, naks or terminates a delivery.
func (p *Processor) settle(d *delivery, dec retry.Decision) {
	var err error
	switch dec.Action {
	case retry.ActionAck:
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.PublishTimeout)
		err = d.msg.DoubleAck(ctx)
		cancel()
	case retry.ActionNakWithDelay:
		err = d.msg.NakWithDelay(dec.Delay)
	case retry.ActionTerm, retry.ActionDeadLetter:
		// A dead letter has been published before settle is called.
		err = d.msg.TermWithReason(dec.Reason)
	}
	d.log.Debug("settled", zap.Stringer("action", dec.Action), zap.Duration("delay", dec.Delay), zap.String("reason", dec.Reason))
	if err != nil {
		// The broker redelivers after AckWait; the ledger makes that safe.
		d.log.Warn("settle failed; the message will be redelivered", zap.Stringer("action", dec.Action), zap.Error(err))
	}
}

// process runs the pipeline and returns the ack decision.
func (p *Processor) process(ctx context.Context, d *delivery) retry.Decision {
	req, err := messages.ParseRequest(d.msg.Data())
	if err != nil {
		return p.undecodable(d, err)
	}
	d.req = req
	d.log = d.log.With(zap.String("request_id", req.ID), zap.String("account", req.AccountOrDefault()))
	if err := req.ValidateFor(d.subjectAPI); err != nil {
		return p.rejected(d, err)
	}
	api := req.API

	lc, ok := p.begin(req.ID)
	if !ok {
		return retry.Decision{Action: retry.ActionNakWithDelay, Delay: p.cfg.InFlightLease, Reason: "already in hand on this replica"}
	}
	defer p.end(req.ID)

	entry, created, err := p.ledger.Claim(ctx, req.ID, api, p.cfg.Owner)
	if err != nil {
		return p.brokerTrouble(d, "ledger claim", err)
	}
	if created {
		p.audit(d, messages.AuditEvent{Event: messages.EventReceived, Payload: messages.Redact(req.Payload)})
	} else {
		p.metrics.LedgerHit(string(api), string(entry.State))
	}
	switch entry.State {
	case ledger.StateDone:
		return p.duplicate(d, entry)
	case ledger.StateCalling:
		mine := entry.Owner == p.cfg.Owner
		switch {
		case mine && lc.result != nil:
			// The outcome is known here; the ledger missed it.
			return p.finish(d, entry, lc.result, lc.event, lc.deadReason)
		case mine && !lc.dispatched:
			// The "calling" write landed, but this replica never called.
			entry, err = p.ledger.Transition(ctx, entry, ledger.StateClaimed, nil)
			if err != nil {
				return p.brokerTrouble(d, "ledger take over", err)
			}
			return p.toCalling(ctx, d, entry, lc)
		}
		if !mine && p.cfg.Now().Sub(entry.UpdatedAt) < p.cfg.InFlightLease {
			// Another replica is calling right now (its ack deadline was
			// missed); look again once its lease is over.
			return retry.Decision{Action: retry.ActionNakWithDelay, Delay: p.cfg.InFlightLease, Reason: "in flight on " + entry.Owner}
		}
		if api.Creates() {
			return p.ambiguousAfterCrash(d, entry)
		}
		// A read or an update may be sent again.
		entry, err = p.ledger.Transition(ctx, entry, ledger.StateClaimed, nil)
		if err != nil {
			return p.brokerTrouble(d, "ledger take over", err)
		}
	}
	return p.toCalling(ctx, d, entry, lc)
}

// toCalling records that a call may now be in flight, then calls.
func (p *Processor) toCalling(ctx context.Context, d *delivery, entry ledger.Entry, lc *localCall) retry.Decision {
	entry, err := p.ledger.Transition(ctx, entry, ledger.StateCalling, func(e *ledger.Entry) { e.Owner = p.cfg.Owner })
	if err != nil {
		return p.brokerTrouble(d, "ledger calling", err)
	}
	return p.call(ctx, d, entry, lc)
}

// call dispatches with in-process retries and records the outcome.
func (p *Processor) call(ctx context.Context, d *delivery, entry ledger.Entry, lc *localCall) retry.Decision {
	req := d.req
	attempts := entry.Attempts
	var out dispatch.Outcome
	inCall := false
	_, err := p.cfg.Policy.Do(ctx, func(ctx context.Context, _ int) error {
		attempts++
		start := p.cfg.Now()
		inCall = true
		p.mu.Lock()
		lc.dispatched = true
		p.mu.Unlock()
		o, err := p.disp.Dispatch(ctx, req)
		// A call cut short by the end of the grace period may have reached
		// the vendor: it stays "in the call", so the ledger keeps it
		// "calling" and the next delivery resolves it (ambiguous for a
		// create call) rather than sending it again.
		inCall = err != nil && ctx.Err() != nil
		out = o
		took := p.cfg.Now().Sub(start)
		code, msg, class := describe(err)
		p.metrics.Attempt(string(req.API), string(class), took)
		p.audit(d, messages.AuditEvent{
			Event: messages.EventAttempt, Attempt: attempts, Class: string(class), Code: code, Message: msg,
			UpstreamRequestID: o.UpstreamRequestID, DurationMS: took.Milliseconds(),
		})
		d.log.Info("upstream attempt", zap.Int("attempt", attempts), zap.String("class", string(class)), zap.String("code", code),
			zap.String("upstream_request_id", o.UpstreamRequestID), zap.Duration("took", took))
		return err
	}, nil)

	if err != nil && ctx.Err() != nil && !errors.Is(err, retry.ErrAmbiguous) {
		if !inCall {
			p.mu.Lock()
			lc.dispatched = false
			p.mu.Unlock()
		}
		return p.interrupted(d, entry, attempts, inCall)
	}
	if err == nil {
		res := p.result(d, messages.StatusSucceeded, attempts, nil)
		res.Result = out.Result
		res.UpstreamRequestID = out.UpstreamRequestID
		return p.finish(d, entry, res, messages.EventSucceeded, "")
	}

	code, msg, class := describe(err)
	rerr := &messages.ResultError{Code: code, Message: msg, Class: resultClass(class)}
	switch class {
	case retry.ClassAmbiguous:
		res := p.result(d, messages.StatusFailed, attempts, rerr)
		return p.finish(d, entry, res, messages.EventAmbiguous, "ambiguous")
	case retry.ClassInvalid:
		res := p.result(d, messages.StatusRejected, attempts, rerr)
		return p.finish(d, entry, res, messages.EventRejected, "")
	case retry.ClassPermanent:
		res := p.result(d, messages.StatusFailed, attempts, rerr)
		return p.finish(d, entry, res, messages.EventFailed, "")
	}

	dec := p.cfg.Policy.Decide(err, d.count, p.cfg.MaxDeliver)
	if dec.Action == retry.ActionDeadLetter {
		res := p.result(d, messages.StatusFailed, attempts, rerr)
		return p.finish(d, entry, res, messages.EventFailed, "retries exhausted")
	}
	// Wait in the broker, not in memory. The last answer was a definite
	// failure, so the next delivery may call again.
	p.mu.Lock()
	lc.dispatched = false
	p.mu.Unlock()
	if _, terr := p.ledger.Transition(context.WithoutCancel(ctx), entry, ledger.StateClaimed, func(e *ledger.Entry) { e.Attempts = attempts }); terr != nil {
		d.log.Warn("ledger update before redelivery failed", zap.Error(terr))
	}
	p.audit(d, messages.AuditEvent{Event: messages.EventDeferred, Attempt: attempts, Class: string(class), Code: code, Message: fmt.Sprintf("redelivery in %s", dec.Delay)})
	p.metrics.Request(string(req.API), "deferred")
	d.log.Info("deferred", zap.Duration("delay", dec.Delay), zap.String("class", string(class)), zap.String("code", code))
	return dec
}

// finish records a final result in the ledger, publishes it and its audit
// event, dead-letters it when deadReason is set, and decides the ack.
func (p *Processor) finish(d *delivery, entry ledger.Entry, res *messages.Result, event, deadReason string) retry.Decision {
	p.mu.Lock()
	if lc := p.local[res.RequestID]; lc != nil {
		lc.result, lc.event, lc.deadReason = res, event, deadReason
	}
	p.mu.Unlock()
	if err := p.recordDone(entry, res); err != nil {
		var ce *conflictError
		if errors.As(err, &ce) {
			return p.conflict(d, res, ce.theirs)
		}
		// The result stays in memory; the redelivery records it.
		return p.brokerTrouble(d, "ledger done", err)
	}
	p.mu.Lock()
	delete(p.local, res.RequestID)
	p.mu.Unlock()
	return p.publishFinal(d, res, event, deadReason)
}

// recordDone stores a final result in the ledger. The outcome is known and
// must not be lost to a broker hiccup (a leader election, a write that
// timed out but landed), so it retries for up to RecordTimeout, reading the
// entry again after a conflict.
func (p *Processor) recordDone(entry ledger.Entry, res *messages.Result) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.RecordTimeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		// Each attempt has its own short deadline: a request lost in a
		// reconnect would otherwise hold the whole budget.
		actx, acancel := context.WithTimeout(ctx, p.cfg.PublishTimeout/2)
		_, err := p.ledger.Transition(actx, entry, ledger.StateDone, func(e *ledger.Entry) {
			e.Attempts = res.Attempts
			e.Result = res
		})
		acancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, ledger.ErrConflict) {
			gctx, gcancel := context.WithTimeout(ctx, p.cfg.PublishTimeout/2)
			cur, gerr := p.ledger.Get(gctx, entry.RequestID)
			gcancel()
			if gerr == nil {
				if cur.State == ledger.StateDone {
					if cur.Result != nil && cur.Result.CompletedAt.Equal(res.CompletedAt) {
						return nil // our earlier write landed
					}
					// Another replica recorded another outcome (it took our
					// entry for a dead one). Its outcome stands; ours must
					// not be published as if it were the record.
					return &conflictError{theirs: cur.Result}
				}
				entry = cur
			}
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// conflictError: another replica recorded a different outcome first.
type conflictError struct{ theirs *messages.Result }

func (e *conflictError) Error() string { return "another replica recorded a different outcome" }

// conflict reports an outcome that lost to another replica's record. The
// recorded outcome stands (its result and dead letter are published); ours
// goes into a conflict audit event for the operator, because it may say
// that the vendor did file a request recorded as ambiguous.
func (p *Processor) conflict(d *delivery, ours, theirs *messages.Result) retry.Decision {
	p.mu.Lock()
	delete(p.local, ours.RequestID)
	p.mu.Unlock()
	ev := messages.AuditEvent{Event: messages.EventConflict, Status: ours.Status, Attempt: ours.Attempts, UpstreamRequestID: ours.UpstreamRequestID,
		Message: "this replica's outcome differs from the one recorded by another replica; the recorded one stands"}
	if ours.Error != nil {
		ev.Class, ev.Code = ours.Error.Class, ours.Error.Code
	}
	p.audit(d, ev)
	d.log.Error("outcome conflict with another replica", zap.String("ours", string(ours.Status)), zap.String("recorded", string(theirs.Status)),
		zap.String("upstream_request_id", ours.UpstreamRequestID))
	return retry.Decision{Action: retry.ActionTerm, Reason: "outcome conflict"}
}

// begin marks id as in hand on this replica; false if it already is.
func (p *Processor) begin(id string) (*localCall, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lc := p.local[id]
	if lc == nil {
		lc = &localCall{}
		p.local[id] = lc
	}
	if lc.inFlight {
		return nil, false
	}
	lc.inFlight = true
	return lc, true
}

// end releases id; what is known of an unrecorded outcome is kept.
func (p *Processor) end(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if lc := p.local[id]; lc != nil {
		lc.inFlight = false
		if !lc.dispatched && lc.result == nil {
			delete(p.local, id)
		}
	}
}

func (p *Processor) publishFinal(d *delivery, res *messages.Result, event, deadReason string) retry.Decision {
	ctx := context.Background()
	// The dead letter goes first, so that by the time anyone sees the failed
	// result the request is already there to be replayed.
	if deadReason != "" {
		class := ""
		if res.Error != nil {
			class = res.Error.Class
		}
		if err := p.deadLetter(ctx, d, deadReason, class, res.CompletedAt); err != nil {
			return p.brokerTrouble(d, "dead letter", err)
		}
	}
	if err := p.publishResult(ctx, d, res); err != nil {
		return p.brokerTrouble(d, "publish result", err)
	}
	ev := messages.AuditEvent{Event: event, Status: res.Status, Attempt: res.Attempts, UpstreamRequestID: res.UpstreamRequestID}
	if res.Error != nil {
		ev.Class, ev.Code, ev.Message = res.Error.Class, res.Error.Code, res.Error.Message
	}
	p.audit(d, ev)
	outcome := string(res.Status)
	if event == messages.EventAmbiguous {
		outcome = "ambiguous"
	}
	p.metrics.Request(string(res.API), outcome)
	d.log.Info("finished", zap.String("status", string(res.Status)), zap.Int("attempts", res.Attempts))
	switch {
	case deadReason != "":
		return retry.Decision{Action: retry.ActionDeadLetter, Reason: deadReason}
	case res.Status == messages.StatusSucceeded:
		return retry.Decision{Action: retry.ActionAck, Reason: "succeeded"}
	}
	return retry.Decision{Action: retry.ActionTerm, Reason: string(res.Status)}
}

// duplicate answers a redelivered request from the ledger, without calling.
func (p *Processor) duplicate(d *delivery, entry ledger.Entry) retry.Decision {
	p.audit(d, messages.AuditEvent{Event: messages.EventDuplicate, Message: "outcome already recorded; stored result sent again"})
	if entry.Result == nil {
		return retry.Decision{Action: retry.ActionTerm, Reason: "done without a stored result"}
	}
	res := *entry.Result
	if reason := deadReasonOf(&res); reason != "" {
		// The first delivery may have failed to dead-letter it; the stable
		// msg id stores it once either way.
		if err := p.deadLetter(context.Background(), d, reason, res.Error.Class, res.CompletedAt); err != nil {
			return p.brokerTrouble(d, "dead letter", err)
		}
	}
	if err := p.publishResult(context.Background(), d, &res); err != nil {
		return p.brokerTrouble(d, "publish stored result", err)
	}
	p.metrics.Request(string(res.API), "duplicate")
	if res.Status == messages.StatusSucceeded {
		return retry.Decision{Action: retry.ActionAck, Reason: "duplicate of a succeeded request"}
	}
	return retry.Decision{Action: retry.ActionTerm, Reason: "duplicate of a " + string(res.Status) + " request"}
}

// deadReasonOf says why a recorded outcome belongs in the dead letters, or
// "" when it does not.
func deadReasonOf(res *messages.Result) string {
	if res.Status != messages.StatusFailed || res.Error == nil {
		return ""
	}
	switch res.Error.Class {
	case messages.ClassAmbiguous:
		return "ambiguous"
	case messages.ClassTransient:
		return "retries exhausted"
	}
	return ""
}

// ambiguousAfterCrash resolves a create call found in "calling": the last
// replica died mid-call, so the vendor may or may not have the record.
func (p *Processor) ambiguousAfterCrash(d *delivery, entry ledger.Entry) retry.Decision {
	rerr := &messages.ResultError{
		Code:    "AmbiguousOutcome",
		Message: "a previous delivery was calling the vendor when it stopped; the vendor may have filed it. Check with the vendor, then replay deliberately (publisher dead replay --force)",
		Class:   messages.ClassAmbiguous,
	}
	res := p.result(d, messages.StatusFailed, entry.Attempts, rerr)
	return p.finish(d, entry, res, messages.EventAmbiguous, "ambiguous")
}

// interrupted hands a delivery back when the grace period ran out.
func (p *Processor) interrupted(d *delivery, entry ledger.Entry, attempts int, inCall bool) retry.Decision {
	if !inCall {
		// Stopped between attempts: nothing is in flight at the vendor.
		if _, err := p.ledger.Transition(context.Background(), entry, ledger.StateClaimed, func(e *ledger.Entry) { e.Attempts = attempts }); err != nil {
			d.log.Warn("ledger update at shutdown failed", zap.Error(err))
		}
	}
	// Stopped mid-call: the entry stays "calling" and the next delivery
	// resolves it (ambiguous for a create call).
	p.metrics.Request(string(d.req.API), "deferred")
	d.log.Warn("shutdown grace over; handing the request back", zap.Bool("mid_call", inCall))
	return retry.Decision{Action: retry.ActionNakWithDelay, Delay: p.cfg.Policy.RedeliveryDelay(1, false), Reason: "shutdown"}
}

// undecodable dead-letters a message that is not a JSON object at all.
func (p *Processor) undecodable(d *delivery, err error) retry.Decision {
	ctx := context.Background()
	p.audit(d, messages.AuditEvent{Event: messages.EventUndecodable, Message: err.Error()})
	p.metrics.Request(string(d.subjectAPI), "undecodable")
	if derr := p.deadLetter(ctx, d, err.Error(), messages.ClassInvalid, time.Time{}); derr != nil {
		return p.brokerTrouble(d, "dead letter", derr)
	}
	d.log.Warn("undecodable message dead-lettered", zap.Error(err))
	return retry.Decision{Action: retry.ActionDeadLetter, Reason: "undecodable"}
}

// rejected answers a request that failed validation.
func (p *Processor) rejected(d *delivery, err error) retry.Decision {
	rerr := &messages.ResultError{Code: "InvalidRequest", Message: "the request breaks the rules listed in fields", Class: messages.ClassInvalid}
	var ve *messages.ValidationError
	if errors.As(err, &ve) {
		rerr.Fields = ve.Fields
	}
	res := p.result(d, messages.StatusRejected, 0, rerr)
	if !d.req.API.Valid() {
		res.API = d.subjectAPI
	}
	if len(res.RequestID) > messages.MaxIDLen {
		// An id that long is itself a problem; the result names it by its
		// start, so that the result fits in a message.
		res.RequestID = res.RequestID[:messages.MaxIDLen] + "…"
	}
	// A rejection is decided by the message alone: every delivery of it
	// gets the same verdict, stored once (keyed by the stream timestamp).
	res.CompletedAt = d.receivedAt
	return p.publishFinal(d, res, messages.EventRejected, "")
}

// brokerTrouble hands a delivery back when NATS itself failed us.
func (p *Processor) brokerTrouble(d *delivery, what string, err error) retry.Decision {
	d.log.Warn("broker operation failed; redelivering later", zap.String("op", what), zap.Error(err))
	return retry.Decision{Action: retry.ActionNakWithDelay, Delay: p.cfg.Policy.RedeliveryDelay(d.count, false), Reason: what + " failed"}
}

func (p *Processor) result(d *delivery, status messages.Status, attempts int, rerr *messages.ResultError) *messages.Result {
	r := &messages.Result{
		RequestID:   d.req.ID,
		API:         d.req.API,
		Account:     d.req.AccountOrDefault(),
		Status:      status,
		Attempts:    attempts,
		Error:       rerr,
		ReceivedAt:  d.receivedAt,
		CompletedAt: p.cfg.Now().UTC(),
		Metadata:    d.req.Metadata,
	}
	return r
}

// publishResult stores the result on filing.result.<api> (deduplicated by
// request id) and sends it to the request's reply subject.
func (p *Processor) publishResult(ctx context.Context, d *delivery, res *messages.Result) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	api := res.API
	if !api.Valid() {
		api = d.subjectAPI
	}
	m := nats.NewMsg(p.cfg.Subjects.Result(api))
	m.Data = data
	opts := []jetstream.PublishOpt{}
	if res.RequestID != "" {
		// The same stored outcome published again (a redelivery answered
		// from the ledger) is deduplicated; a new outcome of the same
		// request (after an operator's replay) is not.
		opts = append(opts, jetstream.WithMsgID(resultMsgID(res)))
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	if _, err := p.js.PublishMsg(pctx, m, opts...); err != nil {
		return err
	}
	if d.req != nil && d.req.ReplyTo != "" && p.reply != nil {
		if strings.HasPrefix(d.req.ReplyTo, p.cfg.Subjects.Root()+".") || strings.HasPrefix(d.req.ReplyTo, "$") {
			// A reply_to into qualfile's own subjects (or the system's)
			// would let a sender publish there with our credentials.
			d.log.Warn("reply_to names a qualfile or system subject; not replied", zap.String("reply_to", d.req.ReplyTo))
			return nil
		}
		rm := nats.NewMsg(d.req.ReplyTo)
		rm.Data = data
		if err := p.reply.PublishMsg(rm); err != nil {
			d.log.Warn("reply failed", zap.Error(err)) // the durable result is stored
		}
	}
	return nil
}

// resultMsgID identifies one outcome of one request.
func resultMsgID(res *messages.Result) string {
	id := res.RequestID
	if len(id) > messages.MaxIDLen {
		id = id[:messages.MaxIDLen]
	}
	return "result:" + id + ":" + strconv.FormatInt(res.CompletedAt.UnixNano(), 10)
}

// audit publishes an audit event; a failure is logged, not fatal.
func (p *Processor) audit(d *delivery, ev messages.AuditEvent) {
	ev.Time = p.cfg.Now().UTC()
	ev.Delivery = d.count
	ev.API = d.subjectAPI
	if d.req != nil {
		ev.RequestID = d.req.ID
		ev.Account = d.req.AccountOrDefault()
		if d.req.API.Valid() {
			ev.API = d.req.API
		}
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return
	}
	m := nats.NewMsg(p.cfg.Subjects.Audit(auditAPI(ev.API), ev.Event))
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.PublishTimeout)
	defer cancel()
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		d.log.Warn("audit publish failed", zap.String("event", ev.Event), zap.Error(err))
	}
}

// deadLetter copies the original request to filing.dead.<api>.
func (p *Processor) deadLetter(ctx context.Context, d *delivery, reason, class string, completedAt time.Time) error {
	api := d.subjectAPI
	if d.req != nil && d.req.API.Valid() {
		api = d.req.API
	}
	m := nats.NewMsg(p.cfg.Subjects.Dead(auditAPI(api)))
	m.Data = d.msg.Data()
	m.Header.Set(HeaderDeadReason, reason)
	m.Header.Set(HeaderDeadClass, class)
	m.Header.Set(HeaderOrigSubject, d.msg.Subject())
	m.Header.Set(HeaderOrigSequence, strconv.FormatUint(d.seq, 10))
	m.Header.Set(HeaderDeliveries, strconv.Itoa(d.count))
	m.Header.Set(HeaderDeadAt, p.cfg.Now().UTC().Format(time.RFC3339Nano))
	if d.req != nil {
		m.Header.Set(HeaderRequestID, d.req.ID)
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PublishTimeout)
	defer cancel()
	_, err := p.js.PublishMsg(pctx, m, jetstream.WithMsgID(deadMsgID(d, completedAt)))
	if err == nil {
		p.audit(d, messages.AuditEvent{Event: messages.EventDeadLetter, Message: reason, Class: class})
		p.metrics.DeadLetter(string(api), class)
	}
	return err
}

// deadMsgID identifies one dead letter: one per outcome of a request (so a
// dead letter published again from the ledger is stored once), or per
// stream message for an undecodable one.
func deadMsgID(d *delivery, completedAt time.Time) string {
	if d.req != nil && d.req.ID != "" && !completedAt.IsZero() {
		return "dead:" + d.req.ID + ":" + strconv.FormatInt(completedAt.UnixNano(), 10)
	}
	return "dead:seq:" + strconv.FormatUint(d.seq, 10)
}

// auditAPI keeps an unknown api from breaking a subject.
func auditAPI(api messages.API) messages.API {
	if api.Valid() {
		return api
	}
	return "unknown"
}

func describe(err error) (code, message string, class retry.Class) {
	if err == nil {
		return "", "", retry.ClassNone
	}
	return dispatch.Describe(err)
}

func resultClass(c retry.Class) string {
	switch c {
	case retry.ClassThrottled, retry.ClassTransient:
		return messages.ClassTransient
	case retry.ClassInvalid:
		return messages.ClassInvalid
	case retry.ClassAmbiguous:
		return messages.ClassAmbiguous
	}
	return messages.ClassPermanent
}
