// Package ledger is qualfile's idempotency ledger: one JetStream KV entry
// per request id recording how far the request got (claimed → calling →
// done) and, once done, its result. A redelivered request whose outcome is
// recorded is answered from the ledger without a new upstream call, and a
// request found "calling" after a crash is known to have an ambiguous
// outcome.
//
// Every change is a compare-and-set on the KV revision, so concurrent
// replicas handling the same request cannot both move it forward: the
// loser gets an error matching ErrConflict and must read the entry again.
//
// # Keys
//
// Request ids are 1 to 128 characters of [A-Za-z0-9._:-]. KV keys may not
// contain ':' and may not start or end with '.' or contain "..", so ids are
// encoded reversibly: ':' becomes "=3A" and '.' becomes "=2E"; every other
// character is kept. '=' never occurs in an id, so the encoding cannot be
// ambiguous. A tenant's ids are its own: their keys start with the
// tenant's name and a '.', which no encoded id holds; the default
// tenant's keys have no such part. Key and RequestID convert between the
// two, e.g. for `nats kv get FILING_LEDGER <key>` (the consumer names the
// bucket from the subject prefix, see queue.BucketNames).
package ledger

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// Defaults of Config.
const (
	DefaultBucket = "QUALFILE_LEDGER"
	DefaultMaxAge = 30 * 24 * time.Hour
)

// MaxIDLength is the longest request id the ledger accepts.
const MaxIDLength = 128

// claimAttempts bounds Claim's retries when the key is purged between a
// failed create and the read of the existing entry.
const claimAttempts = 5

// State is how far a request got.
type State string

// The states of a request. A request is claimed when first seen, calling
// while the upstream call may be in flight, and done once its outcome is
// recorded.
const (
	StateClaimed State = "claimed"
	StateCalling State = "calling"
	StateDone    State = "done"
)

// transitions lists the allowed moves. The ledger enforces only this
// table; when each move is right is decided by the filing pipeline.
//
//	claimed → calling  an upstream call is about to start
//	claimed → done     no call needed (the outcome is known otherwise)
//	calling → done     the call's outcome is recorded
//	calling → claimed  the call failed definitely and will be retried later
//	calling → calling  another replica takes over a read or an update
//	done → done        a replica that learned the vendor's answer settles an
//	                   ambiguous outcome (the new result supersedes it)
//	done → calling     an ambiguous outcome whose call is known never to
//	                   have been sent is filed after all
//	done → claimed     an operator's replay
//	done → done        an operator's resolution (a result carrying the
//	                   operator's decision), or events added to the trail
//	                   of an outcome that stays
//
// From done, only a replay or an operator's resolution may change an
// outcome that is known: otherwise done → done and done → calling need a
// result of class ambiguous (see Transition).
var transitions = map[State][]State{
	StateClaimed: {StateCalling, StateDone},
	StateCalling: {StateDone, StateClaimed, StateCalling},
	StateDone:    {StateDone, StateCalling, StateClaimed},
}

// CanTransition reports whether the state machine allows from → to.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// Entry is one request's ledger record, stored as JSON.
type Entry struct {
	RequestID string       `json:"request_id"`
	Tenant    string       `json:"tenant,omitempty"` // whose id it is; "" for the default tenant
	API       messages.API `json:"api"`
	State     State        `json:"state"`
	// Attempts counts upstream calls made so far; callers maintain it.
	Attempts int `json:"attempts"`
	// Owner names the replica that last moved the entry.
	Owner     string    `json:"owner,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Fingerprint identifies the request the id was first used for (api,
	// account and payload); a reuse of the id for another request is
	// told apart by it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Nonce names one move to StateCalling: the replica that wrote it
	// knows whether a call was sent under it. A done entry keeps the nonce
	// of the call its outcome belongs to.
	Nonce string `json:"nonce,omitempty"`
	// Seq is the request stream sequence of the message that recorded the
	// outcome, or whose delivery holds the entry "calling", so that its
	// redelivery is told apart from a copy.
	Seq uint64 `json:"seq,omitempty"`
	// Trail is the request's audit events so far (without payloads), and
	// Emitted how many of them were known published when the entry was
	// written: whoever finishes the request publishes the rest.
	Trail   []messages.AuditEvent `json:"trail,omitempty"`
	Emitted int                   `json:"emitted,omitempty"`
	// Baseline lists the vendor's records that matched the request before
	// its first call (read when it was first claimed, BaselineKnown): they
	// are earlier filings, never taken for this one when reconciling.
	Baseline      []string `json:"baseline,omitempty"`
	BaselineKnown bool     `json:"baseline_known,omitempty"`
	// Held counts the deliveries handed back because qualfile held the call
	// back (a vendor's circuit breaker open, its rate limit full): they do
	// not count toward the dead-letter limit.
	Held int `json:"held,omitempty"`
	// Refiled counts the times the request was filed again because the
	// vendor held no record of a call whose answer was lost (at most once).
	Refiled int `json:"refiled,omitempty"`
	// Supersedes is the completed_at of an outcome set aside (by a replay,
	// or to settle an ambiguous outcome): the next one recorded replaces it.
	Supersedes time.Time `json:"supersedes,omitzero"`
	// Result is the final outcome; set when State is StateDone.
	Result *messages.Result `json:"result,omitempty"`
	// Revision is the KV revision the entry was read at or written as; it
	// is what Transition compares against. Not stored.
	Revision uint64 `json:"-"`
}

// Config configures Open. The zero value is usable.
type Config struct {
	// Bucket is the KV bucket; default DefaultBucket. The consumer names
	// it from the subject prefix (queue.BucketNames), so that deployments
	// sharing a server do not share a ledger.
	Bucket string
	// Replicas is the bucket's replica count; default 1 (use 3 on a
	// cluster), at most 5.
	Replicas int
	// MaxAge is how long an entry is kept after its last change; default
	// DefaultMaxAge. It must exceed the request stream's redelivery span
	// and duplicate window, or a late redelivery would call again.
	MaxAge time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.MaxAge = cmp.Or(c.MaxAge, DefaultMaxAge)
	return c
}

// Validate reports whether c, after defaults, is usable. Every error it
// returns matches ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidConfig, c.Replicas)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: negative max age %s", ErrInvalidConfig, c.MaxAge)
	}
	return nil
}

// Ledger is the idempotency ledger. It is safe for concurrent use.
type Ledger struct {
	kv  Store
	now func() time.Time
}

// Store is what the ledger needs of its KV bucket (jetstream.KeyValue).
type Store interface {
	Bucket() string
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
}

// New returns the ledger kept in kv, with now its clock (nil: time.Now).
func New(kv Store, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{kv: kv, now: now}
}

// Open creates the ledger bucket or updates its configuration (so calling
// it on every start, from every replica, is fine) and returns the ledger.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "qualfile idempotency ledger: state and result per request id",
		// Compare-and-set needs only the latest revision of a key.
		History:  1,
		TTL:      cfg.MaxAge,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: opening bucket %s: %w", cfg.Bucket, err)
	}
	if err := settle(ctx, js, "KV_"+cfg.Bucket, cfg); err != nil {
		return nil, fmt.Errorf("ledger: bucket %s: %w", cfg.Bucket, err)
	}
	return New(kv, cfg.Now), nil
}

// settle brings the bucket's stream to cfg (its max age and replicas) and
// turns rollups off: a message with a Nats-Rollup header would purge the
// whole ledger, and subject permissions cannot refuse a header to whoever
// may write one entry (an operator's replay). The ledger never purges a
// key. (The KV API's update would turn rollups on again: this is the one
// update of the bucket.)
func settle(ctx context.Context, js jetstream.JetStream, name string, cfg Config) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	sc := s.CachedInfo().Config
	if !sc.AllowRollup && sc.MaxAge == cfg.MaxAge && sc.Replicas == cfg.Replicas {
		return nil
	}
	sc.AllowRollup, sc.MaxAge, sc.Replicas = false, cfg.MaxAge, cfg.Replicas
	_, err = js.UpdateStream(ctx, sc)
	return err
}

// OpenExisting opens the ledger bucket the consumer created, without
// creating it or changing its configuration (an operator's tool must not
// scale a replicated ledger down).
func OpenExisting(ctx context.Context, js jetstream.JetStream, bucket string) (*Ledger, error) {
	if bucket == "" {
		bucket = DefaultBucket
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("ledger: bucket %s (has a consumer run here?): %w", bucket, err)
	}
	return New(kv, nil), nil
}

// Bucket returns the name of the ledger's KV bucket.
func (l *Ledger) Bucket() string { return l.kv.Bucket() }

// Claim records that owner has seen request id, in StateClaimed. When the
// ledger had no entry for id it creates one and returns it with created
// true; otherwise it returns the existing entry (whatever its state) with
// created false. Of concurrent Claims of one id exactly one creates.
func (l *Ledger) Claim(ctx context.Context, id string, api messages.API, owner string) (Entry, bool, error) {
	return l.ClaimEntry(ctx, Entry{RequestID: id, API: api, Owner: owner})
}

// ClaimEntry is Claim with the new entry given in full: it creates e, in
// StateClaimed, when the ledger has no entry for e.RequestID, or returns
// the existing one with created false. UpdatedAt is set here.
func (l *Ledger) ClaimEntry(ctx context.Context, e Entry) (Entry, bool, error) {
	id := e.RequestID
	key, err := Key(e.Tenant, id)
	if err != nil {
		return Entry{}, false, err
	}
	tmpl := e
	for attempt := 1; ; attempt++ {
		e := tmpl
		e.State, e.UpdatedAt, e.Revision = StateClaimed, l.now(), 0
		data, err := json.Marshal(e)
		if err != nil {
			return Entry{}, false, fmt.Errorf("ledger: encoding entry %q: %w", id, err)
		}
		rev, err := l.kv.Create(ctx, key, data)
		if err == nil {
			e.Revision = rev
			return e, true, nil
		}
		if !isWrongLastSequence(err) {
			return Entry{}, false, fmt.Errorf("ledger: claiming %q: %w", id, err)
		}
		got, err := l.Get(ctx, e.Tenant, id)
		if err == nil {
			return got, false, nil
		}
		if !errors.Is(err, ErrNotFound) || attempt >= claimAttempts {
			return Entry{}, false, err
		}
		// Purged between the create and the read: claim again.
	}
}

// Transition moves e to state to with a compare-and-set against
// e.Revision. The new entry is e with State to and UpdatedAt now, then
// passed to mutate (when not nil) to set Owner, Attempts, Result and the
// like; mutate may override UpdatedAt but not RequestID or State. It
// returns the stored entry with its new Revision.
//
// Errors: *TransitionError (ErrBadTransition) when the state machine
// forbids e.State → to; ErrNoResult when to is StateDone and Result is
// nil; *ConflictError (ErrConflict) when the entry changed since e was
// read, including when it was deleted.
func (l *Ledger) Transition(ctx context.Context, e Entry, to State, mutate func(*Entry)) (Entry, error) {
	key, err := Key(e.Tenant, e.RequestID)
	if err != nil {
		return Entry{}, err
	}
	if !CanTransition(e.State, to) {
		return Entry{}, &TransitionError{RequestID: e.RequestID, From: e.State, To: to}
	}
	if e.Revision == 0 {
		return Entry{}, fmt.Errorf("ledger: entry %q: %w", e.RequestID, ErrNoRevision)
	}
	next := e
	next.State = to
	next.UpdatedAt = l.now()
	if mutate != nil {
		mutate(&next)
	}
	next.RequestID, next.Tenant, next.State, next.Revision = e.RequestID, e.Tenant, to, 0
	if e.State == StateDone && to != StateClaimed && !e.Ambiguous() && !(to == StateDone && next.Result != nil && (sameOutcome(e.Result, next.Result) || next.Result.Resolution != nil)) {
		return Entry{}, &TransitionError{RequestID: e.RequestID, From: e.State, To: to}
	}
	if to == StateDone && next.Result == nil {
		return Entry{}, fmt.Errorf("ledger: entry %q: %w", e.RequestID, ErrNoResult)
	}
	data, err := json.Marshal(next)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: encoding entry %q: %w", e.RequestID, err)
	}
	rev, err := l.kv.Update(ctx, key, data, e.Revision)
	if err != nil {
		if isWrongLastSequence(err) {
			return Entry{}, &ConflictError{RequestID: e.RequestID, Revision: e.Revision, Err: err}
		}
		return Entry{}, fmt.Errorf("ledger: updating %q to %s: %w", e.RequestID, to, err)
	}
	next.Revision = rev
	return next, nil
}

// Create stores e (in any state) when the ledger has no entry for
// e.RequestID: a known outcome whose entry vanished (expired, or purged by
// an older tool) is recorded again. An existing entry is a *ConflictError.
func (l *Ledger) Create(ctx context.Context, e Entry) (Entry, error) {
	key, err := Key(e.Tenant, e.RequestID)
	if err != nil {
		return Entry{}, err
	}
	if e.State == StateDone && e.Result == nil {
		return Entry{}, fmt.Errorf("ledger: entry %q: %w", e.RequestID, ErrNoResult)
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = l.now() // a given time is kept, as Put keeps it, so a writer knows its own entry
	}
	e.Revision = 0
	data, err := json.Marshal(e)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: encoding entry %q: %w", e.RequestID, err)
	}
	rev, err := l.kv.Create(ctx, key, data)
	if err != nil {
		if isWrongLastSequence(err) {
			return Entry{}, &ConflictError{RequestID: e.RequestID, Err: err}
		}
		return Entry{}, fmt.Errorf("ledger: creating %q: %w", e.RequestID, err)
	}
	e.Revision = rev
	return e, nil
}

// Put stores next in place of prev: a Transition from prev to next.State
// (same checks, compare-and-set on prev.Revision) that stores next's
// fields as given, but for RequestID, State and Revision. A zero
// next.UpdatedAt becomes now.
func (l *Ledger) Put(ctx context.Context, prev, next Entry) (Entry, error) {
	return l.Transition(ctx, prev, next.State, func(e *Entry) {
		now := e.UpdatedAt
		*e = next
		if e.UpdatedAt.IsZero() {
			e.UpdatedAt = now
		}
	})
}

// sameOutcome reports whether b is the outcome a is (its status and
// completion time): a write that keeps it only adds to the trail.
func sameOutcome(a, b *messages.Result) bool {
	return a != nil && b != nil && a.Status == b.Status && a.CompletedAt.Equal(b.CompletedAt)
}

// Ambiguous reports whether e records an outcome nobody knows: a create
// call sent without an answer.
func (e Entry) Ambiguous() bool {
	return e.Result != nil && e.Result.Error != nil && e.Result.Error.Class == messages.ClassAmbiguous
}

// Get returns the entry of request id with its Revision; the error matches
// ErrNotFound when there is none (never claimed, deleted, or expired).
func (l *Ledger) Get(ctx context.Context, tenant, id string) (Entry, error) {
	key, err := Key(tenant, id)
	if err != nil {
		return Entry{}, err
	}
	kve, err := l.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Entry{}, fmt.Errorf("ledger: %q: %w", id, ErrNotFound)
		}
		return Entry{}, fmt.Errorf("ledger: reading %q: %w", id, err)
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return Entry{}, &DecodeError{Key: key, Revision: kve.Revision(), Err: err}
	}
	if e.RequestID != id || e.Tenant != tenant {
		return Entry{}, &DecodeError{Key: key, Revision: kve.Revision(), Err: fmt.Errorf("entry names request %q of tenant %q", e.RequestID, e.Tenant)}
	}
	e.Revision = kve.Revision()
	return e, nil
}

// Key returns the KV key of tenant's request id (see the package doc),
// or ErrInvalidID.
func Key(tenant, id string) (string, error) {
	if !validID(id) || (tenant != "" && !messages.ValidTenant(tenant)) {
		return "", fmt.Errorf("%w: %q of tenant %q", ErrInvalidID, messages.Truncate(id, 140), messages.Truncate(tenant, 40))
	}
	var b strings.Builder
	b.Grow(len(tenant) + len(id) + 8)
	if tenant != "" {
		b.WriteString(tenant + ".")
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case ':':
			b.WriteString("=3A")
		case '.':
			b.WriteString("=2E")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
