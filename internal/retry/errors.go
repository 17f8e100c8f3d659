// Package retry classifies errors (transient, throttled, permanent, invalid),
// holds the backoff policy and decides what to do with a delivery.
package retry

import (
	"context"
	"errors"
	"fmt"

	"github.com/qualfile/qualfile/messages"
)

// Class sentinels. A vendor client wraps its typed error around one of these
// where it reads the vendor's reply; everything later uses errors.Is.
var (
	// ErrTransient: the call may succeed if tried again later.
	ErrTransient = errors.New("transient upstream error")
	// ErrThrottled is a transient error that also asks to slow down;
	// errors.Is(ErrThrottled, ErrTransient) holds.
	ErrThrottled = fmt.Errorf("throttled: %w", ErrTransient)
	// ErrPermanent: trying again will not help.
	ErrPermanent = errors.New("permanent upstream error")
	// ErrInvalid: the request itself is wrong; the upstream was not called.
	// It is the same sentinel every *messages.ValidationError matches.
	ErrInvalid = messages.ErrInvalid
)

// ErrAmbiguous marks an error after which nobody knows whether the vendor
// acted on the request: it was sent, but no answer came back (a timeout, a
// connection reset). It is matched alongside ErrTransient. A call that only
// reads may be retried; a call that creates a record must not be re-filed
// blindly.
var ErrAmbiguous = errors.New("outcome unknown: the request may have reached the vendor")

// ErrHeld marks a call that qualfile itself held back before sending: the
// vendor's circuit breaker is open, or its rate limit has no room before
// the call's deadline. Nothing reached the vendor; the request waits in the
// broker without the delivery counting toward the dead-letter limit.
var ErrHeld = errors.New("held back: nothing was sent")

// Class is the class of an error.
type Class string

// Classes, as they appear in a result's error.class.
const (
	ClassNone      Class = ""
	ClassTransient Class = "transient"
	ClassThrottled Class = "throttled"
	ClassPermanent Class = "permanent"
	ClassInvalid   Class = "invalid"
	// ClassAmbiguous: a call that creates a record was sent and no answer
	// came back. Neither retrying (a second filing) nor giving up (a lost
	// one) is safe; an operator resolves it.
	ClassAmbiguous Class = "ambiguous"
	// ClassHeld: qualfile held the call back (ErrHeld); it never appears
	// in a result.
	ClassHeld Class = "held"
)

// ClassOf classifies err. An error wrapping no class sentinel is permanent:
// retrying what nobody understood risks filing twice.
func ClassOf(err error) Class {
	switch {
	case err == nil:
		return ClassNone
	case errors.Is(err, ErrInvalid):
		return ClassInvalid
	case errors.Is(err, ErrHeld):
		return ClassHeld
	case errors.Is(err, ErrAmbiguous) && !errors.Is(err, ErrTransient):
		// A transient error that may have been sent is still transient: the
		// caller decides, per call, whether resending is safe, and marks
		// it ambiguous (without ErrTransient) when it is not.
		return ClassAmbiguous
	case errors.Is(err, ErrThrottled):
		return ClassThrottled
	case errors.Is(err, ErrTransient):
		return ClassTransient
	case errors.Is(err, ErrPermanent):
		return ClassPermanent
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTransient
	}
	return ClassPermanent
}

// Retryable reports whether err is worth another attempt.
func (c Class) Retryable() bool { return c == ClassTransient || c == ClassThrottled }

// ErrBadPolicy is matched by every error Policy.Validate returns.
var ErrBadPolicy = errors.New("retry: bad policy")
