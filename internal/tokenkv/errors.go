package tokenkv

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinels; match them with errors.Is.
var (
	// ErrNoAppID means an empty app id was given.
	ErrNoAppID = errors.New("tokenkv: app id is required")
	// ErrInvalidConfig means a Config field is out of range.
	ErrInvalidConfig = errors.New("tokenkv: invalid config")
	// ErrWriteConflict means other writers kept changing the token.
	ErrWriteConflict = errors.New("tokenkv: token changed by another writer while storing")
	// errUnsealed: a stored value that does not open with the app's key.
	errUnsealed = errors.New("tokenkv: the stored token does not open with this app's secret")
)

// isWrongLastSequence reports whether err is JetStream's answer to a
// compare-and-set whose expected revision did not match: ErrKeyExists from
// Create, ErrKeyRevisionMismatch from Update and Delete, or the bare API
// error (10071, 10164) when Create replaced a delete marker.
func isWrongLastSequence(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
