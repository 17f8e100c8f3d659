package filing

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/queue"
)

// ReadDead returns every message of the dead-letter stream.
func ReadDead(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects) ([]DeadLetter, error) {
	name := queue.StreamNames(subjects).Dead
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	if info.State.Msgs == 0 {
		return nil, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		out = append(out, ParseDeadLetter(m.Sequence, m.Subject, m.Header, m.Data))
	}
	return out, nil
}

// ReplayLedger is what a replay needs of the ledger.
type ReplayLedger interface {
	Get(ctx context.Context, id string) (ledger.Entry, error)
	Delete(ctx context.Context, id string) error
}

// Replayed is the outcome of replaying one dead letter.
type Replayed struct {
	Dead     DeadLetter
	Sequence uint64 // in the request stream; 0 when skipped
	Skipped  string // why it was not replayed without force
}

// Replay publishes the dead letters that match (all, or those of requestID)
// again as new deliveries of the same request: it clears the request's
// ledger entry so that the consumer calls the vendor again, republishes the
// original bytes to the original subject, and removes the dead letter. A
// request that already succeeded, whose outcome is ambiguous (the vendor
// may have filed it), or that was undecodable is skipped unless force.
func Replay(ctx context.Context, js jetstream.JetStream, led ReplayLedger, subjects messages.Subjects, requestID string, force bool) ([]Replayed, error) {
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
		if requestID != "" && d.RequestID != requestID {
			continue
		}
		if why := refuseReplay(ctx, led, d); why != "" && !force {
			out = append(out, Replayed{Dead: d, Skipped: why})
			continue
		}
		if d.RequestID != "" {
			if err := led.Delete(ctx, d.RequestID); err != nil && !errors.Is(err, ledger.ErrNotFound) {
				return out, fmt.Errorf("clear ledger entry %s: %w", d.RequestID, err)
			}
		}
		m := nats.NewMsg(d.OriginalSubject)
		m.Data = d.Data
		ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("%s:replay:%d", d.RequestID, d.Sequence)))
		if err != nil {
			return out, fmt.Errorf("replay dead letter %d: %w", d.Sequence, err)
		}
		if ack.Duplicate {
			// Already replayed within the duplicate window: keep the dead
			// letter rather than lose the request.
			out = append(out, Replayed{Dead: d, Skipped: "already replayed (duplicate window); the earlier replay is in the request stream"})
			continue
		}
		if err := stream.DeleteMsg(ctx, d.Sequence); err != nil {
			return out, fmt.Errorf("replayed dead letter %d as request %d but could not remove it: %w", d.Sequence, ack.Sequence, err)
		}
		out = append(out, Replayed{Dead: d, Sequence: ack.Sequence})
	}
	return out, nil
}

func refuseReplay(ctx context.Context, led ReplayLedger, d DeadLetter) string {
	if d.RequestID == "" {
		return "undecodable: it would fail the same way"
	}
	if d.Class == messages.ClassAmbiguous {
		return "ambiguous: the vendor may already have filed it; check with the vendor first"
	}
	if e, err := led.Get(ctx, d.RequestID); err == nil && e.Result != nil && e.Result.Status == messages.StatusSucceeded {
		return "already succeeded"
	}
	return ""
}
