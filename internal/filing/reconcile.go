package filing

import (
	"fmt"
	"strings"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The decisions of reconciliation (part of the decision core, without
// I/O): a create whose answer was lost is settled by reading the vendor's
// records over a settling window (README, "Reconciliation").

// baselineFirst reports whether the request's calls must be preceded by a
// baseline: the SMS records that match it, listed before its first call.
// The SMS list has no creation time, so reconciliation can tell this
// filing from an earlier identical one only by what was listed before.
// Such a request is claimed plainly, the baseline read, and then the move
// to "calling" records it.
func (k *known) baselineFirst() bool {
	return k.lim.reconcile.on && k.req.API == messages.APISMSApplySignatureIdent
}

// lost decides about a call that may have reached the vendor and whose
// answer nobody holds: read the vendor's records where they can tell,
// else leave it to an operator.
func (k *known) lost(why string) step {
	if k.reconcilable() {
		return k.startReconcile(why)
	}
	return k.ambiguous(why)
}

// reconcilable reports whether a lost call of this request can be
// settled by reading the vendor's records: the api has such a read, it is
// turned on, and the entry is "calling" (the call's outcome is recorded
// nowhere).
func (k *known) reconcilable() bool {
	return k.lim.reconcile.on && k.req.API.Reconcilable() && k.entry != nil && k.entry.State == ledger.StateCalling
}

// startReconcile begins reading the vendor's records back.
func (k *known) startReconcile(why string) step {
	k.recon = reconciliation{active: true, why: why, nonce: k.entry.Nonce, start: k.now, next: k.lim.reconcile.slot(k.now, 0)}
	k.pending = append(k.pending, k.event(messages.AuditEvent{Event: messages.EventReconciling, Attempt: k.entry.Attempts,
		Message: why + fmt.Sprintf("; reading the vendor's records (%d reads over %s)", max(k.lim.reconcile.reads, 1), k.lim.reconcile.window)}))
	return k.reconcile()
}

// reconcile goes on reading the vendor's records until they tell (found,
// or more than one match), the reads are done (absent), or the window is
// over.
func (k *known) reconcile() step {
	r, rules := &k.recon, k.lim.reconcile
	switch {
	case r.refile:
		return k.refile()
	case k.stopping:
		return k.settle(retry.ActionNakWithDelay, k.lim.policy.RedeliveryDelay(1, false), "shutdown while reconciling")
	case r.gaveUp:
		return k.ambiguous(r.why + "; the vendor's records could not be read: " + bound(errText(r.lastErr), 300))
	}
	if r.reads > 0 {
		cands, why := k.candidates()
		switch {
		case why != "":
			return k.ambiguous(r.why + "; " + why)
		case len(cands) == 1:
			res := k.result(messages.StatusSucceeded, nil)
			res.Result, res.UpstreamRequestID, res.Reconciled = cands[0].Outcome.Result, cands[0].Outcome.UpstreamRequestID, true
			if k.lim.redactResults && len(res.Result) > 0 {
				res.Result = messages.Redact(res.Result)
			}
			st := k.decided(res, messages.EventReconciled, "")
			k.noteOutcome(fmt.Sprintf("%s; the vendor's record was found by read %d", r.why, r.reads+r.failed))
			return st
		case len(cands) > 1:
			return k.ambiguous(fmt.Sprintf("%s; %d records at the vendor match it and cannot be told apart", r.why, len(cands)))
		}
	}
	end := rules.slot(r.start, max(rules.reads, 1)-1)
	if r.reads < max(rules.reads, 1) && !r.next.After(end) {
		if wait := r.next.Sub(k.now); wait > 0 {
			return step{kind: stepSleep, delay: wait}
		}
		if k.emitted < len(k.trail()) && !k.emitFailed {
			return step{kind: stepEmit} // the reconciling event, before the reads
		}
		return step{kind: stepReconcile}
	}
	// The reads are done, or the window is over.
	if r.reads == 0 || r.lastRead.Sub(r.start) < rules.window/2 {
		return k.ambiguous(fmt.Sprintf("%s; the vendor's records could not be read over %s (%d reads failed): %s", r.why, rules.window, r.failed, bound(errText(r.lastErr), 300)))
	}
	switch {
	case rules.keepAmbiguous:
		return k.ambiguous(fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s, and reconcile.refile is off", r.why, r.reads, rules.window))
	case k.entry.Refiled > 0:
		return k.ambiguous(fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s, and it was filed again once already", r.why, r.reads, rules.window))
	}
	r.refile = true
	k.pending = append(k.pending, k.event(messages.AuditEvent{Event: messages.EventRefiled, Attempt: k.entry.Attempts,
		Message: fmt.Sprintf("%s; the vendor holds no record of it after %d reads over %s: filed again, once", r.why, r.reads, rules.window)}))
	return k.refile()
}

// candidates are the records of the last read that may be this filing:
// for SMS, not those listed before its first call. why says why the
// records cannot decide at all ("" when they can).
func (k *known) candidates() (cands []dispatch.Record, why string) {
	f := k.recon.finding
	if f.Undated > 0 {
		return nil, fmt.Sprintf("%d matching records at the vendor have a creation time that cannot be read", f.Undated)
	}
	if k.req.API != messages.APISMSApplySignatureIdent {
		return f.Records, ""
	}
	if !k.entry.BaselineKnown {
		if len(f.Records) > 0 {
			return nil, fmt.Sprintf("%d matching SMS records are listed, and which existed before this request's first call is not known", len(f.Records))
		}
		return nil, ""
	}
	earlier := map[string]bool{}
	for _, id := range k.entry.Baseline {
		earlier[id] = true
	}
	for _, rec := range f.Records {
		if !earlier[rec.ID] {
			cands = append(cands, rec)
		}
	}
	return cands, ""
}

// refile files the request again, once: a new move to "calling" that
// counts the refile in the entry.
func (k *known) refile() step {
	k.attempts, k.callDue, k.lastErr, k.lastClass, k.lastOut = 0, false, nil, retry.ClassNone, dispatch.Outcome{}
	k.refiling = true
	s := k.toCalling(nil)
	k.refiling = false
	return s
}

// noteOutcome adds why to the message of the outcome event just decided.
func (k *known) noteOutcome(why string) {
	for i := len(k.pending) - 1; i >= 0; i-- {
		if ev := &k.pending[i]; isOutcomeEvent(ev.Event) {
			ev.Message = strings.TrimPrefix(ev.Message+"; ", "; ") + why
			return
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "no answer"
	}
	return err.Error()
}
