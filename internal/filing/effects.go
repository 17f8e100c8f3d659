package filing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// The runner's effects on the ledger and the streams. Each writes its
// answer into known and returns the broker's error; none decides.

// headroom is what a dead letter's or an event's own fields may add to a
// message, beyond its body.
const headroom = 4096

// opCtx bounds one broker operation. It outlives the work context: an
// outcome is recorded and published even after the grace period.
func (r *runner) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.ctx), r.p.cfg.PublishTimeout)
}

func (r *runner) claim(e ledger.Entry) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	got, created, err := r.p.ledger.ClaimEntry(ctx, e)
	if err != nil {
		// A claim nobody answered may have landed; one that no stream
		// received did not.
		r.k.uncertain = !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse)
		return err
	}
	k := r.k
	k.entry, k.created, k.missing, k.stale, k.uncertain, k.emitted = &got, created, false, false, false, published(got, k.seq)
	return nil
}

func (r *runner) read() error {
	ctx, cancel := r.opCtx()
	defer cancel()
	k := r.k
	got, err := r.p.ledger.Get(ctx, k.req.ID)
	if errors.Is(err, ledger.ErrNotFound) {
		k.entry, k.missing, k.stale = &ledger.Entry{RequestID: k.req.ID}, true, false
		return nil
	}
	if err != nil {
		return err
	}
	if t := k.tried; t != nil && t.State == got.State && t.Owner == got.Owner && t.UpdatedAt.Equal(got.UpdatedAt) && t.Nonce == got.Nonce {
		// Our own write, which timed out but landed: it succeeded.
		r.wrote(got)
		return nil
	}
	pending := 0 // of this delivery's pending events, published already
	if k.entry != nil {
		pending = max(0, k.emitted-len(k.entry.Trail))
	}
	k.entry, k.missing, k.stale, k.uncertain = &got, false, false, false
	k.emitted = published(got, k.seq)
	if k.emitted == len(got.Trail) {
		k.emitted += pending
	}
	return nil
}

// published is how many of an entry's trail events are known to be out.
// The writer of a done entry publishes the rest of its trail before it
// settles the message, so only a redelivery of that very message (its
// stream sequence) publishes them again; for everyone else they are out.
func published(e ledger.Entry, seq uint64) int {
	if e.State == ledger.StateDone && e.Seq != seq {
		return len(e.Trail)
	}
	return e.Emitted
}

func (r *runner) write(next ledger.Entry) error {
	ctx, cancel := r.opCtx()
	defer cancel()
	k := r.k
	var got ledger.Entry
	var err error
	if k.missing || k.entry.Revision == 0 {
		got, err = r.p.ledger.Create(ctx, next)
	} else {
		got, err = r.p.ledger.Put(ctx, *k.entry, next)
	}
	if err != nil {
		// A write that lost a compare-and-set did not land; an earlier one
		// whose reply was lost still may have, and stays the one to look
		// for (a replica must not forget a nonce the ledger may name).
		if !errors.Is(err, ledger.ErrConflict) {
			k.uncertain, k.tried = true, &next
		}
		return err
	}
	r.wrote(got)
	return nil
}

// wrote takes in a write that landed.
func (r *runner) wrote(got ledger.Entry) {
	k := r.k
	k.entry, k.missing, k.uncertain, k.stale, k.pending, k.tried, k.conflicts = &got, false, false, false, nil, nil, 0
	if got.State == ledger.StateDone && k.mem.outcome != nil && got.Result != nil && got.Result.CompletedAt.Equal(k.mem.outcome.CompletedAt) {
		k.recorded = true
	}
}

// emit publishes the trail's events not yet known published and, when res
// is not nil, the result after them: sent at once, in order on one
// connection, and their acks awaited together — one round trip, not one
// per message. The events known published afterwards are those up to the
// first that failed; a log line and metrics are derived from each of them.
func (r *runner) emit(res *messages.Result) error {
	k := r.k
	evs := k.trail()[k.emitted:]
	futures := make([]jetstream.PubAckFuture, 0, len(evs)+1)
	var sendErr error
	for _, ev := range evs {
		m, err := r.eventMsg(ev)
		if err == nil {
			var f jetstream.PubAckFuture
			if f, err = r.p.js.PublishMsgAsync(m); err == nil {
				futures = append(futures, f)
				continue
			}
		}
		sendErr = err
		break
	}
	sentEvents := len(futures)
	var data []byte
	if res != nil && sendErr == nil {
		var m *nats.Msg
		var err error
		if m, data, err = r.resultMsg(res); err == nil {
			var f jetstream.PubAckFuture
			if f, err = r.p.js.PublishMsgAsync(m, jetstream.WithMsgID(resultMsgID(res))); err == nil {
				futures = append(futures, f)
			}
		}
		sendErr = err
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	errs := awaitAll(ctx, futures)
	for i := range sentEvents {
		if errs[i] != nil {
			break
		}
		r.p.observe(k, evs[i])
		k.emitted++
	}
	if res != nil && len(futures) > sentEvents && errs[sentEvents] == nil && k.emitted == len(k.trail()) {
		// The result counts only behind all of its events: else it is
		// published again after them.
		k.resultDone = true
		r.reply(data)
	}
	if sendErr != nil {
		return sendErr
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
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
	m, err := r.eventMsg(ev)
	if err != nil {
		return err
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if _, err = r.p.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	r.p.observe(r.k, ev)
	return nil
}

// eventMsg is the message of one audit event. A received event carries
// the request's payload, redacted (or, when that would not fit in a
// message, its size and digest).
func (r *runner) eventMsg(ev messages.AuditEvent) (*nats.Msg, error) {
	ev.SchemaVersion = messages.SchemaVersion
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if ev.Event == messages.EventReceived && r.k.req != nil && ev.Payload == nil {
		payload := r.k.req.RedactedPayload()
		if len(data)+len(payload) > r.p.cfg.MaxPayload-headroom {
			sum := sha256.Sum256(payload)
			payload, _ = json.Marshal(map[string]any{"omitted": "too big for an audit event",
				"bytes": len(payload), "sha256": hex.EncodeToString(sum[:])})
		}
		// Spliced in as it is: the redaction is compact JSON already, and
		// json.Marshal would scan and copy it once more.
		data = withField(data, "payload", payload)
	}
	m := nats.NewMsg(r.p.cfg.Subjects.Audit(subjectAPI(ev.API), ev.Event, ev.RequestID))
	tracing.Inject(r.tctx, m)
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
	k := r.k
	api := k.subjectAPI
	if k.req != nil && k.req.API.Valid() {
		api = k.req.API
	}
	m := nats.NewMsg(r.p.cfg.Subjects.Dead(subjectAPI(api)))
	tracing.Inject(r.tctx, m)
	m.Data = r.msg.Data()
	m.Header.Set(messages.HeaderDeadReason, headerValue(d.reason))
	m.Header.Set(messages.HeaderDeadClass, d.class)
	m.Header.Set(messages.HeaderOrigSubject, headerValue(r.msg.Subject()))
	m.Header.Set(messages.HeaderOrigSequence, strconv.FormatUint(k.seq, 10))
	m.Header.Set(messages.HeaderDeliveries, strconv.Itoa(k.delivery))
	m.Header.Set(messages.HeaderDeadAt, k.now.Format(time.RFC3339Nano))
	if k.req != nil && k.req.ID != "" {
		m.Header.Set(messages.HeaderRequestID, headerValue(boundID(k.req.ID)))
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if len(m.Data)+headroom > r.p.cfg.MaxPayload {
		sum := sha256.Sum256(m.Data)
		m.Header.Set(messages.HeaderBodySize, strconv.Itoa(len(m.Data)))
		m.Header.Set(messages.HeaderBodySHA256, hex.EncodeToString(sum[:]))
		if r.p.cfg.Objects != nil {
			name := "dead-" + hex.EncodeToString(sum[:16]) + "-" + strconv.FormatUint(k.seq, 10)
			if _, err := r.p.cfg.Objects.PutBytes(ctx, name, m.Data); err != nil {
				return err
			}
			m.Header.Set(messages.HeaderBodyObject, name)
		}
		m.Data = nil
	}
	_, err := r.p.js.PublishMsg(ctx, m, jetstream.WithMsgID("dead:"+d.key))
	return err
}

// publishResult stores a result on filing.result.<api> and sends it to the
// request's reply subject.
func (r *runner) publishResult(res *messages.Result) error {
	m, data, err := r.resultMsg(res)
	if err != nil {
		return err
	}
	ctx, cancel := r.opCtx()
	defer cancel()
	if _, err := r.p.js.PublishMsg(ctx, m, jetstream.WithMsgID(resultMsgID(res))); err != nil {
		return err
	}
	r.reply(data)
	return nil
}

// resultMsg is the message that stores res on filing.result.<api>.
func (r *runner) resultMsg(res *messages.Result) (*nats.Msg, []byte, error) {
	out := *res
	out.SchemaVersion = messages.SchemaVersion
	data, err := json.Marshal(&out)
	if err != nil {
		return nil, nil, err
	}
	api := res.API
	if !api.Valid() {
		api = r.k.subjectAPI
	}
	m := nats.NewMsg(r.p.cfg.Subjects.ResultFor(subjectAPI(api), res.RequestID))
	tracing.Inject(r.tctx, m)
	m.Data = data
	return m, data, nil
}

// resultMsgID: the same outcome published again (a redelivery answered
// from the ledger) is stored once; a new outcome of the same request is
// not.
func resultMsgID(res *messages.Result) string {
	return "result:" + boundID(res.RequestID) + ":" + stamp(res.CompletedAt)
}

// reply sends a stored result to the request's reply subject, if any:
// core NATS, best effort.
func (r *runner) reply(data []byte) {
	req := r.k.req
	if req == nil || req.ReplyTo == "" || r.p.reply == nil {
		return
	}
	if !r.replyAllowed(req.ReplyTo) {
		r.log().Warn("reply_to is not a subject qualfile replies to; not replied")
		return
	}
	rm := nats.NewMsg(req.ReplyTo)
	tracing.Inject(r.tctx, rm)
	rm.Data = data
	if err := r.p.reply.PublishMsg(rm); err != nil {
		r.log().Warn("reply failed; the result is stored")
	}
}

// replyAllowed refuses reply subjects that are not subjects at all, and
// those into qualfile's own subjects or the system's, which would let a
// sender publish there with qualfile's credentials.
func (r *runner) replyAllowed(s string) bool {
	root := r.p.cfg.Subjects.Root()
	return messages.ValidReplySubject(s) && s != root && !strings.HasPrefix(s, root+".") && !strings.HasPrefix(s, "$")
}

// subjectAPI is the api token of a subject: a known api, or "unknown".
func subjectAPI(api messages.API) messages.API {
	if api.Valid() {
		return api
	}
	return "unknown"
}

// headerValue makes a value from a message safe for a header line.
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, bound(s, 512))
}
