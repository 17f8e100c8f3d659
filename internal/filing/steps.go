package filing

import (
	"slices"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// What the decision core and the runner say to each other, as etcd's raft
// does with Ready and Step: the core asks for a step; the runner performs
// it and answers with what happened, as a value classified where the reply
// was read; the core applies the answer (delivery.apply) and asks again.

// stepKind names what the runner does next.
type stepKind int

const (
	stepTakeID      stepKind = iota + 1 // take the id in this replica's memory, waiting while another handler holds it
	stepClaim                           // ledger: create the entry, or read the existing one
	stepRead                            // ledger: read the entry again
	stepWatch                           // wait step.delay, then read the entry again (another replica holds it)
	stepWrite                           // ledger: store step.entry in place of step.prev
	stepCall                            // one upstream attempt
	stepSleep                           // wait step.delay (backoff)
	stepEmit                            // publish step.events (and step.result, if any, after them)
	stepEvent                           // publish step.event (not part of the trail)
	stepDeadLetter                      // publish the dead letter
	stepResult                          // store step.result and send it to reply_to
	stepReconcile                       // read the vendor's records for a create whose answer was lost
	stepFiles                           // fetch and check the request's files held in the object store
	stepRemoveFiles                     // remove them once the outcome is final
	stepBaseline                        // list the vendor's records that match a create before its first call
	stepHolder                          // request stream: is the message whose delivery holds the entry still there
	stepSettle                          // ack, nak with delay, or term (settlement.go); the last step
)

var stepNames = map[stepKind]string{
	stepTakeID: "take id", stepClaim: "ledger claim", stepRead: "ledger read", stepWatch: "ledger watch", stepWrite: "ledger write",
	stepCall: "call", stepSleep: "sleep", stepEmit: "audit", stepEvent: "audit", stepDeadLetter: "dead letter",
	stepResult: "result", stepSettle: "settle", stepReconcile: "reconcile",
	stepFiles: "files", stepRemoveFiles: "remove files", stepBaseline: "baseline", stepHolder: "holder's message",
}

func (s stepKind) String() string { return stepNames[s] }

// step is one thing for the runner to do.
type step struct {
	kind   stepKind
	entry  ledger.Entry          // stepClaim (the new entry), stepWrite (the entry to store)
	prev   *ledger.Entry         // stepWrite: the entry it replaces by compare-and-set; nil: there is none
	events []messages.AuditEvent // stepEmit, in order
	result *messages.Result      // stepResult; stepEmit, published after the events
	event  messages.AuditEvent   // stepEvent
	dead   deadLetterSpec        // stepDeadLetter
	delay  time.Duration         // stepSleep, stepWatch; stepSettle when it hands the message back
	seq    uint64                // stepHolder: the request stream's sequence of that message
	settle settlement            // stepSettle
	hold   *holding              // a step that lasts while this replica holds the entry "calling"
}

// holding says how the runner keeps the entry "calling" while a step
// lasts (lease.go): it renews the entry every renew, and cuts the step
// short once its last renewal was issued longer than fence ago.
type holding struct {
	entry ledger.Entry
	renew time.Duration
	fence time.Duration
	left  time.Duration // what is left of the fence of the renewal before the step
}

// deadLetterSpec says what a dead letter records.
type deadLetterSpec struct {
	reason, class string
	key           string // identifies the outcome, so that a copy is stored once
}

// An answer is what the runner reports after a step: one of the types
// below. Errors are classified where they were read (which broker errors
// may have landed, which are bugs); the core matches no error itself.
type answer any

type (
	// This replica's memory.
	idTaken struct{ mem remembered } // this handler holds the id; what the replica remembers of it
	idBusy  struct{}                 // another handler held it until the grace period ended

	// The ledger.
	claimed    struct{ entry ledger.Entry } // the claim created the entry, or found this one
	found      struct{ entry ledger.Entry } // a read found the entry
	notFound   struct{}                     // a read found none
	written    struct{ entry ledger.Entry } // the write landed
	conflicted struct{ err error }          // the write lost a compare-and-set: it did not land

	// The vendor.
	called struct { // the call went out and came back
		out  dispatch.Outcome
		err  error
		took time.Duration
	}
	held        struct{ err error } // the guard held the call back: nothing was sent
	recordsRead struct {            // stepReconcile
		finding dispatch.Finding
		err     error
	}
	baselineRead recordsRead // stepBaseline

	// The request stream.
	holderMsg struct { // stepHolder
		gone bool  // the message is no longer in the stream: its deliveries are over
		err  error // the stream could not tell: the message may still be there
	}

	// The object store.
	filesFetched struct {
		contents map[string]string // the files, by the path of their field
		unusable error             // a file cannot be used (a *messages.ValidationError)
		noStore  bool              // there is no file store to fetch from
	}
	filesRemoved struct{} // or that was tried: the bucket's max age removes them anyway

	// The streams.
	published struct { // stepEmit
		events int   // the first events acked, up to the first that was not
		result bool  // the result was acked
		err    error // the first failure, if any
	}
	eventSent    struct{}
	resultSent   struct{}
	deadLettered struct{}

	// Any step.
	slept   struct{}
	renewed struct { // the runner renewed the entry held while a step lasted
		entry ledger.Entry
		at    time.Time // when the renewal was issued
	}
	cutOff struct { // a step was cut short: this replica's hold on the entry lapsed (lease.go)
		call bool // the step was a call: it may have reached the vendor
	}
	panicked struct { // a step panicked, or the ledger revealed a bug (a corrupt entry, a move it forbids)
		why string
		err error // the ledger's error, if that was it
	}
	failed struct { // a broker step failed
		op            stepKind
		err           error
		mayHaveLanded bool          // stepClaim, stepWrite: it may have taken effect all the same
		tried         *ledger.Entry // stepWrite: the entry it stored
	}
)

// detached is s with copies of what it carries from the core's state (the
// entries, the events, the result), so that nothing the runner does with
// a step reaches back into the state.
func (s step) detached() step {
	clone := func(e ledger.Entry) ledger.Entry {
		e.Trail = slices.Clone(e.Trail)
		if e.Result != nil {
			r := *e.Result
			e.Result = &r
		}
		return e
	}
	s.entry = clone(s.entry)
	if s.prev != nil {
		p := clone(*s.prev)
		s.prev = &p
	}
	if s.hold != nil {
		h := *s.hold
		h.entry = clone(h.entry)
		s.hold = &h
	}
	s.events = slices.Clone(s.events)
	if s.result != nil {
		r := *s.result
		s.result = &r
	}
	return s
}
