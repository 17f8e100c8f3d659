package queue

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidConfig is matched by the error EnsureStreams returns for a
// StreamsConfig that Validate rejects.
var ErrInvalidConfig = errors.New("queue: invalid config")

// ErrStreamConflict is matched by the error EnsureStreams returns when a
// stream exists with a configuration qualfile must not change silently.
var ErrStreamConflict = errors.New("stream exists with a conflicting configuration")

// ConflictError names the stream and each conflicting setting.
type ConflictError struct {
	Stream    string
	Conflicts []string // "retention: have limits, want workqueue"
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("stream %s exists with a conflicting configuration (%s); change it by hand or point qualfile at another subject prefix",
		e.Stream, strings.Join(e.Conflicts, "; "))
}

func (e *ConflictError) Unwrap() error { return ErrStreamConflict }
