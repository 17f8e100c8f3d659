// Package dispatch routes a validated request to the vendor client of its
// api and account, and returns a typed outcome.
package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// VMS is what dispatch needs of a Volcengine VMS client.
type VMS interface {
	AddQualification(ctx context.Context, q *messages.VMSQualification) (messages.VMSAddResult, volcengine.Metadata, error)
	UpdateQualification(ctx context.Context, q *messages.VMSQualification) (json.RawMessage, volcengine.Metadata, error)
}

// SMS is what dispatch needs of a Volcengine SMS client.
type SMS interface {
	ApplySignatureIdent(ctx context.Context, req *messages.SMSApplySignatureIdent) (messages.SMSApplyResult, volcengine.Metadata, error)
}

// Douyin is what dispatch needs of a Douyin entity client.
type Douyin interface {
	AddRole(ctx context.Context, req *messages.DouyinAddRole) (messages.DouyinAddRoleResult, douyin.Metadata, error)
	GetClassAuth(ctx context.Context, req *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, douyin.Metadata, error)
}

// Account is one credential profile's clients; a nil client means the
// account has no credentials for that vendor.
type Account struct {
	VMS    VMS
	SMS    SMS
	Douyin Douyin
}

// Outcome is what one call returned.
type Outcome struct {
	// Result is the vendor's Result, as it goes into the result message.
	Result json.RawMessage
	// UpstreamRequestID is the vendor's id of the call (Volcengine
	// RequestId, Douyin X-Tt-Logid), also set on failure when known.
	UpstreamRequestID string
}

// Dispatcher routes requests to the clients of their account.
type Dispatcher struct {
	accounts map[string]Account
}

// New returns a Dispatcher over the given accounts, keyed by name.
func New(accounts map[string]Account) *Dispatcher {
	return &Dispatcher{accounts: maps.Clone(accounts)}
}

// Dispatch makes one call for req, which must have passed Validate; a
// create that was sent and never answered fails with an *AmbiguousError.
func (d *Dispatcher) Dispatch(ctx context.Context, req *messages.Request) (Outcome, error) {
	acct, ok := d.accounts[req.AccountOrDefault()]
	if !ok {
		return Outcome{}, fmt.Errorf("account %q: %w", req.AccountOrDefault(), ErrUnknownAccount)
	}
	out, err := d.call(ctx, acct, req)
	if err != nil && isAmbiguousSend(req.API, err) {
		err = &AmbiguousError{API: req.API, Err: err}
	}
	return out, err
}

func (d *Dispatcher) call(ctx context.Context, acct Account, req *messages.Request) (Outcome, error) {
	switch p := req.Typed().(type) {
	case *messages.VMSQualification:
		if acct.VMS == nil {
			return Outcome{}, fmt.Errorf("account %q, vms: %w", req.AccountOrDefault(), ErrNoClient)
		}
		if req.API == messages.APIVMSUpdateQualification {
			res, md, err := acct.VMS.UpdateQualification(ctx, p)
			return outcome(res, md.RequestID, err)
		}
		res, md, err := acct.VMS.AddQualification(ctx, p)
		return outcome(res, md.RequestID, err)
	case *messages.SMSApplySignatureIdent:
		if acct.SMS == nil {
			return Outcome{}, fmt.Errorf("account %q, sms: %w", req.AccountOrDefault(), ErrNoClient)
		}
		res, md, err := acct.SMS.ApplySignatureIdent(ctx, p)
		return outcome(res.WithIDString(), md.RequestID, err)
	case *messages.DouyinAddRole:
		if acct.Douyin == nil {
			return Outcome{}, fmt.Errorf("account %q, douyin: %w", req.AccountOrDefault(), ErrNoClient)
		}
		res, md, err := acct.Douyin.AddRole(ctx, p)
		return outcome(res, md.LogID, err)
	case *messages.DouyinGetClassAuth:
		if acct.Douyin == nil {
			return Outcome{}, fmt.Errorf("account %q, douyin: %w", req.AccountOrDefault(), ErrNoClient)
		}
		res, md, err := acct.Douyin.GetClassAuth(ctx, p)
		return outcome(res, md.LogID, err)
	}
	return Outcome{}, ErrNotValidated
}

func outcome(result any, upstreamID string, err error) (Outcome, error) {
	out := Outcome{UpstreamRequestID: upstreamID}
	if err != nil {
		return out, err
	}
	switch r := result.(type) {
	case json.RawMessage:
		if len(r) == 0 {
			r = json.RawMessage(`{}`)
		}
		out.Result = r
	default:
		b, merr := json.Marshal(r)
		if merr != nil {
			return out, fmt.Errorf("encode result: %w", merr)
		}
		out.Result = b
	}
	return out, nil
}

// Describe returns the vendor's error code and message for a result's error,
// and the class it belongs to.
func Describe(err error) (code, message string, class retry.Class) {
	class = retry.ClassOf(err)
	var (
		vErr   *volcengine.APIError
		dErr   *douyin.APIError
		tokErr *douyin.TokenError
		vErrs  *messages.ValidationError
		amb    *AmbiguousError
	)
	switch {
	case errors.As(err, &amb):
		return "AmbiguousOutcome", err.Error(), class
	case errors.As(err, &vErr):
		code = vErr.Code
		if code == "" && vErr.CodeN != 0 {
			code = strconv.FormatInt(vErr.CodeN, 10)
		}
		if code == "" && vErr.HTTPStatus != 0 {
			code = "HTTP" + strconv.Itoa(vErr.HTTPStatus)
		}
		return code, vErr.Message, class
	case errors.As(err, &dErr):
		return strconv.FormatInt(dErr.Code, 10), dErr.Message, class
	case errors.As(err, &tokErr):
		return strconv.FormatInt(tokErr.ErrNo, 10), tokErr.ErrTips, class
	case errors.As(err, &vErrs):
		return "InvalidRequest", err.Error(), class
	case errors.Is(err, ErrUnknownAccount):
		return "UnknownAccount", err.Error(), class
	case errors.Is(err, ErrNoClient):
		return "NoCredentials", err.Error(), class
	}
	return "", err.Error(), class
}
