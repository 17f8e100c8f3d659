package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// trailJSON is `trail --output json`.
type trailJSON struct {
	RequestID   string                `json:"request_id"`
	Ledger      *ledgerJSON           `json:"ledger"`
	Events      []operator.TrailEvent `json:"events"`
	Result      *messages.Result      `json:"result,omitempty"` // the ledger's: the outcome
	Results     []messages.Result     `json:"results"`          // every result published, in order
	DeadLetters []deadEntry           `json:"dead_letters"`
	Found       bool                  `json:"found"`
	Note        string                `json:"note,omitempty"`
}

type ledgerJSON struct {
	State      ledger.State `json:"state"`
	Attempts   int          `json:"attempts"`
	Owner      string       `json:"owner,omitempty"`
	UpdatedAt  time.Time    `json:"updated_at"`
	Supersedes time.Time    `json:"supersedes,omitzero"`
}

// runTrail prints everything known about one request: its ledger entry,
// every audit event (found by subject, server-side), its current result
// and its dead letters; a timeline, or JSON with --output json.
func runTrail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("trail", getenv, stdout, stderr)
	id := fs.String("id", "", "the request id (required)")
	output := fs.String("output", "text", "text (a timeline) or json")
	bucket := fs.String("ledger-bucket", "", "the consumer's ledger bucket (default: named from --prefix, FILING_LEDGER for filing)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	if *output != "text" && *output != "json" {
		return usagef("--output %q: text or json", *output)
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	if *bucket == "" {
		*bucket = queue.BucketNames(conn.subjects()).Ledger
	}
	var led operator.TrailLedger
	switch l, err := ledger.OpenExisting(ctx, js, *bucket); {
	case err == nil:
		led = l
	case errors.Is(err, jetstream.ErrBucketNotFound):
		// no ledger (yet): the events and results still tell
	default:
		return fmt.Errorf("ledger %s: %w", *bucket, err)
	}
	t, err := operator.ReadTrail(ctx, js, led, nil, conn.subjects(), *id)
	if err != nil {
		return err
	}
	out := trailJSON{RequestID: t.RequestID, Events: []operator.TrailEvent{}, Results: []messages.Result{}, DeadLetters: []deadEntry{}}
	out.Events, out.Results = append(out.Events, t.Events...), append(out.Results, t.Results...)
	out.Found = t.Entry != nil || len(t.Events) > 0 || len(t.Results) > 0 || len(t.Dead) > 0
	if e := t.Entry; e != nil {
		out.Ledger = &ledgerJSON{State: e.State, Attempts: e.Attempts, Owner: e.Owner, UpdatedAt: e.UpdatedAt, Supersedes: e.Supersedes}
		out.Result = e.Result
	} else if _, err := ledger.Key(conn.tenant, *id); err != nil {
		out.Note = "an id that breaks the id rules is rejected, never in the ledger"
	} else if len(t.Events) > 0 {
		out.Note = "the ledger no longer has this id (ledger.max_age); the audit events remain"
	}
	now := time.Now()
	for _, d := range t.Dead {
		out.DeadLetters = append(out.DeadLetters, newDeadEntry(d, conn.subjects(), now))
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		printTimeline(stdout, out)
	}
	if !out.Found {
		return exitError(1)
	}
	return nil
}

// printTimeline writes the trail for a person: one line per event.
func printTimeline(w io.Writer, t trailJSON) {
	fmt.Fprintf(w, "request %s\n", t.RequestID)
	if !t.Found {
		fmt.Fprintln(w, "  nothing known: no ledger entry, no audit event, no dead letter")
		return
	}
	if l := t.Ledger; l != nil {
		fmt.Fprintf(w, "  ledger: %s, %d attempt(s), last moved by %s at %s\n", l.State, l.Attempts, l.Owner, l.UpdatedAt.Format(time.RFC3339Nano))
	} else {
		fmt.Fprintf(w, "  ledger: none (%s)\n", t.Note)
	}
	for _, ev := range t.Events {
		var b strings.Builder
		fmt.Fprintf(&b, "  %s  %-11s", ev.Time.UTC().Format("2006-01-02T15:04:05.000Z"), ev.Event)
		if ev.Delivery > 0 {
			fmt.Fprintf(&b, " delivery %d", ev.Delivery)
		}
		if ev.Attempt > 0 {
			fmt.Fprintf(&b, " attempt %d", ev.Attempt)
		}
		if ev.Status != "" {
			fmt.Fprintf(&b, " %s", ev.Status)
		}
		switch {
		case ev.Class != "" || ev.Code != "":
			fmt.Fprintf(&b, " [%s %s]", ev.Class, ev.Code)
		case ev.Event == messages.EventAttempt:
			b.WriteString(" ok")
		}
		if ev.Event == messages.EventAttempt {
			fmt.Fprintf(&b, " %.1f ms", ev.DurationMS)
		}
		if ev.UpstreamRequestID != "" {
			fmt.Fprintf(&b, " upstream %s", ev.UpstreamRequestID)
		}
		if ev.Message != "" {
			fmt.Fprintf(&b, " — %s", ev.Message)
		}
		fmt.Fprintf(&b, "  (audit seq %d)", ev.Sequence)
		fmt.Fprintln(w, b.String())
	}
	results := t.Results
	if len(results) == 0 && t.Result != nil {
		results = []messages.Result{*t.Result} // aged out of the results stream
	}
	for _, r := range results {
		line := fmt.Sprintf("  result: %s at %s", r.Status, r.CompletedAt.Format(time.RFC3339Nano))
		if len(r.Result) > 0 {
			line += " " + string(r.Result)
		}
		if r.Error != nil {
			line += fmt.Sprintf(" [%s %s] %s", r.Error.Class, r.Error.Code, r.Error.Message)
		}
		if !r.Supersedes.IsZero() {
			line += " (supersedes the result of " + r.Supersedes.Format(time.RFC3339Nano) + ")"
		}
		fmt.Fprintln(w, line)
	}
	if len(t.DeadLetters) == 0 {
		fmt.Fprintln(w, "  dead letters: none")
	}
	for _, d := range t.DeadLetters {
		fmt.Fprintf(w, "  dead letter seq %d: %s [%s], %s ago\n", d.Sequence, d.Reason, d.Class, d.Age)
	}
}
