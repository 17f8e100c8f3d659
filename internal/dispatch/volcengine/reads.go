package volcengine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The reads that settle a create whose answer was lost (docs/vendors.md,
// "Reading back a lost create"). Only the fields qualfile matches on are
// decoded: the records also carry names, ID numbers and photo URLs.

// QualificationQuery is the request of VMS QueryQualification; the pattern
// matches on the entity name.
type QualificationQuery struct {
	QualificationEntityQueryPattern string `json:"QualificationEntityQueryPattern,omitempty"`
	Offset                          int32  `json:"Offset"`
	Limit                           int32  `json:"Limit"`
}

// QualificationPage is one page of QueryQualification's Result.
type QualificationPage struct {
	Records []QualificationRecord `json:"Records"`
	Total   int64                 `json:"Total"`
}

// QualificationRecord is one record of a QualificationPage, main info only.
type QualificationRecord struct {
	Main QualificationMainInfo `json:"QualificationMainInfoVO"`
}

// QualificationMainInfo is a record's QualificationMainInfoVO, reduced to
// what identifies the filing.
type QualificationMainInfo struct {
	QualificationNo      string `json:"QualificationNo"`
	QualificationEntity  string `json:"QualificationEntity"`
	UnitSocialCreditCode string `json:"UnitSocialCreditCode"`
	CreateTime           string `json:"CreateTime"`
}

// QueryQualification lists the account's qualifications that match q.
func (v *VMS) QueryQualification(ctx context.Context, q QualificationQuery) (QualificationPage, Metadata, error) {
	return read[QualificationPage](ctx, v.c, http.MethodPost, ActionQueryQualification, q, "Result is not a page of records: ")
}

// SignatureIdentQuery is the request of SMS GetSignatureIdentList.
type SignatureIdentQuery struct {
	PageIndex int32 `json:"pageIndex"`
	PageSize  int32 `json:"pageSize"`
}

// SignatureIdentPage is one page of GetSignatureIdentList's Result.
type SignatureIdentPage struct {
	List  []SignatureIdentItem `json:"list"`
	Total LooseInt             `json:"total"`
}

// SignatureIdentItem is one item of a SignatureIdentPage, reduced to what
// identifies the filing.
type SignatureIdentItem struct {
	ID                      LooseInt `json:"id"`
	Purpose                 LooseInt `json:"purpose"`
	MaterialName            string   `json:"materialName"`
	BusinessCertificateName string   `json:"businessCertificateName"`
}

// GetSignatureIdentList lists the account's signature qualifications.
func (s *SMS) GetSignatureIdentList(ctx context.Context, q SignatureIdentQuery) (SignatureIdentPage, Metadata, error) {
	return read[SignatureIdentPage](ctx, s.c, http.MethodGet, ActionGetSignatureIdentList, q, "Result is not a list: ")
}

// read sends q as action and decodes the Result into a T.
func read[T any](ctx context.Context, c *client, method, action string, q any, what string) (T, Metadata, error) {
	var page T
	result, md, err := c.do(ctx, method, action, q)
	if err != nil || result == nil {
		return page, md, err
	}
	if err := json.Unmarshal(result, &page); err != nil {
		var zero T
		return zero, md, malformedResult(action, md, what+err.Error(), nil)
	}
	return page, md, nil
}

// LooseInt is a 64-bit integer read exactly from a JSON number or from a
// string holding one (never through float64); null or "" is 0.
type LooseInt int64

// UnmarshalJSON reads n.
func (n *LooseInt) UnmarshalJSON(b []byte) error {
	t := strings.TrimSpace(looseString(b))
	if t == "" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return fmt.Errorf("%s is not a 64-bit integer", snippet(b))
	}
	*n = LooseInt(v)
	return nil
}
