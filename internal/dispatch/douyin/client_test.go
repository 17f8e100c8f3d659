package douyin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// fullAddRole sets every field of the payload to a non-zero value.
func fullAddRole() *messages.DouyinAddRole {
	return &messages.DouyinAddRole{
		EntityID:     "E_7230706235463548989",
		IndustryRole: messages.DouyinRoleInstitution,
		PartnerRoleInfo: &messages.DouyinPartnerRoleInfo{
			PartnerInfo: &messages.DouyinPartnerInfo{
				CompanyType: "企业工商户",
				CompanyAddr: "中国山西晋城",
				CooperationCases: []messages.DouyinMaterial{{
					MaterialType:       1010,
					MaterialExpiretime: "2033-03-03",
					MaterialPaths:      []string{"certification/resource/a", "certification/resource/b"},
				}},
			},
		},
		InstitutionRoleInfo: &messages.DouyinInstitutionRoleInfo{
			InstitutionInfo: &messages.DouyinInstitutionInfo{
				RecordName:   "三九小飞棍来喽",
				SceneType:    messages.DouyinSceneOnline,
				SubjectType:  "企业工商户",
				LogoURI:      "certification/resource/logo",
				TrademarkURI: "certification/resource/tm",
				Desc:         "这个简介也必须是十二个字符才可以吗",
			},
			InstitutionClassInfo: &messages.DouyinInstitutionClassInfo{
				IndustryClass: &messages.DouyinIndustryClass{FirstClass: 40000, SecondClass: 40600, ThirdClass: 9007199254740993},
				Employee: &messages.DouyinEmployee{
					EmployeeMaterial: &messages.DouyinEmployeeMaterial{
						Name:       "花玲玲",
						IDNumber:   "320000000000000000",
						ExpireTime: "长期有效",
						FrontPath:  "certification/resource/front",
						BackPath:   "certification/resource/back",
					},
					CooperationAgreement: &messages.DouyinMaterial{
						MaterialType:       1005,
						MaterialExpiretime: "2031-06-06",
						MaterialPaths:      []string{"certification/resource/agreement"},
					},
				},
				ClassMaterial: &messages.DouyinMaterial{
					MaterialType:       1001,
					MaterialExpiretime: "2030-04-04",
					MaterialPaths:      []string{"certification/resource/class"},
				},
			},
		},
	}
}

func fullGetClassAuth() *messages.DouyinGetClassAuth {
	return &messages.DouyinGetClassAuth{
		PartnerEntityID:  "E_7178703725253394476",
		MerchantEntityID: "I_7179078906694139948",
		IndustryCode:     10000,
		IndustryClass:    &messages.DouyinIndustryClass{FirstClass: 40000, SecondClass: 40600, ThirdClass: 7179078906694139948},
		IndustryRole:     messages.DouyinRoleTeacher,
	}
}

// assertNoZeroFields fails when any field reachable from v is zero, so that
// a round-trip comparison covers every field (including ones added later).
func assertNoZeroFields(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Fatalf("%s is nil in the test payload", path)
		}
		assertNoZeroFields(t, v.Elem(), path)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			assertNoZeroFields(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Fatalf("%s is empty in the test payload", path)
		}
		for i := 0; i < v.Len(); i++ {
			assertNoZeroFields(t, v.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if v.IsZero() {
			t.Fatalf("%s is zero in the test payload", path)
		}
	}
}

// assertBody checks that body is exactly payload's JSON plus appid and
// access_token, and that it decodes back to payload.
func assertBody(t *testing.T, body []byte, payload any, token string) {
	t.Helper()
	assertNoZeroFields(t, reflect.ValueOf(payload), reflect.TypeOf(payload).Elem().Name())
	got := decodeMap(t, body)
	if got["appid"] != testAppID {
		t.Fatalf("appid = %v", got["appid"])
	}
	if got["access_token"] != token {
		t.Fatalf("access_token = %v, want %s", got["access_token"], token)
	}
	alone, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := decodeMap(t, alone)
	want["appid"], want["access_token"] = testAppID, token
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body\n got %s\nwant %v", body, want)
	}
	back := reflect.New(reflect.TypeOf(payload).Elem())
	if err := json.Unmarshal(body, back.Interface()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Interface(), payload) {
		t.Fatalf("payload did not survive: got %+v", back.Interface())
	}
}

func TestNewConfig(t *testing.T) {
	toks := staticTokens("t")
	cases := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no appid", Config{Tokens: toks}, ErrNoAppID},
		{"no tokens", Config{AppID: "a"}, ErrNoTokens},
		{"bad check type", Config{AppID: "a", Tokens: toks, BaseURL: SandboxBaseURL, CheckType: "MAYBE"}, ErrBadCheckType},
		{"check type in production", Config{AppID: "a", Tokens: toks, CheckType: CheckTypeOK}, ErrBadCheckType},
		{"check type in sandbox", Config{AppID: "a", Tokens: toks, BaseURL: SandboxBaseURL, CheckType: CheckTypeReject}, nil},
		{"defaults", Config{AppID: "a", Tokens: toks}, nil},
	}
	for _, c := range cases {
		cl, err := New(c.cfg)
		if !errors.Is(err, c.want) || (err == nil) != (cl != nil) {
			t.Errorf("%s: New = %v, %v; want %v", c.name, cl, err, c.want)
		}
	}
	cl, _ := New(Config{AppID: "a", Tokens: toks})
	if cl.baseURL != ProductionBaseURL || cl.timeout != 10*time.Second || cl.http == nil {
		t.Fatalf("defaults: %+v", cl)
	}
}

func TestNilPayload(t *testing.T) {
	c, err := New(Config{AppID: "a", Tokens: staticTokens("t"), BaseURL: refusedURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AddRole(context.Background(), nil); !errors.Is(err, retry.ErrInvalid) {
		t.Fatalf("AddRole(nil) = %v", err)
	}
	if _, _, err := c.GetClassAuth(context.Background(), nil); !errors.Is(err, retry.ErrInvalid) {
		t.Fatalf("GetClassAuth(nil) = %v", err)
	}
}

func TestAddRoleSuccess(t *testing.T) {
	for _, checkType := range []string{"", CheckTypeOK, CheckTypeReject} {
		t.Run("check="+checkType, func(t *testing.T) {
			f := newFakeVendor(t)
			f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
				w.Header().Set("X-Tt-Logid", "20250301080000ABC")
				writeJSON(w, http.StatusOK, `{"add_role_taskid":"Role_7179078906694238252","err":{"err_code":0,"err_msg":""}}`)
			}
			c, _ := f.client(t, func(cfg *Config) { cfg.CheckType = checkType })
			p := fullAddRole()
			res, meta, err := c.AddRole(context.Background(), p)
			if err != nil {
				t.Fatalf("AddRole: %v", err)
			}
			if res.AddRoleTaskID != "Role_7179078906694238252" {
				t.Fatalf("task id = %q", res.AddRoleTaskID)
			}
			if meta != (Metadata{LogID: "20250301080000ABC", HTTPStatus: 200}) {
				t.Fatalf("meta = %+v", meta)
			}
			reqs := f.apiRequests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/auth/entity/add_role" {
				t.Fatalf("request %s %s", r.Method, r.Path)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			if got, ok := r.Header["Aweme-Check-Type"]; (checkType == "") == ok || (ok && got[0] != checkType) {
				t.Fatalf("Aweme-Check-Type = %q (present %v), want %q", got, ok, checkType)
			}
			assertBody(t, r.Body, p, "tok-1")
		})
	}
}

func TestAddRoleSuccessWithoutTaskID(t *testing.T) {
	f := newFakeVendor(t)
	f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		writeJSON(w, http.StatusOK, `{"err":{"err_code":0,"err_msg":""}}`)
	}
	c, _ := f.client(t, nil)
	_, _, err := c.AddRole(context.Background(), fullAddRole())
	if !errors.Is(err, retry.ErrPermanent) || errors.Is(err, retry.ErrTransient) {
		t.Fatalf("err = %v, want permanent", err)
	}
}

func TestGetClassAuthSuccess(t *testing.T) {
	items := []string{
		`{"audit_qualification":{},"industry_class":{"first_class":40000,"second_class":40600,"third_class":0},"industry_code":10000,"industry_role":1,"institution":{},"online_qualification":{"audit_reason":"","audit_status":2,"audit_taskid":7179078906694139948,"expire_time":"2030-01-01","qualifications":[{"material_expiretime":"2030-01-01","material_paths":["certification/resource/x"],"material_type":1001}]},"partner":{"company_type":"企业工商户","unknown_future_field":1.50}}`,
		`{ "industry_code" : 9223372036854775807, "big": 12345678901234567890 }`,
	}
	f := newFakeVendor(t)
	f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("X-Tt-Logid", "LOG2")
		writeJSON(w, http.StatusOK, `{"class_auths":[`+strings.Join(items, ", ")+`],"err":{"err_code":0,"err_msg":"success"},"err_no":0,"err_tips":""}`)
	}
	c, _ := f.client(t, func(cfg *Config) { cfg.BaseURL += "/" })
	p := fullGetClassAuth()
	res, meta, err := c.GetClassAuth(context.Background(), p)
	if err != nil {
		t.Fatalf("GetClassAuth: %v", err)
	}
	if meta.LogID != "LOG2" || meta.HTTPStatus != 200 {
		t.Fatalf("meta = %+v", meta)
	}
	if len(res.ClassAuths) != len(items) {
		t.Fatalf("%d class_auths, want %d", len(res.ClassAuths), len(items))
	}
	for i, raw := range res.ClassAuths {
		if string(raw) != items[i] {
			t.Fatalf("class_auths[%d]\n got %s\nwant %s", i, raw, items[i])
		}
	}
	r := f.apiRequests()[0]
	if r.Method != http.MethodPost || r.Path != "/auth/entity/get_class_auth" {
		t.Fatalf("request %s %s", r.Method, r.Path)
	}
	if _, ok := r.Header["Aweme-Check-Type"]; ok {
		t.Fatal("Aweme-Check-Type sent without CheckType")
	}
	assertBody(t, r.Body, p, "tok-1")
}

func TestTokenExpiredRefreshedOnce(t *testing.T) {
	replies := map[string]string{
		"28001008":        `{"err":{"err_code":28001008,"err_msg":"access_token expired"}}`,
		"28001003":        `{"err":{"err_code":28001003,"err_msg":"access_token invalid"}}`,
		"2190008 err_no":  `{"err_no":2190008,"err_tips":"access_token expired"}`,
		"28001008 err_no": `{"err_no":28001008,"err_tips":"expired"}`,
	}
	for name, reply := range replies {
		t.Run(name, func(t *testing.T) {
			f := newFakeVendor(t)
			f.api = func(w http.ResponseWriter, _ *http.Request, n int64) {
				if n == 1 {
					writeJSON(w, http.StatusOK, reply)
					return
				}
				writeJSON(w, http.StatusOK, `{"add_role_taskid":"Role_2","err":{"err_code":0,"err_msg":""}}`)
			}
			c, _ := f.client(t, nil)
			res, _, err := c.AddRole(context.Background(), fullAddRole())
			if err != nil || res.AddRoleTaskID != "Role_2" {
				t.Fatalf("AddRole = %+v, %v", res, err)
			}
			if f.fetches.Load() != 2 || f.calls.Load() != 2 {
				t.Fatalf("fetches %d calls %d, want 2 and 2", f.fetches.Load(), f.calls.Load())
			}
			reqs := f.apiRequests()
			for i, want := range []string{"tok-1", "tok-2"} {
				if got := decodeMap(t, reqs[i].Body)["access_token"]; got != want {
					t.Fatalf("call %d used %v, want %s", i+1, got, want)
				}
			}
		})
	}
}

func TestTokenRejectedTwice(t *testing.T) {
	f := newFakeVendor(t)
	f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("X-Tt-Logid", "L")
		writeJSON(w, http.StatusOK, `{"err":{"err_code":28001008,"err_msg":"access_token expired"}}`)
	}
	c, _ := f.client(t, nil)
	_, meta, err := c.GetClassAuth(context.Background(), fullGetClassAuth())
	if !errors.Is(err, ErrTokenRejected) || !errors.Is(err, retry.ErrPermanent) || errors.Is(err, retry.ErrTransient) {
		t.Fatalf("err = %v, want ErrTokenRejected (permanent, not transient)", err)
	}
	if retry.ClassOf(err) != retry.ClassPermanent {
		t.Fatalf("class = %s", retry.ClassOf(err))
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != 28001008 || ae.LogID != "L" {
		t.Fatalf("APIError = %+v", ae)
	}
	if meta.HTTPStatus != 200 {
		t.Fatalf("meta = %+v", meta)
	}
	if f.fetches.Load() != 2 || f.calls.Load() != 2 {
		t.Fatalf("fetches %d calls %d, want 2 and 2", f.fetches.Load(), f.calls.Load())
	}
	for _, r := range f.apiRequests() {
		if strings.Contains(err.Error(), decodeMap(t, r.Body)["access_token"].(string)) {
			t.Fatalf("error leaks the token: %v", err)
		}
	}
}

func TestTokenRefreshFails(t *testing.T) {
	f := newFakeVendor(t)
	f.token = func(w http.ResponseWriter, _ *http.Request, n int64) {
		if n == 1 {
			writeJSON(w, http.StatusOK, `{"err_no":0,"data":{"access_token":"tok-1","expires_in":7200}}`)
			return
		}
		writeJSON(w, http.StatusOK, `{"err_no":-1,"err_tips":"system error"}`)
	}
	f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		writeJSON(w, http.StatusOK, `{"err":{"err_code":28001008,"err_msg":"expired"}}`)
	}
	c, _ := f.client(t, nil)
	_, _, err := c.AddRole(context.Background(), fullAddRole())
	var te *TokenError
	if !errors.Is(err, retry.ErrTransient) || !errors.As(err, &te) || te.ErrNo != -1 {
		t.Fatalf("err = %v, want the transient TokenError", err)
	}
	if f.calls.Load() != 1 {
		t.Fatalf("calls = %d, want 1", f.calls.Load())
	}
}

func TestErrorClasses(t *testing.T) {
	errBody := func(code int64) string {
		return fmt.Sprintf(`{"err":{"err_code":%d,"err_msg":"m%d"}}`, code, code)
	}
	cases := []struct {
		name    string
		status  int
		body    string
		wantErr error
		code    int64
	}{
		{"28001005 busy", 200, errBody(28001005), retry.ErrTransient, 28001005},
		{"28001006 network", 200, errBody(28001006), retry.ErrTransient, 28001006},
		{"2100004 legacy busy", 200, errBody(2100004), retry.ErrTransient, 2100004},
		{"-1 system error", 200, errBody(-1), retry.ErrTransient, -1},
		{"28001052 risk control", 200, errBody(28001052), retry.ErrThrottled, 28001052},
		{"28003018 rate", 200, errBody(28003018), retry.ErrThrottled, 28003018},
		{"28001007 param", 200, errBody(28001007), retry.ErrPermanent, 28001007},
		{"28001014 not granted", 200, errBody(28001014), retry.ErrPermanent, 28001014},
		{"28001018 not granted", 200, errBody(28001018), retry.ErrPermanent, 28001018},
		{"28001016 app banned", 200, errBody(28001016), retry.ErrPermanent, 28001016},
		{"28001019 capability banned", 200, errBody(28001019), retry.ErrPermanent, 28001019},
		{"28001056 retired", 200, errBody(28001056), retry.ErrPermanent, 28001056},
		{"2100005 legacy param", 200, errBody(2100005), retry.ErrPermanent, 2100005},
		{"28003017 quota", 200, errBody(28003017), retry.ErrPermanent, 28003017},
		{"unknown code", 200, errBody(424242), retry.ErrPermanent, 424242},
		{"unknown code 5xx", 500, errBody(424242), retry.ErrPermanent, 424242},
		{"unknown code 429", 429, errBody(424242), retry.ErrThrottled, 424242},
		{"top-level err_no", 200, `{"err_no":28001005,"err_tips":"busy"}`, retry.ErrTransient, 28001005},
		{"top-level err_no permanent", 200, `{"err_no":28001007,"err_tips":"bad"}`, retry.ErrPermanent, 28001007},
		{"err_code wins over err_no", 200, `{"err":{"err_code":28001007,"err_msg":"bad"},"err_no":28001005}`, retry.ErrPermanent, 28001007},
		{"HTTP 429 empty", 429, ``, retry.ErrThrottled, 0},
		{"HTTP 429 JSON ok codes", 429, `{"err":{"err_code":0}}`, retry.ErrThrottled, 0},
		{"HTTP 500 empty", 500, ``, retry.ErrTransient, 0},
		{"HTTP 502 html", 502, `<html>bad gateway</html>`, retry.ErrTransient, 0},
		{"HTTP 503 zero codes", 503, `{"err":{"err_code":0,"err_msg":""}}`, retry.ErrTransient, 0},
		{"HTTP 404 html", 404, `<html>not found</html>`, retry.ErrPermanent, 0},
		{"HTTP 200 non-JSON", 200, `<html>hello</html>`, retry.ErrPermanent, 0},
		{"HTTP 200 wrong shape", 200, `{"err":{"err_code":0},"class_auths":{"not":"a list"}}`, retry.ErrPermanent, 0},
		{"HTTP 200 too large", 200, `{"class_auths":["` + strings.Repeat("x", maxBody) + `"]}`, retry.ErrPermanent, 0},
	}
	wantClass := map[error]retry.Class{
		retry.ErrTransient: retry.ClassTransient,
		retry.ErrThrottled: retry.ClassThrottled,
		retry.ErrPermanent: retry.ClassPermanent,
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeVendor(t)
			f.api = func(w http.ResponseWriter, _ *http.Request, _ int64) {
				w.Header().Set("X-Tt-Logid", "LOGID")
				writeJSON(w, c.status, c.body)
			}
			cl, _ := f.client(t, nil)
			_, meta, err := cl.GetClassAuth(context.Background(), fullGetClassAuth())
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if got := retry.ClassOf(err); got != wantClass[c.wantErr] {
				t.Fatalf("class = %s, want %s (%v)", got, wantClass[c.wantErr], err)
			}
			if errors.Is(err, retry.ErrAmbiguous) {
				t.Fatalf("an answered call is ambiguous: %v", err)
			}
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("%T is not an *APIError", err)
			}
			if ae.Code != c.code || ae.HTTPStatus != c.status || ae.LogID != "LOGID" {
				t.Fatalf("APIError = %+v", ae)
			}
			if c.code != 0 && ae.Message == "" {
				t.Fatalf("APIError without the vendor's message: %+v", ae)
			}
			if meta != (Metadata{LogID: "LOGID", HTTPStatus: c.status}) {
				t.Fatalf("meta = %+v", meta)
			}
			if f.calls.Load() != 1 || f.fetches.Load() != 1 {
				t.Fatalf("calls %d fetches %d, want 1 and 1", f.calls.Load(), f.fetches.Load())
			}
		})
	}
}

func TestAPIErrorWithoutClass(t *testing.T) {
	// An APIError built by hand is classified from its code and status.
	if err := error(&APIError{Code: 28001005}); !errors.Is(err, retry.ErrTransient) {
		t.Fatal("28001005 not transient")
	}
	if err := error(&APIError{Code: 28001008}); !errors.Is(err, ErrTokenRejected) {
		t.Fatal("28001008 not ErrTokenRejected")
	}
	if err := error(&APIError{HTTPStatus: 429}); !errors.Is(err, retry.ErrThrottled) {
		t.Fatal("429 not throttled")
	}
}

func TestTimeoutIsTransientAmbiguous(t *testing.T) {
	f := newFakeVendor(t)
	f.api = func(_ http.ResponseWriter, r *http.Request, _ int64) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	c, _ := f.client(t, func(cfg *Config) { cfg.Timeout = 100 * time.Millisecond })
	_, _, err := c.AddRole(context.Background(), fullAddRole())
	if !errors.Is(err, retry.ErrTransient) || !errors.Is(err, retry.ErrAmbiguous) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want transient, ambiguous and DeadlineExceeded", err)
	}
	var te *TransportError
	if !errors.As(err, &te) || te.Op != "add_role" || !te.Sent {
		t.Fatalf("TransportError = %+v", te)
	}
	if retry.ClassOf(err) != retry.ClassTransient {
		t.Fatalf("class = %s", retry.ClassOf(err))
	}
}

func TestRefusedIsTransientNotAmbiguous(t *testing.T) {
	c, err := New(Config{AppID: testAppID, Tokens: staticTokens("t"), BaseURL: refusedURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.AddRole(context.Background(), fullAddRole())
	if !errors.Is(err, retry.ErrTransient) || errors.Is(err, retry.ErrAmbiguous) {
		t.Fatalf("err = %v, want transient and not ambiguous", err)
	}
	var te *TransportError
	if !errors.As(err, &te) || te.Sent || te.Op != "add_role" {
		t.Fatalf("TransportError = %+v", te)
	}
}

func TestCallerCancel(t *testing.T) {
	f := newFakeVendor(t)
	arrived := make(chan struct{})
	f.api = func(_ http.ResponseWriter, r *http.Request, _ int64) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	c, _ := f.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, _, err := c.AddRole(ctx, fullAddRole())
	if !errors.Is(err, context.Canceled) || errors.Is(err, retry.ErrTransient) || errors.Is(err, retry.ErrAmbiguous) {
		t.Fatalf("err = %v, want context.Canceled and neither transient nor ambiguous", err)
	}
}

func TestCallerCancelledBeforeCall(t *testing.T) {
	f := newFakeVendor(t)
	c, _ := f.client(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := c.GetClassAuth(ctx, fullGetClassAuth())
	if !errors.Is(err, context.Canceled) || errors.Is(err, retry.ErrTransient) {
		t.Fatalf("err = %v, want context.Canceled, not transient", err)
	}
	if f.calls.Load() != 0 || f.fetches.Load() != 0 {
		t.Fatalf("calls %d fetches %d, want none", f.calls.Load(), f.fetches.Load())
	}
}
