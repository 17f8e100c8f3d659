package messages

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// validatePayload applies the rules of the vendor pages (shared/apis) to a
// decoded payload. Paths start at prefix.
func validatePayload(p *problems, prefix string, api API, v any) {
	switch v := v.(type) {
	case *VMSQualification:
		validateVMS(p, prefix, api, v)
	case *SMSApplySignatureIdent:
		validateSMS(p, prefix, v)
	case *DouyinAddRole:
		validateAddRole(p, prefix, v)
	case *DouyinGetClassAuth:
		validateGetClassAuth(p, prefix, v)
	}
}

// requiredText reports an empty or blank string, unless the shape check has
// already said what is wrong with the field.
func requiredText(p *problems, path, s string) bool {
	if strings.TrimSpace(s) == "" {
		if !p.has(path) {
			p.add(path, "required")
		}
		return false
	}
	return true
}

func requiredObject(p *problems, path string, present bool) bool {
	if !present && !p.has(path) {
		p.add(path, "required")
	}
	return present
}

// ---- Volcengine VMS AddQualification / UpdateQualification ----

var phonePattern = regexp.MustCompile(`^\+?[0-9][0-9 -]{4,19}$`)

func validateVMS(p *problems, prefix string, api API, q *VMSQualification) {
	list := join(prefix, "QualificationScenarioInfoFormDOList")
	if len(q.QualificationScenarioInfoFormDOList) == 0 && !p.has(list) {
		p.add(list, "must list at least one calling scenario")
	}
	for i, s := range q.QualificationScenarioInfoFormDOList {
		at := index(list, i)
		if s.SceneType <= 0 && !p.has(at+".SceneType") {
			p.add(at+".SceneType", "required: a positive scene type code such as 1101")
		}
		requiredText(p, at+".Description", s.Description)
		requiredText(p, at+".ScenarioOfCalling", s.ScenarioOfCalling)
	}

	main := join(prefix, "QualificationMainInfoFormDO")
	if m := q.QualificationMainInfoFormDO; requiredObject(p, main, m != nil) {
		requiredText(p, main+".QualificationEntity", m.QualificationEntity)
		requiredText(p, main+".UnitSocialCreditCode", m.UnitSocialCreditCode)
		requiredText(p, main+".EnterpriseAddress", m.EnterpriseAddress)
		requiredText(p, main+".LegalRepresentativeName", m.LegalRepresentativeName)
		requiredText(p, main+".LegalRepresentativeId", m.LegalRepresentativeId)
		if m.ReqSourceType < 0 {
			p.add(main+".ReqSourceType", "must not be negative (leave it out: %d is sent, as the official SDK does)", DefaultReqSourceType)
		}
		if api == APIVMSUpdateQualification && strings.TrimSpace(m.QualificationNo) == "" && m.QualificationId == 0 &&
			!p.has(main+".QualificationNo") && !p.has(main+".QualificationId") {
			p.add(main+".QualificationNo", "required for an update: the QualificationNo (or QualificationId) of the rejected qualification")
		}
	}

	admin := join(prefix, "QualificationAdminInfoFormDO")
	if a := q.QualificationAdminInfoFormDO; requiredObject(p, admin, a != nil) {
		requiredText(p, admin+".Name", a.Name)
		if requiredText(p, admin+".ContactNumber", a.ContactNumber) && !phonePattern.MatchString(a.ContactNumber) {
			p.add(admin+".ContactNumber", "must be a phone number (digits, optional leading +)")
		}
		requiredText(p, admin+".IdCardNumber", a.IdCardNumber)
	}
}

// ---- Volcengine SMS ApplySignatureIdent ----

// MaxMaterialName is the longest SMS materialName, in characters.
const MaxMaterialName = 20

func validateSMS(p *problems, prefix string, s *SMSApplySignatureIdent) {
	if s.ID < 0 {
		p.add(join(prefix, "id"), "must not be negative")
	}
	name := join(prefix, "materialName")
	if requiredText(p, name, s.MaterialName) && Chars(s.MaterialName) > MaxMaterialName {
		p.add(name, "is %d characters long, at most %d allowed", Chars(s.MaterialName), MaxMaterialName)
	}

	biz := join(prefix, "businessInfo")
	if b := s.BusinessInfo; requiredObject(p, biz, b != nil) {
		if b.BusinessCertificateType < 0 {
			p.add(biz+".businessCertificateType", "must not be negative")
		}
		if requiredObject(p, biz+".businessCertificate", b.BusinessCertificate != nil) {
			validateSMSFile(p, biz+".businessCertificate", *b.BusinessCertificate)
		}
		requiredText(p, biz+".businessCertificateName", b.BusinessCertificateName)
		requiredText(p, biz+".unifiedSocialCreditIdentifier", b.UnifiedSocialCreditIdentifier)
		start, okStart := requiredDate(p, biz+".businessCertificateValidityPeriodStart", b.BusinessCertificateValidityPeriodStart, false)
		end, okEnd := requiredDate(p, biz+".businessCertificateValidityPeriodEnd", b.BusinessCertificateValidityPeriodEnd, false)
		if okStart && okEnd && end < start {
			p.add(biz+".businessCertificateValidityPeriodEnd", "must not be before businessCertificateValidityPeriodStart")
		}
		requiredText(p, biz+".legalPersonName", b.LegalPersonName)
	}

	if requiredObject(p, join(prefix, "operatorPerson"), s.OperatorPerson != nil) {
		validateSMSPerson(p, join(prefix, "operatorPerson"), s.OperatorPerson)
	}
	if requiredObject(p, join(prefix, "responsiblePersonInfo"), s.ResponsiblePersonInfo != nil) {
		validateSMSPerson(p, join(prefix, "responsiblePersonInfo"), s.ResponsiblePersonInfo)
	}
	if s.LegalPerson != nil {
		validateSMSPerson(p, join(prefix, "legalPerson"), s.LegalPerson)
	}

	purpose := join(prefix, "purpose")
	switch s.Purpose {
	case SMSPurposeOwnUse:
	case SMSPurposeForOthers:
		poa := join(prefix, "powerOfAttorney")
		if len(s.PowerOfAttorney) == 0 && !p.has(poa) {
			p.add(poa, "required when purpose is 2 (for others)")
		}
	default:
		if !p.has(purpose) {
			p.add(purpose, "must be 1 (own use) or 2 (for others)")
		}
	}
	for i, f := range s.PowerOfAttorney {
		validateSMSFile(p, index(join(prefix, "powerOfAttorney"), i), f)
	}
	for i, f := range s.OtherMaterials {
		validateSMSFile(p, index(join(prefix, "otherMaterials"), i), f)
	}
	for i, sig := range s.EffectSignatures {
		requiredText(p, index(join(prefix, "effectSignatures"), i), sig)
	}
}

func validateSMSPerson(p *problems, path string, person *SMSPerson) {
	if person.CertificateType < 0 {
		p.add(path+".certificateType", "must not be negative (0 is an ID card)")
	}
	for i, f := range person.PersonCertificate {
		validateSMSFile(p, index(path+".personCertificate", i), f)
	}
	requiredText(p, path+".personName", person.PersonName)
	requiredText(p, path+".personIDCard", person.PersonIDCard)
	if requiredText(p, path+".personMobile", person.PersonMobile) && !phonePattern.MatchString(person.PersonMobile) {
		p.add(path+".personMobile", "must be a phone number (digits, optional leading +)")
	}
}

func validateSMSFile(p *problems, path string, f SMSFile) {
	if p.has(path) {
		return
	}
	if f.FileType < 0 {
		p.add(path+".fileType", "must not be negative")
	}
	if f.FileContent.IsZero() {
		if strings.TrimSpace(f.FileURL) == "" {
			p.add(path, "needs fileContent (a base64 data URI) or fileUrl")
		}
		return
	}
	problem := DataURIProblem(f.FileContent.Data, f.FileSuffix)
	if f.FileContent.Data == "" {
		problem = f.FileContent.Ref.Problem()
	}
	if problem != "" && !p.has(path+".fileContent") {
		p.add(path+".fileContent", "%s", problem)
	}
	requiredText(p, path+".fileSuffix", f.FileSuffix)
}

// DataURIProblem checks a fileContent data URI, "data:<type>;base64,<data>",
// whose type must be that of the file's suffix (image/jpeg or image/jpg for
// "jpg"), and says what is wrong ("" when nothing is); the files package
// applies it to a fetched file.
func DataURIProblem(s, suffix string) string {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return `must be a data URI such as "data:image/jpg;base64,..."`
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok || !strings.HasSuffix(meta, ";base64") {
		return `must be a base64 data URI ("data:<type>;base64,<data>")`
	}
	if data == "" {
		return "has no content after the comma"
	}
	if mediaType, _, _ := strings.Cut(meta, ";"); suffix != "" && !typeOfSuffix(mediaType, suffix) {
		return fmt.Sprintf("is of type %q, which is not that of fileSuffix %q", Truncate(mediaType, 40), Truncate(suffix, 16))
	}
	if _, err := base64.StdEncoding.DecodeString(data); err != nil {
		return "content is not valid base64: " + err.Error()
	}
	return ""
}

// suffixTypes are the media types of the file suffixes whose type is not
// image/<suffix> alone.
var suffixTypes = map[string][]string{
	"jpg": {"image/jpeg", "image/jpg"}, "jpeg": {"image/jpeg", "image/jpg"},
	"tif": {"image/tiff"}, "tiff": {"image/tiff"}, "pdf": {"application/pdf"},
}

// typeOfSuffix reports whether mediaType is that of a file with suffix:
// the suffix's types, or else image/<suffix>.
func typeOfSuffix(mediaType, suffix string) bool {
	mediaType, suffix = strings.ToLower(mediaType), strings.ToLower(strings.TrimPrefix(suffix, "."))
	if types, ok := suffixTypes[suffix]; ok {
		return slices.Contains(types, mediaType)
	}
	return suffix != "" && mediaType == "image/"+suffix
}

// requiredDate checks a YYYY-MM-DD date (or 长期有效 when allowed) and returns
// it in sortable form.
func requiredDate(p *problems, path, s string, permanentAllowed bool) (string, bool) {
	if !requiredText(p, path, s) {
		return "", false
	}
	if permanentAllowed && s == Permanent {
		return "9999-12-31", true
	}
	if _, ok := ParseDate(s); !ok {
		if permanentAllowed {
			p.add(path, "must be a date YYYY-MM-DD or %q, not %q", Permanent, Truncate(s, 40))
		} else {
			p.add(path, "must be a date YYYY-MM-DD, not %q", Truncate(s, 40))
		}
		return "", false
	}
	return s, true
}

// ---- Douyin add_role ----

// Douyin length rules, counted with WideLen.
const (
	RecordNameMin   = 4
	RecordNameMax   = 1000
	DescMin         = 12
	DescMax         = 200
	EmployeeNameMin = 2
	EmployeeNameMax = 30
)

func validateAddRole(p *problems, prefix string, r *DouyinAddRole) {
	requiredText(p, join(prefix, "entity_id"), r.EntityID)
	role := join(prefix, "industry_role")
	switch r.IndustryRole {
	case DouyinRolePartner:
		info := join(prefix, "partner_role_info")
		if requiredObject(p, info, r.PartnerRoleInfo != nil) {
			info += ".partner_info"
			if pi := r.PartnerRoleInfo.PartnerInfo; requiredObject(p, info, pi != nil) {
				requiredText(p, info+".company_type", pi.CompanyType)
				requiredText(p, info+".company_addr", pi.CompanyAddr)
				cases := info + ".cooperation_cases"
				if len(pi.CooperationCases) == 0 && !p.has(cases) {
					p.add(cases, "must list at least one cooperation case")
				}
				for i, m := range pi.CooperationCases {
					validateMaterial(p, index(cases, i), &m)
				}
			}
		}
	case DouyinRoleInstitution:
		validateInstitution(p, join(prefix, "institution_role_info"), r.InstitutionRoleInfo)
	default:
		if !p.has(role) {
			p.add(role, "must be 2 (institution) or 3 (partner)")
		}
	}
}

func validateInstitution(p *problems, path string, r *DouyinInstitutionRoleInfo) {
	if !requiredObject(p, path, r != nil) {
		return
	}
	info := path + ".institution_info"
	if in := r.InstitutionInfo; requiredObject(p, info, in != nil) {
		wideRange(p, info+".record_name", in.RecordName, RecordNameMin, RecordNameMax)
		scene := info + ".scene_type"
		if requiredText(p, scene, in.SceneType) && in.SceneType != DouyinSceneOnline && in.SceneType != DouyinSceneOffline {
			p.add(scene, "must be %q or %q", DouyinSceneOnline, DouyinSceneOffline)
		}
		requiredText(p, info+".subject_type", in.SubjectType)
		wideRange(p, info+".desc", in.Desc, DescMin, DescMax)
	}
	class := path + ".institution_class_info"
	ci := r.InstitutionClassInfo
	if !requiredObject(p, class, ci != nil) {
		return
	}
	validateIndustryClass(p, class+".industry_class", ci.IndustryClass)
	emp := class + ".employee"
	if e := ci.Employee; requiredObject(p, emp, e != nil) {
		mat := emp + ".employee_material"
		if m := e.EmployeeMaterial; requiredObject(p, mat, m != nil) {
			wideRange(p, mat+".name", m.Name, EmployeeNameMin, EmployeeNameMax)
			requiredText(p, mat+".id_number", m.IDNumber)
			requiredDate(p, mat+".expire_time", m.ExpireTime, true)
			requiredText(p, mat+".front_path", m.FrontPath)
			requiredText(p, mat+".back_path", m.BackPath)
		}
		if requiredObject(p, emp+".cooperation_agreement", e.CooperationAgreement != nil) {
			validateMaterial(p, emp+".cooperation_agreement", e.CooperationAgreement)
		}
	}
	if requiredObject(p, class+".class_material", ci.ClassMaterial != nil) {
		validateMaterial(p, class+".class_material", ci.ClassMaterial)
	}
}

func wideRange(p *problems, path, s string, lo, hi int) {
	if !requiredText(p, path, s) {
		return
	}
	if n := WideLen(s); n < lo || n > hi {
		p.add(path, "is %d characters long counting a CJK character as 2; must be %d to %d", n, lo, hi)
	}
}

func validateMaterial(p *problems, path string, m *DouyinMaterial) {
	if p.has(path) {
		return
	}
	if m.MaterialType <= 0 {
		p.add(path+".material_type", "required: a material type code from upload_material")
	}
	requiredDate(p, path+".material_expiretime", m.MaterialExpiretime, false)
	paths := path + ".material_paths"
	if len(m.MaterialPaths) == 0 {
		p.add(paths, "must list at least one material path")
	}
	for i, s := range m.MaterialPaths {
		requiredText(p, index(paths, i), s)
	}
}

func validateIndustryClass(p *problems, path string, c *DouyinIndustryClass) {
	if !requiredObject(p, path, c != nil) {
		return
	}
	if c.FirstClass <= 0 && !p.has(path+".first_class") {
		p.add(path+".first_class", "required: a positive category code such as 40000")
	}
	if c.SecondClass < 0 {
		p.add(path+".second_class", "must not be negative")
	}
	if c.ThirdClass < 0 {
		p.add(path+".third_class", "must not be negative")
	}
}

// ---- Douyin get_class_auth ----

func validateGetClassAuth(p *problems, prefix string, g *DouyinGetClassAuth) {
	requiredText(p, join(prefix, "merchant_entity_id"), g.MerchantEntityID)
	if g.IndustryCode <= 0 && !p.has(join(prefix, "industry_code")) {
		p.add(join(prefix, "industry_code"), "required: a positive industry code such as 10000")
	}
	validateIndustryClass(p, join(prefix, "industry_class"), g.IndustryClass)
	role := join(prefix, "industry_role")
	switch g.IndustryRole {
	case DouyinRoleTeacher:
		if strings.TrimSpace(g.PartnerEntityID) == "" && !p.has(join(prefix, "partner_entity_id")) {
			p.add(join(prefix, "partner_entity_id"), "required when industry_role is 1 (a partner querying for a teacher)")
		}
	case DouyinRoleInstitution, DouyinRolePartner:
	default:
		if !p.has(role) {
			p.add(role, "must be 1 (teacher), 2 (institution) or 3 (partner)")
		}
	}
}
