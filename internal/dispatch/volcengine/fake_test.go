package volcengine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

// Test credentials and clock.
var (
	testCreds = Credentials{AccessKeyID: "AKLTtestaccesskey", SecretAccessKey: "dGVzdHNlY3JldA=="}
	testNow   = time.Date(2025, 6, 5, 3, 8, 34, 0, time.UTC)
)

// received is one request as the fake vendor saw it.
type received struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
	Auth   Authorization
	// Verify is nil when the Authorization header verifies.
	Verify error
}

// fakeVendor is a Volcengine stand-in. Reply answers each request; the
// default is a success envelope with Result.
type fakeVendor struct {
	*httptest.Server
	secret string
	Reply  func(w http.ResponseWriter, r *http.Request, body []byte)

	mu   sync.Mutex
	reqs []received
}

func newFakeVendor(t *testing.T, secret string) *fakeVendor {
	t.Helper()
	f := &fakeVendor{secret: secret}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVendor) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	rec := received{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body}
	if err != nil {
		rec.Verify = err
	} else {
		rec.Auth, rec.Verify = verifyRequest(r, body, f.secret)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	reply := f.Reply
	f.mu.Unlock()
	if reply == nil {
		reply = replyJSON(http.StatusOK, envelopeJSON(r.URL.Query().Get("Action"), "", `{}`))
	}
	reply(w, r, body)
}

func (f *fakeVendor) requests() []received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// last returns the only request received, failing the test otherwise.
func (f *fakeVendor) last(t *testing.T) received {
	t.Helper()
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("fake vendor received %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// verifyRequest recomputes the signature the way the vendor does.
func verifyRequest(r *http.Request, body []byte, secret string) (Authorization, error) {
	a, err := ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return a, err
	}
	xdate := r.Header.Get("X-Date")
	if len(xdate) != len(TimeFormat) || a.ShortDate != xdate[:8] {
		return a, fmt.Errorf("X-Date %q does not match credential date %q", xdate, a.ShortDate)
	}
	if got, want := r.Header.Get("X-Content-Sha256"), hashHex(body); got != want {
		return a, fmt.Errorf("X-Content-Sha256 = %s, body hash %s", got, want)
	}
	for _, h := range []string{"content-type", "host", "x-content-sha256", "x-date"} {
		if !slices.Contains(a.SignedHeaders, h) {
			return a, fmt.Errorf("signed headers %v miss %s", a.SignedHeaders, h)
		}
	}
	in := SigningInput{
		Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header,
		SignedHeaders: a.SignedHeaders, BodyHash: hashHex(body), XDate: xdate,
		Region: a.Region, Service: a.Service,
	}
	if want := Signature(secret, in); a.Signature != want {
		return a, fmt.Errorf("signature %s, want %s", a.Signature, want)
	}
	return a, nil
}

// replyJSON answers status with body as JSON.
func replyJSON(status int, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return replyRaw(status, "application/json; charset=utf-8", body)
}

// replyRaw answers status with body of content type ct.
func replyRaw(status int, ct, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const testRequestID = "20250605110842095162110088E4A288"

// envelopeJSON is a reply envelope; errJSON is the Error object or "", and
// result the Result JSON or "" for none.
func envelopeJSON(action, errJSON, result string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"ResponseMetadata":{"RequestId":%q,"Action":%q,"Version":"x","Service":"svc","Region":"cn-north-1"`, testRequestID, action)
	if errJSON != "" {
		b.WriteString(`,"Error":` + errJSON)
	}
	b.WriteString("}")
	if result != "" {
		b.WriteString(`,"Result":` + result)
	}
	b.WriteString("}")
	return b.String()
}

// genericJSON decodes b keeping numbers exact, for comparing JSON documents
// field name by field name.
func genericJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// isNot reports the class sentinels an error matches, for messages.
func classes(err error, targets map[string]error) []string {
	var out []string
	for name, target := range targets {
		if errors.Is(err, target) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
