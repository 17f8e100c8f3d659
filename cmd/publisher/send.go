package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/queue"
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
	fs, conn := newConnFlagSet("send", getenv, stdout, stderr)
	apiFlag := fs.String("api", "", "the call: "+apiNames())
	file := fs.String("file", "", "request envelope or bare payload; - reads stdin (NDJSON for many)")
	account := fs.String("account", "", "credential profile for bare payloads (consumer default: default)")
	idFlag := fs.String("id", "", "the request's id, for one request without its own (default: derived from the api, the account and the payload, so that the same request sent again is not filed twice)")
	wait := fs.Bool("wait", false, "wait for each result and print it")
	output := fs.String("output", "text", "with --wait: text (each result indented) or json (one line per result)")
	timeout := fs.Duration("timeout", time.Minute, "with --wait: how long to wait for all results")
	inlineMax := fs.Int("inline-max", files.DefaultThreshold, "an SMS fileContent longer than this many bytes is stored in the object store <PREFIX>_FILES and the request carries a reference")
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
	if *output != "text" && *output != "json" {
		return usagef("--output %q: text or json", *output)
	}
	if *inlineMax < 0 {
		return usagef("--inline-max %d: a number of bytes, 0 or more", *inlineMax)
	}
	if *idFlag != "" && len(docs) > 1 {
		return usagef("--id names one request, and %s holds %d", *file, len(docs))
	}
	nc, js, err := conn.connect()
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
	store := &files.Chunks{JS: js, Stream: queue.StreamNames(conn.subjects()).Files, Subject: conn.subjects().Files()}
	pending, stored := map[string]bool{}, map[string]string{}
	sum := &summary{progress: progressTo(stderr, len(docs)), since: time.Now()}
	defer sum.print(stderr, len(docs), *wait)
	for i, doc := range docs {
		sum.show("published %d of %d", i, len(docs))
		id, ack, err := publishOne(ctx, js, store, doc, sendOptions{api: api, account: *account, inbox: inbox, id: *idFlag,
			subject: subject, tenant: conn.tenant, inlineMax: *inlineMax, getenv: getenv, stderr: stderr})
		if err != nil {
			return err
		}
		p := published{ID: id, Subject: subject, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
		sum.sent++
		if ack.Duplicate {
			sum.duplicates++
		}
		sum.show("", 0, 0) // the progress line gives way to any other line
		if *wait {
			if sum.progress == nil { // on a terminal, the progress line says it
				fmt.Fprintf(stderr, "published %s to %s (stream %s seq %d)\n", id, subject, ack.Stream, ack.Sequence)
			}
			pending[id] = true
			if ack.Duplicate {
				// The first copy's result went to the first sender's reply
				// subject: this one's is read where results are stored.
				sum.show("", 0, 0)
				fmt.Fprintf(stderr, "publisher: an identical copy of %s was already published within the duplicate window; this copy was dropped, and its result is read from %s\n", id, conn.subjects().ResultFor(api, id))
				stored[id] = conn.subjects().ResultFor(api, id)
			}
		} else if err := enc.Encode(p); err != nil {
			return err
		}
	}
	if !*wait {
		return nil
	}
	lookup := storedResult(nc, queue.StreamNames(conn.subjects()).Results)
	return waitResults(ctx, results, pending, stored, lookup, *timeout, *output == "json", sum, stdout, stderr)
}

// storedResult reads the last result stored on a subject of the results
// stream, as a submitter may (a direct get by subject); found is false
// while there is none.
func storedResult(nc *nats.Conn, stream string) func(subject string) (data []byte, found bool) {
	return func(subject string) ([]byte, bool) {
		m, err := nc.Request("$JS.API.DIRECT.GET."+stream+"."+subject, nil, 2*time.Second)
		if err != nil || m.Header.Get("Status") != "" || len(m.Data) == 0 {
			return nil, false
		}
		return m.Data, true
	}
}

// sendOptions say how publishOne sends a request.
type sendOptions struct {
	api            messages.API
	account, inbox string
	id, subject    string
	tenant         string
	inlineMax      int
	getenv         func(string) string
	stderr         io.Writer
}

// publishOne publishes one request: its envelope, its large files stored
// apart, the caller's trace; it returns the request's id and the stream's
// ack.
func publishOne(ctx context.Context, js jetstream.JetStream, store *files.Chunks, doc []byte, o sendOptions) (string, *jetstream.PubAck, error) {
	data, id, err := envelope(doc, o.api, o.account, o.inbox, o.id, time.Now())
	if err != nil {
		return "", nil, err
	}
	data, stored, err := offload(ctx, store, id, data, o.inlineMax)
	if err != nil {
		return "", nil, fmt.Errorf("request %s: %w", id, err)
	}
	for _, ref := range stored {
		fmt.Fprintf(o.stderr, "publisher: %s: a %d-byte file is stored as %s\n", id, ref.Size, ref.Ref)
	}
	req, err := messages.ParseRequest(data)
	if err != nil {
		return "", nil, fmt.Errorf("request %s: %w", id, err)
	}
	m := nats.NewMsg(o.subject)
	m.Data = data
	if tp := o.getenv("TRACEPARENT"); tp != "" {
		// The caller's trace (the W3C convention for tools): the filing's
		// spans join it.
		m.Header.Set("traceparent", tp)
		if ts := o.getenv("TRACESTATE"); ts != "" {
			m.Header.Set("tracestate", ts)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, m, jetstream.WithMsgID(req.MsgID(o.tenant)))
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders):
		return "", nil, fmt.Errorf("publish %s: no stream stores %s: is the consumer running, with the subject prefix %q (subjects.prefix; here --prefix or QUALFILE_SUBJECT_PREFIX)? (%w)",
			id, o.subject, strings.SplitN(o.subject, ".request.", 2)[0], err)
	case err != nil:
		return "", nil, fmt.Errorf("publish %s: %w", id, err)
	}
	return id, ack, nil
}

// waitResults prints each awaited result; it fails with status 1 when any
// is not succeeded and 2 when the wait times out.
func waitResults(ctx context.Context, results <-chan *nats.Msg, pending map[string]bool, stored map[string]string, lookup func(string) ([]byte, bool),
	timeout time.Duration, lines bool, sum *summary, stdout, stderr io.Writer) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	failed := false
	total := len(pending)
	sum.restart()
	for len(pending) > 0 {
		sum.show("results %d of %d", total-len(pending), total)
		var data []byte
		select {
		case m := <-results:
			data = m.Data
		case <-poll.C:
			for id, subject := range stored {
				if d, ok := lookup(subject); ok {
					data = d
					delete(stored, id)
					break
				}
			}
		case <-timer.C:
			sum.timedOut = len(pending)
			sum.show("", 0, 0)
			fmt.Fprintf(stderr, "publisher: no result within %s for %d request(s)\n", timeout, len(pending))
			return exitError(2)
		case <-ctx.Done():
			return ctx.Err()
		}
		{
			var r messages.Result
			if err := json.Unmarshal(data, &r); err != nil || !pending[r.RequestID] {
				continue
			}
			delete(pending, r.RequestID)
			sum.show("", 0, 0)
			if !r.Supersedes.IsZero() {
				fmt.Fprintf(stderr, "publisher: %s was sent again, changed, after an outcome that filed nothing; this outcome supersedes the one recorded at %s\n",
					r.RequestID, r.Supersedes.Format(time.RFC3339Nano))
			}
			var err error
			if lines {
				_, err = fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(data))
			} else {
				err = writeIndented(stdout, data)
			}
			if err != nil {
				return err
			}
			sum.count(r.Status)
			if r.Status != messages.StatusSucceeded {
				failed = true
			}
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
	var names []string
	for _, a := range messages.APIs() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// summary counts a send, for the line it ends with; progress, when set,
// is a terminal that is shown how far the send is.
type summary struct {
	sent, duplicates, succeeded, rejected, failed, timedOut int
	progress                                                io.Writer
	since                                                   time.Time // of the stage the progress line counts
}

// restart starts the rate and the estimate anew (the results, after the
// sending).
func (s *summary) restart() { s.since = time.Now() }

func (s *summary) count(st messages.Status) {
	switch st {
	case messages.StatusSucceeded:
		s.succeeded++
	case messages.StatusRejected:
		s.rejected++
	default:
		s.failed++
	}
}

// show overwrites the progress line (nothing without a terminal; an empty
// format clears it).
func (s *summary) show(format string, n, of int) {
	if s.progress == nil {
		return
	}
	if format == "" {
		fmt.Fprint(s.progress, "\r\033[K")
		return
	}
	line := fmt.Sprintf(format, n, of)
	if el := time.Since(s.since); n > 0 && el > 0 {
		rate := float64(n) / el.Seconds()
		line += fmt.Sprintf(" · %.0f/s · %s left", rate, time.Duration(float64(of-n)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprint(s.progress, "\r\033[K"+line)
}

// print ends a send of several requests with one line on stderr.
func (s *summary) print(w io.Writer, docs int, waited bool) {
	s.show("", 0, 0)
	if docs < 2 {
		return
	}
	line := fmt.Sprintf("publisher: %d of %d sent, %d duplicate(s)", s.sent, docs, s.duplicates)
	if waited {
		line += fmt.Sprintf("; %d succeeded, %d rejected, %d failed", s.succeeded, s.rejected, s.failed)
		if s.timedOut > 0 {
			line += fmt.Sprintf(", %d without a result", s.timedOut)
		}
	}
	fmt.Fprintln(w, line)
}

// progressTo is stderr when it is a terminal and there is more than one
// request, else nil.
func progressTo(stderr io.Writer, docs int) io.Writer {
	f, ok := stderr.(*os.File)
	if !ok || docs < 2 {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return f
}
