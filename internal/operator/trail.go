package operator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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
	Sequence uint64 `json:"seq"`
	Subject  string `json:"subject"`
	messages.AuditEvent
}

// TrailLedger is what a trail needs of the ledger.
type TrailLedger interface {
	Get(ctx context.Context, tenant, id string) (ledger.Entry, error)
}

// ReadTrail gathers the trail of request id of subjects' tenant. The audit events are found
// by subject (messages.Subjects.AuditOf): the server delivers only that
// request's events, so the answer does not grow with the audit stream. A
// nil led skips the ledger; a nil dead reads the whole dead-letter stream
// to find the request's letters.
//
// An id that broke the id rules (rejected, never in the ledger) is found
// as its results and events name it: cut to messages.MaxIDLen.
func ReadTrail(ctx context.Context, js jetstream.JetStream, led TrailLedger, dead DeadIndex, subjects messages.Subjects, id string) (Trail, error) {
	t := Trail{RequestID: id}
	id = messages.Truncate(id, messages.MaxIDLen)
	if _, err := ledger.Key(subjects.Tenant, id); err != nil {
		led = nil // no entry can have such an id
	}
	if led != nil {
		e, err := led.Get(ctx, subjects.Tenant, id)
		switch {
		case err == nil:
			t.Entry = &e
		case !errors.Is(err, ledger.ErrNotFound):
			return t, err
		}
	}
	// One consumer per filter: the server counts and finds the messages
	// of one filter through its subject index, of several by a scan.
	var evs []*jetstream.RawStreamMsg
	for _, filter := range subjects.AuditOf(id) {
		got, err := queue.Read(ctx, js, queue.StreamNames(subjects).Audit, filter)
		if err != nil {
			return t, fmt.Errorf("audit events of %q: %w", id, err)
		}
		evs = append(evs, got...)
	}
	slices.SortFunc(evs, bySequence)
	seen := map[string]bool{}
	for _, m := range evs {
		ev := TrailEvent{Sequence: m.Sequence, Subject: m.Subject}
		if err := json.Unmarshal(m.Data, &ev.AuditEvent); err != nil || ev.RequestID != id || ev.Tenant != subjects.Tenant {
			continue // another id with the same key, or not an event
		}
		if ev.ID != "" && seen[ev.ID] {
			continue // a copy of an event stored already (published again after the stream's duplicate window)
		}
		seen[ev.ID] = true
		t.Events = append(t.Events, ev)
	}
	var results []*jetstream.RawStreamMsg
	for _, filter := range subjects.ResultOf(id) {
		got, err := queue.Read(ctx, js, queue.StreamNames(subjects).Results, filter)
		if err != nil {
			return t, fmt.Errorf("results of %q: %w", id, err)
		}
		results = append(results, got...)
	}
	slices.SortFunc(results, bySequence)
	for _, m := range results {
		var r messages.Result
		if json.Unmarshal(m.Data, &r) == nil && r.RequestID == id && r.Tenant == subjects.Tenant {
			t.Results = append(t.Results, r)
		}
	}
	letters, err := deadOf(ctx, js, subjects, id, dead)
	if err != nil {
		return t, err
	}
	for _, m := range letters {
		t.Dead = append(t.Dead, Letter(subjects, m))
	}
	return t, nil
}

func bySequence(a, b *jetstream.RawStreamMsg) int { return cmp.Compare(a.Sequence, b.Sequence) }
