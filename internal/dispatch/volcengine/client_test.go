package volcengine

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
)

func TestConfigDefaults(t *testing.T) {
	v, err := NewVMS(Config{Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSMS(Config{Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		c                          *client
		endpoint, service, version string
	}{
		{v.c, "https://cloud-vms.volcengineapi.com/", "vms", "2022-01-01"},
		{s.c, "https://sms.volcengineapi.com/", "volcSMS", "2021-01-11"},
	} {
		if got := tt.c.endpoint.String(); got != tt.endpoint {
			t.Errorf("endpoint = %s, want %s", got, tt.endpoint)
		}
		if tt.c.signer.Service != tt.service || tt.c.signer.Region != "cn-north-1" || tt.c.version != tt.version {
			t.Errorf("signer = %+v, version %s", tt.c.signer, tt.c.version)
		}
		if tt.c.timeout != 10*time.Second {
			t.Errorf("timeout = %s, want 10s", tt.c.timeout)
		}
		if tt.c.http == nil || tt.c.http == http.DefaultClient || tt.c.http.Transport == http.DefaultTransport {
			t.Errorf("HTTP client is not a dedicated one")
		}
	}
	if v.c.http == s.c.http {
		t.Errorf("VMS and SMS share an HTTP client")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []error
	}{
		{"no credentials", Config{}, []error{ErrNoCredentials}},
		{"no secret", Config{Credentials: Credentials{AccessKeyID: "ak"}}, []error{ErrNoCredentials}},
		{"no access key", Config{Credentials: Credentials{SecretAccessKey: "sk"}}, []error{ErrNoCredentials}},
		{"no scheme", Config{Credentials: testCreds, Endpoint: "cloud-vms.volcengineapi.com"}, []error{ErrBadEndpoint, ErrBadConfig}},
		{"ftp", Config{Credentials: testCreds, Endpoint: "ftp://cloud-vms.volcengineapi.com"}, []error{ErrBadEndpoint, ErrBadConfig}},
		{"no host", Config{Credentials: testCreds, Endpoint: "https://"}, []error{ErrBadEndpoint}},
		{"query", Config{Credentials: testCreds, Endpoint: "https://h/?Action=X"}, []error{ErrBadEndpoint}},
		{"fragment", Config{Credentials: testCreds, Endpoint: "https://h/#x"}, []error{ErrBadEndpoint}},
		{"user info", Config{Credentials: testCreds, Endpoint: "https://u:p@h"}, []error{ErrBadEndpoint}},
		{"unparsable", Config{Credentials: testCreds, Endpoint: "http://h:port"}, []error{ErrBadEndpoint}},
		{"control char", Config{Credentials: testCreds, Endpoint: "http://h/\n"}, []error{ErrBadEndpoint}},
		{"negative timeout", Config{Credentials: testCreds, Timeout: -time.Second}, []error{ErrBadConfig}},
		{"bad region", Config{Credentials: testCreds, Region: "cn/north"}, []error{ErrBadConfig}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, ctor := range map[string]func(Config) error{
				"vms": func(c Config) error { _, err := NewVMS(c); return err },
				"sms": func(c Config) error { _, err := NewSMS(c); return err },
			} {
				err := ctor(tt.cfg)
				if err == nil {
					t.Fatalf("%s: no error", name)
				}
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("%s: err = %v, want it to match %v", name, err, w)
					}
				}
			}
		})
	}
}

// callFunc makes one of the three calls against f.
type callFunc func(t *testing.T, ctx context.Context, f *fakeVendor, mod func(*Config)) (Metadata, error)

var calls = map[string]callFunc{
	"AddQualification": func(t *testing.T, ctx context.Context, f *fakeVendor, mod func(*Config)) (Metadata, error) {
		_, md, err := newTestVMS(t, f, mod).AddQualification(ctx, seedVMS(t))
		return md, err
	},
	"UpdateQualification": func(t *testing.T, ctx context.Context, f *fakeVendor, mod func(*Config)) (Metadata, error) {
		_, md, err := newTestVMS(t, f, mod).UpdateQualification(ctx, seedVMS(t))
		return md, err
	},
	"ApplySignatureIdent": func(t *testing.T, ctx context.Context, f *fakeVendor, mod func(*Config)) (Metadata, error) {
		_, md, err := newTestSMS(t, f, mod).ApplySignatureIdent(ctx, seedSMS(t))
		return md, err
	},
}

var sentinels = map[string]error{
	"transient": retry.ErrTransient,
	"throttled": retry.ErrThrottled,
	"permanent": retry.ErrPermanent,
	"ambiguous": retry.ErrAmbiguous,
	"invalid":   retry.ErrInvalid,
	"canceled":  context.Canceled,
	"deadline":  context.DeadlineExceeded,
	"malformed": ErrMalformedReply,
	"clockskew": ErrClockSkew,
	"noresult":  ErrNoResult,
}

func TestErrorClassification(t *testing.T) {
	const html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
	tests := []struct {
		name    string
		status  int
		ct      string
		body    string // "" with ct "" is an empty body; envelope bodies use errJSON
		errJSON string // the Error object; the body is then an envelope
		wantErr []string
		// Fields of the *APIError.
		code      string
		codeN     int64
		message   string
		requestID bool
	}{
		{name: "SystemError", status: 200, errJSON: `{"Code":"SystemError","Message":"系统错误"}`,
			wantErr: []string{"transient"}, code: "SystemError", message: "系统错误", requestID: true},
		{name: "InternalServiceFailed", status: 200, errJSON: `{"Code":"InternalServiceFailed","CodeN":10500,"Message":"The internal service error"}`,
			wantErr: []string{"transient"}, code: "InternalServiceFailed", codeN: 10500, message: "The internal service error", requestID: true},
		{name: "1999 as Code", status: 200, errJSON: `{"Code":"1999","Message":"系统错误"}`,
			wantErr: []string{"transient"}, code: "1999", message: "系统错误", requestID: true},
		{name: "1999 as numeric Code", status: 200, errJSON: `{"Code":1999,"Message":"系统错误"}`,
			wantErr: []string{"transient"}, code: "1999", message: "系统错误", requestID: true},
		{name: "1999 as CodeN", status: 200, errJSON: `{"Code":"","CodeN":1999,"Message":"系统错误"}`,
			wantErr: []string{"transient"}, codeN: 1999, message: "系统错误", requestID: true},
		{name: "1999 as CodeN with unknown Code", status: 200, errJSON: `{"Code":"SystemBusy","CodeN":1999,"Message":"系统错误"}`,
			wantErr: []string{"transient"}, code: "SystemBusy", codeN: 1999, message: "系统错误", requestID: true},
		{name: "1999 as string CodeN", status: 200, errJSON: `{"CodeN":"1999","Message":"系统错误"}`,
			wantErr: []string{"transient"}, codeN: 1999, message: "系统错误", requestID: true},
		{name: "FlowLimitExceeded HTTP 200", status: 200, errJSON: `{"Code":"FlowLimitExceeded","CodeN":100018,"Message":"flow limit"}`,
			wantErr: []string{"throttled", "transient"}, code: "FlowLimitExceeded", codeN: 100018, message: "flow limit", requestID: true},
		{name: "AccountFlowLimitExceeded HTTP 429", status: 429, errJSON: `{"Code":"AccountFlowLimitExceeded","Message":"slow down"}`,
			wantErr: []string{"throttled", "transient"}, code: "AccountFlowLimitExceeded", message: "slow down", requestID: true},
		{name: "HTTP 429 empty body", status: 429,
			wantErr: []string{"malformed", "throttled", "transient"}},
		{name: "HTTP 429 envelope without code", status: 429, errJSON: "-",
			wantErr: []string{"throttled", "transient"}, requestID: true, message: "429 Too Many Requests"},
		{name: "HTTP 503 HTML", status: 503, ct: "text/html", body: html,
			wantErr: []string{"malformed", "transient"}},
		{name: "HTTP 502 envelope without code", status: 502, errJSON: "-",
			wantErr: []string{"transient"}, requestID: true, message: "502 Bad Gateway"},
		{name: "HTTP 504 truncated JSON", status: 504, ct: "application/json", body: `{"ResponseMetadata":{"Req`,
			wantErr: []string{"malformed", "transient"}},
		{name: "RequestParametersError", status: 200, errJSON: `{"Code":"RequestParametersError","Message":"bad SceneType"}`,
			wantErr: []string{"permanent"}, code: "RequestParametersError", message: "bad SceneType", requestID: true},
		{name: "RequestParametersError beats HTTP 500", status: 500, errJSON: `{"Code":"RequestParametersError","Message":"bad"}`,
			wantErr: []string{"permanent"}, code: "RequestParametersError", message: "bad", requestID: true},
		{name: "1001", status: 200, errJSON: `{"Code":"1001","Message":"参数错误"}`,
			wantErr: []string{"permanent"}, code: "1001", message: "参数错误", requestID: true},
		{name: "1023", status: 200, errJSON: `{"Code":"1023","Message":"no permission"}`,
			wantErr: []string{"permanent"}, code: "1023", message: "no permission", requestID: true},
		{name: "1023 as CodeN", status: 200, errJSON: `{"CodeN":1023,"Message":"no permission"}`,
			wantErr: []string{"permanent"}, codeN: 1023, message: "no permission", requestID: true},
		{name: "InvalidTimestamp", status: 400, errJSON: `{"Code":"InvalidTimestamp","CodeN":100010,"Message":"The request timestamp is invalid"}`,
			wantErr: []string{"clockskew", "permanent"}, code: "InvalidTimestamp", codeN: 100010, message: "The request timestamp is invalid", requestID: true},
		{name: "SignatureDoesNotMatch", status: 401, errJSON: `{"Code":"SignatureDoesNotMatch","CodeN":100010,"Message":"signature mismatch"}`,
			wantErr: []string{"permanent"}, code: "SignatureDoesNotMatch", codeN: 100010, message: "signature mismatch", requestID: true},
		{name: "unknown code HTTP 200", status: 200, errJSON: `{"Code":"SomethingNew","Message":"?"}`,
			wantErr: []string{"permanent"}, code: "SomethingNew", message: "?", requestID: true},
		{name: "unknown code HTTP 500", status: 500, errJSON: `{"Code":"SomethingNew","Message":"?"}`,
			wantErr: []string{"transient"}, code: "SomethingNew", message: "?", requestID: true},
		{name: "HTTP 200 HTML", status: 200, ct: "text/html", body: "<html>ok</html>",
			wantErr: []string{"malformed", "permanent"}},
		{name: "HTTP 200 truncated JSON", status: 200, ct: "application/json", body: `{"ResponseMetadata":{"RequestId":"r"},"Result":{"id":1`,
			wantErr: []string{"malformed", "permanent"}},
		{name: "HTTP 200 trailing garbage", status: 200, ct: "application/json", body: `{"Result":{}} <html>`,
			wantErr: []string{"malformed", "permanent"}},
		{name: "HTTP 400 HTML", status: 400, ct: "text/html", body: "<html>400 Bad Request</html>",
			wantErr: []string{"malformed", "permanent"}},
		{name: "HTTP 200 oversized", status: 200, ct: "application/json",
			body:    `{"Result":"` + strings.Repeat("x", MaxResponseBytes) + `"}`,
			wantErr: []string{"malformed", "permanent"}},
	}
	for _, tt := range tests {
		for callName, call := range calls {
			t.Run(tt.name+"/"+callName, func(t *testing.T) {
				f := newFakeVendor(t, testCreds.SecretAccessKey)
				switch {
				case tt.errJSON == "-":
					f.Reply = replyJSON(tt.status, envelopeJSON(callName, "", ""))
				case tt.errJSON != "":
					f.Reply = replyJSON(tt.status, envelopeJSON(callName, tt.errJSON, ""))
				default:
					f.Reply = replyRaw(tt.status, tt.ct, tt.body)
				}
				md, err := call(t, context.Background(), f, nil)
				if err == nil {
					t.Fatal("no error")
				}
				want := slices.Clone(tt.wantErr)
				slices.Sort(want)
				if got := classes(err, sentinels); !slices.Equal(got, want) {
					t.Errorf("err %v matches %v, want %v", err, got, want)
				}
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Fatalf("err %T %v is not an *APIError", err, err)
				}
				if ae.Code != tt.code || ae.CodeN != tt.codeN || ae.HTTPStatus != tt.status || ae.Action != callName {
					t.Errorf("APIError = %+v, want Code %q CodeN %d HTTPStatus %d Action %s", ae, tt.code, tt.codeN, tt.status, callName)
				}
				if tt.message != "" && ae.Message != tt.message {
					t.Errorf("Message = %q, want %q", ae.Message, tt.message)
				}
				if tt.message == "" && ae.Message == "" {
					t.Errorf("Message is empty")
				}
				wantReq := ""
				if tt.requestID {
					wantReq = testRequestID
				}
				if ae.RequestID != wantReq || md.RequestID != wantReq {
					t.Errorf("RequestID = %q, Metadata.RequestID = %q, want %q", ae.RequestID, md.RequestID, wantReq)
				}
				if md.HTTPStatus != tt.status {
					t.Errorf("Metadata.HTTPStatus = %d, want %d", md.HTTPStatus, tt.status)
				}
				if !strings.Contains(err.Error(), callName) {
					t.Errorf("Error() = %q does not name the action", err.Error())
				}
				wantClass := retry.ClassPermanent
				switch {
				case slices.Contains(tt.wantErr, "throttled"):
					wantClass = retry.ClassThrottled
				case slices.Contains(tt.wantErr, "transient"):
					wantClass = retry.ClassTransient
				}
				if got := retry.ClassOf(err); got != wantClass {
					t.Errorf("retry.ClassOf = %q, want %q", got, wantClass)
				}
			})
		}
	}
}

func TestAPIErrorLiteralClassifies(t *testing.T) {
	for _, tt := range []struct {
		e    *APIError
		want error
	}{
		{&APIError{Code: "FlowLimitExceeded", HTTPStatus: 200}, retry.ErrThrottled},
		{&APIError{CodeN: 1999, HTTPStatus: 200}, retry.ErrTransient},
		{&APIError{Code: "Nope", HTTPStatus: 200}, retry.ErrPermanent},
		{&APIError{HTTPStatus: 503}, retry.ErrTransient},
		{&APIError{HTTPStatus: 429}, retry.ErrThrottled},
	} {
		if got := tt.e.Unwrap(); got != tt.want {
			t.Errorf("%+v: Unwrap = %v, want %v", tt.e, got, tt.want)
		}
	}
}

func TestTimeoutIsTransientAndAmbiguous(t *testing.T) {
	for callName, call := range calls {
		t.Run(callName, func(t *testing.T) {
			f := newFakeVendor(t, testCreds.SecretAccessKey)
			f.Reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
			start := time.Now()
			md, err := call(t, context.Background(), f, func(c *Config) { c.Timeout = 100 * time.Millisecond })
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("call took %s with a 100ms timeout", el)
			}
			want := []string{"ambiguous", "deadline", "transient"}
			if got := classes(err, sentinels); !slices.Equal(got, want) {
				t.Errorf("err %v matches %v, want %v", err, got, want)
			}
			var te *TransportError
			if !errors.As(err, &te) || !te.Sent {
				t.Errorf("err %v is not a sent *TransportError", err)
			}
			if md.HTTPStatus != 0 {
				t.Errorf("Metadata = %+v, want none", md)
			}
			if got := retry.ClassOf(err); got != retry.ClassTransient {
				t.Errorf("ClassOf = %q", got)
			}
		})
	}
}

func TestTimeoutWhileReadingReply(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	f.Reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.Write([]byte(`{"ResponseMetadata":{"RequestId":"r",`))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	md, err := calls["AddQualification"](t, context.Background(), f, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	want := []string{"ambiguous", "deadline", "transient"}
	if got := classes(err, sentinels); !slices.Equal(got, want) {
		t.Errorf("err %v matches %v, want %v", err, got, want)
	}
	if md.HTTPStatus != 200 {
		t.Errorf("Metadata.HTTPStatus = %d, want 200", md.HTTPStatus)
	}
}

func TestRefusedConnectionIsNotAmbiguous(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	v, err := NewVMS(Config{Endpoint: "http://" + addr, Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	_, md, err := v.AddQualification(context.Background(), seedVMS(t))
	want := []string{"transient"}
	if got := classes(err, sentinels); !slices.Equal(got, want) {
		t.Errorf("err %v matches %v, want %v", err, got, want)
	}
	var te *TransportError
	if !errors.As(err, &te) || te.Sent {
		t.Errorf("err %v is not an unsent *TransportError", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err %v does not match ECONNREFUSED", err)
	}
	if md != (Metadata{}) {
		t.Errorf("Metadata = %+v, want none", md)
	}
}

func TestCallerCancelIsNotTransient(t *testing.T) {
	for callName, call := range calls {
		t.Run(callName, func(t *testing.T) {
			f := newFakeVendor(t, testCreds.SecretAccessKey)
			arrived := make(chan struct{})
			f.Reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
				close(arrived)
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				<-arrived
				cancel()
			}()
			_, err := call(t, ctx, f, nil)
			want := []string{"canceled"}
			if got := classes(err, sentinels); !slices.Equal(got, want) {
				t.Errorf("err %v matches %v, want %v", err, got, want)
			}
			var te *TransportError
			if errors.As(err, &te) {
				t.Errorf("err %v is a *TransportError", err)
			}
		})
	}
}

func TestCallerCancelledBeforeCall(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	ctx, cancel := context.WithCancelCause(context.Background())
	shutdown := errors.New("shutting down")
	cancel(shutdown)
	_, err := calls["ApplySignatureIdent"](t, ctx, f, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, shutdown) || errors.Is(err, retry.ErrTransient) {
		t.Errorf("err = %v, want context.Canceled and the cause, not transient", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

// TestCallerDeadlineIsATimeout: the caller's deadline is a timeout like the
// client's own: transient, and ambiguous once the request was sent (a create
// call must not be re-filed blindly). Only a cancellation means "stop".
func TestCallerDeadlineIsATimeout(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	f.Reply = func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := calls["AddQualification"](t, ctx, f, func(c *Config) { c.Timeout = 5 * time.Second })
	var te *TransportError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, retry.ErrTransient) || !errors.Is(err, retry.ErrAmbiguous) || !errors.As(err, &te) || !te.Sent {
		t.Errorf("err = %v, want a sent TransportError matching DeadlineExceeded, ErrTransient and ErrAmbiguous", err)
	}
}

func TestRegion(t *testing.T) {
	tests := []struct {
		name, region, want string
	}{
		{"default", "", "cn-north-1"},
		{"configured", "cn-beijing", "cn-beijing"},
	}
	for _, tt := range tests {
		for callName, call := range calls {
			t.Run(tt.name+"/"+callName, func(t *testing.T) {
				f := newFakeVendor(t, testCreds.SecretAccessKey)
				f.Reply = replyJSON(200, envelopeJSON(callName, "", `{"QualificationNo":"Q","id":1}`))
				if _, err := call(t, context.Background(), f, func(c *Config) { c.Region = tt.region }); err != nil {
					t.Fatal(err)
				}
				got := f.last(t)
				if got.Verify != nil {
					t.Errorf("signature: %v", got.Verify)
				}
				service := "vms"
				if callName == "ApplySignatureIdent" {
					service = "volcSMS"
				}
				scope := "Credential=" + testCreds.AccessKeyID + "/20250605/" + tt.want + "/" + service + "/request,"
				if auth := got.Header.Get("Authorization"); !strings.Contains(auth, scope) {
					t.Errorf("Authorization %q lacks %q", auth, scope)
				}
			})
		}
	}
}

func TestSessionTokenIsSentAndSigned(t *testing.T) {
	creds := testCreds
	creds.SessionToken = "STS-token/with+odd=chars"
	for callName, call := range calls {
		t.Run(callName, func(t *testing.T) {
			f := newFakeVendor(t, creds.SecretAccessKey)
			f.Reply = replyJSON(200, envelopeJSON(callName, "", `{"QualificationNo":"Q","id":1}`))
			if _, err := call(t, context.Background(), f, func(c *Config) { c.Credentials = creds }); err != nil {
				t.Fatal(err)
			}
			got := f.last(t)
			if tok := got.Header.Get("X-Security-Token"); tok != creds.SessionToken {
				t.Errorf("X-Security-Token = %q", tok)
			}
			if !slices.Contains(got.Auth.SignedHeaders, "x-security-token") {
				t.Errorf("signed headers %v lack x-security-token", got.Auth.SignedHeaders)
			}
			if got.Verify != nil {
				t.Errorf("signature: %v", got.Verify)
			}
		})
	}
}

func TestWrongSecretDoesNotVerify(t *testing.T) {
	// The fake's verification is not vacuous.
	f := newFakeVendor(t, "another secret")
	if _, err := calls["AddQualification"](t, context.Background(), f, nil); err == nil {
		// The default reply has an empty Result: ErrNoResult is expected.
		t.Fatal("want ErrNoResult")
	}
	if got := f.last(t); got.Verify == nil {
		t.Error("a request signed with another secret verified")
	}
}

func TestEndpointWithPathPrefix(t *testing.T) {
	f := newFakeVendor(t, testCreds.SecretAccessKey)
	f.Reply = replyJSON(200, envelopeJSON("AddQualification", "", `{"QualificationNo":"Q"}`))
	v, err := NewVMS(Config{Endpoint: f.URL + "/proxy/vms", Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.AddQualification(context.Background(), seedVMS(t)); err != nil {
		t.Fatal(err)
	}
	got := f.last(t)
	if got.Path != "/proxy/vms/" || got.Verify != nil {
		t.Errorf("path %q, verify %v", got.Path, got.Verify)
	}
}

func TestTransportErrorMatching(t *testing.T) {
	under := errors.New("boom")
	sent := &TransportError{Op: "x", Err: under, Sent: true}
	unsent := &TransportError{Op: "x", Err: under}
	if !errors.Is(sent, under) || !errors.Is(sent, retry.ErrTransient) || !errors.Is(sent, retry.ErrAmbiguous) || errors.Is(sent, retry.ErrPermanent) {
		t.Errorf("sent TransportError matches %v", classes(sent, sentinels))
	}
	if !errors.Is(unsent, under) || !errors.Is(unsent, retry.ErrTransient) || errors.Is(unsent, retry.ErrAmbiguous) || errors.Is(unsent, retry.ErrThrottled) {
		t.Errorf("unsent TransportError matches %v", classes(unsent, sentinels))
	}
}
