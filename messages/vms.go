package messages

// DefaultReqSourceType is the QualificationMainInfoFormDO.ReqSourceType the
// official Volcengine SDK sends on AddQualification and
// UpdateQualification.
const DefaultReqSourceType = 3

// VMSQualification is the body of Volcengine VMS AddQualification and
// UpdateQualification (Version 2022-01-01), with the vendor's field names.
type VMSQualification struct {
	QualificationScenarioInfoFormDOList []VMSScenario `json:"QualificationScenarioInfoFormDOList"`
	QualificationMainInfoFormDO         *VMSMainInfo  `json:"QualificationMainInfoFormDO"`
	QualificationAdminInfoFormDO        *VMSAdminInfo `json:"QualificationAdminInfoFormDO"`
}

// VMSScenario is one calling scenario of a qualification.
type VMSScenario struct {
	SceneType         int32  `json:"SceneType"`
	Description       string `json:"Description"`
	ScenarioOfCalling string `json:"ScenarioOfCalling"`
	QualificationId   int32  `json:"QualificationId,omitempty"`
	QualificationNo   string `json:"QualificationNo,omitempty"`
}

// VMSMainInfo is the qualified entity: the company and its legal representative.
type VMSMainInfo struct {
	QualificationEntity                            string `json:"QualificationEntity"`
	CertificateThreeInOne                          int32  `json:"CertificateThreeInOne"`
	EnterpriseAddress                              string `json:"EnterpriseAddress"`
	LegalRepresentativeId                          string `json:"LegalRepresentativeId"`
	LegalRepresentativeFrontIdPhotoFileCode        string `json:"LegalRepresentativeFrontIdPhotoFileCode,omitempty"`
	LegalRepresentativeBackIdPhotoFileCode         string `json:"LegalRepresentativeBackIdPhotoFileCode,omitempty"`
	LegalRepresentativeName                        string `json:"LegalRepresentativeName"`
	DocOfNumberApplyPhotoFileCode                  string `json:"DocOfNumberApplyPhotoFileCode,omitempty"`
	CommitmentLetterOfNetAccessPhotoFileCode       string `json:"CommitmentLetterOfNetAccessPhotoFileCode,omitempty"`
	UnitSocialCreditCode                           string `json:"UnitSocialCreditCode"`
	ThreeInOneBusinessLicensePhotoFileCode         string `json:"ThreeInOneBusinessLicensePhotoFileCode,omitempty"`
	BusinessLicensePhotoFileCode                   string `json:"BusinessLicensePhotoFileCode,omitempty"`
	CertificateOfTaxationRegistrationPhotoFileCode string `json:"CertificateOfTaxationRegistrationPhotoFileCode,omitempty"`
	CodeOfOrganizationCertificate                  string `json:"CodeOfOrganizationCertificate,omitempty"`
	CertificateOfOrganizationCodesPhotoFileCode    string `json:"CertificateOfOrganizationCodesPhotoFileCode,omitempty"`
	QualificationId                                int32  `json:"QualificationId,omitempty"`
	QualificationNo                                string `json:"QualificationNo,omitempty"`
	// ReqSourceType is the request source the official SDK sends (3);
	// the client sends 3 when the caller gives none (docs/vendors.md).
	ReqSourceType int32 `json:"ReqSourceType,omitempty"`
}

// VMSAdminInfo is the administrator who answers for the qualification.
type VMSAdminInfo struct {
	Name                          string `json:"Name"`
	ContactNumber                 string `json:"ContactNumber"`
	IdCardNumber                  string `json:"IdCardNumber"`
	IdCardFrontPhotoFileCode      string `json:"IdCardFrontPhotoFileCode,omitempty"`
	IdCardBackPhotoFileCode       string `json:"IdCardBackPhotoFileCode,omitempty"`
	IdCardPhotoWithPeopleFileCode string `json:"IdCardPhotoWithPeopleFileCode,omitempty"`
	QualificationId               int32  `json:"QualificationId,omitempty"`
}

// VMSAddResult is the Result of AddQualification.
type VMSAddResult struct {
	QualificationNo string `json:"QualificationNo"`
}
