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
// filing.result.<api> and to the request's reply subject; docs/contracts.md
// says what each field means.
type Result struct {
	SchemaVersion     string            `json:"schema_version,omitempty"`
	RequestID         string            `json:"request_id"`
	API               API               `json:"api"`
	Tenant            string            `json:"tenant,omitempty"` // "" for the default tenant
	Account           string            `json:"account"`
	Status            Status            `json:"status"`
	Attempts          int               `json:"attempts"`
	Result            json.RawMessage   `json:"result,omitempty"`
	Error             *ResultError      `json:"error,omitempty"`
	UpstreamRequestID string            `json:"upstream_request_id,omitempty"`
	ReceivedAt        time.Time         `json:"received_at"`
	CompletedAt       time.Time         `json:"completed_at"`
	Metadata          map[string]string `json:"metadata,omitempty"`
	Reconciled        bool              `json:"reconciled,omitempty"`
	Refiled           bool              `json:"refiled,omitempty"`
	Supersedes        time.Time         `json:"supersedes,omitzero"`
	StreamSeq         uint64            `json:"stream_seq,omitempty"`
	RequestIDSHA256   string            `json:"request_id_sha256,omitempty"`
	Resolution        *Resolution       `json:"resolution,omitempty"`
}

// Resolution is an operator's decision on a filing whose outcome was
// ambiguous or failed, made through the consumer: the result it gives
// supersedes the earlier one.
type Resolution struct {
	Decision Decision  `json:"decision"`
	Record   string    `json:"record,omitempty"` // filed: the vendor's record, as the operator found it
	Operator string    `json:"operator"`         // bound by the operator's NATS permissions
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Decision is what an operator decided about a filing.
type Decision string

// The decisions.
const (
	DecisionFiled     Decision = "filed"     // the vendor holds it, as Record: status succeeded
	DecisionAbandoned Decision = "abandoned" // nobody will file it: status failed, code Abandoned
)

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
	ID                string          `json:"id,omitempty"`             // the event's identity: a copy of it carries the same
	RequestID         string          `json:"request_id"`
	API               API             `json:"api"`
	Tenant            string          `json:"tenant,omitempty"` // "" for the default tenant
	Account           string          `json:"account,omitempty"`
	Event             string          `json:"event"`
	Seq               int             `json:"seq,omitempty"` // its position in the request's trail, from 1 (0: not part of it)
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
	Operator          string          `json:"operator,omitempty"` // an operator's action: who, bound by permissions
	Reason            string          `json:"reason,omitempty"`   // and why, as the operator gave it
}

// Audit event names (the last token of the audit subject); the table in
// docs/contracts.md says when each is emitted.
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
	EventConflict    = "conflict"
	EventSettled     = "settled"
	EventReplayed    = "replayed"
	EventReconciling = "reconciling"
	EventReconciled  = "reconciled"
	EventRefiled     = "refiled"
	// An operator's actions, carried out by the consumer.
	EventResolved    = "resolved"
	EventDeadRemoved = "dead_letter_removed"
)
