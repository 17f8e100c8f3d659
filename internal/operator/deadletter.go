// Package operator is what operators and auditors read, outside the
// consumer: one request's trail, the dead letters. It reads what the
// pipeline wrote (the wire contracts in messages, the ledger's entries)
// and changes nothing: what an operator changes, the consumer does on
// its order (internal/control).
package operator

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// DeadLetter is one message of the dead-letter stream, as read back by an
// operator's tool.
type DeadLetter struct {
	Sequence        uint64 // in the dead-letter stream
	Subject         string
	Tenant          string // whose letter it is, from its subject
	API             messages.API
	RequestID       string
	Reason          string
	Class           string
	OriginalSubject string
	Deliveries      int
	DeadAt          string
	BodyObject      string // the body is in the object store under this name
	Data            []byte
}

// ReadDead returns every message of the dead-letter stream, its headers
// read (messages.HeaderDeadReason, ...).
func ReadDead(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects) ([]DeadLetter, error) {
	name := queue.StreamNames(subjects).Dead
	msgs, err := queue.Read(ctx, js, name, "")
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, Letter(subjects, m))
	}
	return out, nil
}

// Letter reads one message of the dead-letter stream under subjects.
func Letter(subjects messages.Subjects, m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	tenant, api, _ := subjects.ParseDeadSubject(m.Subject)
	if !api.Valid() {
		api = "unknown"
	}
	n, _ := strconv.Atoi(h.Get(messages.HeaderDeliveries))
	// The body's object is named from the letter's own digest: a
	// letter that names another object names none.
	seq, _ := strconv.ParseUint(h.Get(messages.HeaderOrigSequence), 10, 64)
	object, ok := messages.DeadBodyObject(h.Get(messages.HeaderBodySHA256), seq)
	if !ok || h.Get(messages.HeaderBodyObject) != object {
		object = ""
	}
	return DeadLetter{
		Sequence:        m.Sequence,
		Subject:         m.Subject,
		Tenant:          tenant,
		API:             api,
		RequestID:       h.Get(messages.HeaderRequestID),
		Reason:          h.Get(messages.HeaderDeadReason),
		Class:           h.Get(messages.HeaderDeadClass),
		OriginalSubject: h.Get(messages.HeaderOrigSubject),
		Deliveries:      n,
		DeadAt:          h.Get(messages.HeaderDeadAt),
		BodyObject:      object,
		Data:            m.Data,
	}
}

// DeadIndex names the stream sequences of a request's dead letters, as a
// read model keeps them (readmodel.Model), so that one request's letters
// are read by their sequences; without one, the whole dead-letter stream
// is read.
type DeadIndex interface {
	DeadSeqs(ctx context.Context, tenant, id string) ([]uint64, error)
}

// deadOf returns the dead letters of subjects' tenant's request id, in
// stream order: those idx names, each read by its sequence, or those of
// the whole stream. Either way only letters whose headers name the
// request are returned.
func deadOf(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects, id string, idx DeadIndex) ([]*jetstream.RawStreamMsg, error) {
	name := queue.StreamNames(subjects).Dead
	var msgs []*jetstream.RawStreamMsg
	if idx == nil {
		all, err := queue.Read(ctx, js, name, "")
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		msgs = all
	} else {
		seqs, err := idx.DeadSeqs(ctx, subjects.Tenant, id)
		if err != nil {
			return nil, err
		}
		if len(seqs) > 0 {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return nil, fmt.Errorf("stream %s: %w", name, err)
			}
			for _, seq := range seqs {
				m, err := s.GetMsg(ctx, seq)
				switch {
				case errors.Is(err, jetstream.ErrMsgNotFound):
					continue // removed since the index saw it
				case err != nil:
					return nil, fmt.Errorf("stream %s: %w", name, err)
				}
				msgs = append(msgs, m)
			}
		}
	}
	out := msgs[:0]
	for _, m := range msgs {
		if d := Letter(subjects, m); d.RequestID == id && d.Tenant == subjects.Tenant {
			out = append(out, m)
		}
	}
	return out, nil
}
