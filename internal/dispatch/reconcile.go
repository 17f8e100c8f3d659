package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/messages"
)

// Reading back a create whose answer was lost: docs/vendors.md, "Reading
// back a lost create".

// VMSReader is the read of a VMS client that settles a lost
// AddQualification.
type VMSReader interface {
	QueryQualification(ctx context.Context, q volcengine.QualificationQuery) (volcengine.QualificationPage, volcengine.Metadata, error)
}

// SMSReader is the read of an SMS client that settles a lost
// ApplySignatureIdent.
type SMSReader interface {
	GetSignatureIdentList(ctx context.Context, q volcengine.SignatureIdentQuery) (volcengine.SignatureIdentPage, volcengine.Metadata, error)
}

// maxReconcilePages bounds the pages one reconciliation reads, and
// reconcilePageSize is their size.
const (
	maxReconcilePages = 20
	reconcilePageSize = 100
)

// Record is one vendor record that matches a request: its identifier
// (QualificationNo, or the SMS id in decimal) and what the create would
// have answered for it.
type Record struct {
	ID      string
	Outcome Outcome
}

// Finding is the records that match a create whose answer was lost; which
// of them is this filing is the caller's to decide (those not listed
// before its first call: no clock is compared).
type Finding struct {
	Records []Record
}

// Reconcile asks the vendor which records match req (a validated create
// of a Reconcilable api).
func (d *Dispatcher) Reconcile(ctx context.Context, req *messages.Request) (Finding, error) {
	return d.ReconcilePaced(ctx, req, nil)
}

// ReconcilePaced is Reconcile with pace called before every page after the
// first (a rate limit: a long list is many calls).
func (d *Dispatcher) ReconcilePaced(ctx context.Context, req *messages.Request, pace func(context.Context) error) (Finding, error) {
	if pace == nil {
		pace = func(context.Context) error { return nil }
	}
	if !req.API.Reconcilable() {
		return Finding{}, fmt.Errorf("%s: %w", req.API, ErrNotReconcilable)
	}
	acct, ok := d.accounts[req.AccountOrDefault()]
	if !ok {
		return Finding{}, fmt.Errorf("account %q: %w", req.AccountOrDefault(), ErrUnknownAccount)
	}
	switch p := req.Typed().(type) {
	case *messages.VMSQualification:
		r, ok := acct.VMS.(VMSReader)
		if !ok || p.QualificationMainInfoFormDO == nil {
			return Finding{}, fmt.Errorf("account %q, vms read: %w", req.AccountOrDefault(), ErrNoClient)
		}
		return findQualification(ctx, r, p.QualificationMainInfoFormDO, pace)
	case *messages.SMSApplySignatureIdent:
		r, ok := acct.SMS.(SMSReader)
		if !ok {
			return Finding{}, fmt.Errorf("account %q, sms read: %w", req.AccountOrDefault(), ErrNoClient)
		}
		return findSignatureIdent(ctx, r, p, pace)
	}
	return Finding{}, ErrNotValidated
}

// findQualification matches on QualificationEntity and
// UnitSocialCreditCode.
func findQualification(ctx context.Context, r VMSReader, m *messages.VMSMainInfo, pace func(context.Context) error) (Finding, error) {
	var f Finding
	entity, code := strings.TrimSpace(m.QualificationEntity), strings.TrimSpace(m.UnitSocialCreditCode)
	q := volcengine.QualificationQuery{QualificationEntityQueryPattern: entity, Limit: reconcilePageSize}
	for page := 0; ; page++ {
		if page == maxReconcilePages {
			return Finding{}, fmt.Errorf("vms QueryQualification for %d records: %w", maxReconcilePages*reconcilePageSize, ErrTooManyRecords)
		}
		if page > 0 {
			if err := pace(ctx); err != nil {
				return Finding{}, err
			}
		}
		res, md, err := r.QueryQualification(ctx, q)
		if err != nil {
			return Finding{}, err
		}
		for _, rec := range res.Records {
			v := rec.Main
			if strings.TrimSpace(v.QualificationEntity) != entity || strings.TrimSpace(v.UnitSocialCreditCode) != code {
				continue
			}
			out, err := outcome(messages.VMSAddResult{QualificationNo: v.QualificationNo}, md.RequestID, nil)
			if err != nil {
				return Finding{}, err
			}
			f.Records = append(f.Records, Record{ID: v.QualificationNo, Outcome: out})
		}
		q.Offset += int32(len(res.Records))
		if len(res.Records) == 0 || int64(q.Offset) >= res.Total {
			break
		}
	}
	return f, nil
}

// findSignatureIdent matches on materialName, businessCertificateName and
// purpose.
func findSignatureIdent(ctx context.Context, r SMSReader, p *messages.SMSApplySignatureIdent, pace func(context.Context) error) (Finding, error) {
	var f Finding
	name, cert := strings.TrimSpace(p.MaterialName), strings.TrimSpace(p.BusinessInfo.BusinessCertificateName)
	q := volcengine.SignatureIdentQuery{PageIndex: 1, PageSize: reconcilePageSize}
	seen := 0
	for ; ; q.PageIndex++ {
		if q.PageIndex > maxReconcilePages {
			return Finding{}, fmt.Errorf("sms GetSignatureIdentList for %d items: %w", maxReconcilePages*reconcilePageSize, ErrTooManyRecords)
		}
		if q.PageIndex > 1 {
			if err := pace(ctx); err != nil {
				return Finding{}, err
			}
		}
		res, md, err := r.GetSignatureIdentList(ctx, q)
		if err != nil {
			return Finding{}, err
		}
		for _, it := range res.List {
			if strings.TrimSpace(it.MaterialName) != name || strings.TrimSpace(it.BusinessCertificateName) != cert || int64(it.Purpose) != int64(p.Purpose) {
				continue
			}
			out, err := outcome(messages.SMSApplyResult{ID: int64(it.ID)}.WithIDString(), md.RequestID, nil)
			if err != nil {
				return Finding{}, err
			}
			f.Records = append(f.Records, Record{ID: strconv.FormatInt(int64(it.ID), 10), Outcome: out})
		}
		seen += len(res.List)
		if len(res.List) == 0 || int64(seen) >= int64(res.Total) {
			break
		}
	}
	return f, nil
}
