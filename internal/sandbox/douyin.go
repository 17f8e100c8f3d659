package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// CheckTypeHeader is the Douyin sandbox header that decides a review:
// "OK" approves, "REJECT" rejects.
const CheckTypeHeader = "Aweme-Check-Type"

type douyinErr struct {
	ErrCode int64  `json:"err_code"`
	ErrMsg  string `json:"err_msg"`
}

type douyinErrReply struct {
	ErrNo   *int64    `json:"err_no,omitempty"`
	ErrTips string    `json:"err_tips,omitempty"`
	Err     douyinErr `json:"err"`
}

type tokenReply struct {
	ErrNo   int64      `json:"err_no"`
	ErrTips string     `json:"err_tips"`
	Data    *tokenData `json:"data,omitempty"`
}

type tokenData struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// serveToken answers POST /api/apps/v2/token.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	x := s.newDouyinExchange(w, r, TokenAPI, now)
	fail := func(status int, code int64, tips string) {
		x.reply(status, tokenReply{ErrNo: code, ErrTips: tips}, code, false)
	}

	body, err := s.readBody(r)
	x.call.Body = body
	var req struct {
		AppID     string `json:"appid"`
		Secret    string `json:"secret"`
		GrantType string `json:"grant_type"`
	}
	jsonErr := json.Unmarshal(body, &req)
	x.call.AccessKeyOrAppID = req.AppID
	switch {
	case errors.Is(err, errTooLarge):
		fail(http.StatusRequestEntityTooLarge, tokenErrBadParams, "bad params: request body too large")
		return
	case err != nil:
		fail(http.StatusBadRequest, tokenErrBadParams, "bad params: "+err.Error())
		return
	case r.Method != http.MethodPost:
		fail(http.StatusMethodNotAllowed, tokenErrBadParams, "bad params: method "+r.Method+" not allowed, use POST")
		return
	case jsonErr != nil:
		fail(http.StatusOK, tokenErrBadParams, "bad params: body must be a JSON object {appid, secret, grant_type}")
		return
	}
	secret, ok := s.cfg.Apps[req.AppID]
	switch {
	case !ok:
		fail(http.StatusOK, tokenErrBadAppID, "bad appid")
		return
	case req.Secret != secret:
		fail(http.StatusOK, tokenErrBadSecret, "bad secret")
		return
	case req.GrantType != "client_credential":
		fail(http.StatusOK, tokenErrBadGrantType, "bad grant_type")
		return
	}
	if x.applyFault(func(f Fault) {
		code, msg := douyinFaultCode(f.Code, tokenErrSystem)
		x.reply(f.HTTPStatus, tokenReply{ErrNo: code, ErrTips: msg}, code, true)
	}) {
		return
	}

	tok := randomHex(28)
	s.mu.Lock()
	s.w.issueToken(tok, req.AppID, now, s.cfg.TokenTTL)
	s.mu.Unlock()
	x.reply(http.StatusOK, tokenReply{ErrTips: "success", Data: &tokenData{AccessToken: tok, ExpiresIn: int64(s.cfg.TokenTTL / time.Second)}}, 0, false)
}

// issueToken stores tok for appid and cuts every earlier token of appid to
// at most TokenCutoff from now. Tokens expired for a day are forgotten.
func (w *world) issueToken(tok, appid string, now time.Time, ttl time.Duration) {
	cut := now.Add(TokenCutoff)
	kept := w.appTokens[appid][:0]
	for _, old := range w.appTokens[appid] {
		t := w.tokens[old]
		if now.Sub(t.expires) > 24*time.Hour {
			delete(w.tokens, old)
			continue
		}
		if t.expires.After(cut) {
			t.expires = cut
		}
		kept = append(kept, old)
	}
	w.tokens[tok] = &tokenState{appid: appid, expires: now.Add(ttl)}
	w.appTokens[appid] = append(kept, tok)
	w.tokenFetches[appid]++
}

// TokenExpiry reports when token expires, and whether the sandbox knows it.
func (s *Server) TokenExpiry(token string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.w.tokens[token]
	if !ok {
		return time.Time{}, false
	}
	return t.expires, true
}

// douyinExchange is one token, add_role or get_class_auth request being
// answered.
type douyinExchange struct{ exchange }

func (s *Server) newDouyinExchange(w http.ResponseWriter, r *http.Request, api messages.API, now time.Time) *douyinExchange {
	x := &douyinExchange{exchange{s: s, w: w, r: r, call: Call{API: api, Time: now, RequestID: s.newLogID(now)}}}
	w.Header().Set("X-Tt-Logid", x.call.RequestID)
	return x
}

// reply answers v and records the call with the Douyin code (0 = success).
func (x *douyinExchange) reply(status int, v any, code int64, fault bool) {
	c := ""
	if code != 0 {
		c = strconv.FormatInt(code, 10)
	}
	x.answer(status, v, c, fault)
}

func (x *douyinExchange) fail(status int, code int64, msg string) {
	x.reply(status, douyinErrReply{Err: douyinErr{ErrCode: code, ErrMsg: msg}}, code, false)
}

func (s *Server) douyinHandler(api messages.API) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		now := s.cfg.Now()
		x := s.newDouyinExchange(w, r, api, now)

		body, err := s.readBody(r)
		x.call.Body = body
		var fields map[string]json.RawMessage
		isObject := len(bytes.TrimSpace(body)) > 0 && bytes.TrimSpace(body)[0] == '{' && json.Unmarshal(body, &fields) == nil
		appid, token := rawString(fields["appid"]), rawString(fields["access_token"])
		x.call.AccessKeyOrAppID = appid
		switch {
		case errors.Is(err, errTooLarge):
			x.fail(http.StatusRequestEntityTooLarge, douyinInvalidParam, fmt.Sprintf("invalid parameter: request body is larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		case err != nil:
			x.fail(http.StatusBadRequest, douyinInvalidParam, "invalid parameter: "+err.Error())
			return
		case r.Method != http.MethodPost:
			x.fail(http.StatusMethodNotAllowed, douyinInvalidParam, "invalid parameter: method "+r.Method+" not allowed, use POST")
			return
		case !isObject:
			x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: the body must be a JSON object")
			return
		}
		if code, msg := s.checkToken(appid, token, now); code != 0 {
			x.fail(http.StatusOK, code, msg)
			return
		}

		if x.applyFault(func(f Fault) {
			code, msg := douyinFaultCode(f.Code, douyinSystemBusy)
			x.reply(f.HTTPStatus, douyinErrReply{ErrNo: &code, ErrTips: msg, Err: douyinErr{ErrCode: code, ErrMsg: msg}}, code, true)
		}) {
			return
		}

		delete(fields, "appid")
		delete(fields, "access_token")
		rest, err := json.Marshal(fields)
		if err != nil {
			x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: "+err.Error())
			return
		}
		v, err := messages.DecodePayload(api, rest, "")
		if err != nil {
			x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: "+describeProblems(err))
			return
		}
		switch p := v.(type) {
		case *messages.DouyinAddRole:
			x.addRole(p, appid, now)
		case *messages.DouyinGetClassAuth:
			x.getClassAuth(p)
		}
	}
}

// rawString is the JSON string in raw, or "" when raw is not a string.
func rawString(raw json.RawMessage) string {
	var s string
	if raw == nil || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// checkToken verifies a Douyin access token for appid.
func (s *Server) checkToken(appid, token string, now time.Time) (int64, string) {
	if token == "" {
		return douyinTokenInvalid, "access_token invalid: access_token is required"
	}
	s.mu.Lock()
	t, ok := s.w.tokens[token]
	if ok {
		t = &tokenState{t.appid, t.expires} // a copy: issueToken cuts expires
	}
	s.mu.Unlock()
	switch {
	case !ok:
		return douyinTokenInvalid, "access_token invalid"
	case t.appid != appid:
		return douyinTokenInvalid, fmt.Sprintf("access_token invalid: it was not issued to appid %q", appid)
	case !now.Before(t.expires):
		return douyinTokenExpired, "access_token expired"
	}
	return 0, ""
}

// reviewOf decides a Douyin review: the Aweme-Check-Type header, else the
// review rule on name.
func reviewOf(r *http.Request, name string) ReviewStatus {
	switch strings.ToUpper(strings.TrimSpace(r.Header.Get(CheckTypeHeader))) {
	case "OK":
		return ReviewApproved
	case "REJECT":
		return ReviewRejected
	}
	return ReviewByName(name)
}

type addRoleReply struct {
	AddRoleTaskID string    `json:"add_role_taskid"`
	Err           douyinErr `json:"err"`
}

// addRole files a role of an approved entity, once per entity and role
// unless the earlier filing was rejected; an institution role also files
// its class auth.
func (x *douyinExchange) addRole(p *messages.DouyinAddRole, appid string, now time.Time) {
	var name string
	switch p.IndustryRole {
	case messages.DouyinRoleInstitution:
		name = p.InstitutionRoleInfo.InstitutionInfo.RecordName
	case messages.DouyinRolePartner:
		name = p.PartnerRoleInfo.PartnerInfo.CompanyType
	}
	status := reviewOf(x.r, name)

	s := x.s
	s.mu.Lock()
	w := s.w
	roles, ok := w.entities[p.EntityID]
	if !ok {
		s.mu.Unlock()
		x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: entity not found or not approved")
		return
	}
	key := roleKey{p.EntityID, p.IndustryRole}
	if prev, held := w.roleByKey[key]; held && w.roles[prev].Status != ReviewRejected {
		s.mu.Unlock()
		x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: role already exists")
		return
	}
	num := w.nextRole
	w.nextRole++
	taskNum := strconv.FormatInt(num, 10)
	taskID := "Role_" + taskNum
	w.roles[taskID] = &DouyinRole{TaskID: taskID, AppID: appid, EntityID: p.EntityID, IndustryRole: p.IndustryRole,
		Status: status, AuditStatus: status.AuditStatus(), CreatedAt: now}
	w.roleByKey[key] = taskID
	if !slices.Contains(roles, p.IndustryRole) {
		roles = append(roles, p.IndustryRole)
		slices.Sort(roles)
		w.entities[p.EntityID] = roles
	}
	if p.IndustryRole == messages.DouyinRoleInstitution {
		w.fileInstitution(p, taskNum, status)
	}
	s.mu.Unlock()
	x.reply(http.StatusOK, addRoleReply{AddRoleTaskID: taskID}, 0, false)
}

// fileInstitution files the category certification of an institution role.
// p was decoded for this request alone, so its parts are kept uncopied.
func (w *world) fileInstitution(p *messages.DouyinAddRole, taskNum string, status ReviewStatus) {
	info := p.InstitutionRoleInfo
	ci := info.InstitutionClassInfo
	q := &ClassQualification{AuditStatus: status.AuditStatus(), AuditTaskID: taskNum,
		ExpireTime: ci.ClassMaterial.MaterialExpiretime, Qualifications: []messages.DouyinMaterial{*ci.ClassMaterial}}
	if status == ReviewRejected {
		q.AuditReason = rejectReason
	}
	class := *ci.IndustryClass
	for _, c := range w.classAuths {
		if c.MerchantEntityID == p.EntityID && c.IndustryRole == messages.DouyinRoleInstitution &&
			c.IndustryCode == SeedIndustryCode && c.IndustryClass == class {
			c.submit(q)
			c.Institution, c.Employee = info.InstitutionInfo, ci.Employee
			return
		}
	}
	c := &ClassAuth{MerchantEntityID: p.EntityID, IndustryCode: SeedIndustryCode, IndustryClass: class,
		IndustryRole: messages.DouyinRoleInstitution, Institution: info.InstitutionInfo, Employee: ci.Employee}
	c.submit(q)
	w.classAuths = append(w.classAuths, c)
}

type classAuthReply struct {
	ClassAuths []classAuthVO `json:"class_auths"`
	Err        douyinErr     `json:"err"`
}

func (x *douyinExchange) getClassAuth(p *messages.DouyinGetClassAuth) {
	s := x.s
	s.mu.Lock()
	var found []classAuthVO
	for _, c := range s.w.classAuths {
		if c.MerchantEntityID != p.MerchantEntityID || c.IndustryCode != p.IndustryCode ||
			c.IndustryClass != *p.IndustryClass || c.IndustryRole != p.IndustryRole {
			continue
		}
		if p.IndustryRole == messages.DouyinRoleTeacher && c.PartnerEntityID != p.PartnerEntityID {
			continue
		}
		found = append(found, c.vendorJSON())
	}
	s.mu.Unlock()
	if len(found) == 0 {
		x.fail(http.StatusOK, douyinInvalidParam, "invalid parameter: class auth not found")
		return
	}
	x.reply(http.StatusOK, classAuthReply{ClassAuths: found}, 0, false)
}

// classAuthVO is a class auth in the shape of the get_class_auth page,
// where absent blocks are empty objects.
type classAuthVO struct {
	Audit         any                          `json:"audit_qualification"`
	IndustryClass messages.DouyinIndustryClass `json:"industry_class"`
	IndustryCode  int64                        `json:"industry_code"`
	IndustryRole  int                          `json:"industry_role"`
	Institution   any                          `json:"institution"`
	Online        any                          `json:"online_qualification"`
	Partner       any                          `json:"partner"`
}

type institutionVO struct {
	messages.DouyinInstitutionInfo
	Employee *messages.DouyinEmployee `json:"employee,omitempty"`
}

// vendorJSON renders a copy of c in the shape of the get_class_auth page.
func (c *ClassAuth) vendorJSON() classAuthVO {
	cp := c.clone()
	vo := classAuthVO{IndustryClass: cp.IndustryClass, IndustryCode: cp.IndustryCode, IndustryRole: cp.IndustryRole,
		Online: qualVO(cp.Online), Audit: qualVO(cp.Audit), Institution: struct{}{}, Partner: struct{}{}}
	if cp.Institution != nil {
		vo.Institution = institutionVO{*cp.Institution, cp.Employee}
	}
	if p := cp.Partner; p != nil {
		if p.CooperationCase == nil {
			p.CooperationCase = []messages.DouyinMaterial{}
		}
		vo.Partner = p
	}
	return vo
}

func qualVO(q *ClassQualification) any {
	if q == nil {
		return struct{}{}
	}
	if q.Qualifications == nil {
		q.Qualifications = []messages.DouyinMaterial{}
	}
	return q
}
