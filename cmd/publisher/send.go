package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// published is what send prints for each request.
type published struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func runSend(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stdout, stderr)
	var conn connFlags
	conn.register(fs.FlagSet, getenv)
	apiFlag := fs.String("api", "", "the call: "+apiNames())
	file := fs.String("file", "", "request envelope or bare payload; - reads stdin (NDJSON for many)")
	account := fs.String("account", "", "credential profile for bare payloads (consumer default: default)")
	idFlag := fs.String("id", "", "the request's id, for one request without its own (default: derived from the api, the account and the payload, so that the same request sent again is not filed twice)")
	wait := fs.Bool("wait", false, "wait for each result and print it")
	timeout := fs.Duration("timeout", time.Minute, "with --wait: how long to wait for all results")
	if err := fs.parse(args); err != nil {
		return err
	}
	api := messages.API(*apiFlag)
	if !api.Valid() {
		return usagef("--api must be one of %s", apiNames())
	}
	docs, err := readDocs(*file, stdin)
	if err != nil {
		return err
	}
	if *idFlag != "" && len(docs) > 1 {
		return usagef("--id names one request, and %s holds %d", *file, len(docs))
	}
	nc, js, err := conn.connect(ctx)
	if err != nil {
		return err
	}
	defer nc.Close()

	var inbox string
	var sub *nats.Subscription
	results := make(chan *nats.Msg, len(docs))
	if *wait {
		inbox = nc.NewRespInbox()
		if sub, err = nc.ChanSubscribe(inbox, results); err != nil {
			return err
		}
		defer sub.Unsubscribe()
	}

	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	subject := conn.subjects().Request(api)
	pending := map[string]bool{}
	dupes := 0
	for _, doc := range docs {
		data, id, err := envelope(doc, api, *account, inbox, *idFlag, time.Now())
		if err != nil {
			return err
		}
		m := nats.NewMsg(subject)
		m.Data = data
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ack, err := js.PublishMsg(pctx, m, jetstream.WithMsgID(id))
		cancel()
		if err != nil {
			return fmt.Errorf("publish %s: %w", id, err)
		}
		p := published{ID: id, Subject: subject, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
		if *wait {
			fmt.Fprintf(stderr, "published %s to %s (stream %s seq %d)\n", id, subject, ack.Stream, ack.Sequence)
			if ack.Duplicate {
				// The first copy's result went to the first sender's reply
				// subject; this one would wait in vain.
				fmt.Fprintf(stderr, "publisher: %s was already published within the duplicate window; this copy was dropped. Its result is on %s\n", id, conn.subjects().Result(api))
				dupes++
				continue
			}
			pending[id] = true
		} else if err := enc.Encode(p); err != nil {
			return err
		}
	}
	if !*wait {
		return nil
	}
	if err := waitResults(ctx, results, pending, *timeout, stdout, stderr); err != nil {
		return err
	}
	if dupes > 0 {
		return exitError(2) // some results could not be awaited
	}
	return nil
}

// waitResults prints each awaited result; it fails with status 1 when any
// is not succeeded and 2 when the wait times out.
func waitResults(ctx context.Context, results <-chan *nats.Msg, pending map[string]bool, timeout time.Duration, stdout, stderr io.Writer) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	failed := false
	for len(pending) > 0 {
		select {
		case m := <-results:
			var r messages.Result
			if err := json.Unmarshal(m.Data, &r); err != nil || !pending[r.RequestID] {
				continue
			}
			delete(pending, r.RequestID)
			if err := writeIndented(stdout, m.Data); err != nil {
				return err
			}
			if r.Status != messages.StatusSucceeded {
				failed = true
			}
		case <-timer.C:
			fmt.Fprintf(stderr, "publisher: no result within %s for %d request(s)\n", timeout, len(pending))
			return exitError(2)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if failed {
		return exitError(1)
	}
	return nil
}

// writeIndented prints a JSON document indented, keeping its field order
// and its numbers exactly as they are.
func writeIndented(w io.Writer, data []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func apiNames() string {
	s := ""
	for i, a := range messages.APIs() {
		if i > 0 {
			s += ", "
		}
		s += string(a)
	}
	return s
}
