package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/qualfile/qualfile/messages"
)

func TestDecide(t *testing.T) {
	p := Policy{NoJitter: true}
	s := time.Second
	tests := []struct {
		name       string
		err        error
		delivery   int
		maxDeliver int
		want       Action
		delay      time.Duration
	}{
		{"success", nil, 1, 5, ActionAck, 0},
		{"success on last delivery", nil, 5, 5, ActionAck, 0},
		{"invalid", &messages.ValidationError{}, 1, 5, ActionTerm, 0},
		{"permanent", fmt.Errorf("x: %w", ErrPermanent), 1, 5, ActionTerm, 0},
		{"unclassified", errors.New("boom"), 2, 5, ActionTerm, 0},
		{"permanent on last delivery", ErrPermanent, 5, 5, ActionTerm, 0},
		{"transient first", ErrTransient, 1, 5, ActionNakWithDelay, 5 * s},
		{"transient third", ErrTransient, 3, 5, ActionNakWithDelay, 20 * s},
		{"throttled", ErrThrottled, 2, 5, ActionNakWithDelay, 40 * s},
		{"deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), 4, 5, ActionNakWithDelay, 40 * s},
		{"transient last", ErrTransient, 5, 5, ActionDeadLetter, 0},
		{"throttled past last", ErrThrottled, 6, 5, ActionDeadLetter, 0},
		{"max 1", ErrTransient, 1, 1, ActionDeadLetter, 0},
		{"ambiguous first delivery", ambiguousOnly{}, 1, 5, ActionDeadLetter, 0},
		{"sent transient stays transient", errors.Join(ErrTransient, ErrAmbiguous), 1, 5, ActionNakWithDelay, 5 * s},
		{"unlimited zero", ErrTransient, 100, 0, ActionNakWithDelay, 10 * time.Minute},
		{"unlimited negative", ErrThrottled, 1, -1, ActionNakWithDelay, 20 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Decide(tt.err, tt.delivery, tt.maxDeliver)
			if got.Action != tt.want || got.Delay != tt.delay {
				t.Errorf("Decide = %v/%v, want %v/%v", got.Action, got.Delay, tt.want, tt.delay)
			}
		})
	}
}

func TestDecideNakDelayJittered(t *testing.T) {
	p := Policy{Rand: constRand(0)}
	if got := p.Decide(ErrTransient, 2, 5); got.Action != ActionNakWithDelay || got.Delay != 8*time.Second {
		t.Errorf("Decide = %+v, want NakWithDelay 8s", got)
	}
}

func TestActionString(t *testing.T) {
	tests := map[Action]string{
		ActionAck:          "ack",
		ActionNakWithDelay: "nak-with-delay",
		ActionTerm:         "term",
		ActionDeadLetter:   "dead-letter",
		Action(42):         "Action(42)",
	}
	for a, want := range tests {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}

// ambiguousOnly is what a dispatcher returns for a create call that was sent
// and never answered: ErrAmbiguous without ErrTransient.
type ambiguousOnly struct{}

func (ambiguousOnly) Error() string { return "sent, no answer" }
func (ambiguousOnly) Unwrap() error { return ErrAmbiguous }

func TestClassOfAmbiguous(t *testing.T) {
	if got := ClassOf(ambiguousOnly{}); got != ClassAmbiguous {
		t.Errorf("ClassOf(ambiguous only) = %q, want ambiguous", got)
	}
	if got := ClassOf(errors.Join(ErrTransient, ErrAmbiguous)); got != ClassTransient {
		t.Errorf("ClassOf(transient+ambiguous) = %q, want transient", got)
	}
	if ClassAmbiguous.Retryable() {
		t.Error("ambiguous must not be retryable")
	}
}
