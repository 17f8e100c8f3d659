package volcengine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
	"github.com/qualfile/qualfile/internal/retry"
)

// ErrNoCredentials means the access key or secret is missing.
var ErrNoCredentials = errors.New("volcengine: access key id and secret access key are required")

// ErrBadConfig is matched by every error NewVMS and NewSMS return for a
// malformed Config (apart from missing credentials, which match
// ErrNoCredentials).
var ErrBadConfig = errors.New("volcengine: bad config")

// ErrBadEndpoint is matched by the error NewVMS and NewSMS return when
// Config.Endpoint is not an absolute http(s) base URL; it also matches
// ErrBadConfig.
var ErrBadEndpoint = fmt.Errorf("%w: endpoint must be an absolute http or https URL without query, fragment or user info", ErrBadConfig)

// ErrNoResult is matched by the error of a call that must return a Result
// (AddQualification, ApplySignatureIdent) when the vendor answered without an
// error but also without the result. It also matches retry.ErrPermanent: the
// vendor may have acted, so the request must not be re-filed blindly.
var ErrNoResult = fmt.Errorf("volcengine: reply has no result: %w", retry.ErrPermanent)

// ErrRedirect is the class of an *APIError for a 3xx reply. Redirects are
// never followed: a signed POST must not be replayed elsewhere, and a host
// that redirects is misconfigured (the endpoint) or not the vendor. It
// matches retry.ErrPermanent.
var ErrRedirect = fmt.Errorf("volcengine: redirect not followed: %w", retry.ErrPermanent)

// ErrMalformedReply is matched (errors.Is) by an *APIError built from a reply
// that is not the vendor's JSON envelope: not JSON, truncated, larger than
// MaxResponseBytes, or with an unreadable Result.
var ErrMalformedReply = errors.New("volcengine: malformed reply")

// ErrClockSkew is matched (errors.Is) by an *APIError whose code is
// InvalidTimestamp: the local clock is off. Signing again at once will not
// help; the error is permanent for this delivery and worth an alert.
var ErrClockSkew = errors.New("volcengine: request timestamp rejected (clock skew)")

// codeClass maps Volcengine error codes (Error.Code, or Error.CodeN as a
// decimal string) to a class sentinel, per the table of docs/vendors.md.
var codeClass = map[string]error{
	// Transient.
	"SystemError":            retry.ErrTransient,
	"InternalServiceFailed":  retry.ErrTransient,
	"1999":                   retry.ErrTransient, // SMS system error
	"InternalError":          retry.ErrTransient,
	"InternalServiceError":   retry.ErrTransient,
	"InternalServiceTimeout": retry.ErrTransient,
	"ServiceUnavailableTemp": retry.ErrTransient,
	// Throttled.
	"FlowLimitExceeded":        retry.ErrThrottled,
	"AccountFlowLimitExceeded": retry.ErrThrottled,
	// Permanent.
	"RequestParametersError":     retry.ErrPermanent,
	"1001":                       retry.ErrPermanent, // SMS parameter error
	"1023":                       retry.ErrPermanent, // SMS no permission
	"MissingParameter":           retry.ErrPermanent,
	"InvalidActionOrVersion":     retry.ErrPermanent,
	"ServiceNotFound":            retry.ErrPermanent,
	"AccessDenied":               retry.ErrPermanent,
	"LackPolicy":                 retry.ErrPermanent,
	"InvalidAccessKey":           retry.ErrPermanent,
	"SignatureDoesNotMatch":      retry.ErrPermanent,
	"MissingSignature":           retry.ErrPermanent,
	"MissingAuthenticationToken": retry.ErrPermanent,
	// Clock skew: permanent for this delivery (see ErrClockSkew).
	codeInvalidTimestamp: retry.ErrPermanent,
}

const codeInvalidTimestamp = "InvalidTimestamp"

// classify returns the class sentinel of a vendor answer: Error.Code first,
// then Error.CodeN as a decimal string, then the HTTP status (429 throttled,
// 5xx transient). Anything else, an unknown code with HTTP 200 included, is
// permanent: retrying what nobody understood risks filing twice.
func classify(code string, codeN int64, status int) error {
	if c, ok := codeClass[strings.TrimSpace(code)]; ok {
		return c
	}
	if codeN != 0 {
		if c, ok := codeClass[strconv.FormatInt(codeN, 10)]; ok {
			return c
		}
	}
	return vendorhttp.StatusClass(status)
}

// APIError is an answer of the vendor that is not a success: an envelope
// whose ResponseMetadata.Error is set, a non-2xx HTTP status, or a reply that
// could not be read as the envelope (see ErrMalformedReply). It unwraps to
// the class sentinel of package retry (retry.ErrThrottled,
// retry.ErrTransient or retry.ErrPermanent) decided where the reply was read.
type APIError struct {
	// Code is ResponseMetadata.Error.Code, e.g. "SystemError" or "1999".
	Code string
	// CodeN is ResponseMetadata.Error.CodeN, 0 when absent.
	CodeN int64
	// Message is the vendor's message, or a description of the reply when
	// it was not the envelope.
	Message string
	// RequestID is ResponseMetadata.RequestId, when the vendor gave one.
	RequestID string
	// HTTPStatus is the status code of the reply.
	HTTPStatus int
	// Action is the action called, e.g. "AddQualification".
	Action string

	class     error // set where the reply is read; derived from the fields when nil
	malformed bool
}

// Error implements error.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("volcengine")
	if e.Action != "" {
		b.WriteString(" " + e.Action)
	}
	b.WriteString(":")
	switch {
	case e.Code != "" && e.CodeN != 0 && e.Code != strconv.FormatInt(e.CodeN, 10):
		fmt.Fprintf(&b, " %s (%d)", e.Code, e.CodeN)
	case e.Code != "":
		b.WriteString(" " + e.Code)
	case e.CodeN != 0:
		b.WriteString(" " + strconv.FormatInt(e.CodeN, 10))
	case e.Message == "":
		b.WriteString(" error")
	}
	if e.Message != "" {
		if e.Code != "" || e.CodeN != 0 {
			b.WriteString(":")
		}
		b.WriteString(" " + e.Message)
	}
	fmt.Fprintf(&b, " [HTTP %d", e.HTTPStatus)
	if e.RequestID != "" {
		b.WriteString(", request " + e.RequestID)
	}
	b.WriteString("]")
	return b.String()
}

// Unwrap returns the class sentinel: retry.ErrThrottled, retry.ErrTransient
// or retry.ErrPermanent.
func (e *APIError) Unwrap() error {
	if e.class != nil {
		return e.class
	}
	if e.malformed {
		return vendorhttp.StatusClass(e.HTTPStatus)
	}
	return classify(e.Code, e.CodeN, e.HTTPStatus)
}

// Is reports whether target is ErrMalformedReply (for a reply that was not
// the envelope) or ErrClockSkew (for the code InvalidTimestamp).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrMalformedReply:
		return e.malformed
	case ErrClockSkew:
		return e.Code == codeInvalidTimestamp
	}
	return false
}

// TransportError is a call that got no answer from the vendor: a connection
// error, a timeout, or a reply cut off while it was being read. It always
// matches retry.ErrTransient; when Sent is true it also matches
// retry.ErrAmbiguous, since the vendor may have acted on the request. It
// matches the underlying error too (e.g. context.DeadlineExceeded for the
// per-call timeout).
type TransportError struct {
	// Op says what failed, e.g. "AddQualification: send request".
	Op string
	// Err is the underlying error.
	Err error
	// Sent is true when the whole request may have reached the vendor.
	// A dial error or a refused connection is not sent.
	Sent bool
}

// Error implements error.
func (e *TransportError) Error() string {
	msg := "volcengine " + e.Op + ": " + fmt.Sprint(e.Err)
	if e.Sent {
		msg += " (the request was sent; outcome unknown)"
	} else {
		msg += " (the request was not sent)"
	}
	return msg
}

// Is reports whether target is retry.ErrTransient, or retry.ErrAmbiguous
// when the request was sent.
func (e *TransportError) Is(target error) bool {
	return target == retry.ErrTransient || (e.Sent && target == retry.ErrAmbiguous)
}

// Unwrap returns the underlying error.
func (e *TransportError) Unwrap() error { return e.Err }
