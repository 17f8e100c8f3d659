package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// resolve records an operator's decision on a filing whose outcome was
// ambiguous or failed: "it was filed as Record" (status succeeded) or
// "abandon it" (status failed, code Abandoned). The decision is the new
// outcome in the ledger, superseding the earlier one; its resolved event
// ends the trail, and its result goes out after it. The filing's dead
// letters are removed, each on the record. An order given again after a
// failure finishes what the first began.
func (s *Service) resolve(ctx context.Context, operatorName string, o Order) (Report, error) {
	e, err := s.cfg.Ledger.Get(ctx, o.Tenant, o.RequestID)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return Report{}, fmt.Errorf("%w: no ledger entry for request %q (never received, or older than the ledger keeps)", ErrNoMatch, o.RequestID)
	case err != nil:
		return Report{}, fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
	}
	it := Item{RequestID: o.RequestID, Tenant: o.Tenant}
	record := strings.TrimSpace(o.Record)
	r := e.Result
	switch {
	case e.State != ledger.StateDone || r == nil:
		it.Skipped = fmt.Sprintf("it has no outcome yet (%s): resolve it once it has one", e.State)
		return Report{Items: []Item{it}}, nil
	case r.Resolution != nil && r.Resolution.Decision == o.Decision && r.Resolution.Record == record:
		if err := s.catchUp(ctx, e); err != nil {
			return Report{Items: []Item{it}}, err
		}
		it.Done = "already resolved so by " + r.Resolution.Operator
	case r.Status == messages.StatusSucceeded:
		it.Skipped = "it succeeded: there is nothing to resolve"
		return Report{Items: []Item{it}}, nil
	case r.Status == messages.StatusRejected:
		it.Skipped = "it was rejected, so nothing was filed: send a corrected request under its id"
		return Report{Items: []Item{it}}, nil
	default:
		now := s.cfg.Now().UTC()
		res := resolved(r, operatorName, o.Decision, record, o.Reason, now)
		msg := "abandoned by an operator"
		if o.Decision == messages.DecisionFiled {
			msg = "filed, as " + record + ", by an operator's finding"
		}
		ev := messages.AuditEvent{ID: fmt.Sprintf("operator/resolved/%d/%d", e.Revision, now.UnixNano()), RequestID: e.RequestID, Tenant: e.Tenant, API: e.API,
			Account: r.Account, Event: messages.EventResolved, Time: now, Status: res.Status, Operator: operatorName, Reason: o.Reason,
			Message: msg + "; supersedes the outcome recorded at " + r.CompletedAt.Format(time.RFC3339Nano)}
		if err := s.amend(ctx, e, ev, res); err != nil {
			return Report{Items: []Item{it}}, err
		}
		it.Done = "resolved: " + string(o.Decision)
	}
	rep := Report{Items: []Item{it}}
	letters, err := s.letters(ctx, Order{RequestID: o.RequestID, Tenant: o.Tenant})
	if errors.Is(err, ErrNoMatch) {
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	for _, d := range letters {
		it, err := s.remove(ctx, operatorName, "resolved: "+o.Reason, d)
		rep.Items = append(rep.Items, it)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// resolved is the result that records an operator's decision on r.
func resolved(r *messages.Result, operatorName string, decision messages.Decision, record, reason string, now time.Time) *messages.Result {
	res := *r
	res.Supersedes = r.CompletedAt
	res.CompletedAt = now
	if !now.After(r.CompletedAt) {
		res.CompletedAt = r.CompletedAt.Add(time.Nanosecond) // the later one, on any clock
	}
	res.Resolution = &messages.Resolution{Decision: decision, Record: record, Operator: operatorName, Reason: reason, At: now}
	res.StreamSeq, res.RequestIDSHA256 = 0, ""
	if decision == messages.DecisionFiled {
		res.Status, res.Error = messages.StatusSucceeded, nil
	} else {
		res.Status, res.Error = messages.StatusFailed, &messages.ResultError{Code: "Abandoned", Class: messages.ClassPermanent,
			Message: "abandoned by an operator: " + reason}
	}
	return &res
}
