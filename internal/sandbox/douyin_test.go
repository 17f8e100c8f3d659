package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/messages"
)

type tokenResp struct {
	ErrNo   int64  `json:"err_no"`
	ErrTips string `json:"err_tips"`
	Data    *struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	} `json:"data"`
}

func postToken(t *testing.T, base string, body any) (int, tokenResp, http.Header) {
	t.Helper()
	resp, err := http.Post(base+"/api/apps/v2/token", "application/json", bytes.NewReader(mustJSON(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var tr tokenResp
	if err := json.Unmarshal(raw, &tr); err != nil {
		t.Fatalf("token reply is not JSON: %s", raw)
	}
	return resp.StatusCode, tr, resp.Header
}

// token fetches an access token, failing the test on error.
func token(t *testing.T, base, appid, secret string) string {
	t.Helper()
	status, tr, _ := postToken(t, base, map[string]string{"appid": appid, "secret": secret, "grant_type": "client_credential"})
	if status != 200 || tr.ErrNo != 0 || tr.Data == nil || tr.Data.AccessToken == "" {
		t.Fatalf("token = %d %+v", status, tr)
	}
	return tr.Data.AccessToken
}

type douyinReply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r douyinReply) errCode() int64 {
	e, _ := r.body["err"].(map[string]any)
	n, _ := e["err_code"].(json.Number)
	v, _ := n.Int64()
	return v
}

func (r douyinReply) errMsg() string {
	e, _ := r.body["err"].(map[string]any)
	s, _ := e["err_msg"].(string)
	return s
}

// douyin posts payload with appid and access_token added.
func douyin(t *testing.T, base, path, appid, tok string, payload map[string]any, header http.Header) douyinReply {
	t.Helper()
	body := map[string]any{}
	for k, v := range payload {
		body[k] = v
	}
	if appid != "" {
		body["appid"] = appid
	}
	if tok != "" {
		body["access_token"] = tok
	}
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(mustJSON(body)))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return douyinReply{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := douyinReply{status: resp.StatusCode, header: resp.Header, raw: raw}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	_ = dec.Decode(&r.body)
	return r
}

func seedClassQuery(partner, merchant string, first, second int64, role int) map[string]any {
	return map[string]any{
		"partner_entity_id":  partner,
		"merchant_entity_id": merchant,
		"industry_code":      10000,
		"industry_class":     map[string]any{"first_class": first, "second_class": second, "third_class": 0},
		"industry_role":      role,
	}
}

// institutionRole is the institution add_role example of the vendor page.
func institutionRole(entity, recordName string, first, second int64) map[string]any {
	res := "certification/resource/e0882488978ce1eb808636028d52b107"
	return map[string]any{
		"entity_id":     entity,
		"industry_role": 2,
		"partner_role_info": map[string]any{"partner_info": map[string]any{"company_type": "", "company_addr": "",
			"cooperation_cases": []any{map[string]any{"material_type": 0, "material_expiretime": "", "material_paths": []string{""}}}}},
		"institution_role_info": map[string]any{
			"institution_info": map[string]any{"record_name": recordName, "scene_type": "线上机构", "subject_type": "企业工商户",
				"logo_uri": res, "trademark_uri": res, "desc": "这个简介也必须是十二个字符才可以吗"},
			"institution_class_info": map[string]any{
				"industry_class": map[string]any{"first_class": first, "second_class": second, "third_class": 0},
				"employee": map[string]any{
					"employee_material": map[string]any{"name": "花玲玲", "id_number": "320XXXXXXXXXXXXXXX", "expire_time": "2030-05-05",
						"front_path": res, "back_path": res},
					"cooperation_agreement": map[string]any{"material_type": 1005, "material_expiretime": "2031-06-06", "material_paths": []string{res}},
				},
				"class_material": map[string]any{"material_type": 1001, "material_expiretime": "2030-04-04", "material_paths": []string{res}},
			},
		},
	}
}

func partnerRole(entity, companyType string) map[string]any {
	return map[string]any{
		"entity_id":     entity,
		"industry_role": 3,
		"partner_role_info": map[string]any{"partner_info": map[string]any{"company_type": companyType, "company_addr": "中国山西晋城",
			"cooperation_cases": []any{map[string]any{"material_type": 1010, "material_expiretime": "2033-03-03",
				"material_paths": []string{"certification/resource/f105beee222f1629e7cbfb9e243bc286"}}}}},
	}
}

func TestDouyinToken(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now, Apps: map[string]string{DefaultAppID: DefaultAppSecret, "ttother": "other-secret"}})
	base := s.URL()

	status, tr, h := postToken(t, base, map[string]string{"appid": DefaultAppID, "secret": DefaultAppSecret, "grant_type": "client_credential"})
	if status != 200 || tr.ErrNo != 0 || tr.ErrTips != "success" || tr.Data == nil || tr.Data.ExpiresIn != 7200 ||
		!regexp.MustCompile(`^[0-9a-f]{32,}$`).MatchString(tr.Data.AccessToken) || h.Get("X-Tt-Logid") == "" {
		t.Fatalf("token = %d %+v", status, tr)
	}
	for _, tc := range []struct {
		body map[string]string
		code int64
	}{
		{map[string]string{"appid": "ttnobody", "secret": DefaultAppSecret, "grant_type": "client_credential"}, 40015},
		{map[string]string{"appid": DefaultAppID, "secret": "wrong", "grant_type": "client_credential"}, 40017},
		{map[string]string{"appid": DefaultAppID, "secret": DefaultAppSecret, "grant_type": "authorization_code"}, 40020},
	} {
		status, tr, _ := postToken(t, base, tc.body)
		if status != 200 || tr.ErrNo != tc.code || tr.Data != nil || tr.ErrTips == "" {
			t.Errorf("%v = %d %+v, want err_no %d", tc.body, status, tr, tc.code)
		}
	}
	if got := s.TokenFetches(DefaultAppID); got != 1 {
		t.Errorf("TokenFetches = %d, want 1 (failed fetches do not count)", got)
	}
	if got := s.CountCalls(TokenAPI); got != 4 {
		t.Errorf("CountCalls(TokenAPI) = %d, want 4", got)
	}
	if c := s.Calls()[1]; c.Code != "40015" || c.AccessKeyOrAppID != "ttnobody" {
		t.Errorf("recorded %+v", c)
	}
}

func TestDouyinTokenFiveMinuteRule(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now, Apps: map[string]string{DefaultAppID: DefaultAppSecret, "ttother": "other-secret"}})
	base := s.URL()
	query := seedClassQuery("", "E_7230706235463548989", 40000, 40600, 2)
	get := func(tok, appid string) douyinReply {
		return douyin(t, base, "/auth/entity/get_class_auth", appid, tok, query, nil)
	}
	t0 := clk.Now()
	a := token(t, base, DefaultAppID, DefaultAppSecret)
	other := token(t, base, "ttother", "other-secret")
	if r := get(a, DefaultAppID); r.errCode() != 0 {
		t.Fatalf("fresh token refused: %s", r.raw)
	}
	clk.Advance(10 * time.Minute)
	b := token(t, base, DefaultAppID, DefaultAppSecret)
	if exp, ok := s.TokenExpiry(a); !ok || !exp.Equal(t0.Add(15*time.Minute)) {
		t.Errorf("old token expires %v, want %v", exp, t0.Add(15*time.Minute))
	}
	if exp, _ := s.TokenExpiry(b); !exp.Equal(t0.Add(10*time.Minute + 2*time.Hour)) {
		t.Errorf("new token expires %v", exp)
	}
	if exp, _ := s.TokenExpiry(other); !exp.Equal(t0.Add(2 * time.Hour)) {
		t.Errorf("another app's token was cut: %v", exp)
	}
	clk.Advance(4*time.Minute + 59*time.Second)
	if r := get(a, DefaultAppID); r.errCode() != 0 {
		t.Errorf("old token refused within 5 minutes: %s", r.raw)
	}
	clk.Advance(time.Second)
	if r := get(a, DefaultAppID); r.errCode() != 28001008 {
		t.Errorf("old token after 5 minutes: %s", r.raw)
	}
	if r := get(b, DefaultAppID); r.errCode() != 0 {
		t.Errorf("new token refused: %s", r.raw)
	}
	// A token near its end is not extended by a new fetch.
	clk.Advance(2*time.Hour - 2*time.Minute)
	c := token(t, base, DefaultAppID, DefaultAppSecret)
	if exp, _ := s.TokenExpiry(b); !exp.Equal(t0.Add(10*time.Minute + 2*time.Hour)) {
		t.Errorf("a token with less than 5 minutes left changed: %v", exp)
	}
	clk.Advance(3 * time.Minute)
	if r := get(b, DefaultAppID); r.errCode() != 28001008 {
		t.Errorf("b after its ttl: %s", r.raw)
	}
	if r := get(c, DefaultAppID); r.errCode() != 0 {
		t.Errorf("c refused: %s", r.raw)
	}
	if got := s.TokenFetches(DefaultAppID); got != 3 {
		t.Errorf("TokenFetches = %d, want 3", got)
	}
	if got := s.State().TokenFetches["ttother"]; got != 1 {
		t.Errorf("state token fetches of ttother = %d", got)
	}
}

func TestDouyinTokenVerification(t *testing.T) {
	clk := newClock()
	s := start(t, Config{Now: clk.Now, Apps: map[string]string{DefaultAppID: DefaultAppSecret, "ttother": "other-secret"}})
	base := s.URL()
	tok := token(t, base, DefaultAppID, DefaultAppSecret)
	other := token(t, base, "ttother", "other-secret")
	query := seedClassQuery("", "E_7230706235463548989", 40000, 40600, 2)
	for _, tc := range []struct {
		name, appid, tok string
		code             int64
	}{
		{"unknown token", DefaultAppID, "0801121846324163432f48363934494", 28001003},
		{"missing token", DefaultAppID, "", 28001003},
		{"token of another appid", DefaultAppID, other, 28001003},
		{"missing appid", "", tok, 28001003},
	} {
		r := douyin(t, base, "/auth/entity/get_class_auth", tc.appid, tc.tok, query, nil)
		if r.status != 200 || r.errCode() != tc.code || r.header.Get("X-Tt-Logid") == "" {
			t.Errorf("%s = %d %s", tc.name, r.status, r.raw)
		}
	}
	clk.Advance(2 * time.Hour)
	if r := douyin(t, base, "/auth/entity/add_role", DefaultAppID, tok, partnerRole("E_7216554566647824422", "企业工商户"), nil); r.errCode() != 28001008 {
		t.Errorf("expired token = %s", r.raw)
	}
	// Faults come after token verification: an invalid token is still 28001003.
	s.Inject(Fault{Code: "28001005"})
	if r := douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, "nope", query, nil); r.errCode() != 28001003 {
		t.Errorf("fault before token check: %s", r.raw)
	}
	// Not JSON.
	resp, err := http.Post(base+"/auth/entity/add_role", "application/json", strings.NewReader("[1,2]"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(raw, []byte(`"err_code":28001007`)) {
		t.Errorf("non-object body = %s", raw)
	}
	logids := map[string]bool{}
	for _, c := range s.Calls() {
		if c.RequestID == "" || logids[c.RequestID] {
			t.Errorf("log id %q missing or repeated", c.RequestID)
		}
		logids[c.RequestID] = true
	}
}

func TestDouyinClassAuthSeeds(t *testing.T) {
	s := start(t, Config{})
	base := s.URL()
	tok := token(t, base, DefaultAppID, DefaultAppSecret)
	for _, tc := range []struct {
		query       map[string]any
		auditStatus int64
	}{
		{seedClassQuery("", "E_7230706235463548989", 40000, 40600, 2), 2},
		{seedClassQuery("", "E_787907892525941398", 70000, 70500, 2), 1},
		{seedClassQuery("E_7178703725253394476", "I_7179078906694139948", 40000, 40600, 1), 2},
	} {
		r := douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, tc.query, nil)
		auths, _ := r.body["class_auths"].([]any)
		if r.status != 200 || r.errCode() != 0 || len(auths) != 1 {
			t.Fatalf("%v = %d %s", tc.query, r.status, r.raw)
		}
		ca := auths[0].(map[string]any)
		online := ca["online_qualification"].(map[string]any)
		if n, _ := online["audit_status"].(json.Number).Int64(); n != tc.auditStatus {
			t.Errorf("%v audit_status = %d, want %d", tc.query["merchant_entity_id"], n, tc.auditStatus)
		}
		for _, key := range []string{"industry_class", "industry_code", "industry_role", "audit_qualification", "institution", "partner"} {
			if _, ok := ca[key]; !ok {
				t.Errorf("class auth lacks %s: %s", key, r.raw)
			}
		}
		if q, _ := online["qualifications"].([]any); len(q) == 0 {
			t.Errorf("no qualifications: %s", r.raw)
		}
		if tc.query["industry_role"] == 1 {
			if p := ca["partner"].(map[string]any); p["company_type"] != "企业工商户" {
				t.Errorf("partner = %v", p)
			}
		}
	}
	// Matching: another class, a role-1 query naming the wrong partner, another code.
	for _, q := range []map[string]any{
		seedClassQuery("", "E_7230706235463548989", 40000, 40700, 2),
		seedClassQuery("E_7216554566647824422", "I_7179078906694139948", 40000, 40600, 1),
		seedClassQuery("", "E_7230706235463548989", 40000, 40600, 3),
	} {
		if r := douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, q, nil); r.errCode() != 28001007 || !strings.Contains(r.errMsg(), "class auth not found") {
			t.Errorf("%v = %s", q, r.raw)
		}
	}
}

func TestDouyinAddRole(t *testing.T) {
	s := start(t, Config{})
	base := s.URL()
	tok := token(t, base, DefaultAppID, DefaultAppSecret)
	add := func(payload map[string]any, h http.Header) douyinReply {
		return douyin(t, base, "/auth/entity/add_role", DefaultAppID, tok, payload, h)
	}

	// The institution example of the page, on the seeded entity.
	r := add(institutionRole("E_7230706235463548989", "三九小飞棍来喽", 40000, 40600), nil)
	task, _ := r.body["add_role_taskid"].(string)
	if r.status != 200 || r.errCode() != 0 || r.errMsg() != "" || !regexp.MustCompile(`^Role_[0-9]{19}$`).MatchString(task) {
		t.Fatalf("add_role = %d %s", r.status, r.raw)
	}
	if !bytes.HasPrefix(r.raw, []byte(`{"add_role_taskid":"Role_`)) {
		t.Errorf("reply shape = %s", r.raw)
	}
	// The seeded approved certification stays online; the new filing waits.
	q := douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_7230706235463548989", 40000, 40600, 2), nil)
	ca := q.body["class_auths"].([]any)[0].(map[string]any)
	audit := ca["audit_qualification"].(map[string]any)
	if n, _ := audit["audit_status"].(json.Number).Int64(); n != 1 || audit["audit_taskid"] != strings.TrimPrefix(task, "Role_") {
		t.Errorf("audit_qualification = %v", audit)
	}
	if n, _ := ca["online_qualification"].(map[string]any)["audit_status"].(json.Number).Int64(); n != 2 {
		t.Errorf("online_qualification = %v", ca["online_qualification"])
	}
	// Approving it by hand puts it online.
	if err := s.SetReview(task, ReviewApproved); err != nil {
		t.Fatal(err)
	}
	q = douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_7230706235463548989", 40000, 40600, 2), nil)
	ca = q.body["class_auths"].([]any)[0].(map[string]any)
	if online := ca["online_qualification"].(map[string]any); online["audit_taskid"] != strings.TrimPrefix(task, "Role_") ||
		len(ca["audit_qualification"].(map[string]any)) != 0 {
		t.Errorf("after approval: %s", q.raw)
	}

	// The same role twice.
	if r := add(institutionRole("E_7230706235463548989", "三九小飞棍来喽", 40000, 40600), nil); r.errCode() != 28001007 || !strings.Contains(r.errMsg(), "role already exists") {
		t.Errorf("second add = %s", r.raw)
	}
	// Unknown entity.
	if r := add(partnerRole("E_1", "企业工商户"), nil); r.errCode() != 28001007 || !strings.Contains(r.errMsg(), "entity not found or not approved") {
		t.Errorf("unknown entity = %s", r.raw)
	}
	// Partner role, rejected by the header; it may then be filed again.
	r = add(partnerRole("E_7216554566647824422", "企业工商户"), http.Header{CheckTypeHeader: {"REJECT"}})
	if r.errCode() != 0 {
		t.Fatalf("partner add = %s", r.raw)
	}
	rejectedTask := r.body["add_role_taskid"].(string)
	r = add(partnerRole("E_7216554566647824422", "企业工商户"), http.Header{CheckTypeHeader: {"OK"}})
	if r.errCode() != 0 {
		t.Fatalf("re-add after rejection = %s", r.raw)
	}
	okTask := r.body["add_role_taskid"].(string)
	// A new institution class on another entity, rejected by name, is then queryable.
	r = add(institutionRole("E_7178703725253394476", "驳回测试机构", 70000, 70500), nil)
	if r.errCode() != 0 {
		t.Fatalf("institution add = %s", r.raw)
	}
	q = douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, seedClassQuery("", "E_7178703725253394476", 70000, 70500, 2), nil)
	if q.errCode() != 0 {
		t.Fatalf("new class auth not found: %s", q.raw)
	}
	online := q.body["class_auths"].([]any)[0].(map[string]any)["online_qualification"].(map[string]any)
	if n, _ := online["audit_status"].(json.Number).Int64(); n != 3 || online["audit_reason"] == "" || online["expire_time"] != "2030-04-04" {
		t.Errorf("rejected filing = %v", online)
	}
	inst := q.body["class_auths"].([]any)[0].(map[string]any)["institution"].(map[string]any)
	if inst["record_name"] != "驳回测试机构" {
		t.Errorf("institution = %v", inst)
	}

	st := s.State()
	status := map[string]ReviewStatus{}
	for _, role := range st.Roles {
		status[role.TaskID] = role.Status
	}
	if status[task] != ReviewApproved || status[rejectedTask] != ReviewRejected || status[okTask] != ReviewApproved || len(st.Roles) != 4 {
		t.Errorf("roles = %+v", st.Roles)
	}
	for _, e := range st.Entities {
		if e.EntityID == "E_7216554566647824422" && (len(e.Roles) != 1 || e.Roles[0] != messages.DouyinRolePartner) {
			t.Errorf("entity roles = %+v", e)
		}
	}

	// Field rules: 28001007 naming the problems.
	bad := institutionRole("E_787907892525941398", "三九小飞棍来喽", 40000, 40600)
	bad["institution_role_info"].(map[string]any)["institution_info"].(map[string]any)["desc"] = "太短"
	bad["institution_role_info"].(map[string]any)["institution_info"].(map[string]any)["scene_type"] = "网上"
	r = add(bad, nil)
	if r.status != 200 || r.errCode() != 28001007 || !strings.Contains(r.errMsg(), "institution_role_info.institution_info.desc") ||
		!strings.Contains(r.errMsg(), "scene_type") {
		t.Errorf("field rules = %s", r.raw)
	}
	if r := douyin(t, base, "/auth/entity/get_class_auth", DefaultAppID, tok, map[string]any{"merchant_entity_id": "E_1"}, nil); r.errCode() != 28001007 || !strings.Contains(r.errMsg(), "industry_code") {
		t.Errorf("get_class_auth rules = %s", r.raw)
	}
}
