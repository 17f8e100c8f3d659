package dispatch_test

// End-to-end tests of the real Volcengine and Douyin clients, routed by a
// dispatch.Dispatcher, against the strict simulator of internal/sandbox.
// Every test starts its own sandbox on a loopback port.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

var (
	qualificationNoRE = regexp.MustCompile(`^QUA[0-9]{18}$`)
	roleTaskIDRE      = regexp.MustCompile(`^Role_[0-9]{19}$`)
)

// TestSandboxExamplesSucceed dispatches each examples/<api>.json to a fresh
// sandbox and checks the outcome against the sandbox's state and its record
// of the call.
func TestSandboxExamplesSucceed(t *testing.T) {
	tests := []struct {
		api   messages.API
		check func(t *testing.T, sb *sandbox.Server, result json.RawMessage)
	}{
		{
			api: messages.APIVMSAddQualification,
			check: func(t *testing.T, sb *sandbox.Server, result json.RawMessage) {
				var res struct{ QualificationNo string }
				mustUnmarshal(t, result, &res)
				if !qualificationNoRE.MatchString(res.QualificationNo) {
					t.Fatalf("QualificationNo = %q, want QUA + 18 digits (result %s)", res.QualificationNo, result)
				}
				q, ok := findQualification(sb.State(), res.QualificationNo)
				if !ok {
					t.Fatalf("sandbox state has no qualification %s", res.QualificationNo)
				}
				if q.Entity != "北京示例科技有限公司" || q.Status != sandbox.ReviewUnderReview || q.AccessKeyID != sandbox.DefaultAccessKeyID {
					t.Errorf("stored qualification = %+v", q)
				}
			},
		},
		{
			api: messages.APIVMSUpdateQualification,
			check: func(t *testing.T, sb *sandbox.Server, result json.RawMessage) {
				if string(bytes.TrimSpace(result)) != "{}" {
					t.Errorf("result = %s, want {}", result)
				}
				q, ok := findQualification(sb.State(), sandbox.SeedRejectedQualificationNo)
				if !ok {
					t.Fatalf("seeded qualification %s is gone", sandbox.SeedRejectedQualificationNo)
				}
				// The seed was rejected; the amended filing is under review
				// again (its new entity name matches neither review word).
				if q.Status != sandbox.ReviewUnderReview || q.Updates != 1 || q.Entity != "北京示例科技有限公司" {
					t.Errorf("updated qualification = %+v, want under_review, 1 update, the new entity", q)
				}
			},
		},
		{
			api: messages.APISMSApplySignatureIdent,
			check: func(t *testing.T, sb *sandbox.Server, result json.RawMessage) {
				// json.Unmarshal reads a JSON integer into int64 exactly.
				var res struct {
					ID int64 `json:"id"`
				}
				mustUnmarshal(t, result, &res)
				if res.ID < sandbox.FirstSMSID {
					t.Fatalf("id = %d, want >= %d (result %s)", res.ID, sandbox.FirstSMSID, result)
				}
				idents := sb.State().SignatureIdents
				if len(idents) != 1 {
					t.Fatalf("sandbox holds %d signature idents, want 1", len(idents))
				}
				if res.ID != idents[0].ID {
					t.Errorf("id = %d, sandbox issued %d: the id lost precision", res.ID, idents[0].ID)
				}
				// 2^53+1 is the first integer float64 cannot hold: an id that
				// went through float64 anywhere would have come back as 2^53.
				if res.ID != sandbox.FirstSMSID || int64(float64(res.ID)) == res.ID {
					t.Errorf("id = %d, want exactly %d (2^53+1)", res.ID, sandbox.FirstSMSID)
				}
				if !strings.Contains(string(result), "9007199254740993") {
					t.Errorf("result %s does not carry the id as written", result)
				}
			},
		},
		{
			api: messages.APIDouyinAddRole,
			check: func(t *testing.T, sb *sandbox.Server, result json.RawMessage) {
				var res struct {
					TaskID string `json:"add_role_taskid"`
				}
				mustUnmarshal(t, result, &res)
				if !roleTaskIDRE.MatchString(res.TaskID) {
					t.Fatalf("add_role_taskid = %q, want Role_ + 19 digits (result %s)", res.TaskID, result)
				}
				st := sb.State()
				i := slices.IndexFunc(st.Roles, func(r sandbox.DouyinRole) bool { return r.TaskID == res.TaskID })
				if i < 0 {
					t.Fatalf("sandbox state has no role %s", res.TaskID)
				}
				if r := st.Roles[i]; r.EntityID != "E_7230706235463548989" || r.IndustryRole != messages.DouyinRoleInstitution || r.AppID != sandbox.DefaultAppID {
					t.Errorf("stored role = %+v", r)
				}
				if n := sb.TokenFetches(sandbox.DefaultAppID); n != 1 {
					t.Errorf("token fetches = %d, want 1", n)
				}
			},
		},
		{
			api: messages.APIDouyinGetClassAuth,
			check: func(t *testing.T, sb *sandbox.Server, result json.RawMessage) {
				var res struct {
					ClassAuths []struct {
						IndustryCode int64 `json:"industry_code"`
						IndustryRole int   `json:"industry_role"`
						Online       struct {
							AuditStatus int `json:"audit_status"`
						} `json:"online_qualification"`
					} `json:"class_auths"`
				}
				mustUnmarshal(t, result, &res)
				if len(res.ClassAuths) == 0 {
					t.Fatalf("class_auths is empty: %s", result)
				}
				if c := res.ClassAuths[0]; c.IndustryCode != sandbox.SeedIndustryCode || c.IndustryRole != messages.DouyinRoleInstitution || c.Online.AuditStatus != 2 {
					t.Errorf("class_auths[0] = %+v, want the seeded approved institution class auth", c)
				}
				if n := sb.TokenFetches(sandbox.DefaultAppID); n != 1 {
					t.Errorf("token fetches = %d, want 1", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(string(tc.api), func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{})
			out, err := r.d.Dispatch(context.Background(), loadExample(t, tc.api))
			if err != nil {
				t.Fatalf("Dispatch: %v", err)
			}
			calls := callsOf(sb, tc.api)
			if len(calls) != 1 {
				t.Fatalf("sandbox recorded %d calls of %s, want 1", len(calls), tc.api)
			}
			c := calls[0]
			if c.HTTPStatus != 200 || c.Code != "" || c.Fault {
				t.Errorf("recorded call: status %d, code %q, fault %v", c.HTTPStatus, c.Code, c.Fault)
			}
			if out.UpstreamRequestID == "" || out.UpstreamRequestID != c.RequestID {
				t.Errorf("UpstreamRequestID = %q, sandbox answered request id %q", out.UpstreamRequestID, c.RequestID)
			}
			tc.check(t, sb, out.Result)
		})
	}
}

// volcErrorCase is an injected Volcengine fault and how it must classify.
type volcErrorCase struct {
	name       string
	only       []messages.API // the calls the case applies to; nil: all three
	fault      sandbox.Fault  // API is filled in per call
	want       error          // class sentinel
	class      retry.Class
	code       string
	codeN      int64
	httpStatus int
	bare       bool // a bare HTTP status: no envelope, no request id
}

var (
	vmsOnly = []messages.API{messages.APIVMSAddQualification, messages.APIVMSUpdateQualification}
	smsOnly = []messages.API{messages.APISMSApplySignatureIdent}
)

var volcErrorCases = []volcErrorCase{
	{name: "SystemError", fault: sandbox.Fault{Code: "SystemError"},
		want: retry.ErrTransient, class: retry.ClassTransient, code: "SystemError", httpStatus: 200},
	{name: "SMS 1999", only: smsOnly, fault: sandbox.Fault{Code: "1999"},
		want: retry.ErrTransient, class: retry.ClassTransient, code: "1999", codeN: 1999, httpStatus: 200},
	{name: "FlowLimitExceeded", fault: sandbox.Fault{Code: "FlowLimitExceeded"},
		want: retry.ErrThrottled, class: retry.ClassThrottled, code: "FlowLimitExceeded", httpStatus: 200},
	{name: "bare 429", fault: sandbox.Fault{HTTPStatus: 429},
		want: retry.ErrThrottled, class: retry.ClassThrottled, httpStatus: 429, bare: true},
	{name: "bare 503", fault: sandbox.Fault{HTTPStatus: 503},
		want: retry.ErrTransient, class: retry.ClassTransient, httpStatus: 503, bare: true},
	{name: "RequestParametersError", only: vmsOnly, fault: sandbox.Fault{Code: "RequestParametersError"},
		want: retry.ErrPermanent, class: retry.ClassPermanent, code: "RequestParametersError", httpStatus: 200},
	{name: "SMS 1001", only: smsOnly, fault: sandbox.Fault{Code: "1001"},
		want: retry.ErrPermanent, class: retry.ClassPermanent, code: "1001", codeN: 1001, httpStatus: 200},
	{name: "SMS 1023", only: smsOnly, fault: sandbox.Fault{Code: "1023"},
		want: retry.ErrPermanent, class: retry.ClassPermanent, code: "1023", codeN: 1023, httpStatus: 200},
}

// TestSandboxVolcengineErrorClasses injects each vendor error into each
// Volcengine call and checks its class and the typed error's fields.
func TestSandboxVolcengineErrorClasses(t *testing.T) {
	for _, api := range volcAPIs {
		for _, tc := range volcErrorCases {
			if tc.only != nil && !slices.Contains(tc.only, api) {
				continue
			}
			t.Run(string(api)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				sb := startSandbox(t, sandbox.Config{})
				r := newRig(t, sb, rigOptions{})
				f := tc.fault
				f.API = api
				sb.Inject(f)

				out, err := r.d.Dispatch(context.Background(), loadExample(t, api))
				checkClass(t, err, tc.want, tc.class)
				c := lastCall(t, sb, api)
				if !c.Fault || c.HTTPStatus != tc.httpStatus || c.Code != tc.code {
					t.Errorf("recorded call: fault %v, status %d, code %q", c.Fault, c.HTTPStatus, c.Code)
				}
				var apiErr *volcengine.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not a *volcengine.APIError", err, err)
				}
				if apiErr.HTTPStatus != tc.httpStatus || apiErr.RequestID != c.RequestID || out.UpstreamRequestID != c.RequestID {
					t.Errorf("APIError status %d, request id %q, outcome request id %q; sandbox answered %d with request id %q",
						apiErr.HTTPStatus, apiErr.RequestID, out.UpstreamRequestID, tc.httpStatus, c.RequestID)
				}
				if tc.bare {
					if !errors.Is(err, volcengine.ErrMalformedReply) || apiErr.Code != "" || c.RequestID != "" {
						t.Errorf("bare status: want a malformed-reply APIError without code or request id, got %v", err)
					}
					return
				}
				if apiErr.Code != tc.code || apiErr.CodeN != tc.codeN || apiErr.Message == "" || apiErr.RequestID == "" {
					t.Errorf("APIError = {Code %q, CodeN %d, Message %q, RequestID %q}, want code %q, CodeN %d, a message and a request id",
						apiErr.Code, apiErr.CodeN, apiErr.Message, apiErr.RequestID, tc.code, tc.codeN)
				}
				if errors.Is(err, volcengine.ErrMalformedReply) {
					t.Errorf("an enveloped error matches ErrMalformedReply: %v", err)
				}
				code, msg, class := dispatch.Describe(err)
				if code != tc.code || msg != apiErr.Message || class != tc.class {
					t.Errorf("Describe = %q, %q, %q; want %q, %q, %q", code, msg, class, tc.code, apiErr.Message, tc.class)
				}
			})
		}
	}
}

// TestSandboxVolcengineAuthErrors sends each Volcengine call with bad
// credentials or a skewed clock: the sandbox refuses it before any fault or
// field rule, and the client classifies the refusal as permanent.
func TestSandboxVolcengineAuthErrors(t *testing.T) {
	tests := []struct {
		name       string
		opts       rigOptions
		code       string
		codeN      int64
		httpStatus int
		clockSkew  bool
	}{
		{name: "wrong secret", opts: rigOptions{SecretAccessKey: "d3Jvbmctc2VjcmV0"},
			code: "SignatureDoesNotMatch", codeN: 100010, httpStatus: 401},
		{name: "unknown access key", opts: rigOptions{AccessKeyID: "AKLTnobodyknowsthis", SecretAccessKey: "eA=="},
			code: "InvalidAccessKey", codeN: 100009, httpStatus: 401},
		{name: "clock 20m fast", opts: rigOptions{VolcNow: func() time.Time { return time.Now().Add(20 * time.Minute) }},
			code: "InvalidTimestamp", codeN: 100006, httpStatus: 400, clockSkew: true},
		{name: "clock 20m slow", opts: rigOptions{VolcNow: func() time.Time { return time.Now().Add(-20 * time.Minute) }},
			code: "InvalidTimestamp", codeN: 100006, httpStatus: 400, clockSkew: true},
	}
	for _, api := range volcAPIs {
		for _, tc := range tests {
			t.Run(string(api)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				sb := startSandbox(t, sandbox.Config{})
				r := newRig(t, sb, tc.opts)
				out, err := r.d.Dispatch(context.Background(), loadExample(t, api))
				checkClass(t, err, retry.ErrPermanent, retry.ClassPermanent)
				var apiErr *volcengine.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not a *volcengine.APIError", err, err)
				}
				c := lastCall(t, sb, api)
				if apiErr.Code != tc.code || apiErr.CodeN != tc.codeN || apiErr.HTTPStatus != tc.httpStatus || apiErr.Message == "" {
					t.Errorf("APIError = {Code %q, CodeN %d, HTTP %d, Message %q}, want %q, %d, %d",
						apiErr.Code, apiErr.CodeN, apiErr.HTTPStatus, apiErr.Message, tc.code, tc.codeN, tc.httpStatus)
				}
				if apiErr.RequestID == "" || apiErr.RequestID != c.RequestID || out.UpstreamRequestID != c.RequestID {
					t.Errorf("request id: APIError %q, outcome %q, sandbox %q", apiErr.RequestID, out.UpstreamRequestID, c.RequestID)
				}
				if c.Code != tc.code || c.Fault {
					t.Errorf("recorded call: code %q, fault %v", c.Code, c.Fault)
				}
				if got := errors.Is(err, volcengine.ErrClockSkew); got != tc.clockSkew {
					t.Errorf("errors.Is(err, ErrClockSkew) = %v, want %v", got, tc.clockSkew)
				}
				if n := len(sb.State().Qualifications); n != 2 {
					t.Errorf("sandbox holds %d qualifications after a refused call, want the 2 seeded", n)
				}
			})
		}
	}
}

// TestSandboxVMSUpdateApprovedRefused amends the seeded approved
// qualification: the vendor refuses, permanently, with its own message.
func TestSandboxVMSUpdateApprovedRefused(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	req := requestWithPayload(t, messages.APIVMSUpdateQualification, func(p map[string]any) {
		for _, s := range p["QualificationScenarioInfoFormDOList"].([]any) {
			s := s.(map[string]any)
			s["QualificationNo"] = sandbox.SeedApprovedQualificationNo
			s["QualificationId"] = sandbox.SeedApprovedQualificationID
		}
		m := p["QualificationMainInfoFormDO"].(map[string]any)
		m["QualificationNo"] = sandbox.SeedApprovedQualificationNo
		m["QualificationId"] = sandbox.SeedApprovedQualificationID
		p["QualificationAdminInfoFormDO"].(map[string]any)["QualificationId"] = sandbox.SeedApprovedQualificationID
	})
	out, err := r.d.Dispatch(context.Background(), req)
	checkClass(t, err, retry.ErrPermanent, retry.ClassPermanent)
	var apiErr *volcengine.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v (%T) is not a *volcengine.APIError", err, err)
	}
	const vendorMsg = "审批未通过的资质才可以修改,审批中的资质不可修改"
	if apiErr.Code != "RequestParametersError" || apiErr.Message != vendorMsg || apiErr.HTTPStatus != 200 {
		t.Errorf("APIError = {Code %q, Message %q, HTTP %d}, want RequestParametersError, %q, 200", apiErr.Code, apiErr.Message, apiErr.HTTPStatus, vendorMsg)
	}
	c := lastCall(t, sb, messages.APIVMSUpdateQualification)
	if apiErr.RequestID == "" || apiErr.RequestID != c.RequestID || out.UpstreamRequestID != c.RequestID {
		t.Errorf("request id: APIError %q, outcome %q, sandbox %q", apiErr.RequestID, out.UpstreamRequestID, c.RequestID)
	}
	if code, msg, _ := dispatch.Describe(err); code != "RequestParametersError" || msg != vendorMsg {
		t.Errorf("Describe = %q, %q", code, msg)
	}
	q, _ := findQualification(sb.State(), sandbox.SeedApprovedQualificationNo)
	if q.Status != sandbox.ReviewApproved || q.Updates != 0 {
		t.Errorf("approved qualification changed: %+v", q)
	}
}

// TestSandboxDouyinErrorClasses injects each Douyin code into both Douyin
// calls.
func TestSandboxDouyinErrorClasses(t *testing.T) {
	tests := []struct {
		name       string
		fault      sandbox.Fault
		want       error
		class      retry.Class
		code       int64
		httpStatus int
		bare       bool
	}{
		{name: "28001005 system busy", fault: sandbox.Fault{Code: "28001005"}, want: retry.ErrTransient, class: retry.ClassTransient, code: 28001005, httpStatus: 200},
		{name: "non-numeric code as system busy", fault: sandbox.Fault{Code: "SystemError"}, want: retry.ErrTransient, class: retry.ClassTransient, code: 28001005, httpStatus: 200},
		{name: "28001052 risk control", fault: sandbox.Fault{Code: "28001052"}, want: retry.ErrThrottled, class: retry.ClassThrottled, code: 28001052, httpStatus: 200},
		{name: "28001007 invalid parameter", fault: sandbox.Fault{Code: "28001007"}, want: retry.ErrPermanent, class: retry.ClassPermanent, code: 28001007, httpStatus: 200},
		{name: "bare 429", fault: sandbox.Fault{HTTPStatus: 429}, want: retry.ErrThrottled, class: retry.ClassThrottled, httpStatus: 429, bare: true},
		{name: "bare 503", fault: sandbox.Fault{HTTPStatus: 503}, want: retry.ErrTransient, class: retry.ClassTransient, httpStatus: 503, bare: true},
	}
	for _, api := range douyinAPIs {
		for _, tc := range tests {
			t.Run(string(api)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				sb := startSandbox(t, sandbox.Config{})
				r := newRig(t, sb, rigOptions{})
				f := tc.fault
				f.API = api
				sb.Inject(f)

				out, err := r.d.Dispatch(context.Background(), loadExample(t, api))
				checkClass(t, err, tc.want, tc.class)
				var apiErr *douyin.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not a *douyin.APIError", err, err)
				}
				c := lastCall(t, sb, api)
				if !c.Fault || c.HTTPStatus != tc.httpStatus {
					t.Errorf("recorded call: fault %v, status %d", c.Fault, c.HTTPStatus)
				}
				if apiErr.Code != tc.code || apiErr.HTTPStatus != tc.httpStatus || apiErr.Message == "" {
					t.Errorf("APIError = {Code %d, HTTP %d, Message %q}, want %d, %d and a message", apiErr.Code, apiErr.HTTPStatus, apiErr.Message, tc.code, tc.httpStatus)
				}
				// The sandbox sends X-Tt-Logid with every answer, bare ones
				// included.
				if apiErr.LogID == "" || apiErr.LogID != c.RequestID || out.UpstreamRequestID != c.RequestID {
					t.Errorf("log id: APIError %q, outcome %q, sandbox %q", apiErr.LogID, out.UpstreamRequestID, c.RequestID)
				}
				if !tc.bare && c.Code != strconv.FormatInt(tc.code, 10) {
					t.Errorf("recorded code %q, want %d", c.Code, tc.code)
				}
				if n := sb.TokenFetches(sandbox.DefaultAppID); n != 1 {
					t.Errorf("token fetches = %d, want 1 (a fault is no reason to refresh)", n)
				}
			})
		}
	}
}

// TestSandboxDouyinBadAppSecret: the token fetch is refused with 40017 and
// the call never reaches the vendor's filing endpoint.
func TestSandboxDouyinBadAppSecret(t *testing.T) {
	for _, api := range douyinAPIs {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{AppSecret: "not-the-secret"})
			_, err := r.d.Dispatch(context.Background(), loadExample(t, api))
			checkClass(t, err, retry.ErrPermanent, retry.ClassPermanent)
			var tokErr *douyin.TokenError
			if !errors.As(err, &tokErr) {
				t.Fatalf("error %v (%T) is not a *douyin.TokenError", err, err)
			}
			if tokErr.ErrNo != 40017 || tokErr.ErrTips == "" || tokErr.HTTPStatus != 200 {
				t.Errorf("TokenError = {ErrNo %d, ErrTips %q, HTTP %d}, want 40017", tokErr.ErrNo, tokErr.ErrTips, tokErr.HTTPStatus)
			}
			if strings.Contains(err.Error(), "not-the-secret") {
				t.Errorf("error message leaks the secret: %v", err)
			}
			if code, _, class := dispatch.Describe(err); code != "40017" || class != retry.ClassPermanent {
				t.Errorf("Describe = %q, class %q", code, class)
			}
			if n := sb.CountCalls(api); n != 0 {
				t.Errorf("%d calls of %s reached the sandbox without a token", n, api)
			}
			if n := sb.CountCalls(sandbox.TokenAPI); n != 1 {
				t.Errorf("token endpoint called %d times, want 1", n)
			}
			if n := sb.TokenFetches(sandbox.DefaultAppID); n != 0 {
				t.Errorf("token fetches = %d, want 0", n)
			}
		})
	}
}

// TestSandboxDouyinExpiredToken: the vendor says the token expired (the
// sandbox's clock is moved past TokenTTL while the TokenSource's clock, real
// time, still believes the token fresh): the client refreshes once and the
// call succeeds. When the fresh token is rejected too, it gives up after
// that one refresh, permanently.
func TestSandboxDouyinExpiredToken(t *testing.T) {
	for _, api := range douyinAPIs {
		t.Run(string(api)+"/refreshed once", func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{}
			sb := startSandbox(t, sandbox.Config{Now: clk.Now})
			r := newRig(t, sb, rigOptions{})
			ctx := context.Background()
			old, err := r.tokens.Token(ctx)
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			clk.Advance(sandbox.DefaultTokenTTL + time.Minute)

			out, err := r.d.Dispatch(ctx, loadExample(t, api))
			if err != nil {
				t.Fatalf("Dispatch after the token expired: %v", err)
			}
			calls := callsOf(sb, api)
			if len(calls) != 2 || calls[0].Code != "28001008" || calls[1].Code != "" || calls[1].HTTPStatus != 200 {
				t.Fatalf("calls of %s = %+v, want one refused as expired (28001008) then one success", api, summarize(calls))
			}
			if out.UpstreamRequestID != calls[1].RequestID {
				t.Errorf("UpstreamRequestID = %q, want the log id of the successful call %q", out.UpstreamRequestID, calls[1].RequestID)
			}
			if n := sb.TokenFetches(sandbox.DefaultAppID); n != 2 {
				t.Errorf("token fetches = %d, want 2", n)
			}
			cur, err := r.tokens.Token(ctx)
			if err != nil || cur.AccessToken == old.AccessToken {
				t.Errorf("the source still hands out the expired token (err %v)", err)
			}
		})
		t.Run(string(api)+"/rejected twice", func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{})
			sb.Inject(sandbox.Fault{API: api, Code: "28001008", Count: 5})
			_, err := r.d.Dispatch(context.Background(), loadExample(t, api))
			checkClass(t, err, retry.ErrPermanent, retry.ClassPermanent)
			if !errors.Is(err, douyin.ErrTokenRejected) {
				t.Errorf("error %v does not match douyin.ErrTokenRejected", err)
			}
			if n := sb.CountCalls(api); n != 2 {
				t.Errorf("%d calls of %s, want 2 (one refresh, no more)", n, api)
			}
			if n := sb.TokenFetches(sandbox.DefaultAppID); n != 2 {
				t.Errorf("token fetches = %d, want 2", n)
			}
		})
	}
}

// TestSandboxDouyinTokenReplicasMustShareStore shows the vendor's 5-minute
// rule: issuing an access token cuts every earlier token of the appid to at
// most five minutes. Two replicas with separate stores (each TokenSource with
// its own MemoryStore) therefore knock each other's token out: the second
// replica's first fetch leaves the first replica holding a token it believes
// good for two hours but that dies in five minutes, and the first replica's
// forced refresh then does the same to the second. Every refresh costs the
// other replica a refused call. This is why all replicas of the consumer must
// share one TokenStore (one token per appid, e.g. a JetStream KV store).
func TestSandboxDouyinTokenReplicasMustShareStore(t *testing.T) {
	ctx := context.Background()
	source := func(t *testing.T, sb *sandbox.Server, clk *fakeClock, store douyin.TokenStore) *douyin.TokenSource {
		return &douyin.TokenSource{AppID: sandbox.DefaultAppID, Secret: sandbox.DefaultAppSecret, BaseURL: sb.URL(),
			Store: store, HTTPClient: newHTTPClient(t), Timeout: 2 * time.Second, Now: clk.Now}
	}
	expiry := func(t *testing.T, sb *sandbox.Server, tok douyin.Token) time.Time {
		t.Helper()
		exp, ok := sb.TokenExpiry(tok.AccessToken)
		if !ok {
			t.Fatalf("the sandbox does not know the token")
		}
		return exp
	}
	// near reports whether got is within a second of want.
	near := func(got, want time.Time) bool { d := got.Sub(want); return d > -time.Second && d < time.Second }

	t.Run("separate stores", func(t *testing.T) {
		t.Parallel()
		clk := &fakeClock{}
		sb := startSandbox(t, sandbox.Config{Now: clk.Now})
		a := source(t, sb, clk, douyin.NewMemoryStore())
		b := source(t, sb, clk, douyin.NewMemoryStore())

		tokA, err := a.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if exp := expiry(t, sb, tokA); !near(exp, clk.Now().Add(sandbox.DefaultTokenTTL)) {
			t.Fatalf("first token expires at %v, want about %v", exp, clk.Now().Add(sandbox.DefaultTokenTTL))
		}
		tokB, err := b.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tokB.AccessToken == tokA.AccessToken {
			t.Fatal("the second replica got the first replica's token")
		}
		if n := sb.TokenFetches(sandbox.DefaultAppID); n != 2 {
			t.Errorf("token fetches = %d, want 2", n)
		}
		// The second fetch cut the first token to five minutes...
		if exp := expiry(t, sb, tokA); !near(exp, clk.Now().Add(sandbox.TokenCutoff)) {
			t.Errorf("first token expires at %v after the second fetch, want about %v (5 minutes)", exp, clk.Now().Add(sandbox.TokenCutoff))
		}
		if exp := expiry(t, sb, tokB); !near(exp, clk.Now().Add(sandbox.DefaultTokenTTL)) {
			t.Errorf("second token expires at %v, want about %v", exp, clk.Now().Add(sandbox.DefaultTokenTTL))
		}
		// ...but replica A does not know: it keeps handing it out.
		again, err := a.Token(ctx)
		if err != nil || again.AccessToken != tokA.AccessToken || !again.ExpiresAt.After(clk.Now().Add(time.Hour)) {
			t.Errorf("replica A: same token %v, expires %v, err %v; want its old token, believed good for about 2h",
				again.AccessToken == tokA.AccessToken, again.ExpiresAt, err)
		}

		// Six minutes on, replica A's call is refused (expired), A refreshes,
		// and that refresh cuts replica B's token in turn.
		clk.Advance(sandbox.TokenCutoff + time.Minute)
		clientA, err := douyin.New(douyin.Config{BaseURL: sb.URL(), AppID: sandbox.DefaultAppID, Tokens: a,
			Timeout: 2 * time.Second, HTTPClient: newHTTPClient(t)})
		if err != nil {
			t.Fatal(err)
		}
		req := loadExample(t, messages.APIDouyinGetClassAuth)
		if _, _, err := clientA.GetClassAuth(ctx, req.Typed().(*messages.DouyinGetClassAuth)); err != nil {
			t.Fatalf("replica A after the cut: %v", err)
		}
		calls := callsOf(sb, messages.APIDouyinGetClassAuth)
		if len(calls) != 2 || calls[0].Code != "28001008" || calls[1].Code != "" {
			t.Errorf("replica A's calls = %+v, want one refused as expired then one success", summarize(calls))
		}
		if n := sb.TokenFetches(sandbox.DefaultAppID); n != 3 {
			t.Errorf("token fetches = %d, want 3", n)
		}
		if exp := expiry(t, sb, tokB); !near(exp, clk.Now().Add(sandbox.TokenCutoff)) {
			t.Errorf("replica B's token expires at %v after A's refresh, want about %v (5 minutes)", exp, clk.Now().Add(sandbox.TokenCutoff))
		}
	})

	t.Run("shared store", func(t *testing.T) {
		t.Parallel()
		clk := &fakeClock{}
		sb := startSandbox(t, sandbox.Config{Now: clk.Now})
		store := douyin.NewMemoryStore()
		a := source(t, sb, clk, store)
		b := source(t, sb, clk, store)
		tokA, err := a.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tokB, err := b.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if tokA.AccessToken != tokB.AccessToken {
			t.Error("replicas sharing a store got different tokens")
		}
		if n := sb.TokenFetches(sandbox.DefaultAppID); n != 1 {
			t.Errorf("token fetches = %d, want 1", n)
		}
		if exp := expiry(t, sb, tokA); !near(exp, clk.Now().Add(sandbox.DefaultTokenTTL)) {
			t.Errorf("shared token expires at %v, want about %v", exp, clk.Now().Add(sandbox.DefaultTokenTTL))
		}
	})
}

// TestSandboxTimeout: a reply slower than the client's Timeout is a
// transient error wrapping context.DeadlineExceeded. Through Dispatch a
// create call becomes an *AmbiguousError (it reached the vendor, which may
// have filed it), while a read or an amendment stays transient.
func TestSandboxTimeout(t *testing.T) {
	const (
		timeout = 200 * time.Millisecond
		latency = 2 * time.Second
	)
	for _, api := range messages.APIs() {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{Timeout: timeout})
			sb.Inject(sandbox.Fault{API: api, Latency: latency})
			req := loadExample(t, api)
			ctx := context.Background()

			// The client alone.
			start := time.Now()
			_, err := r.callDirect(ctx, api, req.Typed())
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("call succeeded despite the latency")
			}
			if elapsed > latency/2 {
				t.Errorf("call took %v, want about the %v timeout", elapsed, timeout)
			}
			if !errors.Is(err, retry.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v: Is(ErrTransient) %v, Is(DeadlineExceeded) %v; want both",
					err, errors.Is(err, retry.ErrTransient), errors.Is(err, context.DeadlineExceeded))
			}
			if !errors.Is(err, retry.ErrAmbiguous) {
				t.Errorf("error %v: the request was sent, want it to match retry.ErrAmbiguous", err)
			}
			var volcErr *volcengine.TransportError
			var dyErr *douyin.TransportError
			switch {
			case errors.As(err, &volcErr):
				if !volcErr.Sent {
					t.Errorf("volcengine TransportError.Sent = false after the request reached the sandbox")
				}
			case errors.As(err, &dyErr):
				if !dyErr.Sent {
					t.Errorf("douyin TransportError.Sent = false after the request reached the sandbox")
				}
			default:
				t.Errorf("error %v (%T) is not a TransportError", err, err)
			}

			// Through the dispatcher.
			_, err = r.d.Dispatch(ctx, req)
			if err == nil {
				t.Fatal("Dispatch succeeded despite the latency")
			}
			var amb *dispatch.AmbiguousError
			if !api.Resendable() {
				if !errors.As(err, &amb) {
					t.Fatalf("call %s, not safe to send twice: error %v (%T), want a *dispatch.AmbiguousError", api, err, err)
				}
				if c := retry.ClassOf(err); c != retry.ClassAmbiguous {
					t.Errorf("ClassOf = %q, want %q", c, retry.ClassAmbiguous)
				}
				if errors.Is(err, retry.ErrTransient) || !errors.Is(err, retry.ErrAmbiguous) {
					t.Errorf("AmbiguousError must match ErrAmbiguous and not ErrTransient: %v", err)
				}
				if amb.API != api || !errors.Is(amb.Err, context.DeadlineExceeded) {
					t.Errorf("AmbiguousError{API %q, Cause %v}", amb.API, amb.Err)
				}
			} else {
				if errors.As(err, &amb) {
					t.Fatalf("%s is a read, yet the error is ambiguous: %v", api, err)
				}
				if c := retry.ClassOf(err); c != retry.ClassTransient {
					t.Errorf("ClassOf(%v) = %q, want %q", err, c, retry.ClassTransient)
				}
				if !errors.Is(err, retry.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v does not match context.DeadlineExceeded", err)
				}
			}

			// Both requests reached the sandbox, which saw the client leave.
			calls := waitForCall(t, sb, api, 2)
			if len(calls) != 2 {
				t.Fatalf("sandbox recorded %d calls of %s, want 2", len(calls), api)
			}
			for _, c := range calls {
				if c.HTTPStatus != sandbox.StatusClientGone {
					t.Errorf("recorded call status %d, want %d (client gone)", c.HTTPStatus, sandbox.StatusClientGone)
				}
			}
		})
	}
}

// TestSandboxCancellation: the caller cancels during a slow reply. The call
// returns at once with context.Canceled, which is not a transient error
// (the caller is going away; nothing should retry on its behalf).
func TestSandboxCancellation(t *testing.T) {
	const (
		latency  = 2 * time.Second
		cancelAt = 100 * time.Millisecond
	)
	for _, api := range messages.APIs() {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{Timeout: 5 * time.Second})
			req := loadExample(t, api)
			if strings.HasPrefix(string(api), "douyin.") {
				// Fetch the token first so the cancellation hits the call.
				if _, err := r.tokens.Token(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			sb.Inject(sandbox.Fault{API: api, Latency: latency})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			time.AfterFunc(cancelAt, cancel)

			start := time.Now()
			_, err := r.d.Dispatch(ctx, req)
			elapsed := time.Since(start)
			if err == nil {
				t.Fatal("Dispatch succeeded despite the cancellation")
			}
			if elapsed > latency/4 {
				t.Errorf("Dispatch returned after %v, want promptly after the %v cancellation", elapsed, cancelAt)
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %v does not match context.Canceled", err)
			}
			if errors.Is(err, retry.ErrTransient) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a cancellation matches ErrTransient or DeadlineExceeded: %v", err)
			}
			var amb *dispatch.AmbiguousError
			if errors.As(err, &amb) {
				t.Errorf("a cancellation became an AmbiguousError: %v", err)
			}
			if c := retry.ClassOf(err); c.Retryable() {
				t.Errorf("ClassOf = %q, a retryable class", c)
			}
			calls := waitForCall(t, sb, api, 1)
			if len(calls) != 1 || calls[0].HTTPStatus != sandbox.StatusClientGone {
				t.Errorf("recorded calls = %+v, want one with status %d", summarize(calls), sandbox.StatusClientGone)
			}
		})
	}
	t.Run("cancelled before the call", func(t *testing.T) {
		t.Parallel()
		sb := startSandbox(t, sandbox.Config{})
		r := newRig(t, sb, rigOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, api := range messages.APIs() {
			_, err := r.d.Dispatch(ctx, loadExample(t, api))
			if !errors.Is(err, context.Canceled) || errors.Is(err, retry.ErrTransient) {
				t.Errorf("%s: error %v, want context.Canceled and not transient", api, err)
			}
		}
		if n := sb.CountCalls(""); n != 0 {
			t.Errorf("%d calls reached the sandbox with a cancelled context", n)
		}
	})
}

// TestSandboxInvalidExamples: each examples/invalid/<api>.json fails
// Validate; sent anyway (decoded leniently into the typed payload, which
// bypasses validation), the vendor answers its parameter error, permanent.
func TestSandboxInvalidExamples(t *testing.T) {
	tests := []struct {
		api      messages.API
		volcCode string // Volcengine Error.Code
		dyCode   int64  // Douyin err_code
	}{
		{api: messages.APIVMSAddQualification, volcCode: "RequestParametersError"},
		{api: messages.APIVMSUpdateQualification, volcCode: "RequestParametersError"},
		{api: messages.APISMSApplySignatureIdent, volcCode: "1001"},
		{api: messages.APIDouyinAddRole, dyCode: 28001007},
		{api: messages.APIDouyinGetClassAuth, dyCode: 28001007},
	}
	for _, tc := range tests {
		t.Run(string(tc.api), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(examplePath(true, tc.api))
			if err != nil {
				t.Fatal(err)
			}
			req, err := messages.ParseRequest(raw)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			verr := req.Validate()
			if !errors.Is(verr, retry.ErrInvalid) || retry.ClassOf(verr) != retry.ClassInvalid {
				t.Fatalf("Validate = %v, want an invalid-class error", verr)
			}

			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{})
			payload := decodeLeniently(t, tc.api, req.Payload)
			reqID, err := r.callDirect(context.Background(), tc.api, payload)
			checkClass(t, err, retry.ErrPermanent, retry.ClassPermanent)
			c := lastCall(t, sb, tc.api)
			if c.Fault || c.HTTPStatus != 200 {
				t.Errorf("recorded call: fault %v, status %d", c.Fault, c.HTTPStatus)
			}
			if reqID == "" || reqID != c.RequestID {
				t.Errorf("request id %q, sandbox answered %q", reqID, c.RequestID)
			}
			if tc.volcCode != "" {
				var apiErr *volcengine.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not a *volcengine.APIError", err, err)
				}
				if apiErr.Code != tc.volcCode || apiErr.Message == "" || apiErr.RequestID != c.RequestID || apiErr.HTTPStatus != 200 {
					t.Errorf("APIError = {Code %q, Message %q, RequestID %q, HTTP %d}, want %q", apiErr.Code, apiErr.Message, apiErr.RequestID, apiErr.HTTPStatus, tc.volcCode)
				}
				if tc.volcCode == "1001" && (apiErr.CodeN != 1001 || !strings.HasPrefix(apiErr.Message, "参数错误")) {
					t.Errorf("SMS parameter error = {CodeN %d, Message %q}, want 1001, 参数错误: …", apiErr.CodeN, apiErr.Message)
				}
				t.Logf("vendor: %s: %s", apiErr.Code, apiErr.Message)
			} else {
				var apiErr *douyin.APIError
				if !errors.As(err, &apiErr) {
					t.Fatalf("error %v (%T) is not a *douyin.APIError", err, err)
				}
				if apiErr.Code != tc.dyCode || !strings.HasPrefix(apiErr.Message, "invalid parameter") || apiErr.LogID != c.RequestID {
					t.Errorf("APIError = {Code %d, Message %q, LogID %q}, want %d, invalid parameter: …", apiErr.Code, apiErr.Message, apiErr.LogID, tc.dyCode)
				}
				t.Logf("vendor: %d: %s", apiErr.Code, apiErr.Message)
			}
			if c.Code == "" {
				t.Errorf("the sandbox recorded no error code for the refused call")
			}
			st := sb.State()
			if len(st.Qualifications) != 2 || len(st.SignatureIdents) != 0 || len(st.Roles) != 0 {
				t.Errorf("an invalid payload changed the sandbox state: %d qualifications, %d idents, %d roles",
					len(st.Qualifications), len(st.SignatureIdents), len(st.Roles))
			}
		})
	}
}

// TestSandboxFaultCount: a fault with Count 3 answers the first three calls;
// the fourth, with the same payload, succeeds.
func TestSandboxFaultCount(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	api := messages.APIVMSAddQualification
	sb.Inject(sandbox.Fault{API: api, Code: "SystemError", Count: 3})
	req := loadExample(t, api)
	for i := 1; i <= 4; i++ {
		out, err := r.d.Dispatch(context.Background(), req)
		c := lastCall(t, sb, api)
		if out.UpstreamRequestID != c.RequestID {
			t.Errorf("call %d: UpstreamRequestID %q, sandbox %q", i, out.UpstreamRequestID, c.RequestID)
		}
		if i <= 3 {
			checkClass(t, err, retry.ErrTransient, retry.ClassTransient)
			if !c.Fault || c.Code != "SystemError" {
				t.Errorf("call %d: recorded fault %v, code %q", i, c.Fault, c.Code)
			}
			continue
		}
		if err != nil {
			t.Fatalf("call 4: %v", err)
		}
		var res struct{ QualificationNo string }
		mustUnmarshal(t, out.Result, &res)
		if !qualificationNoRE.MatchString(res.QualificationNo) {
			t.Errorf("call 4: QualificationNo %q", res.QualificationNo)
		}
		if c.Fault || c.Code != "" {
			t.Errorf("call 4: recorded fault %v, code %q", c.Fault, c.Code)
		}
	}
	if n := sb.CountCalls(api); n != 4 {
		t.Errorf("CountCalls = %d, want 4", n)
	}
	if n := len(sb.State().Qualifications); n != 3 {
		t.Errorf("sandbox holds %d qualifications, want 2 seeded + 1 filed", n)
	}
	if f := sb.Faults(); len(f) != 0 {
		t.Errorf("the spent fault is still active: %+v", f)
	}
}

// TestSandboxCallerDeadline: the caller's own deadline (shorter than the
// client's Timeout) expires while the vendor is slow. Dispatch promises that
// "a create call that was sent and never answered fails with an
// *AmbiguousError": the request reached the sandbox (recorded with status
// 499), so vms.add_qualification, sms.apply_signature_ident and
// douyin.add_role must come back ambiguous, never as a retryable class.
//
// BUG (fails for vms.add_qualification and sms.apply_signature_ident): the
// Volcengine client turns the caller's deadline into callerDone
// (volcengine/client.go), an error that matches context.DeadlineExceeded but
// neither retry.ErrTransient nor retry.ErrAmbiguous; Dispatch's
// isAmbiguousSend (dispatch/errors.go) therefore does not wrap it, and
// retry.ClassOf maps the bare context.DeadlineExceeded to ClassTransient:
// a possibly filed create call is reported as safe to retry. The Douyin
// client returns an ambiguous TransportError in the same situation.
func TestSandboxCallerDeadline(t *testing.T) {
	for _, api := range messages.APIs() {
		t.Run(string(api), func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{Timeout: 5 * time.Second})
			if _, err := r.tokens.Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			sb.Inject(sandbox.Fault{API: api, Latency: 2 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()

			start := time.Now()
			_, err := r.d.Dispatch(ctx, loadExample(t, api))
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("Dispatch returned after %v, want about 200ms", elapsed)
			}
			if err == nil {
				t.Fatal("Dispatch succeeded despite the latency")
			}
			if calls := waitForCall(t, sb, api, 1); len(calls) != 1 || calls[0].HTTPStatus != sandbox.StatusClientGone {
				t.Fatalf("recorded calls = %+v, want the request to have reached the sandbox", summarize(calls))
			}
			class := retry.ClassOf(err)
			if !api.Resendable() {
				var amb *dispatch.AmbiguousError
				if !errors.As(err, &amb) || class != retry.ClassAmbiguous {
					t.Errorf("call sent, caller's deadline expired: class %q, error %v (%T); want a *dispatch.AmbiguousError", class, err, err)
				}
				return
			}
			if class != retry.ClassTransient || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("class %q, error %v; want transient, matching context.DeadlineExceeded", class, err)
			}
		})
	}
}

// TestSandboxDouyinTokenEndpointFaults: a failed token fetch has its own
// class, and never makes a create call ambiguous (a token fetch files
// nothing; the filing call was not made).
func TestSandboxDouyinTokenEndpointFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault sandbox.Fault
		want  error
		class retry.Class
		errNo int64 // TokenError.ErrNo; 0 with a bare status
		http  int   // TokenError.HTTPStatus; 0 for a timeout
	}{
		{name: "err_no -1", fault: sandbox.Fault{Code: "-1"}, want: retry.ErrTransient, class: retry.ClassTransient, errNo: -1, http: 200},
		{name: "bare 503", fault: sandbox.Fault{HTTPStatus: 503}, want: retry.ErrTransient, class: retry.ClassTransient, http: 503},
		{name: "bare 429", fault: sandbox.Fault{HTTPStatus: 429}, want: retry.ErrThrottled, class: retry.ClassThrottled, http: 429},
		{name: "timeout", fault: sandbox.Fault{Latency: 2 * time.Second}, want: retry.ErrTransient, class: retry.ClassTransient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb := startSandbox(t, sandbox.Config{})
			r := newRig(t, sb, rigOptions{Timeout: 200 * time.Millisecond})
			f := tc.fault
			f.API = sandbox.TokenAPI
			sb.Inject(f)
			_, err := r.d.Dispatch(context.Background(), loadExample(t, messages.APIDouyinAddRole))
			checkClass(t, err, tc.want, tc.class)
			var amb *dispatch.AmbiguousError
			if errors.As(err, &amb) {
				t.Errorf("a failed token fetch made add_role ambiguous: %v", err)
			}
			if tc.http == 0 {
				var te *douyin.TransportError
				if !errors.As(err, &te) || te.Op != "token" || te.Sent || !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error %v (%T), want a token TransportError, not sent, matching DeadlineExceeded", err, err)
				}
			} else {
				var tokErr *douyin.TokenError
				if !errors.As(err, &tokErr) {
					t.Fatalf("error %v (%T) is not a *douyin.TokenError", err, err)
				}
				if tokErr.ErrNo != tc.errNo || tokErr.HTTPStatus != tc.http {
					t.Errorf("TokenError = {ErrNo %d, HTTP %d}, want %d, %d", tokErr.ErrNo, tokErr.HTTPStatus, tc.errNo, tc.http)
				}
			}
			if n := sb.CountCalls(messages.APIDouyinAddRole); n != 0 {
				t.Errorf("add_role reached the sandbox %d times without a token", n)
			}
		})
	}
}

// TestSandboxDouyinConcurrentCallsShareOneToken: concurrent calls of one
// process share a single token fetch.
func TestSandboxDouyinConcurrentCallsShareOneToken(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	req := loadExample(t, messages.APIDouyinGetClassAuth)
	const n = 16
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := r.d.Dispatch(context.Background(), req)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Dispatch: %v", err)
		}
	}
	if got := sb.CountCalls(messages.APIDouyinGetClassAuth); got != n {
		t.Errorf("%d get_class_auth calls, want %d", got, n)
	}
	if got := sb.TokenFetches(sandbox.DefaultAppID); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
}

// TestSandboxSMSIdsStayExact: successive ids above 2^53 differ by one and
// come back exactly, also when an ident is re-edited by its id.
func TestSandboxSMSIdsStayExact(t *testing.T) {
	sb := startSandbox(t, sandbox.Config{})
	r := newRig(t, sb, rigOptions{})
	ctx := context.Background()
	id := func(out dispatch.Outcome) int64 {
		var res struct {
			ID int64 `json:"id"`
		}
		mustUnmarshal(t, out.Result, &res)
		return res.ID
	}
	req := loadExample(t, messages.APISMSApplySignatureIdent)
	var ids []int64
	for range 2 {
		out, err := r.d.Dispatch(ctx, req)
		if err != nil {
			t.Fatalf("Dispatch: %v", err)
		}
		ids = append(ids, id(out))
	}
	if ids[0] != sandbox.FirstSMSID || ids[1] != sandbox.FirstSMSID+1 {
		t.Fatalf("ids = %v, want %d and %d", ids, sandbox.FirstSMSID, sandbox.FirstSMSID+1)
	}
	edit := requestWithPayload(t, messages.APISMSApplySignatureIdent, func(p map[string]any) { p["id"] = ids[1] })
	out, err := r.d.Dispatch(ctx, edit)
	if err != nil {
		t.Fatalf("Dispatch (re-edit): %v", err)
	}
	if got := id(out); got != ids[1] {
		t.Errorf("re-edit returned id %d, want %d", got, ids[1])
	}
	st := sb.State()
	if len(st.SignatureIdents) != 2 || st.SignatureIdents[1].ID != ids[1] || st.SignatureIdents[1].Edits != 1 || st.SignatureIdents[0].Edits != 0 {
		t.Errorf("sandbox idents = %+v, want two, the second edited once", st.SignatureIdents)
	}
	// The body sent for the re-edit carried the id exactly.
	if c := lastCall(t, sb, messages.APISMSApplySignatureIdent); !bytes.Contains(c.Body, []byte(`"id":9007199254740994`)) {
		t.Errorf("re-edit body does not carry the exact id: %.120s", c.Body)
	}
}

// TestSandboxConnectionRefused: nothing listens at the endpoint. The
// request was never sent, so the error is transient and never ambiguous,
// create calls included.
func TestSandboxConnectionRefused(t *testing.T) {
	r := newRig(t, nil, rigOptions{BaseURL: "http://127.0.0.1:1"})
	for _, api := range messages.APIs() {
		_, err := r.d.Dispatch(context.Background(), loadExample(t, api))
		if err == nil {
			t.Fatalf("%s: a call to a closed port succeeded", api)
		}
		var amb *dispatch.AmbiguousError
		if errors.As(err, &amb) || errors.Is(err, retry.ErrAmbiguous) {
			t.Errorf("%s: a refused connection is ambiguous: %v", api, err)
		}
		if c := retry.ClassOf(err); c != retry.ClassTransient {
			t.Errorf("%s: ClassOf = %q, want transient (%v)", api, c, err)
		}
		var volcErr *volcengine.TransportError
		var dyErr *douyin.TransportError
		switch {
		case errors.As(err, &volcErr):
			if volcErr.Sent {
				t.Errorf("%s: TransportError.Sent = true for a refused connection", api)
			}
		case errors.As(err, &dyErr):
			// The token fetch is the first request and fails first.
			if dyErr.Sent || dyErr.Op != "token" {
				t.Errorf("%s: douyin TransportError{Op %q, Sent %v}, want the token fetch, not sent", api, dyErr.Op, dyErr.Sent)
			}
		default:
			t.Errorf("%s: error %v (%T) is not a TransportError", api, err, err)
		}
	}
}

// checkClass checks err against a class sentinel and retry.ClassOf.
func checkClass(t *testing.T, err, want error, class retry.Class) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %v does not match %v", err, want)
	}
	if got := retry.ClassOf(err); got != class {
		t.Errorf("ClassOf(%v) = %q, want %q", err, got, class)
	}
	if want == retry.ErrPermanent && errors.Is(err, retry.ErrTransient) {
		t.Errorf("permanent error %v also matches ErrTransient", err)
	}
	if want == retry.ErrTransient && errors.Is(err, retry.ErrThrottled) {
		t.Errorf("transient error %v also matches ErrThrottled", err)
	}
	if want == retry.ErrThrottled && !errors.Is(err, retry.ErrTransient) {
		t.Errorf("throttled error %v does not match ErrTransient", err)
	}
	if errors.Is(err, retry.ErrAmbiguous) {
		t.Errorf("an answered call matches ErrAmbiguous: %v", err)
	}
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("unmarshal %s: %v", data, err)
	}
}

func findQualification(st sandbox.State, no string) (sandbox.Qualification, bool) {
	for _, q := range st.Qualifications {
		if q.QualificationNo == no {
			return q, true
		}
	}
	return sandbox.Qualification{}, false
}

// callSummary is the part of a Call worth printing.
type callSummary struct {
	Code       string
	HTTPStatus int
	Fault      bool
}

func summarize(calls []sandbox.Call) []callSummary {
	out := make([]callSummary, len(calls))
	for i, c := range calls {
		out[i] = callSummary{c.Code, c.HTTPStatus, c.Fault}
	}
	return out
}
