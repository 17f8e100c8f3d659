package filing

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// Trail is everything known about one request.
type Trail struct {
	RequestID string
	// Entry is the ledger's record (state, attempts, owner, the current
	// result); nil when the ledger has none (never received, or expired
	// after ledger.max_age).
	Entry *ledger.Entry
	// Events are the request's audit events in stream order, each with
	// its stream sequence: received, every attempt, deferrals, outcomes,
	// replays, copies answered from the ledger.
	Events []TrailEvent
	// Results are every result published for the request, in stream
	// order: the last one not superseded is its outcome.
	Results []messages.Result
	// Dead are the request's dead letters still in the stream.
	Dead []DeadLetter
}

// TrailEvent is one audit event as stored.
type TrailEvent struct {
	Sequence uint64
	Subject  string
	messages.AuditEvent
}

// TrailLedger is what a trail needs of the ledger.
type TrailLedger interface {
	Get(ctx context.Context, id string) (ledger.Entry, error)
}

// ReadTrail gathers the trail of request id. The audit events are found
// by subject (messages.Subjects.AuditOf): the server delivers only that
// request's events, so the answer does not grow with the audit stream. A
// nil led skips the ledger.
func ReadTrail(ctx context.Context, js jetstream.JetStream, led TrailLedger, subjects messages.Subjects, id string) (Trail, error) {
	t := Trail{RequestID: id}
	if led != nil {
		e, err := led.Get(ctx, id)
		switch {
		case err == nil:
			t.Entry = &e
		case !errors.Is(err, ledger.ErrNotFound):
			return t, err
		}
	}
	// One consumer per filter: the server counts and finds the messages
	// of one filter through its subject index, of several by a scan.
	var evs []storedMsg
	for _, filter := range subjects.AuditOf(id) {
		got, err := readByFilter(ctx, js, queue.StreamNames(subjects).Audit, filter)
		if err != nil {
			return t, fmt.Errorf("audit events of %q: %w", id, err)
		}
		evs = append(evs, got...)
	}
	slices.SortFunc(evs, func(a, b storedMsg) int { return cmp.Compare(a.seq, b.seq) })
	for _, m := range evs {
		ev := TrailEvent{Sequence: m.seq, Subject: m.subject}
		if err := json.Unmarshal(m.data, &ev.AuditEvent); err != nil || ev.RequestID != id {
			continue // another id with the same key, or not an event
		}
		t.Events = append(t.Events, ev)
	}
	var results []storedMsg
	for _, filter := range subjects.ResultOf(id) {
		got, err := readByFilter(ctx, js, queue.StreamNames(subjects).Results, filter)
		if err != nil {
			return t, fmt.Errorf("results of %q: %w", id, err)
		}
		results = append(results, got...)
	}
	slices.SortFunc(results, func(a, b storedMsg) int { return cmp.Compare(a.seq, b.seq) })
	for _, m := range results {
		var r messages.Result
		if json.Unmarshal(m.data, &r) == nil && r.RequestID == id {
			t.Results = append(t.Results, r)
		}
	}
	dead, err := ReadDead(ctx, js, subjects)
	if err != nil {
		return t, err
	}
	for _, d := range dead {
		if d.RequestID == id {
			t.Dead = append(t.Dead, d)
		}
	}
	return t, nil
}

type storedMsg struct {
	seq     uint64
	subject string
	data    []byte
}

// readByFilter reads every message of stream on subjects matching filter,
// with an ordered consumer that the server feeds only those.
func readByFilter(ctx context.Context, js jetstream.JetStream, stream, filter string) ([]storedMsg, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	want := int(info.NumPending)
	var out []storedMsg
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 256), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			out = append(out, storedMsg{seq: md.Sequence.Stream, subject: m.Subject(), data: m.Data()})
			n++
		}
		if err := batch.Error(); err != nil {
			return out, err
		}
		if n == 0 {
			break // the stream changed under us (messages aged out)
		}
	}
	return out, nil
}
