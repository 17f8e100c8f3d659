package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
)

// deadEntry is one line of `dead list`.
type deadEntry struct {
	Sequence   uint64 `json:"seq"`
	RequestID  string `json:"request_id,omitempty"`
	Subject    string `json:"subject"`
	Reason     string `json:"reason"`
	Class      string `json:"class,omitempty"`
	Deliveries int    `json:"deliveries,omitempty"`
	DeadAt     string `json:"dead_at,omitempty"`
}

func runDeadList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dead list", stdout, stderr)
	var conn connFlags
	conn.register(fs.FlagSet, getenv)
	if err := fs.parse(args); err != nil {
		return err
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	dead, err := filing.ReadDead(ctx, js, conn.subjects())
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for _, d := range dead {
		if err := enc.Encode(deadEntry{Sequence: d.Sequence, RequestID: d.RequestID, Subject: d.Subject, Reason: d.Reason, Class: d.Class, Deliveries: d.Deliveries, DeadAt: d.DeadAt}); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%d dead letter(s)\n", len(dead))
	return nil
}

func runDeadReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dead replay", stdout, stderr)
	var conn connFlags
	conn.register(fs.FlagSet, getenv)
	id := fs.String("id", "", "replay the dead letters of this request id")
	all := fs.Bool("all", false, "replay every dead letter")
	force := fs.Bool("force", false, "also replay ambiguous, succeeded or undecodable requests")
	bucket := fs.String("ledger-bucket", "", "the consumer's ledger bucket (default: named from --prefix, FILING_LEDGER for filing)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if (*id == "") == !*all {
		return usagef("give exactly one of --id ID or --all")
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()
	if *bucket == "" {
		*bucket = queue.BucketNames(conn.subjects()).Ledger
	}
	led, err := ledger.OpenExisting(ctx, js, *bucket)
	if err != nil {
		return err
	}
	// Oversized bodies are in the object store, when the consumer made one.
	var objects filing.ObjectGetter
	if os, err := js.ObjectStore(ctx, queue.BucketNames(conn.subjects()).Objects); err == nil {
		objects = os
	}
	done, err := filing.Replay(ctx, js, led, objects, conn.subjects(), *id, *force)
	skipped := 0
	for _, r := range done {
		if r.Skipped != "" {
			skipped++
			hint := ""
			if r.Forcible {
				hint = "; use --force to replay anyway"
			}
			fmt.Fprintf(stderr, "skipped dead seq %d (%s): %s%s\n", r.Dead.Sequence, r.Dead.RequestID, r.Skipped, hint)
			continue
		}
		fmt.Fprintf(stdout, "replayed dead seq %d (%s) as %s seq %d\n", r.Dead.Sequence, r.RequestID, r.Subject, r.Sequence)
	}
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintln(stderr, "no matching dead letters")
		return exitError(1)
	}
	if skipped > 0 {
		return exitError(1)
	}
	return nil
}
