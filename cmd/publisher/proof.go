package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/qualfile/qualfile/internal/operator"
)

// runProof prints the proof of one filing (operator.ReadProof) as JSON.
func runProof(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("proof", getenv, stdout, stderr)
	id := fs.String("id", "", "the request id (required)")
	by := fs.String("exported-by", getenv("USER"), "who exports it, as the proof records")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("--id is required")
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	p, err := operator.ReadProof(ctx, js, nil, conn.subjects(), *id, time.Now())
	if err != nil {
		return err
	}
	if len(p.Messages) == 0 {
		fmt.Fprintf(stderr, "publisher: no stored message of %q\n", *id)
		return exitError(1)
	}
	p.ExportedBy = *by
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// runVerify checks a proof against the streams (operator.VerifyProof):
// exit status 0 when it is what they held, 1 with each difference
// otherwise.
func runVerify(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("verify", getenv, stdout, stderr)
	file := fs.String("file", "", "the proof, as the console or `publisher proof` exported it; - reads stdin (required)")
	if err := fs.parse(args); err != nil {
		return err
	}
	var data []byte
	var err error
	switch *file {
	case "":
		return usagef("--file is required")
	case "-":
		data, err = io.ReadAll(io.LimitReader(stdin, 64<<20))
	default:
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return err
	}
	var p operator.Proof
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("%s: not a proof: %w", *file, err)
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	v, err := operator.VerifyProof(ctx, js, p)
	if err != nil {
		return fmt.Errorf("reading the streams: %w", err)
	}
	for _, u := range v.Unconfirmed {
		fmt.Fprintf(stdout, "%s %d: %s\n", u.Stream, u.Seq, u.What)
	}
	for _, pr := range v.Problems {
		if pr.Stream != "" {
			fmt.Fprintf(stdout, "%s %d: %s\n", pr.Stream, pr.Seq, pr.What)
		} else {
			fmt.Fprintln(stdout, pr.What)
		}
	}
	if len(v.Problems) > 0 {
		fmt.Fprintf(stdout, "NOT verified: %d difference(s) from what the streams hold\n", len(v.Problems))
		return exitError(1)
	}
	fmt.Fprintf(stdout, "verified: the proof of %q (%d messages, digest %s) is what the streams held when it was read", p.RequestID, len(p.Messages), p.Digest)
	if len(v.Unconfirmed) > 0 {
		fmt.Fprintf(stdout, ", but for %d message(s) no longer stored", len(v.Unconfirmed))
	}
	fmt.Fprintln(stdout)
	if v.Since > 0 && v.Current != nil {
		fmt.Fprintf(stdout, "since then: %d more message(s) of this filing; its outcome now: %s (completed %s)\n", v.Since, v.Current.Status, v.Current.CompletedAt.Format(time.RFC3339))
	}
	return nil
}
