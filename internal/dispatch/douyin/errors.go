package douyin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
	"github.com/qualfile/qualfile/internal/retry"
)

// Configuration errors of New and of a TokenSource (permanent).
var (
	ErrNoAppID  = errors.New("douyin: app id is required")
	ErrNoSecret = errors.New("douyin: app secret is required")
	ErrNoTokens = errors.New("douyin: token provider is required")
	// ErrBadCheckType: Config.CheckType is not "", "OK" or "REJECT", or is
	// set with the production BaseURL.
	ErrBadCheckType = errors.New(`douyin: check type must be "", "OK" or "REJECT", and is for the sandbox only`)
)

// ErrNilPayload: a call was given a nil payload (nothing is sent).
var ErrNilPayload = fmt.Errorf("douyin: nil payload: %w", retry.ErrInvalid)

// ErrTokenRejected is the class (permanent) of an *APIError with a token
// code that the vendor gave again after the token was refreshed once.
var ErrTokenRejected = fmt.Errorf("douyin: access token rejected after a refresh: %w", retry.ErrPermanent)

// ErrRedirect is the class (permanent) of an *APIError or *TokenError for
// a 3xx reply, which is never followed.
var ErrRedirect = fmt.Errorf("douyin: redirect not followed: %w", retry.ErrPermanent)

// APIError is a reply from an /auth/entity/* call that is not a success: a
// non-zero code, a status other than 200, or an unreadable body. It
// unwraps to the class decided where the reply was read (see classify).
type APIError struct {
	// Code is err.err_code, or err_no when that is 0; 0 without a code.
	Code int64
	// Message is the vendor's, or describes what was wrong with the reply.
	Message    string
	LogID      string // the X-Tt-Logid response header
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
// tokens and errors") to their class. Quota exhausted does not come back
// within any retry budget.
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

// TokenError is a failed access-token fetch that got an answer; it matches
// its class (see classifyToken). The message never contains the secret or
// a token.
type TokenError struct {
	ErrNo int64 // 0 when the reply carried none
	// ErrTips is the vendor's, or describes what was wrong with the reply.
	ErrTips    string
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

// TransportError is a call that got no usable HTTP reply. It matches
// retry.ErrTransient, its Err, and retry.ErrAmbiguous when Sent.
type TransportError struct {
	Op  string // "add_role", "get_class_auth" or "token"
	Err error
	// Sent is true once a connection was handed to the request, from which
	// point some of it may have reached the vendor; always false for Op
	// "token", as fetching a token files nothing.
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
