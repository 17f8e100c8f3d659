package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/messages"
)

func TestFaultCount(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	id := s.Inject(Fault{API: messages.APIVMSAddQualification, Code: "SystemError", Count: 2})
	if id == 0 {
		t.Fatal("Inject returned 0")
	}
	var codes []string
	for i := 0; i < 3; i++ {
		status, env, _ := callVolc(t, s.URL(), vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0)))
		code := ""
		if e := env.ResponseMetadata.Error; e != nil {
			code = e.Code
			if e.Message != "系统错误" || e.CodeN != 0 || env.ResponseMetadata.RequestID == "" {
				t.Errorf("fault error = %+v", e)
			}
		}
		if status != 200 {
			t.Errorf("status %d", status)
		}
		codes = append(codes, code)
	}
	if strings.Join(codes, ",") != "SystemError,SystemError," {
		t.Errorf("codes = %q", codes)
	}
	calls := s.Calls()
	if !calls[0].Fault || !calls[1].Fault || calls[2].Fault || calls[0].Code != "SystemError" {
		t.Errorf("calls = %+v", calls)
	}
	if n := len(s.State().Qualifications); n != 3 {
		t.Errorf("faulted adds were filed: %d qualifications", n)
	}
	// A fault for one API does not touch another.
	s.Inject(Fault{API: messages.APISMSApplySignatureIdent, Code: "1999"})
	if _, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0))); env.ResponseMetadata.Error != nil {
		t.Errorf("vms hit by an sms fault: %s", raw)
	}
	_, env, raw := callVolc(t, s.URL(), smsApply(clk.Now(), smsBody("资质", "沙盒", 0)))
	if e := env.ResponseMetadata.Error; e == nil || e.Code != "1999" || e.CodeN != 1999 {
		t.Errorf("sms fault = %s", raw)
	}
	s.ClearFaults()
	if _, env, raw := callVolc(t, s.URL(), smsApply(clk.Now(), smsBody("资质", "沙盒", 0))); env.ResponseMetadata.Error != nil {
		t.Errorf("after ClearFaults: %s", raw)
	}
}

func TestFaultFractionIsSeeded(t *testing.T) {
	pattern := func(seed int64) string {
		s := start(t, Config{Seed: seed})
		tok := token(t, s.URL(), DefaultAppID, DefaultAppSecret)
		s.Inject(Fault{Code: "28001005", Fraction: 0.5})
		var b strings.Builder
		for i := 0; i < 40; i++ {
			r := douyin(t, s.URL(), "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_787907892525941398", 70000, 70500, 2), nil)
			switch r.errCode() {
			case 0:
				b.WriteByte('.')
			case 28001005:
				b.WriteByte('F')
				if r.body["err_no"] == nil || r.errMsg() != "system busy" {
					t.Errorf("douyin fault reply = %s", r.raw)
				}
			default:
				t.Fatalf("unexpected %s", r.raw)
			}
		}
		// Reset re-seeds: the same pattern again.
		s.Reset()
		tok = token(t, s.URL(), DefaultAppID, DefaultAppSecret)
		s.Inject(Fault{Code: "28001005", Fraction: 0.5})
		var again strings.Builder
		for i := 0; i < 40; i++ {
			r := douyin(t, s.URL(), "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_787907892525941398", 70000, 70500, 2), nil)
			if r.errCode() == 0 {
				again.WriteByte('.')
			} else {
				again.WriteByte('F')
			}
		}
		if again.String() != b.String() {
			t.Errorf("after Reset %s, before %s", again.String(), b.String())
		}
		return b.String()
	}
	a, b, c := pattern(7), pattern(7), pattern(8)
	if a != b {
		t.Errorf("same seed, different patterns:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("different seeds, same pattern %s", a)
	}
	if n := strings.Count(a, "F"); n < 8 || n > 32 {
		t.Errorf("fraction 0.5 answered %d of 40", n)
	}
}

func TestFaultLatency(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	s.Inject(Fault{API: messages.APIVMSAddQualification, Latency: 150 * time.Millisecond, Count: 1})
	began := time.Now()
	_, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0)))
	if took := time.Since(began); took < 150*time.Millisecond {
		t.Errorf("answered after %s", took)
	}
	if env.ResponseMetadata.Error != nil {
		t.Errorf("latency-only fault answered an error: %s", raw)
	}
	if c := s.Calls()[0]; c.Fault || c.HTTPStatus != 200 {
		t.Errorf("latency-only call recorded as %+v", c)
	}

	// A client that gives up: recorded as 499.
	s.Inject(Fault{API: messages.APIVMSAddQualification, Code: "SystemError", Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := volcRequest(t, s.URL(), vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0))).WithContext(ctx)
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
	waitFor(t, func() bool { return s.CountCalls(messages.APIVMSAddQualification) == 2 })
	if c := s.Calls()[1]; c.HTTPStatus != StatusClientGone || !c.Fault {
		t.Errorf("abandoned call recorded as %+v", c)
	}
}

func TestFaultThrottlingAndBareStatus(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	tok := token(t, s.URL(), DefaultAppID, DefaultAppSecret)

	s.Inject(Fault{Code: "FlowLimitExceeded", HTTPStatus: 429, Count: 1})
	status, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0)))
	if e := env.ResponseMetadata.Error; status != 429 || e == nil || e.Code != "FlowLimitExceeded" || e.Message == "" {
		t.Errorf("429 = %d %s", status, raw)
	}

	s.Inject(Fault{HTTPStatus: 503, Count: 2})
	req := volcRequest(t, s.URL(), smsApply(clk.Now(), smsBody("资质", "沙盒", 0)))
	status, h, body := do(t, req)
	if status != 503 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "503") {
		t.Errorf("bare 503 = %d %q %s", status, h.Get("Content-Type"), body)
	}
	if json.Valid(body) {
		t.Errorf("bare status has a JSON body: %s", body)
	}
	r := douyin(t, s.URL(), "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_787907892525941398", 70000, 70500, 2), nil)
	if r.status != 503 || r.body != nil {
		t.Errorf("douyin bare 503 = %d %s", r.status, r.raw)
	}
	calls := s.Calls()
	last := calls[len(calls)-1]
	if last.HTTPStatus != 503 || !last.Fault || last.Code != "" || last.API != messages.APIDouyinGetClassAuth {
		t.Errorf("recorded %+v", last)
	}

	// A Douyin fault with a non-numeric code answers system busy; a
	// Volcengine-wide fault never touches the token endpoint.
	s.Inject(Fault{API: messages.APIDouyinAddRole, Code: "SystemError", Count: 1})
	s.Inject(Fault{Code: "SystemError"})
	r = douyin(t, s.URL(), "/auth/entity/add_role", DefaultAppID, tok, partnerRole("E_7216554566647824422", "企业工商户"), nil)
	if r.errCode() != 28001005 || !strings.Contains(r.errMsg(), "SystemError") {
		t.Errorf("non-numeric douyin fault = %s", r.raw)
	}
	token(t, s.URL(), DefaultAppID, DefaultAppSecret)
	s.ClearFaults()

	// Token faults.
	s.Inject(Fault{API: TokenAPI, Code: "-1", Count: 1})
	_, tr, _ := postToken(t, s.URL(), map[string]string{"appid": DefaultAppID, "secret": DefaultAppSecret, "grant_type": "client_credential"})
	if tr.ErrNo != -1 || tr.Data != nil {
		t.Errorf("token fault = %+v", tr)
	}
	if got := s.TokenFetches(DefaultAppID); got != 2 {
		t.Errorf("TokenFetches = %d, want 2", got)
	}
	if c := s.Calls(); c[len(c)-1].Code != "-1" || !c[len(c)-1].Fault || c[len(c)-1].API != TokenAPI {
		t.Errorf("recorded %+v", c[len(c)-1])
	}
}

func TestFaultJSON(t *testing.T) {
	f := Fault{API: messages.APIDouyinAddRole, Code: "28001005", HTTPStatus: 200, Count: 3, Fraction: 0.25, Latency: 2 * time.Second}
	raw := mustJSON(f)
	if !strings.Contains(string(raw), `"latency":"2s"`) {
		t.Errorf("marshal = %s", raw)
	}
	var back Fault
	if err := json.Unmarshal(raw, &back); err != nil || back != f {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if err := (Fault{API: "x"}).Validate(); err == nil {
		t.Error("bad api validated")
	}
	if err := (Fault{API: TokenAPI, HTTPStatus: 429}).Validate(); err != nil {
		t.Error(err)
	}
}
