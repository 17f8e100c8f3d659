package volcengine

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

// The published vector of docs/vendors.md.
func TestSignaturePublishedVector(t *testing.T) {
	const (
		ak = "AKLTMjI2ODVlYzI3ZGY1NGU4ZjhjYWRjMTlmNTM5OTZkYzE"
		sk = "TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ=="
	)
	req, _ := http.NewRequest(http.MethodGet, "https://iam.volcengineapi.com/?Action=ListUsers&Limit=10&Offset=0&Version=2018-01-01", nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	s := Signer{
		Credentials: Credentials{AccessKeyID: ak, SecretAccessKey: sk},
		Region:      "cn-north-1",
		Service:     "iam",
		Now:         func() time.Time { return time.Date(2020, 12, 30, 8, 18, 5, 0, time.UTC) },
	}
	if err := s.Sign(req, nil); err != nil {
		t.Fatal(err)
	}
	in := SigningInput{
		Method: "GET", Host: "iam.volcengineapi.com", Path: "/", Query: req.URL.Query(), Header: req.Header,
		SignedHeaders: []string{"content-type", "host", "x-content-sha256", "x-date"},
		BodyHash:      hashHex(nil), XDate: "20201230T081805Z", Region: "cn-north-1", Service: "iam",
	}
	if got, want := hashHex([]byte(CanonicalRequest(in))), "3a4d4dee07c3308a52da01bc12d7a83c3705bfa543f51648f46de880bb2a7447"; got != want {
		t.Errorf("canonical request hash = %s, want %s\n%s", got, want, CanonicalRequest(in))
	}
	const wantSig = "28eeabbbd726b87002e0fe58ad8c1c768e619b06e2646f35b6ad7ed029a6d8a7"
	want := "HMAC-SHA256 Credential=" + ak + "/20201230/cn-north-1/iam/request, SignedHeaders=content-type;host;x-content-sha256;x-date, Signature=" + wantSig
	if got := req.Header.Get("Authorization"); got != want {
		t.Errorf("Authorization =\n %s\nwant\n %s", got, want)
	}
	a, err := ParseAuthorization(req.Header.Get("Authorization"))
	if err != nil || a.Signature != wantSig || a.Service != "iam" || a.AccessKeyID != ak {
		t.Errorf("ParseAuthorization = %+v, %v", a, err)
	}
	_ = url.Values{}
}
