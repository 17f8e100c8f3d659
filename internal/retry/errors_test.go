package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

// vendorError stands in for a vendor client's typed error wrapping a class.
type vendorError struct {
	code  string
	class error
}

func (e *vendorError) Error() string { return "vendor error " + e.code }
func (e *vendorError) Unwrap() error { return e.class }

func TestClassOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Class
	}{
		{"nil", nil, ClassNone},
		{"transient", ErrTransient, ClassTransient},
		{"throttled", ErrThrottled, ClassThrottled},
		{"permanent", ErrPermanent, ClassPermanent},
		{"invalid", ErrInvalid, ClassInvalid},
		{"wrapped transient", fmt.Errorf("call: %w", ErrTransient), ClassTransient},
		{"wrapped throttled", fmt.Errorf("call: %w", ErrThrottled), ClassThrottled},
		{"wrapped permanent", fmt.Errorf("call: %w", ErrPermanent), ClassPermanent},
		{"twice wrapped throttled", fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrThrottled)), ClassThrottled},
		{"typed transient", &vendorError{"500", ErrTransient}, ClassTransient},
		{"typed throttled", &vendorError{"429", ErrThrottled}, ClassThrottled},
		{"typed permanent", &vendorError{"403", ErrPermanent}, ClassPermanent},
		{"validation error", &messages.ValidationError{Fields: []messages.FieldError{{Field: "a", Problem: "missing"}}}, ClassInvalid},
		{"wrapped validation error", fmt.Errorf("x: %w", &messages.ValidationError{}), ClassInvalid},
		{"deadline exceeded", context.DeadlineExceeded, ClassTransient},
		{"wrapped deadline exceeded", fmt.Errorf("post: %w", context.DeadlineExceeded), ClassTransient},
		{"canceled is unclassified", context.Canceled, ClassPermanent},
		{"unclassified", errors.New("boom"), ClassPermanent},
		{"invalid wins over transient", errors.Join(ErrTransient, ErrInvalid), ClassInvalid},
		{"throttled wins over permanent", errors.Join(ErrPermanent, ErrThrottled), ClassThrottled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassOf(tt.err); got != tt.want {
				t.Errorf("ClassOf(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestClassRetryable(t *testing.T) {
	want := map[Class]bool{
		ClassNone:      false,
		ClassTransient: true,
		ClassThrottled: true,
		ClassPermanent: false,
		ClassInvalid:   false,
	}
	for c, w := range want {
		if got := c.Retryable(); got != w {
			t.Errorf("%q.Retryable() = %v, want %v", c, got, w)
		}
	}
}

func TestThrottledIsTransient(t *testing.T) {
	if !errors.Is(ErrThrottled, ErrTransient) {
		t.Fatal("errors.Is(ErrThrottled, ErrTransient) = false")
	}
	if errors.Is(ErrTransient, ErrThrottled) {
		t.Fatal("errors.Is(ErrTransient, ErrThrottled) = true")
	}
}
