package messages

import (
	"encoding/json"
	"time"
)

// Status is the final outcome of a request.
type Status string

// Result statuses.
const (
	StatusSucceeded Status = "succeeded" // the vendor accepted the call
	StatusRejected  Status = "rejected"  // failed validation; upstream never called
	StatusFailed    Status = "failed"    // permanent upstream error, or retries exhausted
)

// Error classes carried in a result's error.
const (
	ClassInvalid   = "invalid"
	ClassPermanent = "permanent"
	ClassTransient = "transient"
	ClassAmbiguous = "ambiguous"
)

// SchemaVersion is the version of the result and audit event contract
// (schemas/*.schema.json) that qualfile publishes: fields may be added
// within a version, never removed or changed in meaning.
const SchemaVersion = "1"

// Result is the final outcome of one request, published on
// filing.result.<api> and to the request's reply subject.
type Result struct {
	// SchemaVersion is the version of this contract (SchemaVersion); a
	// change that could break a reader gets a new one.
	SchemaVersion     string            `json:"schema_version,omitempty"`
	RequestID         string            `json:"request_id"`
	API               API               `json:"api"`
	Account           string            `json:"account"`
	Status            Status            `json:"status"`
	Attempts          int               `json:"attempts"`
	Result            json.RawMessage   `json:"result,omitempty"`
	Error             *ResultError      `json:"error,omitempty"`
	UpstreamRequestID string            `json:"upstream_request_id,omitempty"`
	ReceivedAt        time.Time         `json:"received_at"`
	CompletedAt       time.Time         `json:"completed_at"`
	Metadata          map[string]string `json:"metadata,omitempty"`
	// Reconciled: the create's answer was lost and the vendor's record
	// (Result) was found by reading it back.
	Reconciled bool `json:"reconciled,omitempty"`
	// Refiled: the create was filed a second time, once, because the
	// vendor held no record of the first call.
	Refiled bool `json:"refiled,omitempty"`
	// Supersedes is the completed_at of an earlier result of the same
	// request that this one replaces: an ambiguous outcome settled once
	// the vendor's answer became known. A subscriber keeps, per request,
	// the result that no other result supersedes.
	Supersedes time.Time `json:"supersedes,omitzero"`
	// StreamSeq is, on a rejected result, the request's sequence in the
	// request stream (the publisher's PubAck says it): what correlates a
	// request whose id is missing or unusable.
	StreamSeq uint64 `json:"stream_seq,omitempty"`
	// RequestIDSHA256 is, on a rejected result whose id was cut short or
	// broke the id rules, the hex SHA-256 of the id as sent.
	RequestIDSHA256 string `json:"request_id_sha256,omitempty"`
}

// ResultError says why a request did not succeed.
type ResultError struct {
	Code    string       `json:"code,omitempty"`
	Message string       `json:"message"`
	Class   string       `json:"class"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// AuditEvent is one state change or one attempt of a request, published on
// filing.audit.<api>.<key>.<event> (Subjects.Audit). Its payload, if any,
// is redacted.
type AuditEvent struct {
	SchemaVersion     string          `json:"schema_version,omitempty"` // as Result's
	RequestID         string          `json:"request_id"`
	API               API             `json:"api"`
	Account           string          `json:"account,omitempty"`
	Event             string          `json:"event"`
	Time              time.Time       `json:"time"`
	Attempt           int             `json:"attempt,omitempty"`
	Delivery          int             `json:"delivery,omitempty"`
	Status            Status          `json:"status,omitempty"`
	Class             string          `json:"class,omitempty"`
	Code              string          `json:"code,omitempty"`
	Message           string          `json:"message,omitempty"`
	UpstreamRequestID string          `json:"upstream_request_id,omitempty"`
	DurationMS        float64         `json:"duration_ms,omitempty"` // milliseconds, to the microsecond
	Payload           json.RawMessage `json:"payload,omitempty"`
}

// Audit event names (the last token of the audit subject).
const (
	EventReceived    = "received"
	EventRejected    = "rejected"
	EventAttempt     = "attempt"
	EventSucceeded   = "succeeded"
	EventFailed      = "failed"
	EventDeferred    = "deferred"
	EventDeadLetter  = "dead_letter"
	EventDuplicate   = "duplicate"
	EventAmbiguous   = "ambiguous"
	EventUndecodable = "undecodable"
	EventConflict    = "conflict" // two replicas reached different outcomes; the recorded one stands
	// EventSettled: an ambiguous outcome was settled once the vendor's
	// answer became known; the new result supersedes the ambiguous one.
	EventSettled = "settled"
	// EventReplayed: an operator replayed the request from a dead letter.
	EventReplayed = "replayed"
	// EventReconciling: the answer to a create was lost; qualfile reads
	// the vendor's records to learn whether it was filed.
	EventReconciling = "reconciling"
	// EventReconciled: the vendor's record of a create whose answer was
	// lost was found; the request succeeded (a final outcome).
	EventReconciled = "reconciled"
	// EventRefiled: the vendor held no record of a create whose answer was
	// lost after the settling window; it is filed again, once.
	EventRefiled = "refiled"
)
