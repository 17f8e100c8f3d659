package volcengine

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// seedSMSBody is the request body of the vendor's ApplySignatureIdent page,
// verbatim: every field name as the vendor spells it.
const seedSMSBody = `{ "materialName": "2D6VktxOY", "businessInfo": { "businessCertificateType": 1, "businessCertificate": { "fileContent": "data:image/jpg;base64,IPV*****************************************************************CYII=", "fileSuffix": "jpg", "fileType": 0, "fileUrl": "at2hdE1bbau" }, "businessCertificateName": "NXWL621PJMD", "unifiedSocialCreditIdentifier": "Zf6m", "businessCertificateValidityPeriodStart": "2024-01-12", "businessCertificateValidityPeriodEnd": "2024-01-12", "legalPersonName": "Hx" }, "operatorPerson": { "certificateType": 0, "personCertificate": [], "personName": "L23sBtG", "personIDCard": "hxzgkU8aH", "personMobile": "zOb" }, "responsiblePersonInfo": { "certificateType": 0, "personCertificate": [], "personName": "ek8J433e8mU", "personIDCard": "vFXKH", "personMobile": "52Tbt" }, "legalPerson": { "certificateType": 0, "personCertificate": [], "personName": "ek8J433e8mU", "personIDCard": "vFXKH", "personMobile": "52Tbt" }, "powerOfAttorney": [ { "fileContent": "data:image/jpg;base64,IPV*****************************************************************CYII=", "fileSuffix": "jpg", "fileType": 0, "fileUrl": "VlqP73C9VP1" } ], "purpose": 1 }`

func seedSMS(t *testing.T) *messages.SMSApplySignatureIdent {
	t.Helper()
	var p messages.SMSApplySignatureIdent
	dec := json.NewDecoder(strings.NewReader(seedSMSBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("seed body does not decode into messages.SMSApplySignatureIdent: %v", err)
	}
	return &p
}

func newTestSMS(t *testing.T, f *fakeVendor, mod func(*Config)) *SMS {
	t.Helper()
	cfg := Config{Endpoint: f.URL, Credentials: testCreds, Now: func() time.Time { return testNow }}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSMS(cfg)
	if err != nil {
		t.Fatalf("NewSMS: %v", err)
	}
	return s
}

func TestSMSApplySignatureIdentSuccess(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	f.Reply = replyJSON(200, `{ "ResponseMetadata": { "RequestId": "20240617205533020030226132786E58", "Action": "ApplySignatureIdent", "Version": "2021-01-11", "Service": "volcSMS", "Region": "cn-beijing" }, "Result": { "id": 73 } }`)
	res, md, err := newTestSMS(t, f, nil).ApplySignatureIdent(context.Background(), seedSMS(t))
	if err != nil {
		t.Fatalf("ApplySignatureIdent: %v", err)
	}
	if res.ID != 73 {
		t.Errorf("id = %d, want 73", res.ID)
	}
	wantMD := Metadata{RequestID: "20240617205533020030226132786E58", Action: "ApplySignatureIdent", Version: "2021-01-11", Service: "volcSMS", Region: "cn-beijing", HTTPStatus: 200}
	if md != wantMD {
		t.Errorf("Metadata = %+v, want %+v", md, wantMD)
	}
	got := f.last(t)
	checkVolcRequest(t, got, "ApplySignatureIdent", "2021-01-11", "volcSMS", "cn-north-1")
	if g, w := genericJSON(t, got.Body), genericJSON(t, []byte(seedSMSBody)); !reflect.DeepEqual(g, w) {
		t.Errorf("body differs from the vendor's example:\n got %s", got.Body)
	}
}

func TestSMSApplySignatureIdent64BitID(t *testing.T) {
	tests := []struct {
		result string
		want   int64
	}{
		{`{"id":9007199254740993}`, 9007199254740993}, // 2^53+1: float64 would make it ...992
		{`{"id":"9007199254740993"}`, 9007199254740993},
		{`{"id":9223372036854775807}`, 9223372036854775807},
		{`{"Id":582712331329}`, 582712331329},
	}
	for _, tt := range tests {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("ApplySignatureIdent", "", tt.result))
		res, _, err := newTestSMS(t, f, nil).ApplySignatureIdent(context.Background(), seedSMS(t))
		if err != nil || res.ID != tt.want {
			t.Errorf("Result %s: got %d, %v; want %d", tt.result, res.ID, err, tt.want)
		}
	}
}

func TestSMSApplySignatureIdentBadResult(t *testing.T) {
	for _, result := range []string{``, `null`, `{}`, `{"id":null}`, `{"id":0}`} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("ApplySignatureIdent", "", result))
		_, md, err := newTestSMS(t, f, nil).ApplySignatureIdent(context.Background(), seedSMS(t))
		if !errors.Is(err, ErrNoResult) || !errors.Is(err, retry.ErrPermanent) || errors.Is(err, retry.ErrTransient) {
			t.Errorf("Result %q: err = %v, want ErrNoResult (permanent)", result, err)
		}
		if md.RequestID != testRequestID {
			t.Errorf("Result %q: Metadata = %+v", result, md)
		}
	}
	for _, result := range []string{`{"id":1.5}`, `{"id":9223372036854775808}`, `{"id":"x"}`, `{"id":-3}`, `7`} {
		f := newFakeVendor(t, testCreds.SecretAccessKey)
		f.Reply = replyJSON(200, envelopeJSON("ApplySignatureIdent", "", result))
		_, _, err := newTestSMS(t, f, nil).ApplySignatureIdent(context.Background(), seedSMS(t))
		if !errors.Is(err, ErrMalformedReply) || !errors.Is(err, retry.ErrPermanent) {
			t.Errorf("Result %s: err = %v, want a permanent malformed reply", result, err)
		}
	}
}
