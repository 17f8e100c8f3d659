package dispatch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/messages"
)

// Reading back a create whose answer was lost (docs/vendors.md, "Reading
// back a lost create").

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

// Finding is what the vendor's records say about a create whose answer
// was lost.
type Finding struct {
	// Found: exactly one record matches; Outcome is what the create would
	// have answered ({"QualificationNo"} or {"id","id_string"}), with the
	// read's request id.
	Found   bool
	Outcome Outcome
	// Matches counts the records that match. More than one cannot be told
	// apart: the request is left to an operator (Found is false).
	Matches int
	// Undated counts records that match but whose creation time could not
	// be read; they count as matches, since they cannot be ruled out.
	Undated int
}

// Absent reports whether the vendor holds no matching record.
func (f Finding) Absent() bool { return f.Matches == 0 }

// Reconcile asks the vendor whether it holds the record that req (a
// validated create of a Reconcilable api) would have made, created at or
// after since. Errors classify with retry.ClassOf like the calls' errors.
func (d *Dispatcher) Reconcile(ctx context.Context, req *messages.Request, since time.Time) (Finding, error) {
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
		return findQualification(ctx, r, p.QualificationMainInfoFormDO, since)
	case *messages.SMSApplySignatureIdent:
		r, ok := acct.SMS.(SMSReader)
		if !ok {
			return Finding{}, fmt.Errorf("account %q, sms read: %w", req.AccountOrDefault(), ErrNoClient)
		}
		return findSignatureIdent(ctx, r, p)
	}
	return Finding{}, ErrNotValidated
}

// findQualification matches on QualificationEntity and
// UnitSocialCreditCode, created at or after since.
func findQualification(ctx context.Context, r VMSReader, m *messages.VMSMainInfo, since time.Time) (Finding, error) {
	var f Finding
	entity, code := strings.TrimSpace(m.QualificationEntity), strings.TrimSpace(m.UnitSocialCreditCode)
	q := volcengine.QualificationQuery{QualificationEntityQueryPattern: entity, Limit: reconcilePageSize}
	for page := 0; ; page++ {
		if page == maxReconcilePages {
			return Finding{}, fmt.Errorf("vms QueryQualification for %d records: %w", maxReconcilePages*reconcilePageSize, ErrTooManyRecords)
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
			at, ok := volcengine.ParseCreateTime(v.CreateTime)
			switch {
			case !ok:
				f.Undated++
			case at.Before(since):
				continue // an earlier filing of the same entity
			}
			f.Matches++
			f.Outcome, err = outcome(messages.VMSAddResult{QualificationNo: v.QualificationNo}, md.RequestID, nil)
			if err != nil {
				return Finding{}, err
			}
		}
		q.Offset += int32(len(res.Records))
		if len(res.Records) == 0 || int64(q.Offset) >= res.Total {
			break
		}
	}
	f.Found = f.Matches == 1 && f.Undated == 0
	if !f.Found {
		f.Outcome = Outcome{}
	}
	return f, nil
}

// findSignatureIdent matches on materialName, businessCertificateName and
// purpose. The list carries no creation time, so an identical earlier
// filing cannot be ruled out by time: two matches are left to an operator.
func findSignatureIdent(ctx context.Context, r SMSReader, p *messages.SMSApplySignatureIdent) (Finding, error) {
	var f Finding
	name, cert := strings.TrimSpace(p.MaterialName), strings.TrimSpace(p.BusinessInfo.BusinessCertificateName)
	q := volcengine.SignatureIdentQuery{PageIndex: 1, PageSize: reconcilePageSize}
	seen := 0
	for ; ; q.PageIndex++ {
		if q.PageIndex > maxReconcilePages {
			return Finding{}, fmt.Errorf("sms GetSignatureIdentList for %d items: %w", maxReconcilePages*reconcilePageSize, ErrTooManyRecords)
		}
		res, md, err := r.GetSignatureIdentList(ctx, q)
		if err != nil {
			return Finding{}, err
		}
		for _, it := range res.List {
			if strings.TrimSpace(it.MaterialName) != name || strings.TrimSpace(it.BusinessCertificateName) != cert || int64(it.Purpose) != int64(p.Purpose) {
				continue
			}
			f.Matches++
			f.Outcome, err = outcome(messages.SMSApplyResult{ID: int64(it.ID)}.WithIDString(), md.RequestID, nil)
			if err != nil {
				return Finding{}, err
			}
		}
		seen += len(res.List)
		if len(res.List) == 0 || int64(seen) >= int64(res.Total) {
			break
		}
	}
	f.Found = f.Matches == 1
	if !f.Found {
		f.Outcome = Outcome{}
	}
	return f, nil
}
