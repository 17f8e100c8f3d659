package douyin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
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

// codeClass maps the Douyin platform status codes (docs/vendors.md, "Douyin
// tokens and errors") to their class. Quota exhausted is permanent: it does
// not come back within any retry budget. A token code is ErrTokenRejected:
// the client refreshes the token once and sends the call again.
var codeClass = map[int64]error{
	28001005: retry.ErrTransient, // system busy
	28001006: retry.ErrTransient, // network error
	2100004:  retry.ErrTransient, // legacy busy
	-1:       retry.ErrTransient, // system error
	28001052: retry.ErrThrottled, // risk control
	28003018: retry.ErrThrottled, // rate too high
	28001008: ErrTokenRejected,   // token expired
	28001003: ErrTokenRejected,   // token invalid
	2190008:  ErrTokenRejected,   // legacy token expired
	28001007: retry.ErrPermanent, // invalid parameter
	28001014: retry.ErrPermanent, // capability not granted
	28001018: retry.ErrPermanent, // capability not granted
	28001016: retry.ErrPermanent, // app banned
	28001019: retry.ErrPermanent, // capability banned
	28001056: retry.ErrPermanent, // API retired
	2100005:  retry.ErrPermanent, // legacy invalid parameter
	28003017: retry.ErrPermanent, // quota exhausted
}

// classify maps a non-success reply to its class sentinel: a known code
// decides; any other non-zero code is permanent unless the status is 429;
// a reply without a code is classified by its HTTP status.
func classify(code int64, status int) error {
	if c, ok := codeClass[code]; ok {
		return c
	}
	if code != 0 && status != http.StatusTooManyRequests {
		return retry.ErrPermanent
	}
	return vendorhttp.StatusClass(status)
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

// classifyToken maps a failed token reply to its class sentinel: err_no -1
// is transient, any other err_no permanent (40015, 40017, 40020 and anything
// unknown), and without one the HTTP status decides.
func classifyToken(errNo int64, status int) error {
	switch {
	case errNo == -1:
		return retry.ErrTransient
	case errNo != 0:
		return retry.ErrPermanent
	}
	return vendorhttp.StatusClass(status)
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
