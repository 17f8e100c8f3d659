package messages_test

import (
	"strings"
	"testing"
)

// TestRules breaks one rule of a vendor page at a time in a valid example and
// checks that exactly the broken field is reported with a plain message.
func TestRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	type mut struct {
		path  string
		value any
		del   bool
	}
	tests := []struct {
		name      string
		example   string
		muts      []mut
		wantField string
		wantText  string
	}{
		// VMS (vms-AddQualification.txt, vms-UpdateQualification.txt)
		{"vms scenario list empty", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList", value: []any{}}}, "payload.QualificationScenarioInfoFormDOList", "at least one"},
		{"vms scenario list missing", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList", del: true}}, "payload.QualificationScenarioInfoFormDOList", "at least one"},
		{"vms scene type zero", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].SceneType", value: 0}}, "payload.QualificationScenarioInfoFormDOList[0].SceneType", "required"},
		{"vms description blank", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].Description", value: "  "}}, "payload.QualificationScenarioInfoFormDOList[0].Description", "required"},
		{"vms scenario of calling missing", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].ScenarioOfCalling", del: true}}, "payload.QualificationScenarioInfoFormDOList[0].ScenarioOfCalling", "required"},
		{"vms main info missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO", del: true}}, "payload.QualificationMainInfoFormDO", "required"},
		{"vms entity missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.QualificationEntity", value: ""}}, "payload.QualificationMainInfoFormDO.QualificationEntity", "required"},
		{"vms credit code missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.UnitSocialCreditCode", del: true}}, "payload.QualificationMainInfoFormDO.UnitSocialCreditCode", "required"},
		{"vms address missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.EnterpriseAddress", value: ""}}, "payload.QualificationMainInfoFormDO.EnterpriseAddress", "required"},
		{"vms legal name missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.LegalRepresentativeName", value: ""}}, "payload.QualificationMainInfoFormDO.LegalRepresentativeName", "required"},
		{"vms legal id missing", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.LegalRepresentativeId", value: ""}}, "payload.QualificationMainInfoFormDO.LegalRepresentativeId", "required"},
		{"vms admin missing", "vms.add_qualification", []mut{{path: "payload.QualificationAdminInfoFormDO", value: nil}}, "payload.QualificationAdminInfoFormDO", "required"},
		{"vms admin name missing", "vms.add_qualification", []mut{{path: "payload.QualificationAdminInfoFormDO.Name", value: ""}}, "payload.QualificationAdminInfoFormDO.Name", "required"},
		{"vms admin phone bad", "vms.add_qualification", []mut{{path: "payload.QualificationAdminInfoFormDO.ContactNumber", value: "call me"}}, "payload.QualificationAdminInfoFormDO.ContactNumber", "phone number"},
		{"vms admin id missing", "vms.add_qualification", []mut{{path: "payload.QualificationAdminInfoFormDO.IdCardNumber", value: ""}}, "payload.QualificationAdminInfoFormDO.IdCardNumber", "required"},
		{"vms update needs number", "vms.update_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.QualificationNo", del: true}, {path: "payload.QualificationMainInfoFormDO.QualificationId", del: true}}, "payload.QualificationMainInfoFormDO.QualificationNo", "required for an update"},
		{"vms wrong type", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.CertificateThreeInOne", value: "60"}}, "payload.QualificationMainInfoFormDO.CertificateThreeInOne", "must be an integer"},
		{"vms fraction", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].SceneType", value: 11.5}}, "payload.QualificationScenarioInfoFormDOList[0].SceneType", "must be an integer"},
		{"vms huge int", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].SceneType", value: jsonNumber("99999999999999999999")}}, "payload.QualificationScenarioInfoFormDOList[0].SceneType", "out of range"},
		{"vms scene type above int32", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].SceneType", value: jsonNumber("2147483648")}}, "payload.QualificationScenarioInfoFormDOList[0].SceneType", "32-bit integer"},
		{"vms three-in-one above int32", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.CertificateThreeInOne", value: jsonNumber("4294967296")}}, "payload.QualificationMainInfoFormDO.CertificateThreeInOne", "32-bit integer"},
		{"vms qualification id above int32", "vms.update_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.QualificationId", value: jsonNumber("2147483648")}}, "payload.QualificationMainInfoFormDO.QualificationId", "32-bit integer"},
		{"vms scenario qualification id above int32", "vms.update_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList[0].QualificationId", value: jsonNumber("-2147483649")}}, "payload.QualificationScenarioInfoFormDOList[0].QualificationId", "32-bit integer"},
		{"vms admin qualification id above int32", "vms.add_qualification", []mut{{path: "payload.QualificationAdminInfoFormDO.QualificationId", value: jsonNumber("2147483648")}}, "payload.QualificationAdminInfoFormDO.QualificationId", "32-bit integer"},
		{"vms req source type negative", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.ReqSourceType", value: -1}}, "payload.QualificationMainInfoFormDO.ReqSourceType", "must not be negative"},
		{"vms case-folded name", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.UnitSocialCreditCode", del: true}, {path: "payload.QualificationMainInfoFormDO.unitSocialCreditCode", value: "9111"}}, "payload.QualificationMainInfoFormDO.unitSocialCreditCode", `did you mean "UnitSocialCreditCode"`},
		{"vms list not array", "vms.add_qualification", []mut{{path: "payload.QualificationScenarioInfoFormDOList", value: map[string]any{}}}, "payload.QualificationScenarioInfoFormDOList", "must be an array"},
		{"vms huge string", "vms.add_qualification", []mut{{path: "payload.QualificationMainInfoFormDO.EnterpriseAddress", value: long(70000)}}, "payload.QualificationMainInfoFormDO.EnterpriseAddress", "at most 65536"},

		// SMS (sms-ApplySignatureIdent.txt, docs/vendors.md)
		{"sms material name missing", "sms.apply_signature_ident", []mut{{path: "payload.materialName", del: true}}, "payload.materialName", "required"},
		{"sms material name 21 chars", "sms.apply_signature_ident", []mut{{path: "payload.materialName", value: strings.Repeat("资", 21)}}, "payload.materialName", "21 characters long, at most 20"},
		{"sms business info missing", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo", del: true}}, "payload.businessInfo", "required"},
		{"sms certificate name", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificateName", value: ""}}, "payload.businessInfo.businessCertificateName", "required"},
		{"sms credit id", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.unifiedSocialCreditIdentifier", value: ""}}, "payload.businessInfo.unifiedSocialCreditIdentifier", "required"},
		{"sms legal person name", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.legalPersonName", value: ""}}, "payload.businessInfo.legalPersonName", "required"},
		{"sms certificate file missing", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate", del: true}}, "payload.businessInfo.businessCertificate", "required"},
		{"sms file neither content nor url", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate", value: map[string]any{"fileType": 0, "fileSuffix": "png"}}}, "payload.businessInfo.businessCertificate", "fileContent"},
		{"sms file not data uri", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: "aGVsbG8="}}, "payload.businessInfo.businessCertificate.fileContent", "data URI"},
		{"sms file of another type than its suffix", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileSuffix", value: "pdf"}}, "payload.businessInfo.businessCertificate.fileContent", `which is not that of fileSuffix "pdf"`},
		{"sms file text type for an image suffix", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: "data:text/png;base64,aGVsbG8="}}, "payload.businessInfo.businessCertificate.fileContent", `which is not that of fileSuffix "png"`},
		{"sms file no type and a dot for a suffix", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: "data:;base64,aGVsbG8="}, {path: "payload.businessInfo.businessCertificate.fileSuffix", value: "."}}, "payload.businessInfo.businessCertificate.fileContent", `which is not that of fileSuffix "."`},
		{"sms file bad base64", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: "data:image/png;base64,@@@"}}, "payload.businessInfo.businessCertificate.fileContent", "base64"},
		{"sms file ref bad sha", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: map[string]any{"$ref": "obj://FILING_FILES/abc", "sha256": "xyz", "size": 10}}}, "payload.businessInfo.businessCertificate.fileContent", "sha256 must be"},
		{"sms file ref bad location", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: map[string]any{"$ref": "https://example.com/x", "sha256": strings.Repeat("a", 64), "size": 10}}}, "payload.businessInfo.businessCertificate.fileContent", "obj://BUCKET/NAME"},
		{"sms file ref no size", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: map[string]any{"$ref": "obj://FILING_FILES/abc", "sha256": strings.Repeat("a", 64)}}}, "payload.businessInfo.businessCertificate.fileContent", "size must be"},
		{"sms file ref unknown key", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: map[string]any{"$ref": "obj://FILING_FILES/abc", "sha256": strings.Repeat("a", 64), "size": 10, "url": "x"}}}, "payload.businessInfo.businessCertificate.fileContent.url", "unknown field of a file reference"},
		{"sms file content a number", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileContent", value: 7}}, "payload.businessInfo.businessCertificate.fileContent", "data URI string or a file reference"},
		{"sms file suffix", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate.fileSuffix", value: ""}}, "payload.businessInfo.businessCertificate.fileSuffix", "required"},
		{"sms file url only ok otherwise", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificate", value: map[string]any{"fileType": 0, "fileSuffix": "png", "fileUrl": "https://x/y.png"}}, {path: "payload.materialName", value: ""}}, "payload.materialName", "required"},
		{"sms start date format", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificateValidityPeriodStart", value: "2024/01/12"}}, "payload.businessInfo.businessCertificateValidityPeriodStart", "YYYY-MM-DD"},
		{"sms end date impossible", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificateValidityPeriodEnd", value: "2040-02-30"}}, "payload.businessInfo.businessCertificateValidityPeriodEnd", "YYYY-MM-DD"},
		{"sms end before start", "sms.apply_signature_ident", []mut{{path: "payload.businessInfo.businessCertificateValidityPeriodEnd", value: "2019-01-01"}}, "payload.businessInfo.businessCertificateValidityPeriodEnd", "before"},
		{"sms operator missing", "sms.apply_signature_ident", []mut{{path: "payload.operatorPerson", del: true}}, "payload.operatorPerson", "required"},
		{"sms responsible missing", "sms.apply_signature_ident", []mut{{path: "payload.responsiblePersonInfo", del: true}}, "payload.responsiblePersonInfo", "required"},
		{"sms person name", "sms.apply_signature_ident", []mut{{path: "payload.operatorPerson.personName", value: ""}}, "payload.operatorPerson.personName", "required"},
		{"sms person id card", "sms.apply_signature_ident", []mut{{path: "payload.responsiblePersonInfo.personIDCard", value: ""}}, "payload.responsiblePersonInfo.personIDCard", "required"},
		{"sms person mobile", "sms.apply_signature_ident", []mut{{path: "payload.legalPerson.personMobile", value: "abc"}}, "payload.legalPerson.personMobile", "phone number"},
		{"sms certificate type negative", "sms.apply_signature_ident", []mut{{path: "payload.operatorPerson.certificateType", value: -1}}, "payload.operatorPerson.certificateType", "negative"},
		{"sms purpose 3", "sms.apply_signature_ident", []mut{{path: "payload.purpose", value: 3}}, "payload.purpose", "1 (own use) or 2"},
		{"sms purpose missing", "sms.apply_signature_ident", []mut{{path: "payload.purpose", del: true}}, "payload.purpose", "1 (own use) or 2"},
		{"sms power of attorney when 2", "sms.apply_signature_ident", []mut{{path: "payload.powerOfAttorney", del: true}}, "payload.powerOfAttorney", "required when purpose is 2"},
		{"sms power of attorney file", "sms.apply_signature_ident", []mut{{path: "payload.powerOfAttorney[0].fileContent", value: "data:image/png;base64,"}}, "payload.powerOfAttorney[0].fileContent", "no content"},
		{"sms effect signature blank", "sms.apply_signature_ident", []mut{{path: "payload.effectSignatures", value: []any{""}}}, "payload.effectSignatures[0]", "required"},
		{"sms id negative", "sms.apply_signature_ident", []mut{{path: "payload.id", value: -5}}, "payload.id", "negative"},

		// Douyin add_role (douyin-add_role.txt, douyin-get_class_auth.txt)
		{"douyin entity missing", "douyin.add_role", []mut{{path: "payload.entity_id", value: ""}}, "payload.entity_id", "required"},
		{"douyin role 1 not addable", "douyin.add_role", []mut{{path: "payload.industry_role", value: 1}}, "payload.industry_role", "2 (institution) or 3 (partner)"},
		{"douyin appid in payload", "douyin.add_role", []mut{{path: "payload.appid", value: "tt1"}}, "payload.appid", "credentials"},
		{"douyin access token in payload", "douyin.add_role", []mut{{path: "payload.access_token", value: "x"}}, "payload.access_token", "credentials"},
		{"douyin institution info missing", "douyin.add_role", []mut{{path: "payload.institution_role_info", del: true}}, "payload.institution_role_info", "required"},
		{"douyin record name 3", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.record_name", value: "abc"}}, "payload.institution_role_info.institution_info.record_name", "must be 4 to 1000"},
		{"douyin record name cjk counts 2", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.record_name", value: "三"}}, "payload.institution_role_info.institution_info.record_name", "2 characters long counting a CJK character as 2"},
		{"douyin record name 1001", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.record_name", value: strings.Repeat("三", 501)}}, "payload.institution_role_info.institution_info.record_name", "1002 characters"},
		{"douyin scene type", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.scene_type", value: "线上"}}, "payload.institution_role_info.institution_info.scene_type", "线上机构"},
		{"douyin subject type", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.subject_type", value: ""}}, "payload.institution_role_info.institution_info.subject_type", "required"},
		{"douyin desc short", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.desc", value: "五个汉字呀"}}, "payload.institution_role_info.institution_info.desc", "10 characters"},
		{"douyin desc long", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_info.desc", value: strings.Repeat("介", 101)}}, "payload.institution_role_info.institution_info.desc", "must be 12 to 200"},
		{"douyin class missing", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info", del: true}}, "payload.institution_role_info.institution_class_info", "required"},
		{"douyin first class", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.industry_class.first_class", value: 0}}, "payload.institution_role_info.institution_class_info.industry_class.first_class", "required"},
		{"douyin employee name 1", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.name", value: "a"}}, "payload.institution_role_info.institution_class_info.employee.employee_material.name", "must be 2 to 30"},
		{"douyin employee name 31", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.name", value: strings.Repeat("花", 16)}}, "payload.institution_role_info.institution_class_info.employee.employee_material.name", "32 characters"},
		{"douyin employee id", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.id_number", value: ""}}, "payload.institution_role_info.institution_class_info.employee.employee_material.id_number", "required"},
		{"douyin expire time", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.expire_time", value: "永久"}}, "payload.institution_role_info.institution_class_info.employee.employee_material.expire_time", "长期有效"},
		{"douyin front path", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.front_path", value: ""}}, "payload.institution_role_info.institution_class_info.employee.employee_material.front_path", "required"},
		{"douyin back path", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.employee_material.back_path", del: true}}, "payload.institution_role_info.institution_class_info.employee.employee_material.back_path", "required"},
		{"douyin agreement missing", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.employee.cooperation_agreement", del: true}}, "payload.institution_role_info.institution_class_info.employee.cooperation_agreement", "required"},
		{"douyin material type", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.class_material.material_type", value: 0}}, "payload.institution_role_info.institution_class_info.class_material.material_type", "required"},
		{"douyin material date", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.class_material.material_expiretime", value: "2030-4-4"}}, "payload.institution_role_info.institution_class_info.class_material.material_expiretime", "YYYY-MM-DD"},
		{"douyin material paths empty", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.class_material.material_paths", value: []any{}}}, "payload.institution_role_info.institution_class_info.class_material.material_paths", "at least one"},
		{"douyin material path blank", "douyin.add_role", []mut{{path: "payload.institution_role_info.institution_class_info.class_material.material_paths", value: []any{""}}}, "payload.institution_role_info.institution_class_info.class_material.material_paths[0]", "required"},
		{"douyin partner info required", "douyin.add_role", []mut{{path: "payload.industry_role", value: 3}}, "payload.partner_role_info", "required"},
		{"douyin partner company type", "douyin.add_role", []mut{{path: "payload.industry_role", value: 3}, {path: "payload.partner_role_info", value: map[string]any{"partner_info": map[string]any{"company_type": "", "company_addr": "晋城", "cooperation_cases": []any{map[string]any{"material_type": 1010, "material_expiretime": "2033-03-03", "material_paths": []any{"a"}}}}}}}, "payload.partner_role_info.partner_info.company_type", "required"},
		{"douyin partner cases", "douyin.add_role", []mut{{path: "payload.industry_role", value: 3}, {path: "payload.partner_role_info", value: map[string]any{"partner_info": map[string]any{"company_type": "企业", "company_addr": "晋城", "cooperation_cases": []any{}}}}}, "payload.partner_role_info.partner_info.cooperation_cases", "at least one"},

		// Douyin get_class_auth
		{"class auth merchant", "douyin.get_class_auth", []mut{{path: "payload.merchant_entity_id", value: ""}}, "payload.merchant_entity_id", "required"},
		{"class auth industry code", "douyin.get_class_auth", []mut{{path: "payload.industry_code", value: 0}}, "payload.industry_code", "required"},
		{"class auth industry class", "douyin.get_class_auth", []mut{{path: "payload.industry_class", del: true}}, "payload.industry_class", "required"},
		{"class auth role 4", "douyin.get_class_auth", []mut{{path: "payload.industry_role", value: 4}}, "payload.industry_role", "1 (teacher), 2 (institution) or 3"},
		{"class auth partner for teacher", "douyin.get_class_auth", []mut{{path: "payload.industry_role", value: 1}}, "payload.partner_entity_id", "required when industry_role is 1"},

		// envelope
		{"envelope id missing", "vms.add_qualification", []mut{{path: "id", del: true}}, "id", "required"},
		{"envelope id chars", "vms.add_qualification", []mut{{path: "id", value: "a b"}}, "id", "letters, digits"},
		{"envelope id long", "vms.add_qualification", []mut{{path: "id", value: long(129)}}, "id", "at most 128"},
		{"envelope api unknown", "vms.add_qualification", []mut{{path: "api", value: "vms.delete_everything"}}, "api", "unknown api"},
		{"envelope api missing", "vms.add_qualification", []mut{{path: "api", del: true}}, "api", "required"},
		{"envelope api wrong type", "vms.add_qualification", []mut{{path: "api", value: 7}}, "api", "must be a string"},
		{"envelope payload missing", "vms.add_qualification", []mut{{path: "payload", del: true}}, "payload", "required"},
		{"envelope payload not object", "vms.add_qualification", []mut{{path: "payload", value: "x"}}, "payload", "must be an object"},
		{"envelope account", "vms.add_qualification", []mut{{path: "account", value: "no spaces please"}}, "account", "letters, digits"},
		{"envelope reply to", "vms.add_qualification", []mut{{path: "reply_to", value: "_INBOX.*"}}, "reply_to", "NATS subject"},
		{"envelope submitted at", "vms.add_qualification", []mut{{path: "submitted_at", value: "yesterday"}}, "submitted_at", "RFC 3339"},
		{"envelope metadata type", "vms.add_qualification", []mut{{path: "metadata", value: map[string]any{"n": 1}}}, "metadata", "object of strings"},
		{"envelope unknown field", "vms.add_qualification", []mut{{path: "QualificationNo", value: "x"}}, "QualificationNo", "unknown envelope field"},
		{"envelope api vs payload", "vms.add_qualification", []mut{{path: "api", value: "sms.apply_signature_ident"}}, "payload.materialName", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := exampleTree(t, tt.example)
			for _, m := range tt.muts {
				setPath(t, tree, m.path, m.value, m.del)
			}
			got := problemsOf(t, tree)
			problem, ok := got[tt.wantField]
			if !ok {
				t.Fatalf("no problem reported for %s; got %v", tt.wantField, got)
			}
			if !strings.Contains(problem, tt.wantText) {
				t.Errorf("%s: problem %q does not mention %q", tt.wantField, problem, tt.wantText)
			}
		})
	}
}

// TestExamplesValid checks that every examples/<api>.json passes validation.
func TestExamplesValid(t *testing.T) {
	for _, api := range []string{"vms.add_qualification", "vms.update_qualification", "sms.apply_signature_ident", "douyin.add_role", "douyin.get_class_auth"} {
		t.Run(api, func(t *testing.T) {
			if got := problemsOf(t, exampleTree(t, api)); len(got) != 0 {
				t.Fatalf("examples/%s.json: unexpected problems %v", api, got)
			}
		})
	}
}

// TestInvalidExamples checks that each examples/invalid/<api>.json reports
// every problem it was written with, all at once.
func TestInvalidExamples(t *testing.T) {
	want := map[string][]string{
		"vms.add_qualification": {
			"id", "payload.QualificationScenarioInfoFormDOList", "payload.QualificationMainInfoFormDO.QualificationEntity",
			"payload.QualificationMainInfoFormDO.CertificateThreeInOne", "payload.QualificationMainInfoFormDO.unitSocialCreditCode",
			"payload.QualificationMainInfoFormDO.UnitSocialCreditCode",
			"payload.QualificationAdminInfoFormDO.ContactNumber", "payload.QualificationAdminInfoFormDO.IdCardNumber",
		},
		"vms.update_qualification": {
			"payload.QualificationScenarioInfoFormDOList[0].SceneType", "payload.QualificationScenarioInfoFormDOList[0].Description",
			"payload.QualificationMainInfoFormDO.QualificationNo", "payload.QualificationAdminInfoFormDO",
		},
		"sms.apply_signature_ident": {
			"payload.materialName", "payload.businessInfo.businessCertificate.fileContent", "payload.businessInfo.businessCertificateName",
			"payload.businessInfo.businessCertificateValidityPeriodStart", "payload.operatorPerson.personIDCard",
			"payload.responsiblePersonInfo", "payload.powerOfAttorney",
		},
		"douyin.add_role": {
			"payload.appid", "payload.institution_role_info.institution_info.record_name", "payload.institution_role_info.institution_info.scene_type",
			"payload.institution_role_info.institution_info.desc", "payload.institution_role_info.institution_class_info.industry_class.first_class",
			"payload.institution_role_info.institution_class_info.employee.employee_material.name",
			"payload.institution_role_info.institution_class_info.employee.employee_material.expire_time",
			"payload.institution_role_info.institution_class_info.employee.employee_material.back_path",
			"payload.institution_role_info.institution_class_info.employee.cooperation_agreement.material_expiretime",
			"payload.institution_role_info.institution_class_info.employee.cooperation_agreement.material_paths",
			"payload.institution_role_info.institution_class_info.class_material",
		},
		"douyin.get_class_auth": {"payload.merchant_entity_id", "payload.industry_code", "payload.partner_entity_id"},
	}
	for api, fields := range want {
		t.Run(api, func(t *testing.T) {
			got := problemsOf(t, exampleTree(t, "invalid/"+api))
			for _, f := range fields {
				if _, ok := got[f]; !ok {
					t.Errorf("missing problem for %s", f)
				}
			}
			if len(got) != len(fields) {
				t.Errorf("got %d problems, want %d: %v", len(got), len(fields), got)
			}
		})
	}
}
