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

// ErrBadConfig is matched by the errors of NewVMS and NewSMS for a
// malformed Config other than missing credentials.
var ErrBadConfig = errors.New("volcengine: bad config")

// ErrBadEndpoint: Config.Endpoint is not an absolute http(s) base URL.
var ErrBadEndpoint = fmt.Errorf("%w: endpoint must be an absolute http or https URL without query, fragment or user info", ErrBadConfig)

// ErrNoResult: a create was answered without an error and without its
// result. It is permanent: the vendor may have acted.
var ErrNoResult = fmt.Errorf("volcengine: reply has no result: %w", retry.ErrPermanent)

// ErrRedirect is the class (permanent) of an *APIError for a 3xx reply,
// which is never followed: a signed POST must not be replayed elsewhere.
var ErrRedirect = fmt.Errorf("volcengine: redirect not followed: %w", retry.ErrPermanent)

// ErrMalformedReply is matched by an *APIError for a reply that is not the
// vendor's JSON envelope, or whose Result cannot be read.
var ErrMalformedReply = errors.New("volcengine: malformed reply")

// ErrClockSkew is matched by an *APIError whose code is InvalidTimestamp:
// the local clock is off (permanent, and worth an alert).
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

// classify returns the class sentinel of a vendor answer: Error.Code, then
// Error.CodeN, then the HTTP status. Anything else is permanent: retrying
// what nobody understood risks filing twice.
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

// APIError is an answer of the vendor that is not a success: a
// ResponseMetadata.Error, a non-2xx status, or a reply that is not the
// envelope. It unwraps to the class sentinel decided where it was read.
type APIError struct {
	// Code is ResponseMetadata.Error.Code, e.g. "SystemError" or "1999".
	Code string
	// CodeN is ResponseMetadata.Error.CodeN, 0 when absent.
	CodeN int64
	// Message is the vendor's, or describes a reply that was not the envelope.
	Message string
	// RequestID is ResponseMetadata.RequestId, when the vendor gave one.
	RequestID string
	// HTTPStatus is the status code of the reply.
	HTTPStatus int
	// Action is the action called, e.g. "AddQualification".
	Action string

	class     error // set where the reply is read; derived from the fields when built by hand
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

// TransportError is a call that got no answer: a connection error, a
// timeout, or a reply cut off. It matches retry.ErrTransient, its Err, and
// retry.ErrAmbiguous when Sent (the vendor may have acted).
type TransportError struct {
	// Op says what failed, e.g. "AddQualification: send request".
	Op string
	// Err is the underlying error.
	Err error
	// Sent is true when the whole request may have reached the vendor.
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
