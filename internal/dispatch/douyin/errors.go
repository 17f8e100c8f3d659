package douyin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/qualfile/qualfile/internal/retry"
)

// Configuration errors returned by New and by a TokenSource that lacks its
// settings. They wrap no class sentinel, so retry.ClassOf treats them as
// permanent.
var (
	// ErrNoAppID means Config.AppID or TokenSource.AppID is empty.
	ErrNoAppID = errors.New("douyin: app id is required")
	// ErrNoSecret means TokenSource.Secret is empty.
	ErrNoSecret = errors.New("douyin: app secret is required")
	// ErrNoTokens means Config.Tokens is nil.
	ErrNoTokens = errors.New("douyin: token provider is required")
	// ErrBadCheckType means Config.CheckType is neither "", "OK" nor
	// "REJECT", or is set while BaseURL is the production host (the header
	// only steers the sandbox's simulated review).
	ErrBadCheckType = errors.New(`douyin: check type must be "", "OK" or "REJECT", and is for the sandbox only`)
)

// ErrNilPayload is returned when a call is given a nil payload. The vendor
// is not called; it matches retry.ErrInvalid.
var ErrNilPayload = fmt.Errorf("douyin: nil payload: %w", retry.ErrInvalid)

// ErrTokenRejected is the class of an *APIError carrying a token code
// (28001008 expired, 28001003 invalid, 2190008 legacy expired) that the
// client returns after it already refreshed the token once and the vendor
// rejected the new one too. It matches retry.ErrPermanent: the app's
// credentials or grants need a human.
var ErrTokenRejected = fmt.Errorf("douyin: access token rejected after a refresh: %w", retry.ErrPermanent)

// ErrRedirect is the class of an *APIError or *TokenError for a 3xx reply.
// Redirects are never followed, because every request body carries the
// access token or the app secret; a host that redirects is misconfigured
// (base_url) or not the vendor. It matches retry.ErrPermanent.
var ErrRedirect = fmt.Errorf("douyin: redirect not followed: %w", retry.ErrPermanent)

// APIError is a reply from an /auth/entity/* call that is not a success:
// a non-zero err.err_code or err_no, an HTTP status other than 200, or a
// body that cannot be read as the documented JSON. errors.Is matches the
// class sentinel it was given where the reply was read (see classify):
// retry.ErrTransient, retry.ErrThrottled, retry.ErrPermanent,
// ErrTokenRejected or, for a 3xx reply, ErrRedirect.
type APIError struct {
	// Code is err.err_code, or err_no when err.err_code is 0; 0 when the
	// reply had no usable code (the HTTP status or body decided the class).
	Code int64
	// Message is the vendor's err_msg / err_tips, or a description of what
	// was wrong with the reply.
	Message string
	// LogID is the X-Tt-Logid response header, for the vendor's support.
	LogID string
	// HTTPStatus is the reply's HTTP status code.
	HTTPStatus int

	class error
}

// Error implements error.
func (e *APIError) Error() string {
	s := fmt.Sprintf("douyin: HTTP %d", e.HTTPStatus)
	if e.Code != 0 {
		s += fmt.Sprintf(", code %d", e.Code)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.LogID != "" {
		s += " (logid " + e.LogID + ")"
	}
	return s
}

// Unwrap returns the class sentinel. An APIError built by hand, without a
// class, is classified from Code and HTTPStatus.
func (e *APIError) Unwrap() error {
	if e.class != nil {
		return e.class
	}
	return classify(e.Code, e.HTTPStatus)
}

// Douyin platform status codes (docs/vendors.md, "Douyin tokens and errors").
const (
	codeSystemBusy       = 28001005
	codeNetworkError     = 28001006
	codeTokenExpired     = 28001008
	codeTokenInvalid     = 28001003
	codeInvalidParam     = 28001007
	codeNotGranted       = 28001014
	codeNotGranted2      = 28001018
	codeAppBanned        = 28001016
	codeCapabilityBanned = 28001019
	codeAPIRetired       = 28001056
	codeRiskControl      = 28001052
	codeRateTooHigh      = 28003018
	codeQuotaExhausted   = 28003017
	codeLegacyBusy       = 2100004
	codeLegacyParam      = 2100005
	codeLegacyTokenExp   = 2190008
	codeSystemError      = -1
)

// isTokenCode reports whether code says the access token is expired or
// invalid, so that refreshing it and trying once more may help.
func isTokenCode(code int64) bool {
	switch code {
	case codeTokenExpired, codeTokenInvalid, codeLegacyTokenExp:
		return true
	}
	return false
}

// classify maps a non-success reply to its class sentinel. A known code
// decides; a reply without a code is classified by its HTTP status (429
// throttled, 5xx transient, anything else permanent). Quota exhausted
// (28003017) is permanent: the quota does not come back within any retry
// budget. Any other non-zero code is permanent, unless the status is 429.
func classify(code int64, status int) error {
	switch code {
	case codeSystemBusy, codeNetworkError, codeLegacyBusy, codeSystemError:
		return retry.ErrTransient
	case codeRiskControl, codeRateTooHigh:
		return retry.ErrThrottled
	case codeTokenExpired, codeTokenInvalid, codeLegacyTokenExp:
		return ErrTokenRejected
	case codeInvalidParam, codeNotGranted, codeNotGranted2, codeAppBanned,
		codeCapabilityBanned, codeAPIRetired, codeLegacyParam, codeQuotaExhausted:
		return retry.ErrPermanent
	}
	switch {
	case status == http.StatusTooManyRequests:
		return retry.ErrThrottled
	case code == 0 && status >= 500 && status <= 599:
		return retry.ErrTransient
	}
	return retry.ErrPermanent
}

// TokenError is a failed access-token fetch (POST /api/apps/v2/token) that
// got an answer. errors.Is matches its class: err_no -1 and HTTP 5xx are
// retry.ErrTransient, HTTP 429 is retry.ErrThrottled, a 3xx is ErrRedirect
// (permanent), 40015 (bad appid),
// 40017 (bad secret), 40020 (bad grant_type), any other code and an
// unreadable reply are retry.ErrPermanent. The message never contains the
// secret or a token.
type TokenError struct {
	// ErrNo is the vendor's err_no; 0 when the reply carried none.
	ErrNo int64
	// ErrTips is the vendor's err_tips, or a description of what was wrong
	// with the reply.
	ErrTips string
	// HTTPStatus is the reply's HTTP status code.
	HTTPStatus int

	class error
}

// Error implements error.
func (e *TokenError) Error() string {
	s := fmt.Sprintf("douyin: access token fetch failed: HTTP %d", e.HTTPStatus)
	if e.ErrNo != 0 {
		s += fmt.Sprintf(", err_no %d", e.ErrNo)
	}
	if e.ErrTips != "" {
		s += ": " + e.ErrTips
	}
	return s
}

// Unwrap returns the class sentinel.
func (e *TokenError) Unwrap() error {
	if e.class != nil {
		return e.class
	}
	return classifyToken(e.ErrNo, e.HTTPStatus)
}

// classifyToken maps a failed token reply to its class sentinel.
func classifyToken(errNo int64, status int) error {
	switch {
	case errNo == codeSystemError:
		return retry.ErrTransient
	case errNo != 0:
		return retry.ErrPermanent // 40015, 40017, 40020 and anything unknown
	case status == http.StatusTooManyRequests:
		return retry.ErrThrottled
	case status >= 500 && status <= 599:
		return retry.ErrTransient
	}
	return retry.ErrPermanent
}

// TransportError is a call that got no usable HTTP reply: the connection
// failed, the per-call timeout ran out, or the body could not be read.
// It always matches retry.ErrTransient, and also retry.ErrAmbiguous when
// Sent is true. errors.Is and errors.As also reach Err (for instance
// context.DeadlineExceeded after the per-call timeout).
type TransportError struct {
	// Op is the call: "add_role", "get_class_auth" or "token".
	Op string
	// Err is the underlying error.
	Err error
	// Sent is true once a connection was handed to the request, from which
	// point some or all of it may have reached the vendor (httptrace
	// GotConn / WroteRequest); a failure before that (DNS, refused
	// connection, TLS handshake) leaves it false. It is always false for
	// Op "token": fetching a token files nothing, so its failure never
	// makes the outcome of a filing unknown.
	Sent bool
}

// Error implements error.
func (e *TransportError) Error() string {
	s := "douyin " + e.Op + ": transport: " + fmt.Sprint(e.Err)
	if e.Sent {
		s += " (the request may have reached the vendor)"
	}
	return s
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }

// Is reports whether target is retry.ErrTransient, or retry.ErrAmbiguous
// when Sent is true.
func (e *TransportError) Is(target error) bool {
	return target == retry.ErrTransient || (e.Sent && target == retry.ErrAmbiguous)
}
