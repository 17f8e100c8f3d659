package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/messages"
)

func TestVolcengineSignatureErrors(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	base := s.URL()
	body := vmsBody("沙盒科技", "", 0)
	now := clk.Now()

	cases := []struct {
		name   string
		req    volcReq
		status int
		code   string
		codeN  int64
	}{
		{"no authorization", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) { r.Header.Del("Authorization") }}, 401, "MissingAuthenticationToken", 100003},
		{"unparsable authorization", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc") }}, 401, "MissingSignature", 100005},
		{"unknown access key", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			ak: "AKLTnobody", sk: "secret"}, 401, "InvalidAccessKey", 100009},
		{"wrong secret", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			ak: DefaultAccessKeyID, sk: "not-the-secret"}, 401, "SignatureDoesNotMatch", 100010},
		{"tampered body", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) {
				tampered := bytes.Replace(body, []byte("沙盒科技"), []byte("别的公司"), 1)
				r.Body = io.NopCloser(bytes.NewReader(tampered))
				r.ContentLength = int64(len(tampered))
			}}, 401, "SignatureDoesNotMatch", 100010},
		{"tampered body and hash", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) {
				tampered := []byte(`{}`)
				r.Body = io.NopCloser(bytes.NewReader(tampered))
				r.ContentLength = int64(len(tampered))
				r.Header.Set("X-Content-Sha256", "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
			}}, 401, "SignatureDoesNotMatch", 100010},
		{"tampered signature", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) {
				a := r.Header.Get("Authorization")
				i := strings.LastIndex(a, "=")
				flipped := "0"
				if a[i+1] == '0' {
					flipped = "1"
				}
				r.Header.Set("Authorization", a[:i+1]+flipped+a[i+2:])
			}}, 401, "SignatureDoesNotMatch", 100010},
		{"tampered query", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) { r.URL.RawQuery += "&Extra=1" }}, 401, "SignatureDoesNotMatch", 100010},
		{"X-Date 16 minutes behind", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS,
			now: now.Add(-16 * time.Minute), body: body}, 400, "InvalidTimestamp", 100006},
		{"X-Date 16 minutes ahead", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS,
			now: now.Add(16 * time.Minute), body: body}, 400, "InvalidTimestamp", 100006},
		{"X-Date missing", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
			mutate: func(r *http.Request) { r.Header.Del("X-Date") }}, 400, "MissingRequestInfo", 100004},
		{"wrong service", volcReq{action: "AddQualification", version: VersionVMS, service: ServiceSMS, now: now, body: body},
			404, "InvalidActionOrVersion", 100008},
		{"unknown service", volcReq{action: "AddQualification", version: VersionVMS, service: "iam", now: now, body: body},
			404, "ServiceNotFound", 100007},
		{"unknown action", volcReq{action: "DeleteQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body},
			404, "InvalidActionOrVersion", 100008},
		{"wrong version", volcReq{action: "AddQualification", version: VersionSMS, service: ServiceVMS, now: now, body: body},
			404, "InvalidActionOrVersion", 100008},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.CountCalls("")
			status, env, raw := callVolc(t, base, tc.req)
			e := env.ResponseMetadata.Error
			if status != tc.status || e == nil || e.Code != tc.code || e.CodeN != tc.codeN || e.Message == "" {
				t.Fatalf("got %d %s, want %d %s (%d)", status, raw, tc.status, tc.code, tc.codeN)
			}
			if env.Result != nil {
				t.Errorf("an error carries a Result: %s", raw)
			}
			calls := s.Calls()
			if len(calls) != before+1 {
				t.Fatalf("%d calls recorded, want %d", len(calls), before+1)
			}
			last := calls[len(calls)-1]
			if last.Code != tc.code || last.HTTPStatus != tc.status || last.RequestID != env.ResponseMetadata.RequestID || last.Fault {
				t.Errorf("recorded %+v", last)
			}
		})
	}
	if n := len(s.State().Qualifications); n != 2 {
		t.Errorf("refused calls changed the state: %d qualifications", n)
	}

	// The debugging header carries the sandbox's canonical request.
	req := volcRequest(t, base, volcReq{action: "AddQualification", version: VersionVMS, service: ServiceVMS, now: now, body: body,
		ak: DefaultAccessKeyID, sk: "wrong"})
	_, h, _ := do(t, req)
	if cr, err := strconv.Unquote(h.Get("X-Sandbox-Canonical-Request")); err != nil || !strings.HasPrefix(cr, "POST\n/\nAction=AddQualification&Version=2022-01-01\n") {
		t.Errorf("X-Sandbox-Canonical-Request = %q (%v)", cr, err)
	}

	// Method other than POST.
	req = volcRequest(t, base, vmsAdd(now, body))
	req.Method = http.MethodPut
	if status, _, _ := do(t, req); status != http.StatusMethodNotAllowed {
		t.Errorf("PUT = %d, want 405", status)
	}
}

var requestIDPattern = regexp.MustCompile(`^[0-9]{26}[0-9A-F]{6}$`)

func TestVMSAddQualification(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	seen := map[string]bool{}
	ids := map[string]bool{}
	for i := 0; i < 5; i++ {
		v := vmsAdd(clk.Now(), vmsBody("沙盒科技有限公司", SeedRejectedQualificationNo, SeedRejectedQualificationID))
		v.region = "cn-beijing"
		status, env, raw := callVolc(t, s.URL(), v)
		if status != 200 || env.ResponseMetadata.Error != nil {
			t.Fatalf("add = %d %s", status, raw)
		}
		m := env.ResponseMetadata
		if m.Action != "AddQualification" || m.Version != VersionVMS || m.Service != ServiceVMS || m.Region != "cn-beijing" {
			t.Errorf("metadata = %+v", m)
		}
		if !requestIDPattern.MatchString(m.RequestID) || ids[m.RequestID] {
			t.Errorf("RequestId %q is malformed or repeated", m.RequestID)
		}
		ids[m.RequestID] = true
		if bytes.Contains(raw, []byte(`"Error"`)) {
			t.Errorf("success carries Error: %s", raw)
		}
		var res messages.VMSAddResult
		if err := json.Unmarshal(env.Result, &res); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^QUA[0-9]{18}$`).MatchString(res.QualificationNo) || seen[res.QualificationNo] {
			t.Errorf("QualificationNo %q is malformed or repeated", res.QualificationNo)
		}
		if res.QualificationNo == SeedRejectedQualificationNo {
			t.Error("add reused the number in the body")
		}
		seen[res.QualificationNo] = true
	}
	st := s.State()
	if len(st.Qualifications) != 7 {
		t.Fatalf("%d qualifications, want 2 seeds + 5", len(st.Qualifications))
	}
	for _, q := range st.Qualifications {
		if seen[q.QualificationNo] && (q.Status != ReviewUnderReview || q.AccessKeyID != DefaultAccessKeyID || q.Entity != "沙盒科技有限公司") {
			t.Errorf("stored %+v", q)
		}
	}
	if got := s.State().Qualifications[0]; got.QualificationNo != SeedRejectedQualificationNo || got.Status != ReviewRejected {
		t.Errorf("add changed the seed: %+v", got)
	}
}

func TestVMSUpdateQualification(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	base := s.URL()
	update := func(entity, no string, id int64) (int, envelope, []byte) {
		return callVolc(t, base, vmsUpdate(clk.Now(), vmsBody(entity, no, id)))
	}

	// The seeded rejected qualification may be updated, once.
	status, env, raw := update("沙盒科技", SeedRejectedQualificationNo, SeedRejectedQualificationID)
	if status != 200 || env.ResponseMetadata.Error != nil || string(env.Result) != "{}" {
		t.Fatalf("update of the rejected seed = %d %s", status, raw)
	}
	status, env, raw = update("沙盒科技", SeedRejectedQualificationNo, 0)
	if e := env.ResponseMetadata.Error; status != 200 || e == nil || e.Code != "RequestParametersError" || e.Message != msgUpdateRefused {
		t.Errorf("update under review = %d %s", status, raw)
	}
	// The approved seed is refused.
	status, env, raw = update("沙盒科技", SeedApprovedQualificationNo, 0)
	if e := env.ResponseMetadata.Error; status != 200 || e == nil || e.Code != "RequestParametersError" || e.Message != msgUpdateRefused {
		t.Errorf("update of the approved seed = %d %s", status, raw)
	}
	// Unknown.
	status, env, raw = update("沙盒科技", "QUA000000000000000000", 0)
	if e := env.ResponseMetadata.Error; status != 200 || e == nil || e.Code != "RequestParametersError" || e.Message != "qualification not found" {
		t.Errorf("update of an unknown qualification = %d %s", status, raw)
	}
	// No and Id naming different qualifications.
	_, env, raw = update("沙盒科技", SeedApprovedQualificationNo, SeedRejectedQualificationID)
	if e := env.ResponseMetadata.Error; e == nil || e.Code != "RequestParametersError" {
		t.Errorf("mismatched No/Id = %s", raw)
	}
	// Named by QualificationId alone; the new entity is rejected by the rule,
	// so it can be updated again.
	if err := s.SetReview(SeedRejectedQualificationNo, ReviewRejected); err != nil {
		t.Fatal(err)
	}
	_, env, raw = update("驳回公司", "", SeedRejectedQualificationID)
	if env.ResponseMetadata.Error != nil {
		t.Fatalf("update by id = %s", raw)
	}
	_, env, raw = update("APPROVE Ltd", "", SeedRejectedQualificationID)
	if env.ResponseMetadata.Error != nil {
		t.Fatalf("second update of a rejected one = %s", raw)
	}
	if q := findQual(s.State(), SeedRejectedQualificationNo); q.Status != ReviewApproved || q.Entity != "APPROVE Ltd" || q.Updates != 3 {
		t.Errorf("after updates: %+v", q)
	}
	// An update without a name fails the field rules.
	_, env, raw = update("沙盒科技", "", 0)
	if e := env.ResponseMetadata.Error; e == nil || e.Code != "RequestParametersError" || !strings.Contains(e.Message, "QualificationMainInfoFormDO.QualificationNo") {
		t.Errorf("update without a name = %s", raw)
	}
}

func TestReviewRule(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  ReviewStatus
	}{
		{[]string{"沙盒科技"}, ReviewUnderReview},
		{[]string{"please reject me"}, ReviewRejected},
		{[]string{"驳回测试"}, ReviewRejected},
		{[]string{"Approved Co"}, ReviewApproved},
		{[]string{"审核通过"}, ReviewApproved},
		{[]string{"APPROVE but REJECT"}, ReviewRejected},
		{[]string{"", "通过"}, ReviewApproved},
	} {
		if got := ReviewByName(tc.names...); got != tc.want {
			t.Errorf("ReviewByName(%q) = %s, want %s", tc.names, got, tc.want)
		}
	}

	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	add := func(entity string) string {
		_, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), vmsBody(entity, "", 0)))
		var res messages.VMSAddResult
		if env.ResponseMetadata.Error != nil || json.Unmarshal(env.Result, &res) != nil {
			t.Fatalf("add %q = %s", entity, raw)
		}
		return res.QualificationNo
	}
	rejected, approved := add("REJECT 公司"), add("通过公司")
	if q := findQual(s.State(), rejected); q.Status != ReviewRejected {
		t.Errorf("%s: %s", rejected, q.Status)
	}
	if q := findQual(s.State(), approved); q.Status != ReviewApproved {
		t.Errorf("%s: %s", approved, q.Status)
	}
	if _, env, raw := callVolc(t, s.URL(), vmsUpdate(clk.Now(), vmsBody("沙盒科技", rejected, 0))); env.ResponseMetadata.Error != nil {
		t.Errorf("update of a rejected add = %s", raw)
	}
	if _, env, _ := callVolc(t, s.URL(), vmsUpdate(clk.Now(), vmsBody("沙盒科技", approved, 0))); env.ResponseMetadata.Error == nil {
		t.Error("update of an approved add succeeded")
	}
	// SMS uses businessCertificateName.
	_, env, raw := callVolc(t, s.URL(), smsApply(clk.Now(), smsBody("资质1", "驳回科技", 0)))
	if env.ResponseMetadata.Error != nil {
		t.Fatalf("sms = %s", raw)
	}
	if st := s.State(); len(st.SignatureIdents) != 1 || st.SignatureIdents[0].Status != ReviewRejected {
		t.Errorf("sms idents = %+v", st.SignatureIdents)
	}
}

func TestSMSApplySignatureIdent(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})
	apply := func(body []byte) (envelope, []byte) {
		status, env, raw := callVolc(t, s.URL(), smsApply(clk.Now(), body))
		if status != 200 {
			t.Fatalf("status %d: %s", status, raw)
		}
		return env, raw
	}
	env, raw := apply(smsBody("资质1", "沙盒科技", 0))
	if env.ResponseMetadata.Error != nil || env.ResponseMetadata.Service != ServiceSMS || env.ResponseMetadata.Version != VersionSMS {
		t.Fatalf("apply = %s", raw)
	}
	// The id is written as an exact integer literal above 2^53.
	if !bytes.Contains(raw, []byte(`"Result":{"id":9007199254740993}`)) {
		t.Errorf("first id not exact: %s", raw)
	}
	dec := json.NewDecoder(bytes.NewReader(env.Result))
	dec.UseNumber()
	var res struct{ ID json.Number }
	if err := dec.Decode(&res); err != nil || res.ID.String() != "9007199254740993" {
		t.Errorf("id = %s (%v)", res.ID, err)
	}
	env, raw = apply(smsBody("资质2", "沙盒科技", 0))
	var typed messages.SMSApplyResult
	if err := json.Unmarshal(env.Result, &typed); err != nil || typed.ID != FirstSMSID+1 {
		t.Errorf("second id = %d (%v): %s", typed.ID, err, raw)
	}

	// Re-edit by id keeps the id.
	env, raw = apply(smsBody("资质1改", "APPROVE 沙盒", FirstSMSID))
	if env.ResponseMetadata.Error != nil || !bytes.Contains(raw, []byte(`{"id":9007199254740993}`)) {
		t.Errorf("re-edit = %s", raw)
	}
	st := s.State()
	if len(st.SignatureIdents) != 2 || st.SignatureIdents[0].Edits != 1 || st.SignatureIdents[0].Status != ReviewApproved ||
		st.SignatureIdents[0].MaterialName != "资质1改" {
		t.Errorf("idents = %+v", st.SignatureIdents)
	}
	stateJSON := mustJSON(st)
	if !bytes.Contains(stateJSON, []byte(`"id":9007199254740994`)) {
		t.Errorf("state JSON loses the id: %s", stateJSON)
	}
	// Unknown id → 1001.
	env, raw = apply(smsBody("资质3", "沙盒科技", 42))
	if e := env.ResponseMetadata.Error; e == nil || e.Code != "1001" || e.CodeN != 1001 || !strings.HasPrefix(e.Message, "参数错误: ") {
		t.Errorf("unknown id = %s", raw)
	}
}

func TestVolcengineFieldRules(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now})

	// VMS: RequestParametersError, HTTP 200, every problem listed.
	var body map[string]any
	_ = json.Unmarshal(vmsBody("", "", 0), &body)
	body["QualificationAdminInfoFormDO"].(map[string]any)["ContactNumber"] = "call me"
	body["Unknown"] = 1
	status, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), mustJSON(body)))
	e := env.ResponseMetadata.Error
	if status != 200 || e == nil || e.Code != "RequestParametersError" || e.CodeN != 0 {
		t.Fatalf("vms = %d %s", status, raw)
	}
	for _, want := range []string{"QualificationMainInfoFormDO.QualificationEntity: required", "QualificationAdminInfoFormDO.ContactNumber", "Unknown: unknown field"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q lacks %q", e.Message, want)
		}
	}
	// Not JSON at all.
	_, env, raw = callVolc(t, s.URL(), vmsAdd(clk.Now(), []byte("not json")))
	if e := env.ResponseMetadata.Error; e == nil || e.Code != "RequestParametersError" {
		t.Errorf("not json = %s", raw)
	}

	// SMS: 1001.
	status, env, raw = callVolc(t, s.URL(), smsApply(clk.Now(), smsBody("一二三四五六七八九十一二三四五六七八九十一", "沙盒科技", 0)))
	e = env.ResponseMetadata.Error
	if status != 200 || e == nil || e.Code != "1001" || e.CodeN != 1001 || !strings.HasPrefix(e.Message, "参数错误: ") ||
		!strings.Contains(e.Message, "materialName") {
		t.Errorf("sms = %d %s", status, raw)
	}
	if n := len(s.State().SignatureIdents); n != 0 {
		t.Errorf("an invalid body was filed: %d idents", n)
	}
	for _, c := range s.Calls() {
		if c.Code == "" || c.Fault || c.HTTPStatus != 200 {
			t.Errorf("call %+v", c)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now, MaxBodyBytes: 1024})
	big := vmsBody(strings.Repeat("大", 400), "", 0)
	status, env, raw := callVolc(t, s.URL(), vmsAdd(clk.Now(), big))
	if e := env.ResponseMetadata.Error; status != http.StatusRequestEntityTooLarge || e == nil || e.Code != "RequestParametersError" {
		t.Errorf("vms big body = %d %s", status, raw)
	}
	status, env, raw = callVolc(t, s.URL(), smsApply(clk.Now(), smsBody(strings.Repeat("大", 400), "x", 0)))
	if e := env.ResponseMetadata.Error; status != http.StatusRequestEntityTooLarge || e == nil || e.Code != "1001" {
		t.Errorf("sms big body = %d %s", status, raw)
	}
	tok := token(t, s.URL(), DefaultAppID, DefaultAppSecret)
	reply := douyin(t, s.URL(), "/auth/entity/add_role", DefaultAppID, tok, map[string]any{"entity_id": strings.Repeat("E", 2000)}, nil)
	if reply.status != http.StatusRequestEntityTooLarge || reply.errCode() != 28001007 {
		t.Errorf("douyin big body = %d %s", reply.status, reply.raw)
	}
	if c := s.Calls(); len(c) != 4 || c[0].API != messages.APIVMSAddQualification || len(c[0].Body) != 1024 {
		t.Errorf("calls = %d, first body %d bytes", len(c), len(c[0].Body))
	}
}

func TestConcurrentCalls(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, s.URL(), DefaultAppID, DefaultAppSecret)
	const n = 24
	var wg sync.WaitGroup
	nos := make(chan string, n)
	smsIDs := make(chan int64, n)
	s.Inject(Fault{API: messages.APIDouyinGetClassAuth, Code: "28001005", Fraction: 0.5})
	for i := 0; i < n; i++ {
		wg.Add(3)
		go func() {
			defer wg.Done()
			req := volcRequest(t, s.URL(), vmsAdd(time.Now(), vmsBody("并发公司", "", 0)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var env envelope
			var res messages.VMSAddResult
			if json.NewDecoder(resp.Body).Decode(&env) != nil || json.Unmarshal(env.Result, &res) != nil {
				t.Error("bad add reply")
				return
			}
			nos <- res.QualificationNo
		}()
		go func() {
			defer wg.Done()
			req := volcRequest(t, s.URL(), smsApply(time.Now(), smsBody("并发", "并发公司", 0)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var env envelope
			var res messages.SMSApplyResult
			if json.NewDecoder(resp.Body).Decode(&env) != nil || json.Unmarshal(env.Result, &res) != nil {
				t.Error("bad sms reply")
				return
			}
			smsIDs <- res.ID
		}()
		go func() {
			defer wg.Done()
			_ = douyin(t, s.URL(), "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_787907892525941398", 70000, 70500, 2), nil)
			_ = s.Calls()
			_ = s.State()
		}()
	}
	wg.Wait()
	close(nos)
	close(smsIDs)
	seenNo := map[string]bool{}
	for no := range nos {
		if seenNo[no] {
			t.Errorf("QualificationNo %s issued twice", no)
		}
		seenNo[no] = true
	}
	seenID := map[int64]bool{}
	for id := range smsIDs {
		if seenID[id] || id < FirstSMSID || id >= FirstSMSID+n {
			t.Errorf("SMS id %d repeated or out of range", id)
		}
		seenID[id] = true
	}
	if len(seenNo) != n || len(seenID) != n {
		t.Errorf("%d numbers, %d ids, want %d each", len(seenNo), len(seenID), n)
	}
	if got := s.CountCalls(""); got != 3*n+1 {
		t.Errorf("%d calls recorded, want %d", got, 3*n+1)
	}
	calls := s.Calls()
	for i, c := range calls {
		if c.Seq != int64(i+1) {
			t.Fatalf("call %d has Seq %d", i, c.Seq)
		}
	}
}
