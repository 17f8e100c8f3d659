package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

func TestParseRequestUndecodable(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		reason string
	}{
		{"invalid utf-8", []byte("{\"id\":\"a\xff\"}"), "UTF-8"},
		{"empty", nil, "empty"},
		{"array", []byte(`[1,2]`), "not a JSON object"},
		{"string", []byte(`"hi"`), "not a JSON object"},
		{"truncated", []byte(`{"id":"a"`), "not a JSON object"},
		{"garbage after", []byte(`{"id":"a"} x`), "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := messages.ParseRequest(tt.data)
			if !errors.Is(err, messages.ErrUndecodable) {
				t.Fatalf("err = %v, want ErrUndecodable", err)
			}
			var de *messages.DecodeError
			if !errors.As(err, &de) || !strings.Contains(de.Reason, tt.reason) {
				t.Fatalf("reason = %v, want it to mention %q", err, tt.reason)
			}
		})
	}
}

func TestValidateForSubject(t *testing.T) {
	r, err := messages.ParseRequest(mustJSON(t, exampleTree(t, "vms.add_qualification")))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ValidateFor(messages.APIVMSAddQualification); err != nil {
		t.Fatalf("valid request on its own subject: %v", err)
	}
	err = r.ValidateFor(messages.APISMSApplySignatureIdent)
	var ve *messages.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, messages.ErrInvalid) {
		t.Fatalf("err = %v, want a ValidationError", err)
	}
	if len(ve.Fields) != 1 || ve.Fields[0].Field != "api" || !strings.Contains(ve.Fields[0].Problem, "subject") {
		t.Fatalf("fields = %v, want one api/subject problem", ve.Fields)
	}
}

func TestValidateTyped(t *testing.T) {
	for api, want := range map[string]any{
		"vms.add_qualification":     &messages.VMSQualification{},
		"sms.apply_signature_ident": &messages.SMSApplySignatureIdent{},
		"douyin.add_role":           &messages.DouyinAddRole{},
		"douyin.get_class_auth":     &messages.DouyinGetClassAuth{},
	} {
		r, err := messages.ParseRequest(mustJSON(t, exampleTree(t, api)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Typed() != nil {
			t.Fatalf("%s: Typed before Validate", api)
		}
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		if reflect.TypeOf(r.Typed()) != reflect.TypeOf(want) {
			t.Fatalf("%s: Typed() is %T, want %T", api, r.Typed(), want)
		}
	}
}

// TestNoFieldDropped decodes each example's payload into its typed struct,
// encodes it again, and checks that every field of the original (the vendor
// pages' fields) comes out with the same value.
func TestNoFieldDropped(t *testing.T) {
	for _, api := range messages.APIs() {
		t.Run(string(api), func(t *testing.T) {
			tree := exampleTree(t, string(api))
			raw := mustJSON(t, tree["payload"])
			typed, err := messages.DecodePayload(api, raw, "")
			if err != nil {
				t.Fatal(err)
			}
			again := mustJSON(t, typed)
			var a, b any
			decodeNumbers(t, raw, &a)
			decodeNumbers(t, again, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip changed the payload:\n in: %s\nout: %s", raw, again)
			}
		})
	}
}

func decodeNumbers(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestDocumentedFieldsKnown checks that every field shown in the vendor pages'
// request examples is a known field of the typed payload (never reported as
// unknown, so never dropped).
func TestDocumentedFieldsKnown(t *testing.T) {
	pages := map[messages.API]string{
		messages.APIVMSAddQualification: `{"QualificationScenarioInfoFormDOList":[{"SceneType":1101,"Description":"d","ScenarioOfCalling":"s","QualificationId":1234,"QualificationNo":"QUA164664762128220429"}],
			"QualificationMainInfoFormDO":{"QualificationEntity":"ygcguW","CertificateThreeInOne":60,"EnterpriseAddress":"北京市海淀区","LegalRepresentativeId":"1221454542457","LegalRepresentativeFrontIdPhotoFileCode":"f","LegalRepresentativeName":"张三","DocOfNumberApplyPhotoFileCode":"f","CommitmentLetterOfNetAccessPhotoFileCode":"f","UnitSocialCreditCode":"HUHUHUJKKLHFGG","ThreeInOneBusinessLicensePhotoFileCode":"f","BusinessLicensePhotoFileCode":"f","CertificateOfTaxationRegistrationPhotoFileCode":"f","QualificationId":1234,"CodeOfOrganizationCertificate":"123456","LegalRepresentativeBackIdPhotoFileCode":"123456.jpg","CertificateOfOrganizationCodesPhotoFileCode":"abcdef.jpg","QualificationNo":"QUA164664762128220429"},
			"QualificationAdminInfoFormDO":{"Name":"李四","ContactNumber":"13111112222","IdCardNumber":"14254675125","IdCardFrontPhotoFileCode":"f","IdCardPhotoWithPeopleFileCode":"f","QualificationId":1234,"IdCardBackPhotoFileCode":"abcd.jpg"}}`,
		messages.APISMSApplySignatureIdent: `{"id":7,"materialName":"2D6VktxOY","businessInfo":{"businessCertificateType":1,"businessCertificate":{"fileContent":"data:image/jpg;base64,SVBW","fileSuffix":"jpg","fileType":0,"fileUrl":"at2hdE1bbau"},"businessCertificateName":"NXWL621PJMD","unifiedSocialCreditIdentifier":"Zf6m","businessCertificateValidityPeriodStart":"2024-01-12","businessCertificateValidityPeriodEnd":"2024-01-12","legalPersonName":"Hx"},
			"operatorPerson":{"certificateType":0,"personCertificate":[],"personName":"L23sBtG","personIDCard":"hxzgkU8aH","personMobile":"13111112222"},
			"responsiblePersonInfo":{"certificateType":0,"personCertificate":[],"personName":"ek8J433e8mU","personIDCard":"vFXKH","personMobile":"13111112222"},
			"legalPerson":{"certificateType":0,"personCertificate":[],"personName":"ek8J433e8mU","personIDCard":"vFXKH","personMobile":"13111112222"},
			"powerOfAttorney":[{"fileContent":"data:image/jpg;base64,SVBW","fileSuffix":"jpg","fileType":0,"fileUrl":"VlqP73C9VP1"}],"otherMaterials":[],"effectSignatures":["x"],"purpose":1}`,
		messages.APIDouyinAddRole: `{"entity_id":"E_7216554566647824422","industry_role":3,"partner_role_info":{"partner_info":{"company_type":"企业工商户","company_addr":"中国山西晋城","cooperation_cases":[{"material_type":1010,"material_expiretime":"2033-03-03","material_paths":["certification/resource/f105"]}]}},
			"institution_role_info":{"institution_info":{"record_name":"","scene_type":"","subject_type":"","logo_uri":"","trademark_uri":"","desc":""},"institution_class_info":{"industry_class":{"first_class":0,"second_class":0,"third_class":0},"employee":{"employee_material":{"name":"","id_number":"","expire_time":"","front_path":"","back_path":""},"cooperation_agreement":{"material_type":0,"material_expiretime":"","material_paths":[""]}},"class_material":{"material_type":0,"material_expiretime":"","material_paths":[""]}}}}`,
		messages.APIDouyinGetClassAuth: `{"partner_entity_id":"E_7178703725253394476","merchant_entity_id":"I_7179078906694139948","industry_code":10000,"industry_class":{"first_class":40000,"second_class":40600,"third_class":0},"industry_role":1}`,
	}
	for api, body := range pages {
		t.Run(string(api), func(t *testing.T) {
			typed, err := messages.DecodePayload(api, []byte(body), "")
			if err != nil {
				t.Fatalf("the page's own example is rejected: %v", err)
			}
			var in, out map[string]any
			decodeNumbers(t, []byte(body), &in)
			decodeNumbers(t, mustJSON(t, typed), &out)
			assertKeysKept(t, "", in, out)
		})
	}
}

// assertKeysKept fails when a key of in is missing from out (a zero value
// dropped by omitempty is allowed only when it is zero).
func assertKeysKept(t *testing.T, path string, in, out any) {
	t.Helper()
	switch in := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range in {
			ov, ok := o[k]
			if !ok {
				if isZero(v) {
					continue
				}
				t.Errorf("field %s.%s dropped", path, k)
				continue
			}
			assertKeysKept(t, path+"."+k, v, ov)
		}
	case []any:
		o, _ := out.([]any)
		if len(o) != len(in) {
			t.Errorf("%s: %d items became %d", path, len(in), len(o))
			return
		}
		for i := range in {
			assertKeysKept(t, path, in[i], o[i])
		}
	default:
		if !reflect.DeepEqual(in, out) {
			t.Errorf("%s: %v became %v", path, in, out)
		}
	}
}

func isZero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == ""
	case json.Number:
		return v == "0"
	case []any:
		return len(v) == 0
	}
	return false
}

func TestSMSResultID64(t *testing.T) {
	var r messages.SMSApplyResult
	if err := json.Unmarshal([]byte(`{"id":9007199254740993}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != 9007199254740993 {
		t.Fatalf("id = %d, want 9007199254740993 exactly", r.ID)
	}
	if got := string(mustJSON(t, r)); got != `{"id":9007199254740993}` {
		t.Fatalf("encoded as %s", got)
	}
}

func TestHugeAndHostileInput(t *testing.T) {
	huge := strings.Repeat("字", 1<<20)
	tests := []struct {
		name      string
		data      string
		wantField string
	}{
		{"huge id", `{"id":"` + huge + `","api":"douyin.get_class_auth","payload":{}}`, "id"},
		{"huge api", `{"id":"a","api":"` + huge + `","payload":{}}`, "api"},
		{"deep nesting", `{"id":"a","api":"douyin.get_class_auth","payload":{"industry_class":` + strings.Repeat(`{"x":`, 100) + `1` + strings.Repeat(`}`, 100) + `}}`, "payload.industry_class.x"},
		{"long array", `{"id":"a","api":"sms.apply_signature_ident","payload":{"effectSignatures":[` + strings.TrimSuffix(strings.Repeat(`"s",`, 1001), ",") + `]}}`, "payload.effectSignatures"},
		{"payload null", `{"id":"a","api":"sms.apply_signature_ident","payload":null}`, "payload"},
		{"numbers as strings", `{"id":"a","api":"douyin.get_class_auth","payload":{"merchant_entity_id":"E_1","industry_code":"1","industry_class":{"first_class":1},"industry_role":"2"}}`, "payload.industry_role"},
		{"bool for int", `{"id":"a","api":"douyin.get_class_auth","payload":{"merchant_entity_id":"E_1","industry_code":true,"industry_class":{"first_class":1},"industry_role":2}}`, "payload.industry_code"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := messages.ParseRequest([]byte(tt.data))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			err = r.Validate()
			var ve *messages.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want ValidationError", err)
			}
			found := false
			for _, f := range ve.Fields {
				if f.Field == tt.wantField {
					found = true
				}
				if len(f.Problem) > 300 || len(f.Field) > 300 {
					t.Errorf("problem too long to read: %.80s…", f.Problem)
				}
			}
			if !found {
				t.Fatalf("no problem for %s in %v", tt.wantField, ve.Fields)
			}
		})
	}
}

// TestAuditSubjectNamesTheRequest: an audit subject has one token naming
// the request (ids may hold dots) after the api, and AuditOf's filters
// match it for every api, the two-token ones and "unknown".
func TestAuditSubjectNamesTheRequest(t *testing.T) {
	s := messages.Subjects{Prefix: "filing"}
	id := "a.b:c-1"
	key := messages.IDKey(id)
	if len(key) != 32 || strings.Trim(key, "0123456789abcdef") != "" || messages.IDKey("a.b:c-2") == key {
		t.Fatalf("IDKey(%q) = %q", id, key)
	}
	match := func(filter, subject string) bool {
		f, sub := strings.Split(filter, "."), strings.Split(subject, ".")
		if len(f) != len(sub) {
			return false
		}
		for i := range f {
			if f[i] != "*" && f[i] != sub[i] {
				return false
			}
		}
		return true
	}
	for _, api := range append(messages.APIs(), "unknown") {
		subject := s.Audit(api, messages.EventReceived, id)
		if want := "filing.audit." + string(api) + "." + key + ".received"; subject != want {
			t.Errorf("%s: subject %s, want %s", api, subject, want)
		}
		if want := "filing.result." + string(api) + "." + key; s.ResultFor(api, id) != want {
			t.Errorf("%s: result subject %s, want %s", api, s.ResultFor(api, id), want)
		}
		rmatched := 0
		for _, f := range s.ResultOf(id) {
			if match(f, s.ResultFor(api, id)) {
				rmatched++
			}
		}
		if rmatched != 1 {
			t.Errorf("%s: %d of the result filters %v match %s, want 1", api, rmatched, s.ResultOf(id), s.ResultFor(api, id))
		}
		matched := 0
		for _, f := range s.AuditOf(id) {
			if match(f, subject) {
				matched++
			}
		}
		if matched != 1 {
			t.Errorf("%s: %d of the filters %v match %s, want 1", api, matched, s.AuditOf(id), subject)
		}
	}
}
