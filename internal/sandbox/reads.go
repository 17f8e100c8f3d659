package sandbox

import (
	"bytes"
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The read calls: VMS QueryQualification and SMS GetSignatureIdentList,
// answered from the sandbox's state after the same signature checks and
// faults as the filing calls. An account sees what its access key filed
// and the seeded records.

// pageSize is the page size a read answers for n: at most 100, the
// default.
func pageSize(n int32) int {
	if n <= 0 || n > 100 {
		return 100
	}
	return int(n)
}

// beijing is the zone of a qualification's CreateTime and UpdateTime,
// written without an offset as the vendor's console shows them.
var beijing = time.FixedZone("CST", 8*3600)

type qualificationQuery struct {
	QualificationNoList             []string `json:"QualificationNoList"`
	ApprovalStatus                  string   `json:"ApprovalStatus"`
	QualificationEntityQueryPattern string   `json:"QualificationEntityQueryPattern"`
	Offset                          int32    `json:"Offset"`
	Limit                           int32    `json:"Limit"`
	AccountID                       string   `json:"AccountId"`
}

type qualificationMainVO struct {
	QualificationID      int64  `json:"QualificationId"`
	QualificationNo      string `json:"QualificationNo"`
	QualificationEntity  string `json:"QualificationEntity"`
	UnitSocialCreditCode string `json:"UnitSocialCreditCode"`
	ApprovalStatus       int32  `json:"ApprovalStatus"`
	CreateTime           string `json:"CreateTime"`
	UpdateTime           string `json:"UpdateTime"`
}

type qualificationRecordVO struct {
	Main      qualificationMainVO `json:"QualificationMainInfoVO"`
	Admin     struct{}            `json:"QualificationAdminInfoVO"`
	Scenarios []struct{}          `json:"QualificationScenarioInfoVOList"`
}

func (x *volcExchange) queryQualification(body []byte) {
	var q qualificationQuery
	if err := strictJSON(body, &q); err != nil {
		x.paramError(http.StatusOK, "request body: "+err.Error())
		return
	}
	limit := pageSize(q.Limit)
	s := x.s
	s.mu.Lock()
	var all []*Qualification
	for _, qu := range s.w.quals {
		if qu.AccessKeyID != "" && qu.AccessKeyID != x.call.AccessKeyOrAppID {
			continue
		}
		if len(q.QualificationNoList) > 0 && !slices.Contains(q.QualificationNoList, qu.QualificationNo) {
			continue
		}
		if q.QualificationEntityQueryPattern != "" && !strings.Contains(qu.Entity, q.QualificationEntityQueryPattern) {
			continue
		}
		all = append(all, qu)
	}
	slices.SortFunc(all, func(a, b *Qualification) int { return cmp.Compare(a.QualificationID, b.QualificationID) })
	total := len(all)
	var recs []qualificationRecordVO
	for i := max(int(q.Offset), 0); i < total && len(recs) < limit; i++ {
		qu := all[i]
		recs = append(recs, qualificationRecordVO{Main: qualificationMainVO{
			QualificationID: qu.QualificationID, QualificationNo: qu.QualificationNo, QualificationEntity: qu.Entity,
			UnitSocialCreditCode: qu.CreditCode, ApprovalStatus: int32(qu.Status.AuditStatus()),
			CreateTime: qu.CreatedAt.In(beijing).Format(time.DateTime), UpdateTime: qu.UpdatedAt.In(beijing).Format(time.DateTime),
		}, Scenarios: []struct{}{}})
	}
	s.mu.Unlock()
	if recs == nil {
		recs = []qualificationRecordVO{}
	}
	x.succeed(map[string]any{"Records": recs, "Limit": limit, "Offset": q.Offset, "Total": total})
}

type signatureIdentQuery struct {
	IDs       []int64 `json:"ids"`
	PageIndex int32   `json:"pageIndex"`
	PageSize  int32   `json:"pageSize"`
}

type signatureIdentVO struct {
	ID                      int64    `json:"id"`
	Purpose                 int      `json:"purpose"`
	MaterialName            string   `json:"materialName"`
	BusinessCertificateName string   `json:"businessCertificateName"`
	OperatorPersonName      string   `json:"operatorPersonName"`
	ResponsiblePersonName   string   `json:"responsiblePersonName"`
	LegalPersonName         string   `json:"legalPersonName"`
	EffectSignatures        []string `json:"effectSignatures"`
}

func (x *volcExchange) signatureIdentList(body []byte) {
	var q signatureIdentQuery
	if len(bytes.TrimSpace(body)) > 0 {
		if err := strictJSON(body, &q); err != nil {
			x.paramError(http.StatusOK, "request body: "+err.Error())
			return
		}
	}
	size := pageSize(q.PageSize)
	page := max(int(q.PageIndex), 1) // pages count from 1
	s := x.s
	s.mu.Lock()
	var all []*SignatureIdent
	for _, si := range s.w.sms {
		if si.AccessKeyID != "" && si.AccessKeyID != x.call.AccessKeyOrAppID {
			continue
		}
		if len(q.IDs) > 0 && !slices.Contains(q.IDs, si.ID) {
			continue
		}
		all = append(all, si)
	}
	slices.SortFunc(all, func(a, b *SignatureIdent) int { return cmp.Compare(a.ID, b.ID) })
	total := len(all)
	list := []signatureIdentVO{}
	for i := (page - 1) * size; i >= 0 && i < total && len(list) < size; i++ {
		si := all[i]
		list = append(list, signatureIdentVO{ID: si.ID, Purpose: si.Purpose, MaterialName: si.MaterialName,
			BusinessCertificateName: si.BusinessCertificateName, EffectSignatures: []string{}})
	}
	s.mu.Unlock()
	x.succeed(map[string]any{"list": list, "total": total})
}

// strictJSON decodes one JSON object into v, refusing unknown fields.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
