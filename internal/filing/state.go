package filing

import (
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The state of the decision core: what it knows of one delivery, grouped
// by what it describes, and apply, the one function through which the
// runner's answers change it. decide (decide.go) reads it and notes its
// own decisions in it (an outcome taken in hand, a nonce chosen); nothing
// outside the core writes it (layers_test.go checks that).

// delivery is everything the core knows of one delivery of a message.
type delivery struct {
	rules    limits
	now      time.Time     // the wall clock, for what is written (UTC)
	clock    time.Duration // this process's monotonic clock since the delivery began, for what is measured
	epoch    time.Time     // when the delivery began, with its monotonic reading
	stopping bool          // the shutdown grace period is over: nothing more is sent
	panicked string        // a step panicked (a bug): what it said
	panics   int           // how many times

	msg     message
	idTaken bool       // this handler holds the id in this replica's memory
	idBusy  bool       // another handler of this replica held it until the grace period ended
	mem     remembered // what this replica remembers of the request; the runner keeps it when the delivery ends
	ledger  ledgerView
	lease   leaseState
	call    callState
	recon   reconciliation
	out     emission
	trouble brokerTrouble
}

// message is what the message says about itself.
type message struct {
	deliveries   int          // deliveries of it, this one included
	seq          uint64       // its stream sequence
	receivedAt   time.Time    // its stream timestamp
	subjectAPI   messages.API // the api its subject names; "" unless a known one
	tenant       string       // the tenant its subject names; "" for the default tenant
	req          *messages.Request
	undecodable  error // not a JSON object
	invalid      error // the request fails validation
	notPermitted bool  // its account is not one of its tenant's
	fingerprint  string
}

// remembered is what this replica knows of a request beyond the ledger.
// It outlives a delivery when it holds something the ledger does not.
type remembered struct {
	nonce       string                // the last "calling" nonce this replica wrote
	dispatched  bool                  // a call was sent under nonce
	answered    bool                  // that call got a definite answer
	outcome     *messages.Result      // the outcome in hand: final, perhaps not yet in the ledger
	pending     []messages.AuditEvent // the events that go with it, not yet in the ledger's trail
	deadReason  string                // why that outcome is dead-lettered ("" when it is not)
	derived     bool                  // the outcome was concluded from the ledger, not told by the vendor
	fingerprint string                // of the request this is about
}

// ledgerView is the request's ledger entry as this delivery last saw it.
type ledgerView struct {
	entry     *ledger.Entry // nil until read
	missing   bool          // read, and there is none
	stale     bool          // a write lost a compare-and-set: read again
	conflicts int           // compare-and-sets lost in a row
	uncertain bool          // a claim or write failed: it may have landed
	tried     *ledger.Entry // the write that failed but may have landed
	recorded  bool          // the entry holds the outcome in hand
}

// callState is this delivery's calls, and what comes before them.
type callState struct {
	due       bool             // the entry is "calling" under mem.nonce: call
	attempts  int              // calls made by this delivery
	start     time.Duration    // on delivery.clock
	out       dispatch.Outcome // the last call's answer
	err       error
	class     retry.Class
	cutShort  bool  // the last call was cut short by shutdown: it may have reached the vendor
	cutOff    bool  // the last call was cut off by the fence (lease.go): it may have reached the vendor
	held      error // the last call was held back before it was sent (retry.ErrHeld)
	heldNoted bool  // its deferred event is pending
	refiling  bool  // the next move to "calling" files the request again

	deferred   bool // handed back to wait in the broker, not in memory
	deferDelay time.Duration
	deferAs    settlement

	filesDone     bool  // the request's files in the object store are fetched and checked
	filesErr      error // one of them cannot be used (a *messages.ValidationError)
	filesRemoved  bool  // they were removed (or that was tried)
	baselineDone  bool  // the baseline read was made (or tried)
	baseline      []string
	baselineKnown bool
}

// emission is what goes out: the trail's events, the result, the dead
// letter, and the outcome they say.
type emission struct {
	pending            []messages.AuditEvent // new events not yet in the ledger's trail
	emitted            int                   // how many of trail() are known published
	beside             []messages.AuditEvent // events to publish outside the trail (letOtherStand)
	emitFailed         bool                  // events could not go out before a write; they go out later
	settling           bool                  // the outcome in hand settles an ambiguous one
	otherOutcomeStands bool                  // another replica's different outcome is the record
	resubmitted        bool                  // the received event of a resubmission is in pending
	resultDone         bool
	eventDone          bool
	deadDone           bool
}

// brokerTrouble is the broker steps failed in a row.
type brokerTrouble struct {
	failed   stepKind // the last step failed, and nothing was decided about it yet
	failures int
	since    time.Duration // when the first of them began (delivery.clock)
}

// limits are the fixed rules of the decisions.
type limits struct {
	maxDeliver    int           // a retryable failure on this delivery is dead-lettered
	lease         time.Duration // how long another replica's "calling" entry must keep one revision to be taken for dead (lease.go)
	recordBudget  time.Duration // how long knowledge that would be lost is kept trying
	troubleBudget time.Duration // how long other broker trouble is retried in process
	policy        retry.Policy
	owner         string
	redactResults bool              // the vendor's answer is redacted in results
	replyTo       []string          // the prefixes a reply_to of the default tenant's requests may start with
	tenantInbox   string            // a tenant's: under <tenantInbox>.<tenant>
	tenants       map[string]string // the tenant of each configured account
	knownTenants  map[string]bool   // the tenants the accounts name
	reconcile     reconcileRules
}

// unread is a delivery of which nothing is known yet.
func unread(rules limits, now time.Time) *delivery {
	return &delivery{rules: rules, now: now.UTC(), epoch: now, msg: message{deliveries: 1, receivedAt: now.UTC()}}
}

// newDelivery reads what a message says about itself: its data, the
// tenant (valid) and the api (unchecked) its subject names, and the
// broker's metadata (nil: unknown).
func newDelivery(rules limits, now time.Time, data []byte, tenant string, subjectAPI messages.API, md *jetstream.MsgMetadata) *delivery {
	d := unread(rules, now)
	if tenant != "" && !rules.knownTenants[tenant] {
		// Not a tenant of this deployment: the default tenant's request
		// for an api that does not exist.
		subjectAPI, tenant = messages.API(tenant+"."+string(subjectAPI)), ""
	}
	d.msg.tenant = tenant
	if subjectAPI.Valid() {
		d.msg.subjectAPI = subjectAPI // an unknown one never becomes a label, a field or a subject
	}
	if md != nil {
		d.msg.seq, d.msg.deliveries = md.Sequence.Stream, int(md.NumDelivered)
		if !md.Timestamp.IsZero() {
			d.msg.receivedAt = md.Timestamp.UTC()
		}
	}
	req, err := messages.ParseRequest(data)
	if err != nil {
		d.msg.undecodable = err
		return d
	}
	d.msg.req = req
	if err := req.ValidateFor(subjectAPI, rules.replyToOf(tenant)...); err != nil {
		d.msg.invalid = err
		if ve := asValidation(err); ve == nil || slices.ContainsFunc(ve.Fields, func(f messages.FieldError) bool { return f.Field == "reply_to" }) {
			req.ReplyTo = "" // nothing is sent to a subject not allowed
		}
		return d
	}
	d.msg.fingerprint = req.Fingerprint()
	d.msg.notPermitted = !messages.AccountPermitted(rules.tenants, tenant, req.AccountOrDefault())
	return d
}

// idKey names the request in this replica's memory: its tenant's id.
func (m *message) idKey() string { return m.tenant + "/" + m.req.ID }

// replyToOf are the prefixes a reply_to of tenant's requests may start
// with: its own inbox (roles.TenantInbox), or the configured ones for the
// default tenant.
func (l limits) replyToOf(tenant string) []string {
	if tenant == "" {
		return l.replyTo
	}
	return []string{l.tenantInbox + "." + tenant}
}

// apply takes in the runner's answer to the last step (nil before the
// first), with the time (with its monotonic reading, when the clock has
// one) and whether the grace period is over, as the runner saw them when
// the answer came.
func (d *delivery) apply(now time.Time, stopping bool, a answer) {
	began := d.clock // when the step began: the core decided it then
	d.now, d.clock, d.stopping = now.UTC(), now.Sub(d.epoch), stopping
	// A write known only later to have landed (its reply was lost) may have
	// landed long ago: it renews nothing, so a hold must be renewed anew.
	landedEarlier := d.ledger.uncertain
	if f, ok := a.(found); ok {
		if t := d.ledger.tried; t != nil && t.State == f.entry.State && t.Owner == f.entry.Owner && t.UpdatedAt.Equal(f.entry.UpdatedAt) && t.Nonce == f.entry.Nonce {
			a = written(f) // our own write, which timed out but landed: it succeeded
		}
	}
	switch a := a.(type) {
	case nil, slept:
		return
	case idTaken:
		d.idTaken, d.idBusy = true, false
		if a.mem.fingerprint == "" || a.mem.fingerprint == d.msg.fingerprint {
			d.mem = a.mem // what is remembered is about this very request
			d.out.pending, d.mem.pending = a.mem.pending, nil
		}
		return
	case idBusy:
		d.idBusy = true
		return
	case panicked:
		d.panicked = a.why
		d.panics++
		return
	case conflicted:
		// It did not land; an earlier write whose reply was lost still may
		// have, and stays the one to look for (tried), so that this replica
		// does not forget a nonce the ledger may name.
		d.ledger.stale = true
		d.ledger.conflicts++
		return
	case failed:
		d.brokerFailed(a, began)
		return
	case claimed:
		d.see(a.entry)
		d.out.emitted = eventsOut(a.entry, d.msg.seq)
		d.dropRecorded()
	case found:
		d.see(a.entry)
		d.out.emitted = eventsOut(a.entry, d.msg.seq) // this delivery's events go out only once recorded
		d.dropRecorded()
	case notFound:
		d.ledger.entry, d.ledger.missing, d.ledger.stale = &ledger.Entry{RequestID: d.msg.req.ID, Tenant: d.msg.tenant}, true, false
	case written:
		d.see(a.entry)
		d.out.pending, d.ledger.tried, d.ledger.conflicts = nil, nil, 0
		if !landedEarlier {
			d.noteWrite(began)
		}
	case renewed:
		d.see(a.entry)
		d.lease.renewed, d.lease.renewedAt = true, a.at.Sub(d.epoch)
	case cutOff:
		// The hold lapsed: what the entry says now is read again. A call
		// cut short may have reached the vendor; the entry decides what
		// follows, as after a replica that stopped mid-call.
		// (A call cut short keeps its attempt: it may have reached the
		// vendor, and nothing may file the request again on its own.)
		d.ledger.stale, d.lease.renewed, d.call.due = true, false, false
		if a.call {
			d.call.cutOff = true
		}
		return
	case called:
		class := retry.ClassOf(a.err)
		d.call.attempts++
		d.ledger.entry.Attempts++
		d.call.out, d.call.err, d.call.class = a.out, a.err, class
		d.call.cutShort = a.err != nil && d.stopping && class != retry.ClassAmbiguous
		d.mem.answered = !d.call.cutShort && class != retry.ClassAmbiguous
		d.out.pending = append(d.out.pending, d.attemptEvent(a.took))
	case held:
		// Held back before it was sent: no attempt, nothing in flight.
		d.mem.dispatched = false
		d.call.held = a.err
	case recordsRead:
		d.noteRead(a.finding, a.err)
	case baselineRead:
		// A failed read leaves the baseline unknown: the create goes on,
		// and a lost answer then goes to an operator.
		d.call.baselineDone = true
		if a.err == nil {
			d.call.baseline, d.call.baselineKnown = make([]string, 0, len(a.finding.Records)), true
			for _, rec := range a.finding.Records {
				d.call.baseline = append(d.call.baseline, rec.ID)
			}
		}
	case filesFetched:
		switch {
		case a.noStore:
			d.call.filesErr = &messages.ValidationError{Fields: []messages.FieldError{{Field: "payload",
				Problem: "references files in an object store, and this consumer has none configured"}}}
		case a.unusable != nil:
			d.call.filesErr = a.unusable
		default:
			d.msg.req.FillFiles(a.contents)
			d.call.filesDone = true
		}
	case filesRemoved:
		d.call.filesRemoved = true
	case holderMsg:
		d.lease.holderGone = a.gone
	case published:
		d.out.emitted += a.events
		if a.result && d.out.emitted == len(d.trail()) {
			// The result counts only behind all of its events: else it is
			// published again after them.
			d.out.resultDone = true
		}
		if a.err != nil {
			d.brokerFailed(failed{op: stepEmit, err: a.err}, began)
			return
		}
	case eventSent:
		if len(d.out.beside) > 0 {
			d.out.beside = d.out.beside[1:]
			return
		}
		d.out.eventDone = true
	case resultSent:
		d.out.resultDone = true
	case deadLettered:
		d.out.deadDone = true
	default:
		panic(fmt.Sprintf("filing: an answer of type %T", a))
	}
	d.trouble = brokerTrouble{} // a broker step went through
}

// see takes in the entry the ledger holds. When it holds the outcome in
// hand, that outcome is recorded (an earlier write of ours landed).
func (d *delivery) see(e ledger.Entry) {
	d.ledger.entry, d.ledger.missing, d.ledger.stale, d.ledger.uncertain = &e, false, false, false
	if res := d.mem.outcome; res != nil && e.State == ledger.StateDone && e.Result != nil && e.Result.CompletedAt.Equal(res.CompletedAt) {
		d.ledger.recorded = true
	}
}

// brokerFailed takes in a broker step that failed; began is when.
func (d *delivery) brokerFailed(f failed, began time.Duration) {
	switch f.op {
	case stepClaim:
		d.ledger.uncertain = f.mayHaveLanded
	case stepWrite:
		// Recognised as ours if a read finds it landed after all (found).
		d.ledger.uncertain, d.ledger.tried = f.mayHaveLanded, f.tried
	}
	if d.trouble.failures == 0 {
		d.trouble.since = began
	}
	d.lease.watching = false // a watch counts only time the entry was seen unchanged, read after read
	d.trouble.failures++
	if f.op == stepEmit && !d.ledger.recorded && d.ledger.entry != nil && d.ledger.entry.State != ledger.StateDone && !d.beforeFirstCall() {
		// Events that could not go out before a write go out later (the
		// entry says which are missing); only received, before any call,
		// and the last ones, after the outcome is recorded, hold the
		// message.
		d.out.emitFailed = true
		return
	}
	d.trouble.failed = f.op
}

// dropRecorded forgets the pending events the entry's trail holds already:
// a write of ours that landed unrecognised (its reply was lost, and the
// entry moved on since) put them there.
func (d *delivery) dropRecorded() {
	d.out.pending = slices.DeleteFunc(d.out.pending, func(ev messages.AuditEvent) bool {
		return slices.ContainsFunc(d.ledger.entry.Trail, func(t messages.AuditEvent) bool { return t.ID == ev.ID })
	})
}

// beforeFirstCall reports whether no call was sent under this replica's
// nonce and the trail's received event is not known stored: none may go
// out before it is.
func (d *delivery) beforeFirstCall() bool {
	if d.mem.dispatched {
		return false
	}
	t := d.trail()
	for i := len(t) - 1; i >= 0; i-- {
		if t[i].Event == messages.EventReceived {
			return i >= d.out.emitted
		}
	}
	return false
}

// remember is what this replica must remember of the request after the
// delivery, and whether there is anything: what it knows, with the events
// not yet in the ledger's trail, so that a redelivery records them too.
func (d *delivery) remember() (remembered, bool) {
	rec := d.mem
	rec.pending = slices.Clone(d.out.pending)
	return rec, d.keep() || len(rec.pending) > 0 // events the ledger's trail lacks
}

// keep reports whether this replica must remember the request after the
// delivery: the ledger may lack what it knows (an outcome not recorded, a
// "calling" nonce the ledger still names or may name).
func (d *delivery) keep() bool {
	if d.mem.outcome != nil {
		return !d.ledger.recorded && !d.mem.derived
	}
	if d.mem.nonce == "" {
		return false
	}
	e := d.ledger.entry
	if e == nil {
		return true // not read yet: the nonce was remembered from an earlier delivery
	}
	return d.ledger.uncertain || e.Nonce == d.mem.nonce
}

// trail is the request's audit events: the ledger's and this delivery's.
// Each event of it says its position (seq, from 1): those of this
// delivery come after the ledger's, whatever the ledger holds by now.
func (d *delivery) trail() []messages.AuditEvent {
	var t []messages.AuditEvent
	if e := d.ledger.entry; e != nil {
		t = e.Trail
	}
	if len(d.out.pending) == 0 {
		return t
	}
	t = slices.Clip(t)
	for _, ev := range d.out.pending {
		ev.Seq = len(t) + 1
		t = append(t, ev)
	}
	return t
}
