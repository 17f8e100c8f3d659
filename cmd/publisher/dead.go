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

// deadEntry is one line of `dead list`.
type deadEntry struct {
	Sequence   uint64 `json:"seq"`
	RequestID  string `json:"request_id,omitempty"`
	API        string `json:"api"`
	Subject    string `json:"subject"`
	Reason     string `json:"reason"`
	Class      string `json:"class,omitempty"`
	Deliveries int    `json:"deliveries,omitempty"`
	DeadAt     string `json:"dead_at,omitempty"`
	Age        string `json:"age,omitempty"` // since DeadAt, to the second
}

// newDeadEntry describes d as of now.
func newDeadEntry(d operator.DeadLetter, subjects messages.Subjects, now time.Time) deadEntry {
	e := deadEntry{Sequence: d.Sequence, RequestID: d.RequestID, Subject: d.Subject, Reason: d.Reason, Class: d.Class, Deliveries: d.Deliveries, DeadAt: d.DeadAt}
	e.API = strings.TrimPrefix(d.Subject, subjects.Dead("")) // filing.dead.<api>
	if at, err := time.Parse(time.RFC3339Nano, d.DeadAt); err == nil {
		e.Age = now.Sub(at).Round(time.Second).String()
	}
	return e
}

// forSelected runs a dead-letter command on the letters that --id or --seq
// selects: flags adds the command's own flags, each acts on one letter.
func forSelected(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer,
	flags func(*flagSet), each func(jetstream.JetStream, messages.Subjects, operator.DeadLetter) error) error {
	fs, conn := newConnFlagSet(name, getenv, stdout, stderr)
	id := fs.String("id", "", "the dead letters of this request id")
	seq := fs.Uint64("seq", 0, "the dead letter with this sequence in the dead-letter stream (an undecodable one has no id)")
	flags(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if (*id == "") == (*seq == 0) {
		return usagef("give exactly one of --id ID or --seq N")
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	dead, err := operator.ReadDead(ctx, js, conn.subjects())
	if err != nil {
		return err
	}
	found := 0
	for _, d := range dead {
		if (*seq != 0 && d.Sequence != *seq) || (*seq == 0 && d.RequestID != *id) {
			continue
		}
		found++
		if err := each(js, conn.subjects(), d); err != nil {
			return err
		}
	}
	if found == 0 {
		fmt.Fprintln(stderr, "no matching dead letters")
		return exitError(1)
	}
	return nil
}

// runDeadShow prints the selected dead letters with their bodies, the
// request redacted as in the audit trail unless --raw.
func runDeadShow(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var raw *bool
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	now := time.Now()
	return forSelected(ctx, "dead show", args, getenv, stdout, stderr, func(fs *flagSet) {
		raw = fs.Bool("raw", false, "print the bodies as stored, personal data included")
	}, func(_ jetstream.JetStream, subjects messages.Subjects, d operator.DeadLetter) error {
		out := struct {
			deadEntry
			OriginalSubject string          `json:"original_subject,omitempty"`
			BodyObject      string          `json:"body_object,omitempty"`
			Body            json.RawMessage `json:"body,omitempty"`
			BodyText        string          `json:"body_text,omitempty"`
		}{deadEntry: newDeadEntry(d, subjects, now), OriginalSubject: d.OriginalSubject, BodyObject: d.BodyObject}
		switch {
		case len(d.Data) == 0:
		case *raw && json.Valid(d.Data):
			out.Body = d.Data
		case *raw:
			out.BodyText = string(d.Data)
		default:
			out.Body = messages.Redact(d.Data)
		}
		return enc.Encode(out)
	})
}

// runDeadRm deletes the selected dead letters (and an oversized body kept
// in the object store): for a letter settled otherwise, or one nobody will
// replay, such as an undecodable message.
func runDeadRm(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return forSelected(ctx, "dead rm", args, getenv, stdout, stderr, func(*flagSet) {}, func(js jetstream.JetStream, subjects messages.Subjects, d operator.DeadLetter) error {
		if d.BodyObject != "" {
			// The body first: once the letter is gone, so is its name.
			objects, err := js.ObjectStore(ctx, queue.BucketNames(subjects).Objects)
			if err == nil {
				err = objects.Delete(ctx, d.BodyObject)
			}
			if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				return fmt.Errorf("removing the body %s of dead seq %d from the object store (the letter is kept): %w", d.BodyObject, d.Sequence, err)
			}
		}
		stream, err := js.Stream(ctx, queue.StreamNames(subjects).Dead)
		if err != nil {
			return err
		}
		if err := stream.DeleteMsg(ctx, d.Sequence); err != nil {
			return fmt.Errorf("removing dead seq %d: %w", d.Sequence, err)
		}
		fmt.Fprintf(stdout, "removed dead seq %d (%s)\n", d.Sequence, d.RequestID)
		return nil
	})
}

func runDeadList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("dead list", getenv, stdout, stderr)
	if err := fs.parse(args); err != nil {
		return err
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	dead, err := operator.ReadDead(ctx, js, conn.subjects())
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	now := time.Now()
	for _, d := range dead {
		if err := enc.Encode(newDeadEntry(d, conn.subjects(), now)); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "%d dead letter(s)\n", len(dead))
	return nil
}

func runDeadReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("dead replay", getenv, stdout, stderr)
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
	nc, js, err := conn.connect()
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
	var objects operator.ObjectGetter
	if os, err := js.ObjectStore(ctx, queue.BucketNames(conn.subjects()).Objects); err == nil {
		objects = os
	}
	done, err := operator.Replay(ctx, js, led, objects, conn.subjects(), *id, *force)
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
