package dispatch

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// ErrUnknownAccount: the request names a credential profile that is not
// configured (class invalid).
var ErrUnknownAccount = fmt.Errorf("unknown account: %w", messages.ErrInvalid)

// ErrNoClient: the account has no credentials for the vendor of the request's
// api (class invalid).
var ErrNoClient = fmt.Errorf("account has no credentials for this vendor: %w", messages.ErrInvalid)

// ErrNotValidated: the request's payload was not validated (a programming
// error; class permanent).
var ErrNotValidated = fmt.Errorf("request was not validated: %w", retry.ErrPermanent)

// AmbiguousError is returned for a call that is not safe to send twice
// (see API.Resendable) when it was sent and no answer came back. It matches
// retry.ErrAmbiguous and, on purpose, not retry.ErrTransient.
type AmbiguousError struct {
	API messages.API
	Err error
}

func (e *AmbiguousError) Error() string {
	return fmt.Sprintf("%s: outcome unknown, not re-filed: %v", e.API, e.Err)
}

// Unwrap hides the transient cause so the error does not classify as
// retryable.
func (e *AmbiguousError) Unwrap() error { return retry.ErrAmbiguous }

func isAmbiguousSend(api messages.API, err error) bool {
	if api.Resendable() || !errors.Is(err, retry.ErrTransient) {
		return false
	}
	return errors.Is(err, retry.ErrAmbiguous) || gatewayTimeout(err)
}

// gatewayTimeout reports a 500, 502 or 504 without a vendor error code: the
// vendor may have acted on the request (docs/vendors.md). A 503 was not
// taken, and a reply with the vendor's own code is a definite answer.
func gatewayTimeout(err error) bool {
	mayHaveActed := func(status int) bool {
		return status == http.StatusInternalServerError || status == http.StatusBadGateway || status == http.StatusGatewayTimeout
	}
	var v *volcengine.APIError
	if errors.As(err, &v) {
		return v.Code == "" && v.CodeN == 0 && mayHaveActed(v.HTTPStatus)
	}
	var d *douyin.APIError
	if errors.As(err, &d) {
		return d.Code == 0 && mayHaveActed(d.HTTPStatus)
	}
	return false
}

// ErrNotReconcilable: the request's api has no read that can settle a lost
// answer (see messages.API.Reconcilable).
var ErrNotReconcilable = errors.New("no vendor read can settle this api")

// ErrTooManyRecords: the vendor lists more records than a reconciliation
// reads; the request is left to an operator (permanent).
var ErrTooManyRecords = fmt.Errorf("too many records to read back: %w", retry.ErrPermanent)
