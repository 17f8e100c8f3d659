package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/messages"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 5, 3, 8, 34, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start returns a started sandbox that is closed when the test ends.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// envelope is a decoded Volcengine response.
type envelope struct {
	ResponseMetadata struct {
		RequestID string `json:"RequestId"`
		Action    string
		Version   string
		Service   string
		Region    string
		Error     *struct {
			Code    string
			CodeN   int64
			Message string
		}
	}
	Result json.RawMessage
}

type volcReq struct {
	action, version, service, region string
	ak, sk                           string
	now                              time.Time
	body                             []byte
	// mutate changes the request after signing.
	mutate func(*http.Request)
}

// volcRequest builds a request signed with volcengine.Signer.
func volcRequest(t *testing.T, base string, v volcReq) *http.Request {
	t.Helper()
	if v.ak == "" {
		v.ak, v.sk = DefaultAccessKeyID, DefaultSecretAccessKey
	}
	if v.region == "" {
		v.region = "cn-north-1"
	}
	req, err := http.NewRequest(http.MethodPost, base+"/?Action="+v.action+"&Version="+v.version, bytes.NewReader(v.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	signer := volcengine.Signer{
		Credentials: volcengine.Credentials{AccessKeyID: v.ak, SecretAccessKey: v.sk},
		Region:      v.region,
		Service:     v.service,
		Now:         func() time.Time { return v.now },
	}
	if err := signer.Sign(req, v.body); err != nil {
		t.Fatal(err)
	}
	if v.mutate != nil {
		v.mutate(req)
	}
	return req
}

func do(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func callVolc(t *testing.T, base string, v volcReq) (int, envelope, []byte) {
	t.Helper()
	status, _, body := do(t, volcRequest(t, base, v))
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, body)
	}
	return status, env, body
}

func vmsAdd(now time.Time, body []byte) volcReq {
	return volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body}
}

func vmsUpdate(now time.Time, body []byte) volcReq {
	return volcReq{action: "UpdateQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body}
}

func smsApply(now time.Time, body []byte) volcReq {
	return volcReq{action: "ApplySignatureIdent", version: VersionSMS, service: ServiceSMS, now: now, body: body}
}

// vmsBody is the body of the VMS pages, with the entity name and the
// qualification named in QualificationMainInfoFormDO.
func vmsBody(entity, no string, id int64) []byte {
	main := map[string]any{
		"QualificationEntity":                      entity,
		"CertificateThreeInOne":                    60,
		"EnterpriseAddress":                        "北京市海淀区",
		"LegalRepresentativeId":                    "1221454542457",
		"LegalRepresentativeFrontIdPhotoFileCode":  "图片tos文件名",
		"LegalRepresentativeName":                  "张三",
		"DocOfNumberApplyPhotoFileCode":            "图片tos文件名",
		"CommitmentLetterOfNetAccessPhotoFileCode": "图片tos文件名",
		"UnitSocialCreditCode":                     "HUHUHUJKKLHFGG",
		"BusinessLicensePhotoFileCode":             "图片tos文件名",
	}
	if no != "" {
		main["QualificationNo"] = no
	}
	if id != 0 {
		main["QualificationId"] = id
	}
	return mustJSON(map[string]any{
		"QualificationScenarioInfoFormDOList": []any{map[string]any{
			"SceneType":         1101,
			"Description":       "针对代充用户外呼调研,调研出代充的充值渠道,以及店铺名称",
			"ScenarioOfCalling": "“我在微信上/淘宝上进行充值的啊”",
		}},
		"QualificationMainInfoFormDO": main,
		"QualificationAdminInfoFormDO": map[string]any{
			"Name":                     "李四",
			"ContactNumber":            "13111112222",
			"IdCardNumber":             "14254675125",
			"IdCardFrontPhotoFileCode": "图片tos文件名",
		},
	})
}

func smsBody(materialName, company string, id int64) []byte {
	person := map[string]any{"certificateType": 0, "personCertificate": []any{}, "personName": "李四",
		"personIDCard": "110101199001011234", "personMobile": "13111112222"}
	m := map[string]any{
		"materialName": materialName,
		"businessInfo": map[string]any{
			"businessCertificateType": 1,
			"businessCertificate": map[string]any{"fileContent": "data:image/jpg;base64,iVBORw0KGgo=", "fileSuffix": "jpg",
				"fileType": 0},
			"businessCertificateName":                company,
			"unifiedSocialCreditIdentifier":          "91110108MA01234567",
			"businessCertificateValidityPeriodStart": "2024-01-12",
			"businessCertificateValidityPeriodEnd":   "2034-01-12",
			"legalPersonName":                        "张三",
		},
		"operatorPerson":        person,
		"responsiblePersonInfo": person,
		"purpose":               1,
	}
	if id != 0 {
		m["id"] = id
	}
	return mustJSON(m)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestNewRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.168.1.10:8080", "example.com:80", "[::]:0", "nonsense"} {
		if _, err := New(Config{Addr: addr}); err == nil {
			t.Errorf("New(Addr %q) accepted a non-loopback address", addr)
		}
	}
	for _, addr := range []string{"", "127.0.0.1:0", "127.0.0.2:0", "localhost:0", "[::1]:0"} {
		if _, err := New(Config{Addr: addr}); err != nil {
			t.Errorf("New(Addr %q): %v", addr, err)
		}
	}
}

func TestStartCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL() != "" {
		t.Errorf("URL before Start = %q", s.URL())
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	url := s.URL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("URL = %q", url)
	}
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	// A latency fault keeps one handler busy while Close runs.
	s.Inject(Fault{API: TokenAPI, Latency: time.Hour})
	busy := make(chan error, 1)
	go func() {
		resp, err := client.Post(url+"/api/apps/v2/token", "application/json",
			strings.NewReader(`{"appid":"`+DefaultAppID+`","secret":"`+DefaultAppSecret+`","grant_type":"client_credential"}`))
		if err == nil {
			resp.Body.Close()
		}
		busy <- err
	}()
	resp, err := client.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / = %d", resp.StatusCode)
	}
	waitFor(t, func() bool { return activeHandlers(s) == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-busy
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := client.Get(url + "/"); err == nil {
		t.Error("the URL still answers after Close")
	}
	if err := s.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	tr.CloseIdleConnections()
	calls := s.Calls()
	if len(calls) != 1 || calls[0].HTTPStatus != StatusClientGone || !calls[0].Fault {
		t.Errorf("calls = %+v, want one token call recorded as %d", calls, StatusClientGone)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+1 })
}

func activeHandlers(s *Server) int {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.active
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("condition not met in time; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminEndpoints(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	base := s.URL()

	// Inject a fault over HTTP, with latency as a Go duration.
	resp, err := http.Post(base+"/_sandbox/faults", "application/json",
		strings.NewReader(`{"api":"vms.add_qualification","code":"SystemError","count":1,"latency":"10ms"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID int }
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || created.ID == 0 {
		t.Fatalf("POST /_sandbox/faults = %d, id %d", resp.StatusCode, created.ID)
	}
	faults := s.Faults()
	if len(faults) != 1 || faults[0].Fault.Latency != 10*time.Millisecond || faults[0].Fault.Code != "SystemError" {
		t.Fatalf("Faults() = %+v", faults)
	}
	for _, bad := range []string{`{"api":"nope"}`, `{"latency":"soon"}`, `{"fraction":2}`, `{"HTTPStatusCode":503}`, `not json`} {
		resp, err := http.Post(base+"/_sandbox/faults", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /_sandbox/faults %s = %d, want 400", bad, resp.StatusCode)
		}
	}

	status, env, _ := callVolc(t, base, vmsAdd(clk.Now(), vmsBody("沙盒科技", "", 0)))
	if status != 200 || env.ResponseMetadata.Error == nil || env.ResponseMetadata.Error.Code != "SystemError" {
		t.Fatalf("faulted add = %d %+v", status, env.ResponseMetadata.Error)
	}
	if len(s.Faults()) != 0 {
		t.Errorf("a Count 1 fault is still active: %+v", s.Faults())
	}

	// An update of the seeded rejected qualification, then state.
	status, env, _ = callVolc(t, base, vmsUpdate(clk.Now(), vmsBody("沙盒科技", SeedRejectedQualificationNo, 0)))
	if status != 200 || env.ResponseMetadata.Error != nil {
		t.Fatalf("update = %d %+v", status, env.ResponseMetadata.Error)
	}
	var st State
	getJSON(t, base+"/_sandbox/state", &st)
	if got := findQual(st, SeedRejectedQualificationNo); got == nil || got.Status != ReviewUnderReview || got.Updates != 1 {
		t.Errorf("state of the updated seed = %+v", got)
	}
	if len(st.Entities) != len(SeedEntities) || len(st.ClassAuths) != 3 {
		t.Errorf("state has %d entities and %d class auths", len(st.Entities), len(st.ClassAuths))
	}

	// Review by hand over HTTP makes it updatable again.
	resp, err = http.Post(base+"/_sandbox/review", "application/json",
		strings.NewReader(`{"id":"`+SeedRejectedQualificationNo+`","status":"rejected"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("POST /_sandbox/review = %d", resp.StatusCode)
	}
	resp, err = http.Post(base+"/_sandbox/review", "application/json", strings.NewReader(`{"id":"QUA0","status":"rejected"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("review of an unknown id = %d, want 404", resp.StatusCode)
	}

	// Calls over HTTP decode back into Calls, bodies as text.
	var calls []Call
	getJSON(t, base+"/_sandbox/calls", &calls)
	if len(calls) != 2 || calls[0].Code != "SystemError" || !calls[0].Fault || calls[1].Code != "" ||
		!bytes.Equal(calls[1].Body, vmsBody("沙盒科技", SeedRejectedQualificationNo, 0)) {
		t.Errorf("calls = %+v", calls)
	}
	getJSON(t, base+"/_sandbox/calls?api=vms.update_qualification", &calls)
	if len(calls) != 1 || calls[0].API != messages.APIVMSUpdateQualification {
		t.Errorf("filtered calls = %+v", calls)
	}

	// Faults: add two, delete one by id, clear the rest.
	id1, id2 := s.Inject(Fault{Code: "SystemError"}), s.Inject(Fault{Code: "1999"})
	req, _ := http.NewRequest(http.MethodDelete, base+"/_sandbox/faults/"+strconv.Itoa(id1), nil)
	if status, _, _ := do(t, req); status != http.StatusNoContent {
		t.Errorf("DELETE fault %d = %d", id1, status)
	}
	if f := s.Faults(); len(f) != 1 || f[0].ID != id2 {
		t.Errorf("faults after delete = %+v", f)
	}
	req, _ = http.NewRequest(http.MethodDelete, base+"/_sandbox/faults", nil)
	if status, _, _ := do(t, req); status != http.StatusNoContent || len(s.Faults()) != 0 {
		t.Errorf("DELETE faults = %d, left %+v", status, s.Faults())
	}

	// Reset restores the seed and clears calls.
	s.Inject(Fault{Code: "SystemError"})
	resp, err = http.Post(base+"/_sandbox/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s.CountCalls("") != 0 || len(s.Faults()) != 0 {
		t.Errorf("after reset: %d calls, %d faults", s.CountCalls(""), len(s.Faults()))
	}
	st = s.State()
	if got := findQual(st, SeedRejectedQualificationNo); got == nil || got.Status != ReviewRejected || got.Updates != 0 {
		t.Errorf("seed after reset = %+v", got)
	}
	if len(st.Qualifications) != 2 {
		t.Errorf("after reset %d qualifications, want the 2 seeds", len(st.Qualifications))
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func findQual(st State, no string) *Qualification {
	for i := range st.Qualifications {
		if st.Qualifications[i].QualificationNo == no {
			return &st.Qualifications[i]
		}
	}
	return nil
}

func TestHandlerWithoutStart(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "/_sandbox/state", nil)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), SeedRejectedQualificationNo) {
		t.Errorf("state through Handler = %d %s", rec.Code, rec.Body.String())
	}
}
