package filing

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The results and the events (part of the decision core, without I/O): an
// outcome taken in hand, then recorded and published with its events; what
// is answered without a call of its own (another replica's outcome that
// stands, a rejected or reused request, an undecodable message, a panic);
// and what an event or a result looks like.

// decided takes a final outcome in hand: from here on it must not be lost.
func (d *delivery) decided(res *messages.Result, event, deadReason string) step {
	d.mem.outcome, d.mem.deadReason = res, deadReason
	d.out.pending = append(d.out.pending, d.outcomeEvents(res, event, deadReason)...)
	return d.record()
}

// ambiguous records that nobody knows whether the vendor filed it.
func (d *delivery) ambiguous(why string) step {
	rerr := &messages.ResultError{Code: "AmbiguousOutcome", Class: messages.ClassAmbiguous, Message: why +
		". Check with the vendor, then resolve it (publisher resolve --filed-as RECORD) or replay it deliberately (publisher dead replay --force)"}
	step := d.decided(d.result(messages.StatusFailed, rerr), messages.EventAmbiguous, settleAmbiguous.reason)
	d.mem.derived = true // drawn from the entry, not from the vendor
	return step
}

// dropOutcome forgets an outcome in hand and its events.
func (d *delivery) dropOutcome() {
	kept := d.out.pending[:0]
	for _, ev := range d.out.pending {
		if !isOutcomeEvent(ev.Event) && ev.Event != messages.EventDeadLetter {
			kept = append(kept, ev)
		}
	}
	d.out.pending, d.mem.outcome, d.mem.deadReason, d.mem.derived = kept, nil, "", false
}

// conflict: another replica recorded a different definite outcome (it
// took this one's entry for a dead one's). Its outcome stands and is
// published; ours goes into a conflict event for the operator.
func (d *delivery) conflict() step {
	if !d.out.eventDone {
		ours := d.mem.outcome
		ev := messages.AuditEvent{Event: messages.EventConflict, Status: ours.Status, Attempt: ours.Attempts, UpstreamRequestID: ours.UpstreamRequestID,
			Message: "this replica's outcome differs from the one recorded by another replica (" + string(d.ledger.entry.Result.Status) + "); the recorded one stands"}
		if ours.Error != nil {
			ev.Class, ev.Code = ours.Error.Class, ours.Error.Code
		}
		return step{kind: stepEvent, event: d.event(ev)}
	}
	return d.letOtherStand()
}

// letOtherStand publishes the outcome the ledger records in place of ours:
// our attempts happened and stay in the trail; our outcome did not become
// the record.
func (d *delivery) letOtherStand() step {
	d.dropOutcome()
	d.out.otherOutcomeStands = true
	res := d.ledger.entry.Result
	return d.finish(res, deadLetterOf(res).reason)
}

// finish publishes a recorded outcome and settles.
func (d *delivery) finish(res *messages.Result, deadReason string) step {
	if s, ok := d.besideFirst(); ok {
		return s
	}
	switch {
	case deadReason != "" && !d.out.deadDone:
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: deadReason, class: res.Error.Class, key: scoped(res.Tenant, res.RequestID) + ":" + stamp(res.CompletedAt)}}
	case d.out.emitted < len(d.ledger.entry.Trail) || !d.out.resultDone:
		// The events and the result go out together.
		s := d.emit()
		if !d.out.resultDone {
			s.result = res
		}
		return s
	}
	if !d.call.filesRemoved && keepsNoFiles(res) && d.msg.req != nil && d.msg.req.HasFileRefs() {
		return step{kind: stepRemoveFiles}
	}
	return d.settleFor(res, false)
}

// emit publishes the events of the ledger's trail not known published.
func (d *delivery) emit() step {
	var t []messages.AuditEvent
	if e := d.ledger.entry; e != nil && d.out.emitted < len(e.Trail) {
		t = e.Trail[d.out.emitted:]
	}
	return step{kind: stepEmit, events: t}
}

// besideFirst publishes the events of ours that a done entry's trail
// lacks (our attempts, where another replica's outcome stands): a done
// entry takes no more, so they go out beside it, without a position in it.
func (d *delivery) besideFirst() (step, bool) {
	d.dropRecorded()
	for _, ev := range d.out.pending {
		ev.Seq = 0
		d.out.beside = append(d.out.beside, ev)
	}
	d.out.pending = nil
	if len(d.out.beside) > 0 {
		return step{kind: stepEvent, event: d.out.beside[0]}, true
	}
	return step{}, false
}

// eventsDue reports whether this delivery's events must be recorded or go
// out before what follows. An event goes out only once the ledger's trail
// holds it, at the position the trail gives it: a replica that takes over
// after this one dies goes on after it, never over it.
func (d *delivery) eventsDue() bool {
	return !d.out.emitFailed && (len(d.out.pending) > 0 && d.holds() || d.out.emitted < len(d.ledger.entry.Trail))
}

// recordEvents writes the events into the trail with a renewal of the
// entry held, then publishes them.
func (d *delivery) recordEvents() step {
	if len(d.out.pending) > 0 && d.holds() {
		return d.renew()
	}
	return d.emit()
}

// rejected answers a request that failed validation. A rejection is
// decided by the message alone: every delivery of it gets the same
// verdict, stored once (keyed by the stream timestamp).
func (d *delivery) rejected() step {
	res := d.rejection("InvalidRequest", "the request breaks the rules listed in fields")
	if ve := asValidation(d.msg.invalid); ve != nil {
		res.Error.Fields = boundFields(ve.Fields)
	}
	return d.answerWithoutCall(res)
}

// notPermitted answers a request for an account its tenant does not own:
// never sent, whatever its id's ledger entry says.
func (d *delivery) notPermitted() step {
	whose := "the default tenant's"
	if d.msg.tenant != "" {
		whose = "tenant " + strconv.Quote(d.msg.tenant) + "'s"
	}
	res := d.rejection("AccountNotPermitted", "account "+strconv.Quote(messages.Truncate(d.msg.req.AccountOrDefault(), messages.MaxAccountLen))+
		" is not one of "+whose+" accounts: a request is filed only with the accounts of the tenant whose subject it came on")
	res.Error.Fields = []messages.FieldError{{Field: "account", Problem: "not one of " + whose + " accounts"}}
	return d.answerWithoutCall(res)
}

// reused answers a request whose id was first used for another request.
func (d *delivery) reused() step {
	return d.answerWithoutCall(d.rejection("IdReused", fmt.Sprintf(
		"id %q was first used for another request (%s, other account or payload); give each request its own id", d.msg.req.ID, d.ledger.entry.API)))
}

// resubmitted takes a changed request under the id of one that ended with
// nothing filed (rejected, or failed with a definite "no"): the entry
// starts over for it, and its outcome will supersede the earlier one.
func (d *delivery) resubmitted() step {
	e, was := *d.ledger.entry, d.ledger.entry.Result
	e.State, e.Owner, e.Nonce, e.Result, e.Seq, e.UpdatedAt = ledger.StateClaimed, d.rules.owner, "", nil, 0, d.now
	e.API, e.Fingerprint, e.Supersedes = d.msg.req.API, d.msg.fingerprint, was.CompletedAt
	e.Attempts, e.Held, e.Refiled, e.Baseline, e.BaselineKnown = 0, 0, 0, nil, false
	if !d.out.resubmitted {
		d.out.resubmitted = true
		d.out.pending = append(d.out.pending, d.event(messages.AuditEvent{Event: messages.EventReceived, Message: fmt.Sprintf(
			"resubmitted: a changed request under the id of one that ended %s at %s with nothing filed; its outcome supersedes that one",
			was.Status, was.CompletedAt.Format(time.RFC3339Nano))}))
	}
	return d.write(e)
}

// filedNothing reports whether an outcome says that nothing was filed:
// rejected, or failed with a definite "no" (not ambiguous, not a bug).
func filedNothing(res *messages.Result) bool {
	switch {
	case res == nil:
		return false
	case res.Status == messages.StatusRejected:
		return true
	}
	// An operator's decision is no definite "no" from the vendor.
	return res.Status == messages.StatusFailed && res.Error != nil && res.Error.Class != messages.ClassAmbiguous && res.Error.Code != "InternalError" && res.Resolution == nil
}

// answerWithoutCall publishes a rejection decided by the message alone,
// then terminates.
func (d *delivery) answerWithoutCall(res *messages.Result) step {
	if !d.out.resultDone {
		return step{kind: stepResult, result: res}
	}
	if !d.out.eventDone {
		ev := messages.AuditEvent{Event: messages.EventRejected, Status: res.Status, Time: res.CompletedAt, Class: res.Error.Class, Code: res.Error.Code, Message: res.Error.Message}
		return step{kind: stepEvent, event: d.event(ev)}
	}
	return d.settle(settleRejected, 0)
}

// undecodable dead-letters a message that is not a JSON object at all.
func (d *delivery) undecodable() step {
	if !d.out.deadDone {
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: messages.Truncate(d.msg.undecodable.Error(), 200), class: messages.ClassInvalid, key: "seq:" + fmt.Sprint(d.msg.seq)}}
	}
	if !d.out.eventDone {
		return step{kind: stepEvent, event: d.event(messages.AuditEvent{Event: messages.EventUndecodable, Time: d.msg.receivedAt, Message: messages.Truncate(d.msg.undecodable.Error(), 200)})}
	}
	return d.settle(settleUndecodable, 0)
}

// afterPanic dead-letters a message whose handling panicked (a bug), with
// a failed result when it was a request, and terminates it. A call may
// have reached the vendor: then the result is ambiguous.
func (d *delivery) afterPanic() step {
	reason := "internal error: " + d.panicked
	class := messages.ClassPermanent
	if d.mem.dispatched && !d.mem.answered {
		class = messages.ClassAmbiguous
	}
	if d.panics == 1 && d.msg.req != nil && d.msg.fingerprint != "" && d.ledger.entry != nil && !d.ledger.missing {
		// A request with a ledger entry: its outcome is recorded and
		// published like any other (a second panic takes the way below).
		d.panicked = ""
		switch {
		case d.ledger.recorded:
			return d.finish(d.mem.outcome, d.mem.deadReason)
		case d.mem.outcome != nil && !d.mem.derived:
			return d.settle(settlePanicWithOutcomeHeld, d.rules.policy.RedeliveryDelay(d.msg.deliveries, false))
		}
		d.dropOutcome()
		res := d.result(messages.StatusFailed, &messages.ResultError{Code: "InternalError", Class: class, Message: reason})
		event := messages.EventFailed
		if class == messages.ClassAmbiguous {
			event = messages.EventAmbiguous
		}
		return d.decided(res, event, reason)
	}
	switch {
	case !d.out.deadDone:
		return step{kind: stepDeadLetter, dead: deadLetterSpec{reason: reason, class: class, key: "seq:" + fmt.Sprint(d.msg.seq)}}
	case d.msg.req != nil && d.msg.req.ID != "" && !d.out.resultDone:
		res := d.rejection("InternalError", reason)
		res.Status, res.Error.Class, res.Error.Fields = messages.StatusFailed, class, nil
		return step{kind: stepResult, result: res}
	case !d.out.eventDone:
		return step{kind: stepEvent, event: d.event(messages.AuditEvent{Event: messages.EventDeadLetter, Time: d.msg.receivedAt, Class: class, Message: reason})}
	}
	return d.settle(settlePanic, 0)
}

// event fills in what every audit event of this delivery carries.
func (d *delivery) event(ev messages.AuditEvent) messages.AuditEvent {
	if ev.Time.IsZero() {
		ev.Time = d.now
	}
	ev.Delivery = d.msg.deliveries
	ev.API, ev.Tenant = d.msg.subjectAPI, d.msg.tenant
	if req := d.msg.req; req != nil {
		ev.RequestID = boundID(req.ID)
		if req.API.Valid() {
			ev.API = req.API
			ev.Account = req.AccountOrDefault()
		}
	}
	// Its identity: the same event decided again (after a failed publish)
	// or taken from the ledger or the replica's memory is the same event;
	// k tells apart events of one kind, attempt and delivery, and the
	// message's stream time a stream recreated with its sequences anew.
	k := 0
	for _, t := range d.trail() {
		if t.Event == ev.Event && t.Attempt == ev.Attempt && t.Delivery == ev.Delivery {
			k++
		}
	}
	ev.ID = fmt.Sprintf("%s/%d/%s/%d/%s/%d/%d", d.rules.owner, d.msg.seq, stamp(d.msg.receivedAt), d.msg.deliveries, ev.Event, ev.Attempt, k)
	return ev
}

// attemptEvent is the audit event of one upstream call.
func (d *delivery) attemptEvent(took time.Duration) messages.AuditEvent {
	code, msg, class := describe(d.call.err)
	return d.event(messages.AuditEvent{
		Event: messages.EventAttempt, Attempt: d.ledger.entry.Attempts, Class: string(class), Code: code, Message: messages.Truncate(msg, 1024),
		UpstreamRequestID: d.call.out.UpstreamRequestID, DurationMS: float64(took.Microseconds()) / 1000,
	})
}

// outcomeEvents are the events that record a final outcome: the dead
// letter, when there is one, and the outcome itself.
func (d *delivery) outcomeEvents(res *messages.Result, event, deadReason string) []messages.AuditEvent {
	var evs []messages.AuditEvent
	if deadReason != "" {
		evs = append(evs, d.event(messages.AuditEvent{Event: messages.EventDeadLetter, Class: res.Error.Class, Message: deadReason}))
	}
	ev := messages.AuditEvent{Event: event, Status: res.Status, Attempt: res.Attempts, UpstreamRequestID: res.UpstreamRequestID}
	if res.Error != nil {
		ev.Class, ev.Code, ev.Message = res.Error.Class, res.Error.Code, res.Error.Message
	}
	return append(evs, d.event(ev))
}

// noteOutcome adds why to the message of the outcome event just decided.
func (d *delivery) noteOutcome(why string) {
	for i := len(d.out.pending) - 1; i >= 0; i-- {
		if ev := &d.out.pending[i]; isOutcomeEvent(ev.Event) {
			ev.Message = strings.TrimPrefix(ev.Message+"; ", "; ") + why
			return
		}
	}
}

// isOutcomeEvent reports whether an event records a final outcome.
func isOutcomeEvent(event string) bool {
	switch event {
	case messages.EventSucceeded, messages.EventRejected, messages.EventFailed, messages.EventAmbiguous, messages.EventSettled, messages.EventReconciled:
		return true
	}
	return false
}

// result is the final result of a valid request.
func (d *delivery) result(status messages.Status, rerr *messages.ResultError) *messages.Result {
	req, e := d.msg.req, d.ledger.entry
	return &messages.Result{
		RequestID: req.ID, Tenant: d.msg.tenant, API: req.API, Account: req.AccountOrDefault(), Status: status,
		Attempts: e.Attempts, Error: rerr, ReceivedAt: d.msg.receivedAt, CompletedAt: d.now, Metadata: req.Metadata,
		Refiled: e.Refiled > 0,
	}
}

// resultError is the error of a result that the last call's answer decided.
func (d *delivery) resultError(class retry.Class) *messages.ResultError {
	code, msg, _ := describe(d.call.err)
	return &messages.ResultError{Code: code, Message: messages.Truncate(msg, 1024), Class: resultClass(class)}
}

// rejection is the result of a request decided by the message alone.
func (d *delivery) rejection(code, message string) *messages.Result {
	req := d.msg.req
	res := &messages.Result{
		RequestID: boundID(req.ID), Tenant: d.msg.tenant, API: req.API, Account: messages.Truncate(req.AccountOrDefault(), messages.MaxAccountLen),
		Status: messages.StatusRejected, ReceivedAt: d.msg.receivedAt, CompletedAt: d.msg.receivedAt,
		Error: &messages.ResultError{Code: code, Message: message, Class: messages.ClassInvalid},
	}
	if !req.API.Valid() {
		res.API = d.msg.subjectAPI
	}
	if d.msg.invalid == nil {
		res.Metadata = req.Metadata // valid, hence bounded
	}
	// Something to correlate by when the id cannot serve.
	res.StreamSeq = d.msg.seq
	if id := req.ID; id != "" && (id != res.RequestID || hasProblem(d.msg.invalid, "id")) {
		sum := sha256.Sum256([]byte(id))
		res.RequestIDSHA256 = hex.EncodeToString(sum[:])
	}
	return res
}

// isAmbiguous reports whether res records that nobody knows the outcome.
func isAmbiguous(res *messages.Result) bool {
	return res != nil && res.Error != nil && res.Error.Class == messages.ClassAmbiguous
}

// keepsNoFiles reports whether an outcome is final for good, so that the
// request's files in the object store can go: a success or a rejection.
// A failure that is dead-lettered (ambiguous, retries exhausted) may be
// replayed, which needs them; they expire with the bucket's max age.
func keepsNoFiles(res *messages.Result) bool {
	return res.Status == messages.StatusSucceeded
}

// maxFields bounds the problems a rejected result lists, so that the
// result of a huge request still fits in a message.
const maxFields = 200

// boundFields keeps at most maxFields problems, saying how many were left
// out.
func boundFields(fs []messages.FieldError) []messages.FieldError {
	if len(fs) <= maxFields {
		return fs
	}
	return append(fs[:maxFields:maxFields], messages.FieldError{Field: "payload",
		Problem: "and " + strconv.Itoa(len(fs)-maxFields) + " more problems not listed"})
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

func asValidation(err error) *messages.ValidationError {
	var ve *messages.ValidationError
	if errors.As(err, &ve) {
		return ve
	}
	return nil
}

// boundID shortens an over-long (hence invalid) id so that what carries it
// still fits in a message.
func boundID(id string) string { return messages.Truncate(id, messages.MaxIDLen) }

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
