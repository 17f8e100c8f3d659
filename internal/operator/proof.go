package operator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// ProofFormat names the format of a Proof.
const ProofFormat = "qualfile-proof/1"

// Proof is one filing's record for an auditor: its outcome and every
// stored message it is built from (its audit events, its results, its
// dead letters and its ledger entry), each with its stream and sequence,
// and a digest over them all. VerifyProof checks one against the streams.
type Proof struct {
	Format     string    `json:"format"`
	Tenant     string    `json:"tenant,omitempty"`
	RequestID  string    `json:"request_id"`
	ExportedAt time.Time `json:"exported_at"`
	ExportedBy string    `json:"exported_by,omitempty"`
	// Outcome is the result in force: the last one no other supersedes.
	Outcome  *messages.Result `json:"outcome,omitempty"`
	Messages []StoredMessage  `json:"messages"`
	// Digest is the SHA-256, in hex, of the tenant, the request id and
	// each message's stream, sequence, subject and SHA-256, one line each
	// (Proof.digest).
	Digest string `json:"digest"`
}

// StoredMessage is one stored message of a proof.
type StoredMessage struct {
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Time    time.Time `json:"time"`
	// SHA256 is the digest of the message's body as stored.
	SHA256 string `json:"sha256"`
	// Data is the body, but for a dead letter's, which is the request as
	// sent, personal data unredacted: its digest stands for it.
	Data json.RawMessage `json:"data,omitempty"`
	// TraceParent is the W3C trace context the message was published
	// with, if any.
	TraceParent string `json:"traceparent,omitempty"`
}

// ReadProof gathers the proof of tenant's request id.
func ReadProof(ctx context.Context, js jetstream.JetStream, subjects messages.Subjects, id string, now time.Time) (Proof, error) {
	subjects = subjects.For(subjects.Tenant)
	p := Proof{Format: ProofFormat, Tenant: subjects.Tenant, RequestID: id, ExportedAt: now.UTC()}
	st := queue.StreamNames(subjects)
	var results []messages.Result
	add := func(stream string, m *jetstream.RawStreamMsg, keep bool) {
		sum := sha256.Sum256(m.Data)
		sm := StoredMessage{Stream: stream, Seq: m.Sequence, Subject: m.Subject, Time: m.Time.UTC(), SHA256: hex.EncodeToString(sum[:])}
		if keep && json.Valid(m.Data) {
			sm.Data = m.Data
		}
		if m.Header != nil {
			sm.TraceParent = messages.HeaderValue(m.Header.Get("traceparent"), 128)
		}
		p.Messages = append(p.Messages, sm)
	}
	mine := func(data []byte) bool {
		var v struct {
			RequestID string `json:"request_id"`
			Tenant    string `json:"tenant"`
		}
		return json.Unmarshal(data, &v) == nil && v.RequestID == id && v.Tenant == subjects.Tenant
	}
	for _, part := range []struct {
		stream  string
		filters []string
	}{{st.Audit, subjects.AuditOf(id)}, {st.Results, subjects.ResultOf(id)}} {
		var msgs []*jetstream.RawStreamMsg
		for _, filter := range part.filters {
			got, err := queue.Read(ctx, js, part.stream, filter)
			if err != nil {
				return p, fmt.Errorf("%s of %q: %w", part.stream, id, err)
			}
			msgs = append(msgs, got...)
		}
		slices.SortFunc(msgs, bySequence)
		for _, m := range msgs {
			if !mine(m.Data) {
				continue // another id with the same key
			}
			add(part.stream, m, true)
			if part.stream == st.Results {
				var r messages.Result
				if json.Unmarshal(m.Data, &r) == nil {
					results = append(results, r)
				}
			}
		}
	}
	dead, err := queue.Read(ctx, js, st.Dead, "")
	if err != nil {
		return p, fmt.Errorf("%s: %w", st.Dead, err)
	}
	for _, m := range dead {
		if d := Letter(subjects, m); d.RequestID == id && d.Tenant == subjects.Tenant {
			add(st.Dead, m, false)
		}
	}
	if key, err := ledger.Key(subjects.Tenant, id); err == nil {
		bucket := queue.BucketNames(subjects).Ledger
		s, err := js.Stream(ctx, "KV_"+bucket)
		if err != nil {
			return p, fmt.Errorf("the ledger: %w", err)
		}
		m, err := s.GetLastMsgForSubject(ctx, "$KV."+bucket+"."+key)
		switch {
		case err == nil && len(m.Data) > 0:
			add("KV_"+bucket, m, true)
		case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
			return p, fmt.Errorf("the ledger: %w", err)
		}
	}
	if r, ok := InForce(results); ok {
		p.Outcome = &r
	}
	p.Digest = p.digest()
	return p, nil
}

// InForce is the result no other supersedes: the one completed last (the
// later stored of two at one time), an IdReused rejection aside, which
// answers the message that reused the id, not the filing.
func InForce(results []messages.Result) (messages.Result, bool) {
	var best messages.Result
	found := false
	for _, r := range results {
		if r.Error != nil && r.Error.Code == "IdReused" {
			continue
		}
		if !found || !r.CompletedAt.Before(best.CompletedAt) {
			best, found = r, true
		}
	}
	return best, found
}

// digest is the SHA-256 over the proof's filing and messages.
func (p Proof) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", p.Format, strconv.Quote(p.Tenant), strconv.Quote(p.RequestID))
	for _, m := range p.Messages {
		fmt.Fprintf(h, "%s %d %s %s\n", m.Stream, m.Seq, strconv.Quote(m.Subject), m.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Problem is one way a proof differs from the streams.
type Problem struct {
	Stream string `json:"stream,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	What   string `json:"what"`
}

// VerifyProof checks p against the streams: its digest over its own
// messages, each message's body against its digest, and each message
// against the one stored at its stream and sequence. It returns every
// difference found; none means the proof is what the streams hold. An
// error means the streams could not be read.
func VerifyProof(ctx context.Context, js jetstream.JetStream, p Proof) ([]Problem, error) {
	var out []Problem
	if p.Format != ProofFormat {
		return []Problem{{What: fmt.Sprintf("format %q, not %s", messages.Truncate(p.Format, 40), ProofFormat)}}, nil
	}
	if p.digest() != p.Digest {
		out = append(out, Problem{What: "the digest is not that of the proof's messages: the proof was changed"})
	}
	// The outcome stated is the one its results give.
	var results []messages.Result
	for _, m := range p.Messages {
		var r messages.Result
		if strings.HasSuffix(m.Stream, "_RESULTS") {
			if json.Unmarshal(m.Data, &r) == nil {
				results = append(results, r)
			}
		}
	}
	want, found := InForce(results)
	if found != (p.Outcome != nil) || found && !sameJSON(mustJSON(want), mustJSON(*p.Outcome)) {
		out = append(out, Problem{What: "the outcome stated is not the one its results give"})
	}
	streams := map[string]jetstream.Stream{}
	for _, m := range p.Messages {
		bad := func(format string, args ...any) {
			out = append(out, Problem{Stream: m.Stream, Seq: m.Seq, What: fmt.Sprintf(format, args...)})
		}
		s, ok := streams[m.Stream]
		if !ok {
			var err error
			if s, err = js.Stream(ctx, m.Stream); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					bad("no stream %s", m.Stream)
					continue
				}
				return out, err
			}
			streams[m.Stream] = s
		}
		stored, err := s.GetMsg(ctx, m.Seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			bad("no longer stored (removed, or aged out of the stream)")
			continue
		case err != nil:
			return out, err
		}
		sum := sha256.Sum256(stored.Data)
		switch {
		case stored.Subject != m.Subject:
			bad("stored on %s, not %s", messages.Truncate(stored.Subject, 200), messages.Truncate(m.Subject, 200))
		case hex.EncodeToString(sum[:]) != m.SHA256:
			bad("the stored message's digest differs")
		case m.Data != nil && !sameJSON(m.Data, stored.Data):
			bad("the body differs from the stored one")
		}
	}
	return out, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	if b == nil {
		return false
	}
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	return da.Decode(&x) == nil && db.Decode(&y) == nil && reflect.DeepEqual(x, y)
}
