package filing

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The pure helpers of the decision core: what a new entry, an event or a
// result looks like. None does I/O.

// maxFields bounds the problems a rejected result lists, so that the
// result of a huge request still fits in a message.
const maxFields = 200

// newEntry is the ledger entry of a request seen for the first time.
func (k *known) newEntry() ledger.Entry {
	received := k.event(messages.AuditEvent{Event: messages.EventReceived})
	return ledger.Entry{
		RequestID: k.req.ID, API: k.req.API, Owner: k.lim.owner, Fingerprint: k.fingerprint, ClaimedAt: k.now,
		Trail: append(k.pending[:0:0], received),
	}
}

// newNonce names one move to "calling": unique per replica, message,
// delivery and move.
func (k *known) newNonce() string {
	attempts := 0
	if k.entry != nil {
		attempts = k.entry.Attempts
	}
	return k.lim.owner + "/" + strconv.FormatUint(k.seq, 10) + "/" + strconv.Itoa(k.delivery) + "/" + strconv.Itoa(attempts) + "/" + stamp(k.now)
}

// event fills in what every audit event of this delivery carries.
func (k *known) event(ev messages.AuditEvent) messages.AuditEvent {
	if ev.Time.IsZero() {
		ev.Time = k.now
	}
	ev.Delivery = k.delivery
	ev.API = k.subjectAPI
	if k.req != nil {
		ev.RequestID = boundID(k.req.ID)
		if k.req.API.Valid() {
			ev.API = k.req.API
			ev.Account = k.req.AccountOrDefault()
		}
	}
	return ev
}

// attemptEvent is the audit event of one upstream call.
func (k *known) attemptEvent(took time.Duration) messages.AuditEvent {
	code, msg, class := describe(k.lastErr)
	return k.event(messages.AuditEvent{
		Event: messages.EventAttempt, Attempt: k.entry.Attempts, Class: string(class), Code: code, Message: bound(msg, 1024),
		UpstreamRequestID: k.lastOut.UpstreamRequestID, DurationMS: float64(took.Microseconds()) / 1000,
	})
}

// result is the final result of a valid request.
func (k *known) result(status messages.Status, rerr *messages.ResultError) *messages.Result {
	return &messages.Result{
		RequestID: k.req.ID, API: k.req.API, Account: k.req.AccountOrDefault(), Status: status,
		Attempts: k.entry.Attempts, Error: rerr, ReceivedAt: k.receivedAt, CompletedAt: k.now, Metadata: k.req.Metadata,
		Refiled: k.entry.Refiled > 0,
	}
}

// rejection is the result of a request decided by the message alone.
func (k *known) rejection(code, message string) *messages.Result {
	res := &messages.Result{
		RequestID: boundID(k.req.ID), API: k.req.API, Account: bound(k.req.AccountOrDefault(), messages.MaxAccountLen),
		Status: messages.StatusRejected, ReceivedAt: k.receivedAt, CompletedAt: k.receivedAt,
		Error: &messages.ResultError{Code: code, Message: message, Class: messages.ClassInvalid},
	}
	if !k.req.API.Valid() {
		res.API = k.subjectAPI
	}
	if k.invalid == nil {
		res.Metadata = k.req.Metadata // valid, hence bounded
	}
	// Something to correlate by when the id cannot serve.
	res.StreamSeq = k.seq
	if id := k.req.ID; id != "" && (id != res.RequestID || hasProblem(k.invalid, "id")) {
		sum := sha256.Sum256([]byte(id))
		res.RequestIDSHA256 = hex.EncodeToString(sum[:])
	}
	return res
}

// hasProblem reports whether the validation error err names field.
func hasProblem(err error, field string) bool {
	if ve := asValidation(err); ve != nil {
		for _, f := range ve.Fields {
			if f.Field == field {
				return true
			}
		}
	}
	return false
}

func (k *known) resultError(class retry.Class) *messages.ResultError {
	code, msg, _ := describe(k.lastErr)
	return &messages.ResultError{Code: code, Message: bound(msg, 1024), Class: resultClass(class)}
}

// outcomeEvents are the events that record a final outcome: the dead
// letter, when there is one, and the outcome itself.
func (k *known) outcomeEvents(res *messages.Result, event, deadReason string) []messages.AuditEvent {
	var evs []messages.AuditEvent
	if deadReason != "" {
		evs = append(evs, k.event(messages.AuditEvent{Event: messages.EventDeadLetter, Class: res.Error.Class, Message: deadReason}))
	}
	ev := messages.AuditEvent{Event: event, Status: res.Status, Attempt: res.Attempts, UpstreamRequestID: res.UpstreamRequestID}
	if res.Error != nil {
		ev.Class, ev.Code, ev.Message = res.Error.Class, res.Error.Code, res.Error.Message
	}
	return append(evs, k.event(ev))
}

// isOutcomeEvent reports whether an event records a final outcome.
func isOutcomeEvent(event string) bool {
	switch event {
	case messages.EventSucceeded, messages.EventRejected, messages.EventFailed, messages.EventAmbiguous, messages.EventSettled, messages.EventReconciled:
		return true
	}
	return false
}

// isAmbiguous reports whether res records that nobody knows the outcome.
func isAmbiguous(res *messages.Result) bool {
	return res != nil && res.Error != nil && res.Error.Class == messages.ClassAmbiguous
}

// deadReasonOf says why a recorded outcome belongs in the dead letters, or
// "" when it does not.
func deadReasonOf(res *messages.Result) string {
	if res == nil || res.Status != messages.StatusFailed || res.Error == nil {
		return ""
	}
	if res.Error.Code == "InternalError" {
		return "internal error"
	}
	switch res.Error.Class {
	case messages.ClassAmbiguous:
		return "ambiguous"
	case messages.ClassTransient:
		return "retries exhausted"
	}
	return ""
}

func stamp(t time.Time) string { return strconv.FormatInt(t.UnixNano(), 10) }

func asValidation(err error) *messages.ValidationError {
	var ve *messages.ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	return nil
}

// boundFields keeps at most maxFields problems, saying how many were left
// out.
func boundFields(fs []messages.FieldError) []messages.FieldError {
	if len(fs) <= maxFields {
		return fs
	}
	out := append(fs[:maxFields:maxFields], messages.FieldError{Field: "payload",
		Problem: "and " + strconv.Itoa(len(fs)-maxFields) + " more problems not listed"})
	return out
}

// boundID shortens an over-long (hence invalid) id so that what carries it
// still fits in a message.
func boundID(id string) string { return bound(id, messages.MaxIDLen) }

// bound cuts s to at most n bytes on a rune boundary, marking the cut, and
// replaces invalid UTF-8: s came from a message or a vendor.
func bound(s string, n int) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // invalid bytes become U+FFFD
	}
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func describe(err error) (code, message string, class retry.Class) {
	if err == nil {
		return "", "", retry.ClassNone
	}
	return dispatch.Describe(err)
}

func resultClass(c retry.Class) string {
	switch c {
	case retry.ClassThrottled, retry.ClassTransient:
		return messages.ClassTransient
	case retry.ClassInvalid:
		return messages.ClassInvalid
	case retry.ClassAmbiguous:
		return messages.ClassAmbiguous
	}
	return messages.ClassPermanent
}
