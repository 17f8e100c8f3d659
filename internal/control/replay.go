package control

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// replay publishes a dead letter's request again as a new delivery of the
// same request, and removes the letter. A dead letter is untrusted input:
// only its body counts. The body must be a request of this deployment; it
// goes to this deployment's request subject of its api, and the ledger
// entry of the id it carries is re-armed with a compare-and-set (done →
// claimed), so that two replays at once, or a replay racing a delivery,
// cannot both win; the replayed event, with who and why, goes into the
// trail with the move and out with the replay's first delivery. A request
// that already succeeded, whose outcome is ambiguous (the vendor may have
// filed it), or whose call may be in flight is skipped unless forced. A
// letter whose body is not a request, or is not the request the ledger
// recorded for its id, is never replayed.
func (s *Service) replay(ctx context.Context, operatorName string, o Order, d operator.DeadLetter) (Item, error) {
	it := Item{Seq: d.Sequence, RequestID: d.RequestID, Tenant: d.Tenant}
	body := d.Data
	if d.BodyObject != "" {
		if s.cfg.Objects == nil {
			it.Skipped = "its body is in the object store, which is not reachable"
			return it, nil
		}
		b, err := s.cfg.Objects.GetBytes(ctx, d.BodyObject)
		if err != nil {
			it.Skipped = "its body could not be read from the object store: " + err.Error()
			return it, nil
		}
		body = b
	}
	req, err := messages.ParseRequest(body)
	if err != nil || !req.API.Valid() {
		it.Skipped = "its body is not a request of a known api: it would fail the same way"
		return it, nil
	}
	it.RequestID = req.ID
	if _, err := ledger.Key(d.Tenant, req.ID); err != nil {
		it.Skipped = "its body carries no valid request id"
		return it, nil
	}
	if !messages.AccountPermitted(s.cfg.Tenants, d.Tenant, req.AccountOrDefault()) {
		it.Skipped = fmt.Sprintf("its account %q is not its tenant's (any more): it would be rejected; resolve it instead", messages.Truncate(req.AccountOrDefault(), messages.MaxAccountLen))
		return it, nil
	}
	ev := s.event(d, messages.EventReplayed, operatorName, o.Reason, "replayed from dead letter "+strconv.FormatUint(d.Sequence, 10)+forcedNote(o.Force))
	ev.RequestID, ev.API, ev.Account = req.ID, req.API, req.AccountOrDefault()
	e, err := s.cfg.Ledger.Get(ctx, d.Tenant, req.ID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		// Headers are untrusted, but they may only make a replay more
		// careful: an ambiguous letter whose entry expired still needs force.
		if d.Class == messages.ClassAmbiguous && !o.Force {
			it.Skipped, it.Forcible = refuseAmbiguous, true
			return it, nil
		}
		// No trail to hold it: its event goes out beside the new one.
		if err := s.note(ctx, "", "", ev); err != nil {
			return it, err
		}
	case err != nil:
		return it, fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
	case e.Fingerprint != "" && e.Fingerprint != req.Fingerprint():
		it.Skipped = "its body is not the request the ledger recorded for this id"
		return it, nil
	default:
		if why := refuseReplay(e); why != "" && !o.Force {
			it.Skipped, it.Forcible = why, true
			return it, nil
		}
		if e.State == ledger.StateClaimed {
			// Not moved (it will be filed from the request it holds, or
			// from this one): its event goes out beside the trail.
			if err := s.note(ctx, "", "", ev); err != nil {
				return it, err
			}
		} else {
			if e.State == ledger.StateDone {
				if err := s.settled(ctx, e); err != nil {
					return it, err
				}
			}
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
			ev.Seq = len(e.Trail) + 1
			next.Trail = append(append([]messages.AuditEvent(nil), e.Trail...), ev)
			if e, err = s.cfg.Ledger.Put(ctx, e, next); err != nil {
				it.Skipped = "the ledger entry changed while replaying (another replay, or the consumer); try again"
				return it, nil
			}
		}
	}
	subject := s.cfg.Subjects.For(d.Tenant).Request(req.API)
	m := nats.NewMsg(subject)
	m.Data = body
	ack, err := s.cfg.JS.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("replay:%s:%d:%d", req.ID, d.Sequence, e.Revision)))
	if err != nil {
		return it, fmt.Errorf("%w: publishing the request: %w", ErrUnavailable, err)
	}
	if ack.Duplicate {
		it.Skipped = "already replayed (duplicate window); the earlier replay is in the request stream"
		return it, nil
	}
	if err := s.dropLetter(ctx, d); err != nil {
		it.Done = fmt.Sprintf("replayed as %s seq %d, but the letter is kept", subject, ack.Sequence)
		return it, err
	}
	it.Done = fmt.Sprintf("replayed as %s seq %d", subject, ack.Sequence)
	return it, nil
}

func forcedNote(force bool) string {
	if force {
		return " (forced)"
	}
	return ""
}

const refuseAmbiguous = "ambiguous: the vendor may already have filed it; check with the vendor, then resolve it (publisher resolve) or force a replay"

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
	case e.Result.Resolution != nil:
		return "resolved by " + e.Result.Resolution.Operator + " (" + string(e.Result.Resolution.Decision) + ")"
	}
	return ""
}
