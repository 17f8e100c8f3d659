package guard

import (
	"fmt"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
)

// HeldError is returned for a call the guard held back: nothing was sent.
// It matches retry.ErrHeld.
type HeldError struct {
	Vendor, Account string
	// Why: "circuit open" (the vendor failed repeatedly) or "rate limit"
	// (no room before the call's deadline).
	Why string
	// RetryAfter is how long the request should wait in the broker.
	RetryAfter time.Duration
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s account %q: %s, held for %s: %v", e.Vendor, e.Account, e.Why, e.RetryAfter.Round(time.Millisecond), retry.ErrHeld)
}

// HeldFor is RetryAfter.
func (e *HeldError) HeldFor() time.Duration { return e.RetryAfter }

// Unwrap makes the error match retry.ErrHeld.
func (e *HeldError) Unwrap() error { return retry.ErrHeld }

// Reasons of a HeldError.
const (
	WhyOpen = "circuit open"
	WhyRate = "rate limit"
)
