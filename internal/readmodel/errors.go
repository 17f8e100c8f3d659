package readmodel

import "errors"

// Sentinels; match them with errors.Is.
var (
	// ErrInvalidFilter means a Filter breaks its rules; the
	// *messages.ValidationError it wraps names each field.
	ErrInvalidFilter = errors.New("readmodel: invalid filter")
	// ErrNotFound means the read model holds no such filing.
	ErrNotFound = errors.New("readmodel: no such filing")
)
