package volcengine

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// seedVMSBody is the request body of the vendor's AddQualification page,
// verbatim: every field name as the vendor spells it.
const seedVMSBody = `{
  "QualificationScenarioInfoFormDOList": [
    {
      "SceneType": 1101,
      "Description": "针对代充用户外呼调研,调研出代充的充值渠道,以及店铺名称",
      "ScenarioOfCalling": "“我在微信上/淘宝上进行充值的啊”\n——好的,先生/女士,那您能告知客服,您充值抖币经常使用的具体公众号名称/淘宝店铺名称吗?\n“你问那么详细是要做什么呢?”",
      "QualificationId": 1234,
      "QualificationNo": "QUA164664762128220429"
    }
  ],
  "QualificationMainInfoFormDO": {
    "QualificationEntity": "ygcguW",
    "CertificateThreeInOne": 60,
    "EnterpriseAddress": "北京市海淀区",
    "LegalRepresentativeId": "1221454542457",
    "LegalRepresentativeFrontIdPhotoFileCode": "图片tos文件名",
    "LegalRepresentativeName": "张三",
    "DocOfNumberApplyPhotoFileCode": "图片tos文件名",
    "CommitmentLetterOfNetAccessPhotoFileCode": "图片tos文件名",
    "UnitSocialCreditCode": "HUHUHUJKKLHFGG",
    "ThreeInOneBusinessLicensePhotoFileCode": "图片tos文件名",
    "BusinessLicensePhotoFileCode": "图片tos文件名",
    "CertificateOfTaxationRegistrationPhotoFileCode": "图片tos文件名",
    "QualificationId": 1234,
    "CodeOfOrganizationCertificate": "123456",
    "LegalRepresentativeBackIdPhotoFileCode": "123456.jpg",
    "CertificateOfOrganizationCodesPhotoFileCode": "abcdef.jpg",
    "QualificationNo": "QUA164664762128220429"
  },
  "QualificationAdminInfoFormDO": {
    "Name": "李四",
    "ContactNumber": "13111112222",
    "IdCardNumber": "14254675125",
    "IdCardFrontPhotoFileCode": "图片tos文件名",
    "IdCardPhotoWithPeopleFileCode": "图片tos文件名",
    "QualificationId": 1234,
    "IdCardBackPhotoFileCode": "abcd.jpg"
  }
}`

func seedVMS(t *testing.T) *messages.VMSQualification {
	t.Helper()
	var q messages.VMSQualification
	dec := json.NewDecoder(strings.NewReader(seedVMSBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		t.Fatalf("seed body does not decode into messages.VMSQualification: %v", err)
	}
	return &q
}

func newTestVMS(t *testing.T, f *fakeVendor, mod func(*Config)) *VMS {
	t.Helper()
	cfg := Config{Endpoint: f.URL, Credentials: testCreds, Now: func() time.Time { return testNow }}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewVMS(cfg)
	if err != nil {
		t.Fatalf("NewVMS: %v", err)
	}
	return v
}

// checkVolcRequest checks what every Volcengine call must look like.
func checkVolcRequest(t *testing.T, got received, action, version, service, region string) {
	t.Helper()
	if got.Method != http.MethodPost {
		t.Errorf("method = %s, want POST", got.Method)
	}
	if got.Path != "/" {
		t.Errorf("path = %q, want /", got.Path)
	}
	if len(got.Query) != 2 || got.Query.Get("Action") != action || got.Query.Get("Version") != version {
		t.Errorf("query = %v, want Action=%s&Version=%s", got.Query, action, version)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got.Verify != nil {
		t.Errorf("Authorization does not verify: %v", got.Verify)
	}
	if got.Auth.AccessKeyID != testCreds.AccessKeyID || got.Auth.Service != service || got.Auth.Region != region || got.Auth.ShortDate != "20250605" {
		t.Errorf("credential = %+v, want %s/20250605/%s/%s", got.Auth, testCreds.AccessKeyID, region, service)
	}
	if xd := got.Header.Get("X-Date"); xd != "20250605T030834Z" {
		t.Errorf("X-Date = %q", xd)
	}
}

func TestVMSAddQualificationSuccess(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	f.Reply = replyJSON(200, `{
  "ResponseMetadata": {"RequestId": "20250605110842095162110088E4A288", "Action": "AddQualification",
    "Version": "2022-01-01", "Service": "vms", "Region": "cn-beijing"},
  "Result": {"QualificationNo": "QU1234"}
}`)
	v := newTestVMS(t, f, nil)
	res, md, err := v.AddQualification(context.Background(), seedVMS(t))
	if err != nil {
		t.Fatalf("AddQualification: %v", err)
	}
	if res.QualificationNo != "QU1234" {
		t.Errorf("QualificationNo = %q", res.QualificationNo)
	}
	wantMD := Metadata{RequestID: testRequestID, Action: "AddQualification", Version: "2022-01-01", Service: "vms", Region: "cn-beijing", HTTPStatus: 200}
	if md != wantMD {
		t.Errorf("Metadata = %+v, want %+v", md, wantMD)
	}
	got := f.last(t)
	checkVolcRequest(t, got, "AddQualification", "2022-01-01", "vms", "cn-north-1")
	if g, w := genericJSON(t, got.Body), sdkBody(t); !reflect.DeepEqual(g, w) {
		t.Errorf("body differs from the vendor's example with the SDK's ReqSourceType:\n got %s", got.Body)
	}
}

// sdkBody is the vendor's example as the official SDK sends it:
// QualificationMainInfoFormDO.ReqSourceType 3.
func sdkBody(t *testing.T) any {
	t.Helper()
	w := genericJSON(t, []byte(seedVMSBody))
	w.(map[string]any)["QualificationMainInfoFormDO"].(map[string]any)["ReqSourceType"] = json.Number("3")
	return w
}

// A caller's ReqSourceType is sent as given; the caller's payload is never
// changed by the default.
func TestVMSReqSourceType(t *testing.T) {
	for _, given := range []int32{0, 5} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("AddQualification", "", `{"QualificationNo":"QU1"}`))
		q := seedVMS(t)
		q.QualificationMainInfoFormDO.ReqSourceType = given
		if _, _, err := newTestVMS(t, f, nil).AddQualification(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		var sent messages.VMSQualification
		if err := json.Unmarshal(f.last(t).Body, &sent); err != nil {
			t.Fatal(err)
		}
		want := given
		if want == 0 {
			want = messages.DefaultReqSourceType
		}
		if got := sent.QualificationMainInfoFormDO.ReqSourceType; got != want {
			t.Errorf("given %d: sent ReqSourceType %d, want %d", given, got, want)
		}
		if q.QualificationMainInfoFormDO.ReqSourceType != given {
			t.Errorf("given %d: the caller's payload was changed to %d", given, q.QualificationMainInfoFormDO.ReqSourceType)
		}
	}
}

func TestVMSAddQualificationResultSpellings(t *testing.T) {
	for _, result := range []string{
		`{"QualificationNo":"QU1"}`,
		`{"qualificationNo":"QU1"}`,
		`{"qualificationno":"QU1"}`,
		`{"QualificationNo":"QU1","Other":1}`,
	} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("AddQualification", "", result))
		res, _, err := newTestVMS(t, f, nil).AddQualification(context.Background(), seedVMS(t))
		if err != nil || res.QualificationNo != "QU1" {
			t.Errorf("Result %s: got %+v, %v; want QU1", result, res, err)
		}
	}
}

func TestVMSAddQualificationNoResult(t *testing.T) {
	for _, result := range []string{``, `null`, `{}`, `{"QualificationNo":""}`, `{"QualificationNo":null}`} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("AddQualification", "", result))
		_, md, err := newTestVMS(t, f, nil).AddQualification(context.Background(), seedVMS(t))
		if !errors.Is(err, ErrNoResult) || !errors.Is(err, retry.ErrPermanent) || errors.Is(err, retry.ErrTransient) {
			t.Errorf("Result %q: err = %v, want ErrNoResult (permanent)", result, err)
		}
		if md.RequestID != testRequestID || md.HTTPStatus != 200 {
			t.Errorf("Result %q: Metadata = %+v", result, md)
		}
	}
	// A Result that cannot be read is permanent and malformed.
	for _, result := range []string{`"QU1"`, `[1]`, `{"QualificationNo":{"a":1}}`} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("AddQualification", "", result))
		_, _, err := newTestVMS(t, f, nil).AddQualification(context.Background(), seedVMS(t))
		var ae *APIError
		if !errors.As(err, &ae) || !errors.Is(err, ErrMalformedReply) || !errors.Is(err, retry.ErrPermanent) || ae.RequestID != testRequestID {
			t.Errorf("Result %s: err = %v, want a permanent malformed *APIError", result, err)
		}
	}
}

func TestVMSUpdateQualification(t *testing.T) {
	tests := []struct{ result, want string }{
		{`{}`, `{}`},
		{`"ok"`, `"ok"`},
		{`{"Status":"accepted","N":9007199254740993}`, `{"Status":"accepted","N":9007199254740993}`},
		{``, `{}`},
		{`null`, `{}`},
	}
	for _, tt := range tests {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("UpdateQualification", "", tt.result))
		got, md, err := newTestVMS(t, f, nil).UpdateQualification(context.Background(), seedVMS(t))
		if err != nil {
			t.Fatalf("Result %q: %v", tt.result, err)
		}
		if string(got) != tt.want {
			t.Errorf("Result %q: got %s, want %s", tt.result, got, tt.want)
		}
		if md.RequestID != testRequestID || md.Action != "UpdateQualification" || md.HTTPStatus != 200 {
			t.Errorf("Metadata = %+v", md)
		}
		rec := f.last(t)
		checkVolcRequest(t, rec, "UpdateQualification", "2022-01-01", "vms", "cn-north-1")
		if g, w := genericJSON(t, rec.Body), sdkBody(t); !reflect.DeepEqual(g, w) {
			t.Errorf("body differs from the vendor's example with the SDK's ReqSourceType:\n got %s", rec.Body)
		}
	}
}

func TestNilPayloadIsInvalid(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	v := newTestVMS(t, f, nil)
	s := newTestSMS(t, f, nil)
	_, _, err1 := v.AddQualification(context.Background(), nil)
	_, _, err2 := v.UpdateQualification(context.Background(), nil)
	_, _, err3 := s.ApplySignatureIdent(context.Background(), nil)
	for i, err := range []error{err1, err2, err3} {
		if !errors.Is(err, retry.ErrInvalid) {
			t.Errorf("call %d: err = %v, want retry.ErrInvalid", i, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}
