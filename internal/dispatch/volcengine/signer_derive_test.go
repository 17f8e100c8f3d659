package volcengine_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
)

// TestSignatureIndependentDerivation signs a JSON POST with the Signer and
// compares it with a derivation written out step by step from docs/vendors.md,
// sharing no code with the signer.
func TestSignatureIndependentDerivation(t *testing.T) {
	const (
		ak     = "AKLTexampleaccesskey"
		sk     = "c2VjcmV0LW5vdC10by1iZS1kZWNvZGVk" // used as bytes, never base64-decoded
		token  = "sts-session-token"
		region = "cn-north-1"
	)
	body := []byte(`{"materialName":"资质 1","purpose":1}`)
	req, _ := http.NewRequest(http.MethodPost, "https://sms.volcengineapi.com:443/?Version=2021-01-11&Action=ApplySignatureIdent&Note=a+b%20c~", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	s := volcengine.Signer{
		Credentials: volcengine.Credentials{AccessKeyID: ak, SecretAccessKey: sk, SessionToken: token},
		Region:      region, Service: "volcSMS",
		Now: func() time.Time { return time.Date(2024, 6, 18, 1, 48, 55, 0, time.UTC) },
	}
	if err := s.Sign(req, body); err != nil {
		t.Fatal(err)
	}

	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}

	xdate := "20240618T014855Z"
	bodyHash := sum(body)
	// Step 3: names sorted, RFC 3986 encoding, space as %20 ("+" in the
	// query means a space), "~" kept.
	query := "Action=ApplySignatureIdent&Note=a%20b%20c~&Version=2021-01-11"
	// Step 5: host without :443; lowercase names sorted.
	headers := "content-type:application/json; charset=UTF-8\n" +
		"host:sms.volcengineapi.com\n" +
		"x-content-sha256:" + bodyHash + "\n" +
		"x-date:" + xdate + "\n" +
		"x-security-token:" + token + "\n"
	signed := "content-type;host;x-content-sha256;x-date;x-security-token"
	canonical := strings.Join([]string{"POST", "/", query, headers, signed, bodyHash}, "\n")
	scope := "20240618/" + region + "/volcSMS/request"
	stringToSign := strings.Join([]string{"HMAC-SHA256", xdate, scope, sum([]byte(canonical))}, "\n")
	key := mac(mac(mac(mac([]byte(sk), "20240618"), region), "volcSMS"), "request")
	sig := hex.EncodeToString(mac(key, stringToSign))

	want := "HMAC-SHA256 Credential=" + ak + "/" + scope + ", SignedHeaders=" + signed + ", Signature=" + sig
	if got := req.Header.Get("Authorization"); got != want {
		t.Fatalf("Authorization =\n %s\nwant\n %s\ncanonical request:\n%s", got, want, canonical)
	}
	for h, v := range map[string]string{"X-Date": xdate, "X-Content-Sha256": bodyHash, "X-Security-Token": token} {
		if got := req.Header.Get(h); got != v {
			t.Errorf("%s = %q, want %q", h, got, v)
		}
	}
}
