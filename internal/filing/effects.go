package filing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// The runner's effects on the ledger and the streams. Each answers with
// what happened, its errors classified; none decides.

// headroom is what a dead letter's or an event's own fields may add to a
// message, beyond its body.
const headroom = 4096

// opCtx bounds one broker operation. It outlives the work context: an
// outcome is recorded and published even after the grace period.
func (r *runner) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.ctx), r.p.cfg.PublishTimeout)
}

// claim creates the request's entry, or reads the one there is.
func (r *runner) claim(e ledger.Entry) answer {
	ctx, cancel := r.opCtx()
	defer cancel()
	got, _, err := r.p.ledger.ClaimEntry(ctx, e)
	switch {
	case err == nil:
		return claimed{entry: got}
	case isBug(err):
		return r.panicked(err, err)
	}
	// A claim nobody answered may have landed; one that no stream received
	// did not.
	return failed{op: stepClaim, err: err, mayHaveLanded: !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse)}
}

// read reads the request's entry again.
func (r *runner) read() answer {
	ctx, cancel := r.opCtx()
	defer cancel()
	got, err := r.p.ledger.Get(ctx, r.d.msg.tenant, r.d.msg.req.ID)
	switch {
	case err == nil:
		return found{entry: got}
	case errors.Is(err, ledger.ErrNotFound):
		return notFound{}
	case isBug(err):
		return r.panicked(err, err)
	}
	return failed{op: stepRead, err: err}
}

// holder asks the request stream whether the message at seq, whose
// delivery holds the entry, is still there: it is, until one of its
// deliveries acks or terminates it (the server redelivers it without
// limit). A message at seq that is another request (the stream was
// recreated since) is as good as gone.
func (r *runner) holder(seq uint64) answer {
	ctx, cancel := r.opCtx()
	defer cancel()
	m, err := r.p.cfg.Requests.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return holderMsg{gone: true}
	case err != nil:
		r.log().Warn("could not read the request stream; the entry's holder is taken for alive", zap.Uint64("seq", seq), zap.Error(err))
		return holderMsg{err: err}
	}
	var id struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(m.Data, &id)
	return holderMsg{gone: id.ID != r.d.msg.req.ID}
}

// write stores s.entry: in place of s.prev by compare-and-set, or as a new
// entry.
func (r *runner) write(s step) answer {
	ctx, cancel := r.opCtx()
	defer cancel()
	var got ledger.Entry
	var err error
	if s.prev == nil {
		got, err = r.p.ledger.Create(ctx, s.entry)
	} else {
		got, err = r.p.ledger.Put(ctx, *s.prev, s.entry)
	}
	switch {
	case err == nil:
		return written{entry: got}
	case errors.Is(err, ledger.ErrConflict):
		return conflicted{err: err}
	case isBug(err):
		return r.panicked(err, err)
	}
	return failed{op: stepWrite, err: err, mayHaveLanded: true, tried: &s.entry}
}

// isBug reports whether a ledger error is no broker trouble but a bug or a
// corrupt entry: retrying cannot help.
func isBug(err error) bool {
	return errors.Is(err, ledger.ErrBadTransition) || errors.As(err, new(*ledger.DecodeError))
}

// emit publishes evs and, when res is not nil, the result after them
// (Processor.publish); a log line and metrics are derived from each event
// known published.
func (r *runner) emit(evs []messages.AuditEvent, res *messages.Result) answer {
	ctx, cancel := r.opCtx()
	defer cancel()
	a, data := r.p.publish(ctx, r.tctx, r.d.msg.seq, r.d.msg.req, r.d.msg.subjectAPI, evs, res)
	if a.result {
		r.replyData = data
	}
	return a
}

// publish publishes evs and, when res is not nil, the result after them:
// sent at once, in order on one connection, and their acks awaited
// together — one round trip, not one per message. The events known
// published are those up to the first that failed. req is the request
// they belong to (nil: not known), api the api of its subject.
func (p *Processor) publish(ctx, tctx context.Context, seq uint64, req *messages.Request, api messages.API, evs []messages.AuditEvent, res *messages.Result) (published, []byte) {
	futures := make([]jetstream.PubAckFuture, 0, len(evs)+1)
	var sendErr error
	send := func(m *nats.Msg, err error) bool {
		var f jetstream.PubAckFuture
		if err == nil {
			if f, err = p.js.PublishMsgAsync(m); err == nil {
				futures = append(futures, f)
			}
		}
		sendErr = err
		return err == nil
	}
	for _, ev := range evs {
		m, err := p.eventMsg(tctx, ev, req)
		if !send(m, err) {
			break
		}
	}
	sentEvents := len(futures)
	var data []byte
	if res != nil && sendErr == nil {
		m, d, err := p.resultMsg(tctx, res, api)
		data = d
		send(m, err)
	}
	errs := awaitAll(ctx, futures)
	a := published{err: sendErr}
	for a.events < sentEvents && errs[a.events] == nil {
		p.observe(seq, evs[a.events])
		a.events++
	}
	a.result = len(futures) > sentEvents && errs[sentEvents] == nil
	for _, err := range errs {
		if a.err == nil {
			a.err = err
		}
	}
	return a, data
}

// Publish stores evs on the audit stream and then, when res is not nil,
// res on the result stream, as the pipeline does: for what the consumer
// records outside a delivery (an operator's action). Each event's
// identity and place in the trail are the caller's.
func (p *Processor) Publish(ctx context.Context, evs []messages.AuditEvent, res *messages.Result) error {
	a, _ := p.publish(ctx, ctx, 0, nil, "", evs, res)
	return a.err
}

// awaitAll waits for each publish's ack, until ctx is done.
func awaitAll(ctx context.Context, futures []jetstream.PubAckFuture) []error {
	errs := make([]error, len(futures))
	for i, f := range futures {
		select { // an answer already in wins over a deadline just passed
		case <-f.Ok():
			continue
		case err := <-f.Err():
			errs[i] = err
			continue
		default:
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return errs
}

// publishEvent publishes one audit event; its log line and metrics are
// derived from it once it is out, so that they say what the trail says.
func (r *runner) publishEvent(ev messages.AuditEvent) error {
	m, err := r.p.eventMsg(r.tctx, ev, r.d.msg.req)
	if err != nil {
		return err
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if _, err = r.p.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	r.p.observe(r.d.msg.seq, ev)
	return nil
}

// eventMsg is the message of one audit event of req. A received event
// carries the request's payload, redacted (or, when that would not fit in
// a message, its size and digest).
func (p *Processor) eventMsg(tctx context.Context, ev messages.AuditEvent, req *messages.Request) (*nats.Msg, error) {
	ev.SchemaVersion = messages.SchemaVersion
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if ev.Event == messages.EventReceived && req != nil && ev.Payload == nil {
		payload := req.RedactedPayload()
		if len(data)+len(payload) > p.cfg.MaxPayload-headroom {
			sum := sha256.Sum256(payload)
			payload, _ = json.Marshal(map[string]any{"omitted": "too big for an audit event",
				"bytes": len(payload), "sha256": hex.EncodeToString(sum[:])})
		}
		// Spliced in as it is: the redaction is compact JSON already, and
		// json.Marshal would scan and copy it once more.
		data = withField(data, "payload", payload)
	}
	m := nats.NewMsg(p.cfg.Subjects.For(ev.Tenant).Audit(subjectAPI(ev.API), ev.Event, ev.RequestID))
	tracing.Inject(tctx, m)
	if ev.ID != "" {
		// A copy published again is dropped by the audit stream within its
		// duplicate window (an event stored by an older version has no
		// identity).
		m.Header.Set(jetstream.MsgIDHeader, "event:"+ev.ID)
	}
	m.Data = data
	return m, nil
}

// withField adds "name":value at the end of the JSON object obj; value
// must be valid JSON, and name must not need escaping.
func withField(obj []byte, name string, value []byte) []byte {
	out := make([]byte, 0, len(obj)+len(name)+len(value)+4)
	out = append(out, obj[:len(obj)-1]...)
	if len(obj) > 2 {
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, name...)
	out = append(out, '"', ':')
	out = append(out, value...)
	return append(out, '}')
}

// deadLetter copies the original request to filing.dead.<api>: its bytes
// as the body, or, when they would not fit, in the object store.
func (r *runner) deadLetter(d deadLetterSpec) error {
	msg := r.d.msg
	api := msg.subjectAPI
	if msg.req != nil && msg.req.API.Valid() {
		api = msg.req.API
	}
	m := nats.NewMsg(r.p.cfg.Subjects.For(msg.tenant).Dead(subjectAPI(api)))
	tracing.Inject(r.tctx, m)
	m.Data = r.msg.Data()
	m.Header.Set(messages.HeaderDeadReason, messages.HeaderValue(d.reason, 512))
	m.Header.Set(messages.HeaderDeadClass, d.class)
	m.Header.Set(messages.HeaderOrigSubject, messages.HeaderValue(r.msg.Subject(), 512))
	m.Header.Set(messages.HeaderOrigSequence, strconv.FormatUint(msg.seq, 10))
	m.Header.Set(messages.HeaderDeliveries, strconv.Itoa(msg.deliveries))
	m.Header.Set(messages.HeaderDeadAt, r.d.now.Format(time.RFC3339Nano))
	if msg.req != nil && msg.req.ID != "" {
		m.Header.Set(messages.HeaderRequestID, messages.HeaderValue(boundID(msg.req.ID), 512))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if len(m.Data)+headroom > r.p.cfg.MaxPayload {
		sum := sha256.Sum256(m.Data)
		m.Header.Set(messages.HeaderBodySize, strconv.Itoa(len(m.Data)))
		m.Header.Set(messages.HeaderBodySHA256, hex.EncodeToString(sum[:]))
		if r.p.cfg.Objects != nil {
			name, _ := messages.DeadBodyObject(hex.EncodeToString(sum[:]), msg.seq)
			if _, err := r.p.cfg.Objects.PutBytes(ctx, name, m.Data); err != nil {
				return err
			}
			m.Header.Set(messages.HeaderBodyObject, name)
		}
		m.Data = nil
	}
	m.Header.Set(jetstream.MsgIDHeader, "dead:"+d.key)
	_, err := r.p.js.PublishMsg(ctx, m)
	return err
}

// publishResult stores a result on filing.result.<api> and sends it to the
// request's reply subject.
func (r *runner) publishResult(res *messages.Result) error {
	m, data, err := r.p.resultMsg(r.tctx, res, r.d.msg.subjectAPI)
	if err != nil {
		return err
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if _, err := r.p.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	r.reply(data)
	return nil
}

// resultMsg is the message that stores res on filing.result.<api>; api is
// the request subject's, for a result whose own api is not a known one.
func (p *Processor) resultMsg(tctx context.Context, res *messages.Result, api messages.API) (*nats.Msg, []byte, error) {
	out := *res
	out.SchemaVersion = messages.SchemaVersion
	data, err := json.Marshal(&out)
	if err != nil {
		return nil, nil, err
	}
	if res.API.Valid() {
		api = res.API
	}
	m := nats.NewMsg(p.cfg.Subjects.For(res.Tenant).ResultFor(subjectAPI(api), res.RequestID))
	tracing.Inject(tctx, m)
	m.Header.Set(jetstream.MsgIDHeader, resultMsgID(res))
	m.Data = data
	return m, data, nil
}

// resultMsgID: the same outcome published again (a redelivery answered
// from the ledger) is stored once; a new outcome of the same request is
// not.
func resultMsgID(res *messages.Result) string {
	return "result:" + scoped(res.Tenant, boundID(res.RequestID)) + ":" + stamp(res.CompletedAt)
}

// scoped is a tenant's id as one of a key that every tenant's share (a
// stream's duplicate window): the default tenant's as it is.
func scoped(tenant, id string) string {
	if tenant == "" {
		return id
	}
	return tenant + "/" + id
}

// reply sends a stored result to the request's reply subject, if any:
// core NATS, best effort.
func (r *runner) reply(data []byte) {
	if r.d.msg.req == nil || r.d.msg.req.ReplyTo == "" || r.p.reply == nil {
		return
	}
	rm := nats.NewMsg(r.d.msg.req.ReplyTo)
	tracing.Inject(r.tctx, rm)
	rm.Data = data
	if err := r.p.reply.PublishMsg(rm); err != nil {
		r.log().Warn("reply failed; the result is stored")
	}
}

// subjectAPI is the api token of a subject: a known api, or "unknown".
func subjectAPI(api messages.API) messages.API {
	if api.Valid() {
		return api
	}
	return "unknown"
}
