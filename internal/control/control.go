// Package control is the consumer's service for operators: replay a dead
// letter, resolve a filing whose outcome was ambiguous or failed, remove a
// dead letter. An operator asks on <prefix>.control.<operator>.<action>, a
// queue group that every replica serves. The
// operator's name is that subject's token, which the operator's NATS
// permissions bind (publisher permissions --operator NAME); no body can
// claim it. The consumer carries the order out with its own rights, the
// operator needing none on the ledger or the streams, and records each
// action as an audit event in the request's trail, with who and why.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// Action is what an operator asks the consumer to do.
type Action string

// The actions, each the last token of its control subject.
const (
	ActionReplay  Action = "replay"  // publish a dead letter's request again
	ActionResolve Action = "resolve" // record an operator's decision on a filing
	ActionRemove  Action = "remove"  // remove a dead letter nobody will replay
)

// Actions are the actions, in the order they are served.
var Actions = []Action{ActionReplay, ActionResolve, ActionRemove}

// Subject is the subject on which operator asks for a: its name bound by
// the operator's permissions, which grant Subjects(s, operator) only.
func Subject(s messages.Subjects, operator string, a Action) string {
	return s.Root() + ".control." + operator + "." + string(a)
}

// Subjects are what an operator named operator may publish to.
func Subjects(s messages.Subjects, operator string) string {
	return s.Root() + ".control." + operator + ".>"
}

// operatorName is what an operator's name may be: one subject token of
// lower-case letters, digits and '_' (so that two names never make one
// variable of a server's configuration, roles.Variable).
var operatorName = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)

// ValidOperator reports whether name may name an operator.
func ValidOperator(name string) bool { return operatorName.MatchString(name) }

// MaxReason bounds an operator's reason, in bytes.
const MaxReason = 1000

// Order is what an operator asks for: which dead letters (RequestID, Seq
// or All) or which filing (RequestID), and why.
type Order struct {
	RequestID string            `json:"request_id,omitempty"` // the dead letters, or the filing, of this request id
	Tenant    string            `json:"tenant,omitempty"`     // whose request id it is ("": the default tenant)
	Seq       uint64            `json:"seq,omitempty"`        // the dead letter at this sequence of the dead-letter stream
	All       bool              `json:"all,omitempty"`        // replay: every dead letter
	Force     bool              `json:"force,omitempty"`      // replay: also an ambiguous, succeeded or in-flight request
	Decision  messages.Decision `json:"decision,omitempty"`   // resolve: filed or abandoned
	Record    string            `json:"record,omitempty"`     // resolve, filed: the vendor's record (QualificationNo, ...)
	Reason    string            `json:"reason"`
}

// Validate reports each rule of a's orders that o breaks, as a
// *messages.ValidationError (matching ErrInvalidOrder).
func (o Order) Validate(a Action) error {
	var fs []messages.FieldError
	bad := func(field, problem string) { fs = append(fs, messages.FieldError{Field: field, Problem: problem}) }
	switch r := strings.TrimSpace(o.Reason); {
	case r == "":
		bad("reason", "required: say why, for the trail")
	case len(o.Reason) > MaxReason || !utf8.ValidString(o.Reason):
		bad("reason", fmt.Sprintf("at most %d bytes of UTF-8", MaxReason))
	}
	if o.RequestID != "" {
		if _, err := ledger.Key("", o.RequestID); err != nil {
			bad("request_id", "not a valid request id")
		}
	}
	if o.Tenant != "" && (!messages.ValidTenant(o.Tenant) || o.RequestID == "") {
		bad("tenant", "a tenant's name, with the request_id it scopes")
	}
	chosen := 0
	for _, set := range []bool{o.RequestID != "", o.Seq != 0, o.All} {
		if set {
			chosen++
		}
	}
	switch a {
	case ActionReplay, ActionRemove:
		if chosen != 1 || (o.All && a == ActionRemove) {
			bad("request_id", "give exactly one of request_id or seq (or, to replay, all)")
		}
		if o.Decision != "" || o.Record != "" {
			bad("decision", "only a resolve takes a decision")
		}
	case ActionResolve:
		if o.RequestID == "" || chosen != 1 {
			bad("request_id", "required, alone: the filing to resolve")
		}
		switch o.Decision {
		case messages.DecisionFiled:
			if r := strings.TrimSpace(o.Record); r == "" || len(r) > 128 || strings.ContainsFunc(r, isControl) {
				bad("record", "required when filed: the vendor's record (at most 128 printable bytes)")
			}
		case messages.DecisionAbandoned:
			if o.Record != "" {
				bad("record", "only a filed decision names a record")
			}
		default:
			bad("decision", "filed or abandoned")
		}
	default:
		bad("action", "replay, resolve or remove")
	}
	if o.Force && a != ActionReplay {
		bad("force", "only a replay may be forced")
	}
	if len(fs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOrder, &messages.ValidationError{Fields: fs})
	}
	return nil
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }

// Report is what the consumer did with an order: one item per dead letter
// or filing it touched.
type Report struct {
	Items []Item `json:"items"`
}

// Item is one dead letter's or filing's part of a report.
type Item struct {
	Seq       uint64 `json:"seq,omitempty"` // the dead letter's
	RequestID string `json:"request_id,omitempty"`
	Tenant    string `json:"tenant,omitempty"`
	Done      string `json:"done,omitempty"`     // what was done
	Skipped   string `json:"skipped,omitempty"`  // why nothing was
	Forcible  bool   `json:"forcible,omitempty"` // a forced replay would do it
}

// Ask sends an order to the consumers' control service as operator and
// returns their report; a refusal is an *Error, returned with the report
// of what was done before it. nc's inbox must be the operators'.
func Ask(ctx context.Context, nc *nats.Conn, s messages.Subjects, operator string, a Action, o Order) (Report, error) {
	if !ValidOperator(operator) {
		return Report{}, fmt.Errorf("%w: operator %q: lower-case letters, digits and _, at most 64", ErrInvalidOrder, operator)
	}
	if err := o.Validate(a); err != nil {
		return Report{}, err
	}
	data, err := json.Marshal(o)
	if err != nil {
		return Report{}, err
	}
	req := nats.NewMsg(Subject(s, operator, a))
	req.Data = data
	m, err := nc.RequestMsgWithContext(ctx, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return Report{}, fmt.Errorf("%w: no consumer serves %s (is one running, under this prefix?): %w", ErrUnavailable, req.Subject, err)
	}
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var r Report
	decodeErr := json.Unmarshal(m.Data, &r)
	if code := m.Header.Get(HeaderErrorCode); code != "" {
		return r, &Error{Code: code, Description: m.Header.Get(HeaderError)} // with what was done before
	}
	if decodeErr != nil {
		return Report{}, fmt.Errorf("control: the consumer's report: %w", decodeErr)
	}
	return r, nil
}
