package messages

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched by every *ValidationError: the request breaks a rule
// and the upstream must not be called.
var ErrInvalid = errors.New("invalid request")

// ErrUndecodable is matched by every *DecodeError: the message is not a JSON
// object at all and belongs in the dead-letter stream.
var ErrUndecodable = errors.New("undecodable message")

// FieldError is one problem with one field, named by a JSON path such as
// "payload.businessInfo.businessCertificateName".
type FieldError struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

func (f FieldError) String() string { return f.Field + ": " + f.Problem }

// ValidationError lists every problem found in a request, not the first only.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.String()
	}
	return fmt.Sprintf("invalid request: %d problem(s): %s", len(e.Fields), strings.Join(parts, "; "))
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

// DecodeError says why a message could not be decoded at all.
type DecodeError struct {
	Reason string
}

func (e *DecodeError) Error() string { return "undecodable message: " + e.Reason }

func (e *DecodeError) Unwrap() error { return ErrUndecodable }

// problems collects field errors under a path prefix.
type problems struct {
	list []FieldError
}

func (p *problems) add(field, format string, args ...any) {
	p.list = append(p.list, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (p *problems) has(field string) bool {
	for _, f := range p.list {
		if f.Field == field || strings.HasPrefix(f.Field, field+".") || strings.HasPrefix(f.Field, field+"[") {
			return true
		}
	}
	return false
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Fields: p.list}
}
