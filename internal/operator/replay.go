package operator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// ReplayLedger is what a replay needs of the ledger.
type ReplayLedger interface {
	Get(ctx context.Context, id string) (ledger.Entry, error)
	Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error)
}

// ObjectGetter reads a dead letter's body kept in the object store.
type ObjectGetter interface {
	GetBytes(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) ([]byte, error)
}

// Replayed is the outcome of replaying one dead letter.
type Replayed struct {
	Dead      DeadLetter
	RequestID string // the id the letter's body carries
	Subject   string // where it was republished
	Sequence  uint64 // in the request stream; 0 when skipped
	Skipped   string // why it was not replayed
	Forcible  bool   // --force would replay it
}

// Replay publishes the dead letters that match (all, or those whose body
// carries requestID) again as new deliveries of the same request. A dead
// letter is untrusted input: only its body counts. The body must be a
// request of this deployment; it goes to this deployment's request subject
// of its api, and the ledger entry of the id it carries is re-armed with a
// compare-and-set (done → claimed), so that two replays at once, or a
// replay racing the consumer, cannot both win. A request that already
// succeeded, whose outcome is ambiguous (the vendor may have filed it), or
// whose call may be in flight is skipped unless force. A letter whose body
// is not a request, or is not the request the ledger recorded for its id,
// is never replayed.
func Replay(ctx context.Context, js jetstream.JetStream, led ReplayLedger, objects ObjectGetter, subjects messages.Subjects, requestID string, force bool) ([]Replayed, error) {
	dead, err := ReadDead(ctx, js, subjects)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, queue.StreamNames(subjects).Dead)
	if err != nil {
		return nil, err
	}
	var out []Replayed
	for _, d := range dead {
		rp := replayOne(ctx, js, led, objects, subjects, d, requestID, force)
		if rp == nil {
			continue
		}
		if rp.Skipped == "" {
			if err := stream.DeleteMsg(ctx, d.Sequence); err != nil {
				return append(out, *rp), fmt.Errorf("replayed dead letter %d as request %d but could not remove it: %w", d.Sequence, rp.Sequence, err)
			}
		}
		out = append(out, *rp)
	}
	return out, nil
}

// replayOne replays one dead letter, or says why not; nil when it does not
// match requestID.
func replayOne(ctx context.Context, js jetstream.JetStream, led ReplayLedger, objects ObjectGetter, subjects messages.Subjects, d DeadLetter, requestID string, force bool) *Replayed {
	rp := &Replayed{Dead: d}
	body := d.Data
	if d.BodyObject != "" {
		if objects == nil {
			rp.Skipped = "its body is in the object store, which is not reachable"
			return rp
		}
		b, err := objects.GetBytes(ctx, d.BodyObject)
		if err != nil {
			rp.Skipped = "its body could not be read from the object store: " + err.Error()
			return rp
		}
		body = b
	}
	req, err := messages.ParseRequest(body)
	if err != nil || !req.API.Valid() {
		if requestID != "" && d.RequestID != requestID {
			return nil
		}
		rp.Skipped = "its body is not a request of a known api: it would fail the same way"
		return rp
	}
	rp.RequestID = req.ID
	if requestID != "" && req.ID != requestID {
		return nil
	}
	if _, err := ledger.Key(req.ID); err != nil {
		rp.Skipped = "its body carries no valid request id"
		return rp
	}
	e, err := led.Get(ctx, req.ID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		// Headers are untrusted, but they may only make a replay more
		// careful: an ambiguous letter whose entry expired still needs force.
		if d.Class == messages.ClassAmbiguous && !force {
			rp.Skipped, rp.Forcible = refuseAmbiguous, true
			return rp
		}
	case err != nil:
		rp.Skipped = "ledger: " + err.Error()
		return rp
	case e.Fingerprint != "" && e.Fingerprint != req.Fingerprint():
		rp.Skipped = "its body is not the request the ledger recorded for this id"
		return rp
	default:
		if why := refuseReplay(e); why != "" && !force {
			rp.Skipped, rp.Forcible = why, true
			return rp
		}
		if e.State != ledger.StateClaimed {
			next := e
			if e.Result != nil {
				next.Supersedes = e.Result.CompletedAt // the replay's outcome replaces it
			}
			next.State, next.Owner, next.Nonce, next.Result, next.Seq, next.UpdatedAt = ledger.StateClaimed, "replay", "", nil, 0, time.Time{}
			// What the vendor lists now includes what the outcome set aside
			// may have filed: the replay's first call lists it again.
			next.Baseline, next.BaselineKnown = nil, false
			// The trail so far went out with the request's outcome; the
			// replay's own event is the first one left to publish.
			if e.State == ledger.StateDone {
				next.Emitted = len(e.Trail)
			}
			next.Trail = append(append([]messages.AuditEvent(nil), e.Trail...), messages.AuditEvent{
				RequestID: req.ID, API: req.API, Account: req.AccountOrDefault(), Event: messages.EventReplayed, Time: time.Now().UTC(),
				Message: "replayed by an operator from dead letter " + strconv.FormatUint(d.Sequence, 10) + forcedNote(force)})
			if e, err = led.Put(ctx, e, next); err != nil {
				rp.Skipped = "the ledger entry changed while replaying (another replay, or the consumer); try again"
				return rp
			}
		}
	}
	rp.Subject = subjects.Request(req.API)
	m := nats.NewMsg(rp.Subject)
	m.Data = body
	ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d:%d", req.ID, d.Sequence, e.Revision)))
	if err != nil {
		rp.Skipped = "publish: " + err.Error()
		return rp
	}
	if ack.Duplicate {
		rp.Skipped = "already replayed (duplicate window); the earlier replay is in the request stream"
		return rp
	}
	rp.Sequence = ack.Sequence
	return rp
}

func forcedNote(force bool) string {
	if force {
		return " (forced)"
	}
	return ""
}

const refuseAmbiguous = "ambiguous: the vendor may already have filed it; check with the vendor first"

// refuseReplay says why a request should not be filed again without force.
func refuseReplay(e ledger.Entry) string {
	switch {
	case e.State == ledger.StateCalling:
		return "a call may be in flight right now"
	case e.Result == nil:
		return ""
	case e.Result.Status == messages.StatusSucceeded:
		return "already succeeded"
	case e.Ambiguous():
		return refuseAmbiguous
	}
	return ""
}
