package filing

import (
	"errors"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The state of the decision core: the steps it asks for, its fixed rules,
// and what is known about one delivery. Plain data; decide.go reads it.

// stepKind names what the runner does next.
type stepKind int

const (
	stepWaitLocal   stepKind = iota + 1 // wait for this replica's other handler of the id
	stepClaim                           // ledger: create the entry, or read the existing one
	stepRead                            // ledger: read the entry again
	stepWrite                           // ledger: store step.entry in place of known.entry
	stepCall                            // one upstream attempt
	stepSleep                           // wait step.delay (backoff)
	stepEmit                            // publish the trail's unpublished audit events (and step.result, if any)
	stepEvent                           // publish step.event (not part of the trail)
	stepDeadLetter                      // publish the dead letter
	stepResult                          // store step.result and send it to reply_to
	stepReconcile                       // read the vendor's records for a create whose answer was lost
	stepFiles                           // fetch and check the request's files held in the object store
	stepRemoveFiles                     // remove them once the outcome is final
	stepBaseline                        // list the vendor\'s records that match an SMS create before its first call
	stepSettle                          // ack, nak with delay, or term; the last step
)

var stepNames = map[stepKind]string{
	stepWaitLocal: "wait-local", stepClaim: "ledger claim", stepRead: "ledger read", stepWrite: "ledger write",
	stepCall: "call", stepSleep: "sleep", stepEmit: "audit", stepEvent: "audit", stepDeadLetter: "dead letter",
	stepResult: "result", stepSettle: "settle", stepReconcile: "reconcile",
	stepFiles: "files", stepRemoveFiles: "remove files", stepBaseline: "baseline",
}

func (s stepKind) String() string { return stepNames[s] }

// step is one thing for the runner to do.
type step struct {
	kind   stepKind
	entry  ledger.Entry        // stepClaim (the new entry), stepWrite (the entry to store)
	delay  time.Duration       // stepSleep; stepSettle with ActionNakWithDelay
	event  messages.AuditEvent // stepEvent
	result *messages.Result    // stepResult; stepEmit, published after the events
	dead   deadLetterSpec      // stepDeadLetter
	action retry.Action        // stepSettle
	reason string              // stepSettle, in a few words
}

// deadLetterSpec says what a dead letter records.
type deadLetterSpec struct {
	reason, class string
	key           string // identifies the outcome, so that a copy is stored once
}

// limits are the fixed rules of the decisions.
type limits struct {
	maxDeliver    int           // a retryable failure on this delivery is dead-lettered
	hardLimit     int           // past it, nothing is handed back but for broker trouble
	lease         time.Duration // how long another replica's "calling" is taken to be live
	recordBudget  time.Duration // how long knowledge that would be lost is kept trying
	troubleBudget time.Duration // how long other broker trouble is retried in process
	policy        retry.Policy
	owner         string
	redactResults bool // the vendor's answer is redacted in results
	reconcile     reconcileRules
}

// reconcileRules say how a create whose answer was lost is settled by
// reading the vendor's records.
type reconcileRules struct {
	on            bool
	window        time.Duration // the settling window: reads are spread over it
	reads         int           // answered reads in the window, the last at its end
	skew          time.Duration // a record this much older than the claim still counts
	keepAmbiguous bool          // absent after the window: ambiguous, for an operator (not filed again)
}

// slot is when read i (0-based) of a reconciliation that began at start
// is due: spread evenly, the last at the end of the window.
func (r reconcileRules) slot(start time.Time, i int) time.Time {
	if r.reads <= 1 {
		return start.Add(r.window)
	}
	return start.Add(r.window * time.Duration(i) / time.Duration(r.reads-1))
}

// reconciliation is the progress of reading back a create whose answer
// was lost.
type reconciliation struct {
	active   bool
	why      string // how the answer was lost
	nonce    string // the nonce of the lost call; the entry must still name it
	start    time.Time
	next     time.Time        // when the next read is due
	reads    int              // reads answered
	lastRead time.Time        // when the last answered read was made
	finding  dispatch.Finding // its answer
	failures int              // reads failed since the last answered one
	failed   int              // reads failed in all
	lastErr  error
	gaveUp   bool // a read failed in a way that another cannot mend
	refile   bool // decided: file it again (the write may still be due)
}

// counted is the deliveries that count toward the dead-letter limit: not
// those handed back because qualfile held the call back.
func (k *known) counted() int {
	if k.entry == nil {
		return k.delivery
	}
	return max(1, k.delivery-k.entry.Held)
}

// heldDelay is how long a held call's request should wait.
func heldDelay(err error) time.Duration {
	var h interface{ HeldFor() time.Duration }
	if errors.As(err, &h) {
		return h.HeldFor()
	}
	return time.Second
}

// claimedAt is when the request was first claimed, as well as it is known.
func (k *known) claimedAt() time.Time {
	switch {
	case !k.entry.ClaimedAt.IsZero():
		return k.entry.ClaimedAt
	case len(k.entry.Trail) > 0 && !k.entry.Trail[0].Time.IsZero():
		return k.entry.Trail[0].Time // an entry written before claimed_at was kept
	}
	return k.receivedAt
}

// noteRead takes in the answer to one read made at now.
func (k *known) noteRead(f dispatch.Finding, err error, now time.Time) {
	r, rules := &k.recon, k.lim.reconcile
	if err != nil {
		r.failures++
		r.failed++
		r.lastErr = err
		class := retry.ClassOf(err)
		if class == retry.ClassHeld {
			// This replica held the read back (the rate limit): not an
			// answer, and not a failure of the vendor.
			r.next = now.Add(min(heldDelay(err), time.Second))
			return
		}
		if !class.Retryable() {
			r.gaveUp = true
			return
		}
		r.next = now.Add(k.lim.policy.Backoff(r.failures, class))
		return
	}
	r.reads++
	r.failures, r.lastRead, r.finding = 0, now, f
	r.next = rules.slot(r.start, r.reads)
}

// recollection is what this replica knows of a request beyond the ledger.
// It outlives a delivery when it holds something the ledger does not.
type recollection struct {
	nonce       string           // the last "calling" nonce this replica wrote
	dispatched  bool             // a call was sent under nonce
	answered    bool             // that call got a definite answer
	outcome     *messages.Result // a final outcome not yet in the ledger
	deadReason  string
	derived     bool   // the outcome was concluded from the ledger, not told by the vendor
	fingerprint string // of the request this is about
}

// keep reports whether this replica must remember the request after the
// delivery: the ledger may lack what it knows (an outcome not recorded, a
// "calling" nonce the ledger still names or may name).
func (k *known) keep() bool {
	if k.mem.outcome != nil {
		return !k.recorded && !k.mem.derived
	}
	if k.mem.nonce == "" {
		return false
	}
	e := k.entry
	if e == nil {
		// Not read yet: the nonce was remembered from an earlier delivery,
		// or this one's claim under it may have landed.
		return !k.fresh || k.uncertain
	}
	return k.uncertain || e.Nonce == k.mem.nonce
}

// known is everything known about one delivery.
type known struct {
	lim limits
	now time.Time

	// The message.
	delivery    int
	seq         uint64
	receivedAt  time.Time
	subjectAPI  messages.API // "" unless a known api
	req         *messages.Request
	parseErr    error // not a JSON object: undecodable
	invalid     error // failed validation
	fingerprint string
	stopping    bool   // the shutdown grace period is over
	panicked    string // a step panicked
	panics      int    // how many times

	// This replica.
	busy bool         // another handler of this replica holds the id
	mem  recollection // kept in step with the replica's memory by the runner

	// The ledger.
	entry     *ledger.Entry // nil until read
	created   bool          // this delivery created it
	missing   bool          // read, and there is none
	stale     bool          // a write lost a compare-and-set: read again
	conflicts int           // compare-and-sets lost in a row
	uncertain bool          // a write failed: it may have landed
	fresh     bool          // mem.nonce was chosen by this delivery's claim
	tried     *ledger.Entry // that write

	// This delivery's progress.
	pending       []messages.AuditEvent // new events not yet in the ledger's trail
	emitted       int                   // how many of trail() are known published
	callDue       bool                  // the entry is "calling" under mem.nonce: call
	attempts      int                   // calls made by this delivery
	callStart     time.Time
	lastErr       error
	lastClass     retry.Class
	lastOut       dispatch.Outcome
	cutShort      bool // the last call was cut short by shutdown
	emitFailed    bool // events could not go out; they go out later
	settling      bool // the outcome in hand settles an ambiguous one
	yielded       bool // another replica's different outcome stands
	deferred      bool // handed back to wait in the broker
	deferDelay    time.Duration
	deferReason   string
	recon         reconciliation
	baselineDone  bool     // the baseline read was made (or tried)
	baseline      []string // its records, when baselineKnown
	baselineKnown bool
	held          error // the last call was held back before it was sent (retry.ErrHeld)
	heldFor       time.Duration
	heldNoted     bool  // its deferred event is in pending
	filesDone     bool  // the request's referenced files are fetched and checked
	filesErr      error // one of them cannot be used (a *messages.ValidationError)
	filesRemoved  bool  // they were removed (or that was tried)
	refiling      bool  // the next move to "calling" files the request again
	recorded      bool  // the outcome (mem.outcome) is in the ledger
	deadDone      bool
	resultDone    bool
	eventDone     bool

	// Trouble with the broker.
	failed       stepKind // the last step failed (0: it did not)
	failErr      error
	failures     int
	troubleSince time.Time
}

// trail is the request's audit events: the ledger's and this delivery's.
func (k *known) trail() []messages.AuditEvent {
	if k.entry == nil || len(k.pending) == 0 {
		if k.entry == nil {
			return k.pending
		}
		return k.entry.Trail
	}
	return append(append([]messages.AuditEvent(nil), k.entry.Trail...), k.pending...)
}
