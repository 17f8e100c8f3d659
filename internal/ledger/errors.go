package ledger

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinels; match them with errors.Is.
var (
	// ErrNotFound means the ledger has no entry for the request id.
	ErrNotFound = errors.New("ledger: no entry for this request id")
	// ErrConflict means the entry changed after it was read (another
	// replica won the compare-and-set); read it again and decide anew.
	// *ConflictError matches it.
	ErrConflict = errors.New("ledger: entry changed since it was read")
	// ErrBadTransition means the state machine does not allow the
	// transition; *TransitionError matches it.
	ErrBadTransition = errors.New("ledger: state transition not allowed")
	// ErrInvalidID means a request id is not 1 to 128 characters of
	// [A-Za-z0-9._:-].
	ErrInvalidID = errors.New("ledger: request id must be 1 to 128 characters of [A-Za-z0-9._:-]")
	// ErrNoRevision means Transition was given an entry without a
	// revision, i.e. not one returned by Claim, Get or Transition.
	ErrNoRevision = errors.New("ledger: entry has no revision (use one returned by Claim, Get or Transition)")
	// ErrNoResult means a transition to StateDone left Entry.Result nil: a
	// done entry must carry the result a redelivery is answered with.
	ErrNoResult = errors.New("ledger: a done entry needs a result")
	// ErrInvalidConfig means a Config field is out of range.
	ErrInvalidConfig = errors.New("ledger: invalid config")
)

// ConflictError is a lost compare-and-set: the entry of RequestID was no
// longer at Revision when the update arrived. It matches ErrConflict and the
// underlying JetStream error.
type ConflictError struct {
	RequestID string
	Revision  uint64
	Err       error
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("ledger: entry %q changed since revision %d: %v", e.RequestID, e.Revision, e.Err)
}

// Unwrap returns ErrConflict and the JetStream error.
func (e *ConflictError) Unwrap() []error { return []error{ErrConflict, e.Err} }

// TransitionError is a transition the state machine forbids. It matches
// ErrBadTransition.
type TransitionError struct {
	RequestID string
	From, To  State
}

// Error implements error.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("ledger: entry %q: transition %s -> %s not allowed", e.RequestID, e.From, e.To)
}

// Unwrap returns ErrBadTransition.
func (e *TransitionError) Unwrap() error { return ErrBadTransition }

// DecodeError is a stored value that is not a ledger entry.
type DecodeError struct {
	Key      string
	Revision uint64
	Err      error
}

// Error implements error.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("ledger: key %q revision %d is not a ledger entry: %v", e.Key, e.Revision, e.Err)
}

// Unwrap returns the JSON error.
func (e *DecodeError) Unwrap() error { return e.Err }

// isWrongLastSequence reports whether err is JetStream's answer to a
// compare-and-set whose expected revision did not match: error code 10071
// (10164 on replicated streams). The jetstream package surfaces it as
// ErrKeyExists from Create (or as a bare API error when Create replaced a
// delete marker) and as ErrKeyRevisionMismatch from Update and Delete.
func isWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
