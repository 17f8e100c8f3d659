package operator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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
	Prefix     string    `json:"prefix"` // the deployment's subject prefix
	Tenant     string    `json:"tenant,omitempty"`
	RequestID  string    `json:"request_id"`
	ExportedAt time.Time `json:"exported_at"`
	ExportedBy string    `json:"exported_by,omitempty"`
	// Through is each stream's last sequence when the proof was read: it
	// holds every message of the filing stored up to there (the ledger's
	// entry as it then was).
	Through map[string]uint64 `json:"through"`
	// Outcome is the result in force: the last one no other supersedes.
	Outcome  *messages.Result `json:"outcome,omitempty"`
	Messages []StoredMessage  `json:"messages"`
	// Digest is the SHA-256, in hex, of the prefix, the tenant, the
	// request id and each message's stream, sequence, subject and SHA-256,
	// one line each (Proof.digest): the file's integrity. Its truth is
	// what VerifyProof checks against the streams.
	Digest string `json:"digest"`
}

// StoredMessage is one stored message of a proof.
type StoredMessage struct {
	Stream  string    `json:"stream"`
	Seq     uint64    `json:"seq"`
	Subject string    `json:"subject"`
	Time    time.Time `json:"time"`
	// SHA256 is the digest of the message's body as stored; "" for a
	// dead letter, whose body is the request as sent, personal data
	// unredacted: a digest of it would let whoever holds the proof test
	// guesses of an ID number against it.
	SHA256 string `json:"sha256,omitempty"`
	// Data is the body, but for a dead letter's.
	Data json.RawMessage `json:"data,omitempty"`
	// TraceParent is the W3C trace context the message was published
	// with, if any.
	TraceParent string `json:"traceparent,omitempty"`
}

// ReadProof gathers the proof of tenant's request id.
func ReadProof(ctx context.Context, js jetstream.JetStream, dead DeadIndex, subjects messages.Subjects, id string, now time.Time) (Proof, error) {
	subjects = subjects.For(subjects.Tenant)
	p := Proof{Format: ProofFormat, Prefix: subjects.Root(), Tenant: subjects.Tenant, RequestID: id, ExportedAt: now.UTC(), Through: map[string]uint64{}}
	st := queue.StreamNames(subjects)
	// Where each stream ends now: what is stored after this is not read.
	for _, name := range []string{st.Audit, st.Results, st.Dead} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return p, fmt.Errorf("stream %s: %w", name, err)
		}
		p.Through[name] = s.CachedInfo().State.LastSeq
	}
	var results []messages.Result
	add := func(stream string, m *jetstream.RawStreamMsg, keep bool) {
		if through, bounded := p.Through[stream]; bounded && m.Sequence > through {
			return // stored after the proof was begun
		}
		sm := StoredMessage{Stream: stream, Seq: m.Sequence, Subject: m.Subject, Time: m.Time.UTC()}
		if keep {
			sum := sha256.Sum256(m.Data)
			sm.SHA256 = hex.EncodeToString(sum[:])
			if json.Valid(m.Data) {
				sm.Data = m.Data
			}
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
			if part.stream == st.Results && m.Sequence <= p.Through[st.Results] {
				var r messages.Result
				if json.Unmarshal(m.Data, &r) == nil {
					results = append(results, r)
				}
			}
		}
	}
	letters, err := deadOf(ctx, js, subjects, id, dead)
	if err != nil {
		return p, err
	}
	for _, m := range letters {
		add(st.Dead, m, false)
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
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", p.Format, strconv.Quote(p.Prefix), strconv.Quote(p.Tenant), strconv.Quote(p.RequestID))
	for _, name := range slices.Sorted(maps.Keys(p.Through)) {
		fmt.Fprintf(h, "through %s %d\n", name, p.Through[name])
	}
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

// Verification is what VerifyProof found.
type Verification struct {
	// Problems are the ways the proof is not what the streams held when
	// it says it was exported: a changed, foreign or missing message, a
	// digest that does not hold, an outcome its results do not give. None:
	// the proof is true.
	Problems []Problem `json:"problems,omitempty"`
	// Unconfirmed are the proof's messages no longer stored (aged out, or
	// a dead letter since removed): neither confirmed nor contradicted.
	Unconfirmed []Problem `json:"unconfirmed,omitempty"`
	// Since counts the filing's messages stored after the point the proof
	// was read to, and Current is its outcome now.
	Since   int              `json:"since,omitempty"`
	Current *messages.Result `json:"current,omitempty"`
}

// VerifyProof checks p against the streams, trusting nothing in it but
// the filing it names and the point it says it was read to (Through): the
// filing's messages are read anew (as ReadProof reads them), and each of
// p's must be one of them, as stored (its subject, its digest, its body,
// which a result or an event must carry); each of them stored up to that
// point must be in p; p's outcome must be the one its results give; and
// its digest must hold. No clock is compared: the point is a stream
// sequence. An error means the streams could not be read.
func VerifyProof(ctx context.Context, js jetstream.JetStream, p Proof) (Verification, error) {
	var v Verification
	bad := func(m StoredMessage, format string, args ...any) {
		v.Problems = append(v.Problems, Problem{Stream: m.Stream, Seq: m.Seq, What: fmt.Sprintf(format, args...)})
	}
	if p.Format != ProofFormat {
		v.Problems = append(v.Problems, Problem{What: fmt.Sprintf("format %q, not %s", messages.Truncate(p.Format, 40), ProofFormat)})
		return v, nil
	}
	if p.Tenant != "" && !messages.ValidTenant(p.Tenant) || p.RequestID == "" || len(p.RequestID) > messages.MaxIDLen {
		v.Problems = append(v.Problems, Problem{What: "it names no filing: a tenant and a request id, please"})
		return v, nil
	}
	if p.digest() != p.Digest {
		v.Problems = append(v.Problems, Problem{What: "the digest is not that of the proof's messages: the proof was changed"})
	}
	now, err := ReadProof(ctx, js, nil, messages.Subjects{Prefix: p.Prefix, Tenant: p.Tenant}, p.RequestID, time.Now())
	if err != nil {
		return v, err
	}
	type at struct {
		stream string
		seq    uint64
	}
	stored := map[at]StoredMessage{}
	for _, m := range now.Messages {
		stored[at{m.Stream, m.Seq}] = m
	}
	listed := map[at]bool{}
	var results []messages.Result
	for _, m := range p.Messages {
		listed[at{m.Stream, m.Seq}] = true
		s, ok := stored[at{m.Stream, m.Seq}]
		if !ok {
			if gone, err := goneFrom(ctx, js, m); err != nil {
				return v, err
			} else if gone {
				v.Unconfirmed = append(v.Unconfirmed, Problem{Stream: m.Stream, Seq: m.Seq, What: "no longer stored (aged out, or a dead letter removed since)"})
			} else {
				bad(m, "not a message of this filing")
			}
			continue
		}
		switch {
		case s.Subject != m.Subject:
			bad(m, "stored on %s, not %s", messages.Truncate(s.Subject, 200), messages.Truncate(m.Subject, 200))
		case s.SHA256 != m.SHA256:
			bad(m, "the stored message's digest differs")
		case s.Data != nil && m.Data == nil:
			bad(m, "its body is left out")
		case m.Data != nil && !sameJSON(m.Data, s.Data):
			bad(m, "the body differs from the stored one")
		case bounded(p, m.Stream) && m.Seq > p.Through[m.Stream]:
			bad(m, "stored after the point the proof says it was read to")
		}
		if strings.HasSuffix(m.Stream, "_RESULTS") {
			var r messages.Result
			if json.Unmarshal(s.Data, &r) == nil {
				results = append(results, r)
			}
		}
	}
	for _, s := range now.Messages {
		switch {
		case listed[at{s.Stream, s.Seq}]:
		case !bounded(p, s.Stream) || s.Seq > p.Through[s.Stream]:
			v.Since++ // stored (or, the ledger's entry, rewritten) since
		default:
			v.Problems = append(v.Problems, Problem{Stream: s.Stream, Seq: s.Seq, What: "left out, though stored before the point the proof says it was read to"})
		}
	}
	want, found := InForce(results)
	if found != (p.Outcome != nil) || found && !sameJSON(mustJSON(want), mustJSON(*p.Outcome)) {
		v.Problems = append(v.Problems, Problem{What: "the outcome stated is not the one its results give"})
	}
	v.Current = now.Outcome
	return v, nil
}

// bounded reports whether the proof says where stream ended when it was
// read (the ledger's stream it does not: its entry is its last revision).
func bounded(p Proof, stream string) bool {
	_, ok := p.Through[stream]
	return ok
}

// goneFrom reports whether m's stream no longer holds a message at m's
// sequence (as against holding another filing's there).
func goneFrom(ctx context.Context, js jetstream.JetStream, m StoredMessage) (bool, error) {
	s, err := js.Stream(ctx, m.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_, err = s.GetMsg(ctx, m.Seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return false, nil
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
