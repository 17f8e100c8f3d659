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
	// Reason says why, in a few words: the error's class and the delivery
	// count. It does not contain the error's text.
	Reason string
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
		return Decision{Action: ActionAck, Reason: "ok"}
	case class == ClassAmbiguous:
		return Decision{Action: ActionDeadLetter, Reason: "ambiguous outcome: an operator must check the vendor before any replay"}
	case !class.Retryable():
		return Decision{Action: ActionTerm, Reason: string(class) + " error"}
	case maxDeliver > 0 && delivery >= maxDeliver:
		return Decision{
			Action: ActionDeadLetter,
			Reason: fmt.Sprintf("%s error on delivery %d of %d (last allowed)", class, delivery, maxDeliver),
		}
	default:
		return Decision{
			Action: ActionNakWithDelay,
			Delay:  p.RedeliveryDelay(delivery, class == ClassThrottled),
			Reason: fmt.Sprintf("%s error on delivery %d of %s", class, delivery, maxString(maxDeliver)),
		}
	}
}

func maxString(maxDeliver int) string {
	if maxDeliver <= 0 {
		return "unlimited"
	}
	return fmt.Sprint(maxDeliver)
}
