package messages

import "strconv"

// SMSApplySignatureIdent is the body of Volcengine SMS ApplySignatureIdent
// (Version 2021-01-11), with the vendor's field names.
type SMSApplySignatureIdent struct {
	// ID re-edits an existing qualification when set.
	ID                    int64        `json:"id,omitempty"`
	MaterialName          string       `json:"materialName"`
	BusinessInfo          *SMSBusiness `json:"businessInfo"`
	OperatorPerson        *SMSPerson   `json:"operatorPerson"`
	ResponsiblePersonInfo *SMSPerson   `json:"responsiblePersonInfo"`
	LegalPerson           *SMSPerson   `json:"legalPerson,omitempty"`
	PowerOfAttorney       []SMSFile    `json:"powerOfAttorney,omitempty"`
	OtherMaterials        []SMSFile    `json:"otherMaterials,omitempty"`
	EffectSignatures      []string     `json:"effectSignatures,omitempty"`
	Purpose               int          `json:"purpose"`
}

// SMS purposes.
const (
	SMSPurposeOwnUse    = 1 // 自用
	SMSPurposeForOthers = 2 // 他用: powerOfAttorney required
)

// SMSBusiness is the company whose signature is filed.
type SMSBusiness struct {
	BusinessCertificateType                int      `json:"businessCertificateType"`
	BusinessCertificate                    *SMSFile `json:"businessCertificate"`
	BusinessCertificateName                string   `json:"businessCertificateName"`
	UnifiedSocialCreditIdentifier          string   `json:"unifiedSocialCreditIdentifier"`
	BusinessCertificateValidityPeriodStart string   `json:"businessCertificateValidityPeriodStart"`
	BusinessCertificateValidityPeriodEnd   string   `json:"businessCertificateValidityPeriodEnd"`
	LegalPersonName                        string   `json:"legalPersonName"`
}

// SMSPerson is an operator, responsible person or legal person.
type SMSPerson struct {
	CertificateType   int       `json:"certificateType"`
	PersonCertificate []SMSFile `json:"personCertificate"`
	PersonName        string    `json:"personName"`
	PersonIDCard      string    `json:"personIDCard"`
	PersonMobile      string    `json:"personMobile"`
}

// SMSFile is an inline file: a data URI with base64 content (or a
// reference to one in the object store, see FileContent), or a URL.
type SMSFile struct {
	FileType    int         `json:"fileType"`
	FileContent FileContent `json:"fileContent,omitzero"`
	FileSuffix  string      `json:"fileSuffix"`
	FileURL     string      `json:"fileUrl,omitempty"`
}

// SMSApplyResult is the Result of ApplySignatureIdent; the id is a 64-bit
// integer and is never read through float64. IDString is the same id as a
// string: JavaScript's JSON.parse reads integers above 2^53 inexactly
// (9007199254740993 becomes 9007199254740992), so a subscriber in
// JavaScript reads id_string.
type SMSApplyResult struct {
	ID       int64  `json:"id"`
	IDString string `json:"id_string,omitempty"` // in qualfile's results, not in the vendor's reply
}

// WithIDString is r with IDString filled in from ID.
func (r SMSApplyResult) WithIDString() SMSApplyResult {
	r.IDString = strconv.FormatInt(r.ID, 10)
	return r
}
