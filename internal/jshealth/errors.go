package jshealth

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidConfig means a Config or ProbeConfig field is missing or out
// of range.
var ErrInvalidConfig = errors.New("jshealth: invalid config")

// NotReadyError is why a Watcher is not ready.
type NotReadyError struct {
	Failures    int       // consecutive failed probes
	LastSuccess time.Time // zero if no probe ever succeeded
	Since       time.Time // when the Watcher was created
	Now         time.Time // when the error was made
	Err         error     // the last probe's error
}

// Error implements error, e.g. "JetStream not answering: 3 consecutive probe
// failures, last success 12.4s ago: context deadline exceeded".
func (e *NotReadyError) Error() string {
	last := "no success since start " + e.Now.Sub(e.Since).Round(100*time.Millisecond).String() + " ago"
	if !e.LastSuccess.IsZero() {
		last = "last success " + e.Now.Sub(e.LastSuccess).Round(100*time.Millisecond).String() + " ago"
	}
	return fmt.Sprintf("JetStream not answering: %d consecutive probe failures, %s: %v", e.Failures, last, e.Err)
}

// Unwrap returns the last probe's error.
func (e *NotReadyError) Unwrap() error { return e.Err }
