package control

import "errors"

// Sentinels of the control service, as the client sees them too
// (ErrorOf).
var (
	// ErrInvalidOrder: an order that breaks its rules (a missing reason,
	// an unknown action or decision); a *messages.ValidationError names
	// each problem.
	ErrInvalidOrder = errors.New("control: invalid order")
	// ErrNoMatch: nothing the order names exists (no such dead letter, no
	// ledger entry for the id).
	ErrNoMatch = errors.New("control: nothing matches")
	// ErrUnavailable: the consumer could not carry the order out now
	// (broker trouble, a timeout); it may be given again.
	ErrUnavailable = errors.New("control: unavailable")
)

// Error is the control service's refusal of an order, as a client reads
// it: its code and what the service said.
type Error struct {
	Code        string // 400, 404, 503
	Description string
}

func (e *Error) Error() string { return "control: " + e.Code + ": " + e.Description }

// Unwrap classifies e by its code.
func (e *Error) Unwrap() error {
	switch e.Code {
	case codeInvalid:
		return ErrInvalidOrder
	case codeNoMatch:
		return ErrNoMatch
	}
	return ErrUnavailable
}

const (
	codeInvalid     = "400"
	codeNoMatch     = "404"
	codeUnavailable = "503"
)
