package retry

import (
	"fmt"
	"time"
)

// Action is what to do with a delivery once it has been handled.
type Action int

// Actions, one per branch of Policy.Decide.
const (
	// ActionAck: done (the result is stored); acknowledge.
	ActionAck Action = iota
	// ActionNakWithDelay: a retryable failure; redeliver after
	// Decision.Delay. A plain immediate Nak is never used.
	ActionNakWithDelay
	// ActionTerm: a permanent or invalid failure; stop redelivery at once.
	ActionTerm
	// ActionDeadLetter: a retryable failure on the last allowed delivery;
	// move the message to the dead-letter stream.
	ActionDeadLetter
)

// String returns the action's name, e.g. "nak-with-delay".
func (a Action) String() string {
	switch a {
	case ActionAck:
		return "ack"
	case ActionNakWithDelay:
		return "nak-with-delay"
	case ActionTerm:
		return "term"
	case ActionDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the outcome of Policy.Decide.
type Decision struct {
	// Action is what to do with the delivery.
	Action Action
	// Delay is the redelivery delay; non-zero only for ActionNakWithDelay.
	Delay time.Duration
}

// Decide maps the error of handling a delivery to an ack decision:
//
//   - nil: Ack;
//   - ambiguous (sent, no answer, unsafe to resend): DeadLetter;
//   - invalid or permanent (including any error wrapping no class
//     sentinel): Term;
//   - retryable and delivery < maxDeliver: NakWithDelay, with
//     RedeliveryDelay(delivery, throttled);
//   - retryable and delivery >= maxDeliver: DeadLetter.
//
// delivery is the 1-based delivery count of the message; maxDeliver <= 0
// means unlimited deliveries, so a retryable error is never dead-lettered.
func (p Policy) Decide(err error, delivery, maxDeliver int) Decision {
	class := ClassOf(err)
	switch {
	case err == nil:
		return Decision{Action: ActionAck}
	case class == ClassAmbiguous:
		return Decision{Action: ActionDeadLetter}
	case !class.Retryable():
		return Decision{Action: ActionTerm}
	case maxDeliver > 0 && delivery >= maxDeliver:
		return Decision{Action: ActionDeadLetter}
	}
	return Decision{Action: ActionNakWithDelay, Delay: p.RedeliveryDelay(delivery, class == ClassThrottled)}
}
