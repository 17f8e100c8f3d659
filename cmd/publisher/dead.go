package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// deadEntry is one line of `dead list`.
type deadEntry struct {
	Sequence   uint64 `json:"seq"`
	RequestID  string `json:"request_id,omitempty"`
	Tenant     string `json:"tenant,omitempty"`
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
	e := deadEntry{Sequence: d.Sequence, RequestID: d.RequestID, Tenant: d.Tenant, API: string(d.API), Subject: d.Subject, Reason: d.Reason,
		Class: d.Class, Deliveries: d.Deliveries, DeadAt: d.DeadAt}
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
		if (*seq != 0 && d.Sequence != *seq) || (*seq == 0 && (d.RequestID != *id || d.Tenant != conn.tenant)) {
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

// runOrder gives the consumers an operator's order (control.Ask) and
// prints their report: what was done on stdout, what was skipped and why
// on stderr. An order that skipped anything, or matched nothing, exits 1.
func runOrder(ctx context.Context, name string, a control.Action, args []string, getenv func(string) string, stdout, stderr io.Writer,
	flags func(*flagSet, *control.Order)) error {
	fs, conn := newConnFlagSet(name, getenv, stdout, stderr)
	var o control.Order
	operator := fs.String("operator", getenv("QUALFILE_OPERATOR"), "your operator name, as your NATS permissions bind it (env QUALFILE_OPERATOR)")
	fs.StringVar(&o.Reason, "reason", "", "why, for the trail (required)")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the consumer's report")
	flags(fs, &o)
	if err := fs.parse(args); err != nil {
		return err
	}
	if o.RequestID != "" {
		o.Tenant = conn.tenant // whose id it is
	}
	if err := o.Validate(a); err != nil {
		return usagef("%v", err)
	}
	if !control.ValidOperator(*operator) {
		return usagef("--operator NAME (or QUALFILE_OPERATOR): the name your NATS permissions bind (publisher permissions --operator NAME)")
	}
	nc, _, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := control.Ask(ctx, nc, conn.subjects(), *operator, a, o)
	skipped := 0
	for _, it := range rep.Items {
		what := fmt.Sprintf("dead seq %d (%s)", it.Seq, it.RequestID)
		if it.Seq == 0 {
			what = it.RequestID
		}
		if it.Skipped != "" {
			skipped++
			hint := ""
			if it.Forcible {
				hint = "; use --force to replay anyway"
			}
			fmt.Fprintf(stderr, "skipped %s: %s%s\n", what, it.Skipped, hint)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", what, it.Done)
	}
	switch {
	case errors.Is(err, control.ErrNoMatch):
		fmt.Fprintln(stderr, err)
		return exitError(1)
	case err != nil:
		return err
	case skipped > 0:
		return exitError(1)
	}
	return nil
}

func runDeadReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runOrder(ctx, "dead replay", control.ActionReplay, args, getenv, stdout, stderr, func(fs *flagSet, o *control.Order) {
		fs.StringVar(&o.RequestID, "id", "", "replay the dead letters of this request id")
		fs.Uint64Var(&o.Seq, "seq", 0, "replay the dead letter with this sequence in the dead-letter stream")
		fs.BoolVar(&o.All, "all", false, "replay every dead letter")
		fs.BoolVar(&o.Force, "force", false, "also replay ambiguous, succeeded or in-flight requests")
	})
}

// runDeadRm removes the selected dead letters (and a body kept in the
// object store): for one nobody will replay, such as an undecodable
// message. A filing settled otherwise is resolved (publisher resolve),
// which removes its letters too.
func runDeadRm(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runOrder(ctx, "dead rm", control.ActionRemove, args, getenv, stdout, stderr, func(fs *flagSet, o *control.Order) {
		fs.StringVar(&o.RequestID, "id", "", "remove the dead letters of this request id")
		fs.Uint64Var(&o.Seq, "seq", 0, "remove the dead letter with this sequence in the dead-letter stream (an undecodable one has no id)")
	})
}

// runResolve records an operator's decision on an ambiguous or failed
// filing.
func runResolve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runOrder(ctx, "resolve", control.ActionResolve, args, getenv, stdout, stderr, func(fs *flagSet, o *control.Order) {
		fs.StringVar(&o.RequestID, "id", "", "the request id of the filing")
		fs.Func("filed-as", "the vendor holds it, as this record (QualificationNo, ...)", func(v string) error {
			o.Decision, o.Record = messages.DecisionFiled, v
			return nil
		})
		fs.BoolFunc("abandon", "nobody will file it", func(string) error {
			o.Decision = messages.DecisionAbandoned
			return nil
		})
	})
}
