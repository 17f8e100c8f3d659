package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// fakeClock is a clock that runs with real time plus an offset that a test
// moves forward. It is safe for concurrent use (the sandbox reads it from
// its handlers).
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// startSandbox starts a fresh sandbox for tb and closes it on cleanup.
func startSandbox(tb testing.TB, cfg sandbox.Config) *sandbox.Server {
	tb.Helper()
	sb, err := sandbox.New(cfg)
	if err != nil {
		tb.Fatalf("sandbox.New: %v", err)
	}
	if err := sb.Start(); err != nil {
		tb.Fatalf("sandbox.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := sb.Close(); err != nil {
			tb.Errorf("sandbox.Close: %v", err)
		}
	})
	return sb
}

// rigOptions tweak the clients of a rig; the zero value gives clients with
// the sandbox's default credentials and a 2s timeout.
type rigOptions struct {
	// Timeout is the per-call timeout of every client (and of the token
	// fetch); default 2s.
	Timeout time.Duration
	// AccessKeyID and SecretAccessKey override the Volcengine credentials.
	AccessKeyID     string
	SecretAccessKey string
	// VolcNow is the Volcengine signer's clock.
	VolcNow func() time.Time
	// AppSecret overrides the Douyin app secret.
	AppSecret string
	// TokenNow is the TokenSource's clock.
	TokenNow func() time.Time
	// BaseURL, when set, replaces the sandbox's URL for every client.
	BaseURL string
}

// rig is a dispatcher whose "default" account holds real clients pointed at
// one sandbox.
type rig struct {
	sb     *sandbox.Server
	vms    *volcengine.VMS
	sms    *volcengine.SMS
	dy     *douyin.Client
	tokens *douyin.TokenSource
	d      *dispatch.Dispatcher
}

// newRig builds real clients against sb.
func newRig(tb testing.TB, sb *sandbox.Server, o rigOptions) *rig {
	tb.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	if o.AccessKeyID == "" {
		o.AccessKeyID = sandbox.DefaultAccessKeyID
	}
	if o.SecretAccessKey == "" {
		o.SecretAccessKey = sandbox.DefaultSecretAccessKey
	}
	if o.AppSecret == "" {
		o.AppSecret = sandbox.DefaultAppSecret
	}
	base := o.BaseURL
	if base == "" {
		base = sb.URL()
	}
	vcfg := volcengine.Config{
		Endpoint:    base,
		Credentials: volcengine.Credentials{AccessKeyID: o.AccessKeyID, SecretAccessKey: o.SecretAccessKey},
		Timeout:     o.Timeout,
		Now:         o.VolcNow,
	}
	vms, err := volcengine.NewVMS(vcfg)
	if err != nil {
		tb.Fatalf("NewVMS: %v", err)
	}
	sms, err := volcengine.NewSMS(vcfg)
	if err != nil {
		tb.Fatalf("NewSMS: %v", err)
	}
	hc := newHTTPClient(tb)
	tokens := &douyin.TokenSource{
		AppID:      sandbox.DefaultAppID,
		Secret:     o.AppSecret,
		BaseURL:    base,
		Store:      douyin.NewMemoryStore(),
		HTTPClient: hc,
		Timeout:    o.Timeout,
		Now:        o.TokenNow,
	}
	dy, err := douyin.New(douyin.Config{
		BaseURL:    base,
		AppID:      sandbox.DefaultAppID,
		Tokens:     tokens,
		Timeout:    o.Timeout,
		HTTPClient: hc,
	})
	if err != nil {
		tb.Fatalf("douyin.New: %v", err)
	}
	return &rig{
		sb: sb, vms: vms, sms: sms, dy: dy, tokens: tokens,
		d: dispatch.New(map[string]dispatch.Account{"default": {VMS: vms, SMS: sms, Douyin: dy}}),
	}
}

// newHTTPClient is an HTTP client with a transport of its own, whose idle
// connections are closed on cleanup.
func newHTTPClient(tb testing.TB) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// examplePath is the path of examples/<api>.json (or examples/invalid/…).
func examplePath(invalid bool, api messages.API) string {
	dir := filepath.Join("..", "..", "examples")
	if invalid {
		dir = filepath.Join(dir, "invalid")
	}
	return filepath.Join(dir, string(api)+".json")
}

// loadExample parses examples/<api>.json and validates it.
func loadExample(tb testing.TB, api messages.API) *messages.Request {
	tb.Helper()
	b, err := os.ReadFile(examplePath(false, api))
	if err != nil {
		tb.Fatal(err)
	}
	r, err := messages.ParseRequest(b)
	if err != nil {
		tb.Fatalf("ParseRequest(%s): %v", api, err)
	}
	if err := r.Validate(); err != nil {
		tb.Fatalf("Validate(%s): %v", api, err)
	}
	return r
}

// requestWithPayload is examples/<api>.json with its payload changed by
// edit (on the decoded JSON), validated.
func requestWithPayload(tb testing.TB, api messages.API, edit func(map[string]any)) *messages.Request {
	tb.Helper()
	base := loadExample(tb, api)
	var payload map[string]any
	if err := json.Unmarshal(base.Payload, &payload); err != nil {
		tb.Fatal(err)
	}
	edit(payload)
	raw, err := json.Marshal(payload)
	if err != nil {
		tb.Fatal(err)
	}
	env, err := json.Marshal(map[string]any{"id": base.ID + "-edited", "api": api, "payload": json.RawMessage(raw)})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := messages.ParseRequest(env)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		tb.Fatalf("Validate(edited %s): %v", api, err)
	}
	return r
}

// lastCall is the last call the sandbox recorded for api.
func lastCall(tb testing.TB, sb *sandbox.Server, api messages.API) sandbox.Call {
	tb.Helper()
	calls := sb.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].API == api {
			return calls[i]
		}
	}
	tb.Fatalf("the sandbox recorded no call of %s (calls: %d)", api, len(calls))
	return sandbox.Call{}
}

// callsOf lists the recorded calls of api, oldest first.
func callsOf(sb *sandbox.Server, api messages.API) []sandbox.Call {
	var out []sandbox.Call
	for _, c := range sb.Calls() {
		if c.API == api {
			out = append(out, c)
		}
	}
	return out
}

// waitForCall waits up to a second for the sandbox to record n calls of api
// (a call whose client gave up is recorded when the handler notices).
func waitForCall(tb testing.TB, sb *sandbox.Server, api messages.API, n int) []sandbox.Call {
	tb.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		calls := callsOf(sb, api)
		if len(calls) >= n || time.Now().After(deadline) {
			return calls
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// callDirect sends a bare typed payload of api through the matching client,
// bypassing dispatch and validation. It returns the vendor's request id
// (Volcengine RequestId or Douyin X-Tt-Logid) and the error.
func (r *rig) callDirect(ctx context.Context, api messages.API, payload any) (string, error) {
	switch api {
	case messages.APIVMSAddQualification:
		_, md, err := r.vms.AddQualification(ctx, payload.(*messages.VMSQualification))
		return md.RequestID, err
	case messages.APIVMSUpdateQualification:
		_, md, err := r.vms.UpdateQualification(ctx, payload.(*messages.VMSQualification))
		return md.RequestID, err
	case messages.APISMSApplySignatureIdent:
		_, md, err := r.sms.ApplySignatureIdent(ctx, payload.(*messages.SMSApplySignatureIdent))
		return md.RequestID, err
	case messages.APIDouyinAddRole:
		_, md, err := r.dy.AddRole(ctx, payload.(*messages.DouyinAddRole))
		return md.LogID, err
	case messages.APIDouyinGetClassAuth:
		_, md, err := r.dy.GetClassAuth(ctx, payload.(*messages.DouyinGetClassAuth))
		return md.LogID, err
	}
	return "", errors.New("unknown api " + string(api))
}

// decodeLeniently decodes raw into the typed payload of api with plain
// json.Unmarshal: fields of the wrong JSON type are left at their zero value
// (encoding/json goes on after an *UnmarshalTypeError) and unknown fields
// are dropped, so an invalid payload can still be sent to the vendor.
func decodeLeniently(tb testing.TB, api messages.API, raw []byte) any {
	tb.Helper()
	v := messages.NewPayload(api)
	if v == nil {
		tb.Fatalf("no payload type for %s", api)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var typeErr *json.UnmarshalTypeError
		if !errors.As(err, &typeErr) {
			tb.Fatalf("decode %s payload: %v", api, err)
		}
	}
	return v
}

// volcAPIs are the three Volcengine calls.
var volcAPIs = []messages.API{
	messages.APIVMSAddQualification,
	messages.APIVMSUpdateQualification,
	messages.APISMSApplySignatureIdent,
}

// douyinAPIs are the two Douyin calls.
var douyinAPIs = []messages.API{
	messages.APIDouyinAddRole,
	messages.APIDouyinGetClassAuth,
}
