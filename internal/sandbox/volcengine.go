package sandbox

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/messages"
)

// Volcengine services and versions the sandbox answers.
const (
	ServiceVMS = "vms"
	ServiceSMS = "volcSMS"
	VersionVMS = "2022-01-01"
	VersionSMS = "2021-01-11"
)

type volcRoute struct {
	api     messages.API
	version string
	service string
}

var volcActions = map[string]volcRoute{
	"AddQualification":    {messages.APIVMSAddQualification, VersionVMS, ServiceVMS},
	"UpdateQualification": {messages.APIVMSUpdateQualification, VersionVMS, ServiceVMS},
	"ApplySignatureIdent": {messages.APISMSApplySignatureIdent, VersionSMS, ServiceSMS},
	// The reads that settle a create whose answer was lost.
	"QueryQualification":    {QueryQualificationAPI, VersionVMS, ServiceVMS},
	"GetSignatureIdentList": {SignatureIdentListAPI, VersionSMS, ServiceSMS},
}

// Volcengine error codes the sandbox answers itself.
const (
	codeRequestParametersError = "RequestParametersError"
	codeSMSParameter           = "1001"
	msgUpdateRefused           = "审批未通过的资质才可以修改,审批中的资质不可修改"
	msgSignatureDoesNotMatch   = "The request signature we calculated does not match the signature you provided. Check your Secret Access Key and signing method. Consult the service documentation for details."
)

type volcError struct {
	Code    string `json:"Code"`
	CodeN   int64  `json:"CodeN,omitempty"`
	Message string `json:"Message"`
}

type volcMetadata struct {
	RequestID string     `json:"RequestId"`
	Action    string     `json:"Action"`
	Version   string     `json:"Version"`
	Service   string     `json:"Service"`
	Region    string     `json:"Region"`
	Error     *volcError `json:"Error,omitempty"`
}

type volcEnvelope struct {
	ResponseMetadata volcMetadata    `json:"ResponseMetadata"`
	Result           json.RawMessage `json:"Result,omitempty"`
}

// volcExchange is one Volcengine request being answered.
type volcExchange struct {
	exchange
	meta    volcMetadata
	route   volcRoute
	auth    volcengine.Authorization // parsed from the Authorization header
	authErr error
}

// fail answers an error in the envelope and records the call.
func (x *volcExchange) fail(status int, code, msg string) { x.send(status, code, msg, nil, false) }

// send answers the envelope, with Error {code, msg} when code is set, and
// records the call.
func (x *volcExchange) send(status int, code, msg string, result json.RawMessage, fault bool) {
	if code != "" {
		e := volcError{Code: code, CodeN: volcCodeN[code], Message: msg}
		if n, err := strconv.ParseInt(code, 10, 64); err == nil {
			e.CodeN = n
		}
		x.meta.Error = &e
	}
	x.meta.RequestID = x.s.newRequestID(x.s.cfg.Now())
	x.call.RequestID = x.meta.RequestID
	x.answer(status, volcEnvelope{ResponseMetadata: x.meta, Result: result}, code, fault)
}

// succeed answers result and records the call.
func (x *volcExchange) succeed(result any) {
	raw, err := json.Marshal(result)
	if err != nil {
		x.fail(http.StatusInternalServerError, "InternalError", "sandbox: "+err.Error())
		return
	}
	x.send(http.StatusOK, "", "", raw, false)
}

// paramError answers the vendor's parameter error of the call's API.
func (x *volcExchange) paramError(status int, problem string) {
	if x.route.service == ServiceSMS {
		x.fail(status, codeSMSParameter, "参数错误: "+problem)
		return
	}
	x.fail(status, codeRequestParametersError, problem)
}

func (s *Server) serveVolcengine(w http.ResponseWriter, r *http.Request) {
	now := s.cfg.Now()
	q := r.URL.Query()
	action, version := q.Get("Action"), q.Get("Version")
	route, known := volcActions[action]
	x := &volcExchange{exchange: exchange{s: s, w: w, r: r, call: Call{Time: now}}, route: route,
		meta: volcMetadata{Action: action, Version: version, Service: route.service, Region: DefaultRegion}}
	if known && version == route.version {
		x.call.API = route.api
	}

	body, err := s.readBody(r)
	x.call.Body = body
	x.auth, x.authErr = volcengine.ParseAuthorization(r.Header.Get("Authorization"))
	if x.authErr == nil {
		x.call.AccessKeyOrAppID = x.auth.AccessKeyID
		x.meta.Region = x.auth.Region
		x.meta.Service = cmp.Or(x.meta.Service, x.auth.Service)
	}
	switch {
	case errors.Is(err, errTooLarge):
		x.paramError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", s.cfg.MaxBodyBytes))
		return
	case err != nil:
		x.fail(http.StatusBadRequest, "MissingRequestInfo", "The request is missing body information: "+err.Error())
		return
	case r.Method != http.MethodPost && !(r.Method == http.MethodGet && x.call.API == SignatureIdentListAPI):
		x.fail(http.StatusMethodNotAllowed, "MethodNotAllowed", fmt.Sprintf("The http method %s is not allowed; use POST.", r.Method))
		return
	}
	if status, code, msg := x.verify(body, now); code != "" {
		x.fail(status, code, msg)
		return
	}

	if x.applyFault(func(f Fault) {
		x.send(f.HTTPStatus, f.Code, cmp.Or(volcMessages[f.Code], "sandbox: injected fault "+f.Code), nil, true)
	}) {
		return
	}

	switch x.call.API {
	case QueryQualificationAPI:
		x.queryQualification(body)
		return
	case SignatureIdentListAPI:
		x.signatureIdentList(body)
		return
	}
	v, err := messages.DecodePayload(x.call.API, body, "")
	if err != nil {
		x.paramError(http.StatusOK, describeProblems(err))
		return
	}
	switch p := v.(type) {
	case *messages.VMSQualification:
		if x.call.API == messages.APIVMSAddQualification {
			x.addQualification(p, now)
		} else {
			x.updateQualification(p, now)
		}
	case *messages.SMSApplySignatureIdent:
		x.applySignatureIdent(p, now)
	}
}

// verify checks the signature of the request, in the vendor's order, and
// returns the status, code and message of the first failure.
func (x *volcExchange) verify(body []byte, now time.Time) (status int, code, msg string) {
	r, s, auth := x.r, x.s, x.auth
	if r.Header.Get("Authorization") == "" {
		return http.StatusUnauthorized, "MissingAuthenticationToken", "Request is missing Authentication Token."
	}
	if err := x.authErr; err != nil {
		return http.StatusUnauthorized, "MissingSignature", "The request is missing signature. (" + err.Error() + ")"
	}
	secret, ok := s.cfg.Keys[auth.AccessKeyID]
	if !ok {
		return http.StatusUnauthorized, "InvalidAccessKey", fmt.Sprintf("The accesskey [%s] included in the request is invalid.", auth.AccessKeyID)
	}
	xdate := r.Header.Get("X-Date")
	if xdate == "" {
		return http.StatusBadRequest, "MissingRequestInfo", "The request is missing X-Date information."
	}
	signedAt, err := time.Parse(volcengine.TimeFormat, xdate)
	if err != nil {
		return http.StatusBadRequest, "InvalidTimestamp", fmt.Sprintf("The Signature of the request is expired. (X-Date %q is not YYYYMMDD'T'HHMMSS'Z')", xdate)
	}
	if skew := now.Sub(signedAt); skew > s.cfg.MaxClockSkew || skew < -s.cfg.MaxClockSkew {
		return http.StatusBadRequest, "InvalidTimestamp", fmt.Sprintf("The Signature of the request is expired. (X-Date %s is %s away from the server time %s; at most %s allowed)",
			xdate, skew.Round(time.Second), now.UTC().Format(volcengine.TimeFormat), s.cfg.MaxClockSkew)
	}
	sum := sha256.Sum256(body)
	bodyHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Content-Sha256"); h != "" && !strings.EqualFold(strings.TrimSpace(h), bodyHash) {
		return http.StatusUnauthorized, "SignatureDoesNotMatch", msgSignatureDoesNotMatch + " (X-Content-Sha256 does not match the body)"
	}
	if auth.Service != ServiceVMS && auth.Service != ServiceSMS {
		return http.StatusNotFound, "ServiceNotFound", fmt.Sprintf("This service[%s] not found.", auth.Service)
	}
	if x.call.API == "" {
		return http.StatusNotFound, "InvalidActionOrVersion", fmt.Sprintf("Could not find operation %s for version %s.", x.meta.Action, x.meta.Version)
	}
	if auth.Service != x.route.service {
		return http.StatusNotFound, "InvalidActionOrVersion", fmt.Sprintf("Could not find operation %s for version %s. (service %s has no such operation; it is an operation of %s)",
			x.meta.Action, x.meta.Version, auth.Service, x.route.service)
	}
	signed := make([]string, len(auth.SignedHeaders))
	for i, h := range auth.SignedHeaders {
		signed[i] = strings.ToLower(strings.TrimSpace(h))
	}
	if !slices.Contains(signed, "host") || !slices.Contains(signed, "x-date") {
		return http.StatusUnauthorized, "SignatureDoesNotMatch", msgSignatureDoesNotMatch + " (SignedHeaders must include host and x-date)"
	}
	if len(xdate) < 8 || auth.ShortDate != xdate[:8] {
		return http.StatusUnauthorized, "SignatureDoesNotMatch", msgSignatureDoesNotMatch + " (the credential scope date is not the date of X-Date)"
	}
	in := volcengine.SigningInput{
		Method:        r.Method,
		Host:          r.Host,
		Path:          r.URL.Path,
		Query:         r.URL.Query(),
		Header:        r.Header,
		SignedHeaders: signed,
		BodyHash:      bodyHash,
		XDate:         xdate,
		Region:        auth.Region,
		Service:       auth.Service,
	}
	want := volcengine.Signature(secret, in)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(auth.Signature))) {
		// The sandbox's canonical request helps debug a signer.
		x.w.Header().Set("X-Sandbox-Canonical-Request", strconv.Quote(volcengine.CanonicalRequest(in)))
		return http.StatusUnauthorized, "SignatureDoesNotMatch", msgSignatureDoesNotMatch
	}
	return 0, "", ""
}

// describeProblems lists the field problems of a validation error.
func describeProblems(err error) string {
	var ve *messages.ValidationError
	if errors.As(err, &ve) {
		parts := make([]string, len(ve.Fields))
		for i, f := range ve.Fields {
			parts[i] = f.String()
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

func (x *volcExchange) addQualification(p *messages.VMSQualification, now time.Time) {
	s := x.s
	s.mu.Lock()
	w := s.w
	q := &Qualification{
		QualificationNo: w.newQualificationNo(now),
		QualificationID: w.nextQualID,
		Entity:          p.QualificationMainInfoFormDO.QualificationEntity,
		CreditCode:      p.QualificationMainInfoFormDO.UnitSocialCreditCode,
		Status:          ReviewByName(p.QualificationMainInfoFormDO.QualificationEntity),
		AccessKeyID:     x.call.AccessKeyOrAppID,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	w.nextQualID++
	w.addQual(q)
	s.mu.Unlock()
	x.succeed(messages.VMSAddResult{QualificationNo: q.QualificationNo})
}

func (x *volcExchange) updateQualification(p *messages.VMSQualification, now time.Time) {
	s := x.s
	m := p.QualificationMainInfoFormDO
	s.mu.Lock()
	w := s.w
	no := strings.TrimSpace(m.QualificationNo)
	if no == "" {
		no = w.qualByID[int64(m.QualificationId)]
	} else if m.QualificationId != 0 && w.qualByID[int64(m.QualificationId)] != no {
		s.mu.Unlock()
		x.paramError(http.StatusOK, fmt.Sprintf("QualificationMainInfoFormDO: QualificationNo %s and QualificationId %d do not name the same qualification", no, m.QualificationId))
		return
	}
	q, ok := w.quals[no]
	switch {
	case !ok:
		s.mu.Unlock()
		x.paramError(http.StatusOK, "qualification not found")
		return
	case q.Status != ReviewRejected:
		s.mu.Unlock()
		x.paramError(http.StatusOK, msgUpdateRefused)
		return
	}
	q.Entity, q.CreditCode = m.QualificationEntity, m.UnitSocialCreditCode
	q.Status = ReviewByName(m.QualificationEntity)
	q.Updates++
	q.UpdatedAt = now
	s.mu.Unlock()
	x.succeed(struct{}{})
}

func (x *volcExchange) applySignatureIdent(p *messages.SMSApplySignatureIdent, now time.Time) {
	s := x.s
	status := ReviewByName(p.BusinessInfo.BusinessCertificateName)
	s.mu.Lock()
	w := s.w
	var id int64
	if p.ID != 0 {
		cur, ok := w.sms[p.ID]
		if !ok {
			s.mu.Unlock()
			x.paramError(http.StatusOK, fmt.Sprintf("id: signature ident %d not found", p.ID))
			return
		}
		cur.MaterialName = p.MaterialName
		cur.BusinessCertificateName = p.BusinessInfo.BusinessCertificateName
		cur.Purpose = p.Purpose
		cur.Status = status
		cur.Edits++
		cur.UpdatedAt = now
		id = cur.ID
	} else {
		id = w.nextSMSID
		w.nextSMSID++
		w.sms[id] = &SignatureIdent{ID: id, MaterialName: p.MaterialName, BusinessCertificateName: p.BusinessInfo.BusinessCertificateName,
			Purpose: p.Purpose, Status: status, AccessKeyID: x.call.AccessKeyOrAppID, CreatedAt: now, UpdatedAt: now}
	}
	s.mu.Unlock()
	x.succeed(messages.SMSApplyResult{ID: id})
}
