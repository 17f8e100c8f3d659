package volcengine

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
	"github.com/qualfile/qualfile/internal/retry"
)

// Defaults and wire constants (docs/vendors.md, "The five calls" and
// "Reading back a lost create").
const (
	DefaultVMSEndpoint = "https://cloud-vms.volcengineapi.com"
	DefaultSMSEndpoint = "https://sms.volcengineapi.com"
	DefaultRegion      = "cn-north-1"
	// DefaultTimeout bounds one call, from sending to reading the reply.
	DefaultTimeout = 10 * time.Second
	// MaxResponseBytes is the most of a reply that is read; a longer reply
	// is malformed.
	MaxResponseBytes = 4 << 20

	ServiceVMS = "vms"
	ServiceSMS = "volcSMS"
	VersionVMS = "2022-01-01"
	VersionSMS = "2021-01-11"

	ActionAddQualification      = "AddQualification"
	ActionUpdateQualification   = "UpdateQualification"
	ActionApplySignatureIdent   = "ApplySignatureIdent"
	ActionQueryQualification    = "QueryQualification"
	ActionGetSignatureIdentList = "GetSignatureIdentList"

	// ContentType is the Content-Type of every request body.
	ContentType = "application/json; charset=UTF-8"
)

// Config configures a VMS or SMS client. Only Credentials is required.
type Config struct {
	// Endpoint is the base URL; the service's production endpoint when empty.
	Endpoint string
	// Region is the region of the credential scope; DefaultRegion when empty.
	Region string
	// Credentials sign every request; the access key id and secret are
	// required, the session token only for STS keys.
	Credentials Credentials
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient sends the requests; a client of its own when nil. A 3xx
	// reply is never followed: it is an *APIError of class ErrRedirect.
	HTTPClient *http.Client
	// Now is the clock of the signer; time.Now when nil.
	Now func() time.Time
}

// Metadata describes the vendor's reply to one call, also with an error;
// HTTPStatus is 0 when no reply was received.
type Metadata struct {
	RequestID  string
	Action     string
	Version    string
	Service    string
	Region     string
	HTTPStatus int
}

// client is the caller shared by VMS and SMS.
type client struct {
	endpoint *url.URL
	version  string
	signer   Signer
	timeout  time.Duration
	http     *http.Client
}

func newClient(cfg Config, service, version, defaultEndpoint string) (*client, error) {
	if cfg.Credentials.AccessKeyID == "" || cfg.Credentials.SecretAccessKey == "" {
		return nil, fmt.Errorf("volcengine %s client: %w", service, ErrNoCredentials)
	}
	raw := cmp.Or(cfg.Endpoint, defaultEndpoint)
	endpoint, err := parseEndpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("volcengine %s client: endpoint %q: %w", service, raw, err)
	}
	region := cmp.Or(cfg.Region, DefaultRegion)
	if strings.ContainsAny(region, "/ \t\r\n") {
		return nil, fmt.Errorf("volcengine %s client: region %q: %w: region must not contain '/' or spaces", service, region, ErrBadConfig)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("volcengine %s client: timeout %s: %w: timeout must not be negative", service, cfg.Timeout, ErrBadConfig)
	}
	return &client{
		endpoint: endpoint,
		version:  version,
		signer:   Signer{Credentials: cfg.Credentials, Region: region, Service: service, Now: cfg.Now},
		timeout:  cmp.Or(cfg.Timeout, DefaultTimeout),
		http:     vendorhttp.NoRedirects(cfg.HTTPClient),
	}, nil
}

// parseEndpoint checks that raw is an absolute http(s) base URL and returns
// it with its path ending in "/".
func parseEndpoint(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEndpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, ErrBadEndpoint
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// envelope is the reply of every Volcengine call.
type envelope struct {
	ResponseMetadata struct {
		RequestID string     `json:"RequestId"`
		Action    string     `json:"Action"`
		Version   string     `json:"Version"`
		Service   string     `json:"Service"`
		Region    string     `json:"Region"`
		Error     *vendorErr `json:"Error"`
	} `json:"ResponseMetadata"`
	Result json.RawMessage `json:"Result"`
}

// vendorErr is ResponseMetadata.Error. Code and CodeN are read loosely: SMS
// codes such as 1999 may come as a string or a number in either field.
type vendorErr struct {
	Code    json.RawMessage `json:"Code"`
	CodeN   json.RawMessage `json:"CodeN"`
	Message json.RawMessage `json:"Message"`
}

// do sends payload as action with a JSON body (GetSignatureIdentList is a
// GET, as the official SDK sends it) and returns the envelope's Result, nil
// when absent or null. Every error is classified, except the caller's
// cancellation of ctx, which matches ctx.Err() and no class sentinel.
func (c *client) do(ctx context.Context, method, action string, payload any) (json.RawMessage, Metadata, error) {
	var md Metadata
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, md, fmt.Errorf("volcengine %s: encode request: %w: %w", action, retry.ErrInvalid, err)
	}
	if ctx.Err() != nil {
		return nil, md, callerDone(ctx, action, false)
	}

	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var traced, wrote atomic.Bool
	callCtx = httptrace.WithClientTrace(callCtx, &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		// A request whose write failed is incomplete and cannot have been
		// acted on; the transport never replays a POST it has written.
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	sent := func(err error) bool {
		if traced.Load() {
			return wrote.Load()
		}
		// A transport that reports no trace events: assume the request
		// went out unless the error says the connection was never made.
		var op *net.OpError
		return !(errors.As(err, &op) && op.Op == "dial")
	}

	u := *c.endpoint
	u.RawQuery = url.Values{"Action": {action}, "Version": {c.version}}.Encode()
	req, err := http.NewRequestWithContext(callCtx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, md, fmt.Errorf("volcengine %s: build request: %w: %w", action, retry.ErrPermanent, err)
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Accept", "application/json")
	if err := c.signer.Sign(req, body); err != nil {
		return nil, md, fmt.Errorf("volcengine %s: sign request: %w: %w", action, retry.ErrPermanent, err)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return nil, md, transportError(ctx, callCtx, action+": send request", err, sent(err))
	}
	defer resp.Body.Close()
	md.HTTPStatus = resp.StatusCode
	if vendorhttp.IsRedirect(resp.StatusCode) {
		return nil, md, &APIError{
			HTTPStatus: resp.StatusCode,
			Action:     action,
			Message:    "redirected to " + vendorhttp.RedirectTarget(resp) + "; not followed, a signed request is never sent elsewhere",
			class:      ErrRedirect,
		}
	}

	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		// The vendor answered but the reply was cut off in transit: no
		// answer was read, and the request had certainly been sent.
		return nil, md, transportError(ctx, callCtx, action+": read reply", err, true)
	}
	return c.parse(action, resp.StatusCode, raw, md)
}

// parse reads a reply of status with body raw.
func (c *client) parse(action string, status int, raw []byte, md Metadata) (json.RawMessage, Metadata, error) {
	var env envelope
	err := decodeEnvelope(raw, &env)
	if err != nil {
		// Not the envelope (a gateway's page, an empty or truncated body):
		// a 5xx or 429 is worth retrying; after a 2xx the vendor may have
		// acted, and another status rejected the request as it is, so
		// sending the same bytes again is permanent.
		return nil, md, &APIError{
			HTTPStatus: status,
			Action:     action,
			Message:    fmt.Sprintf("unreadable reply (%v): %s", err, snippet(raw)),
			class:      vendorhttp.StatusClass(status),
			malformed:  true,
		}
	}
	rm := env.ResponseMetadata
	md.RequestID, md.Action, md.Version, md.Service, md.Region = rm.RequestID, rm.Action, rm.Version, rm.Service, rm.Region

	if e := rm.Error; e != nil {
		code := looseString(e.Code)
		codeN := looseInt(e.CodeN)
		msg := looseString(e.Message)
		if code != "" || codeN != 0 || msg != "" {
			return nil, md, &APIError{
				Code:       code,
				CodeN:      codeN,
				Message:    msg,
				RequestID:  rm.RequestID,
				HTTPStatus: status,
				Action:     action,
				class:      classify(code, codeN, status),
			}
		}
	}
	if status < 200 || status > 299 {
		return nil, md, &APIError{
			Message:    strings.TrimSpace(strconv.Itoa(status) + " " + http.StatusText(status)),
			RequestID:  rm.RequestID,
			HTTPStatus: status,
			Action:     action,
			class:      vendorhttp.StatusClass(status),
		}
	}
	res := bytes.TrimSpace(env.Result)
	if len(res) == 0 || string(res) == "null" {
		return nil, md, nil
	}
	return env.Result, md, nil
}

// decodeEnvelope decodes raw, which must be exactly one JSON object.
func decodeEnvelope(raw []byte, env *envelope) error {
	if len(raw) > MaxResponseBytes {
		return fmt.Errorf("reply longer than %d bytes", MaxResponseBytes)
	}
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return errors.New("empty body")
	}
	if t[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	if err := dec.Decode(env); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// malformedResult is the error for a success reply whose Result cannot be
// read.
func malformedResult(action string, md Metadata, why string, result json.RawMessage) error {
	return &APIError{
		Message:    fmt.Sprintf("unreadable Result (%s): %s", why, snippet(result)),
		RequestID:  md.RequestID,
		HTTPStatus: md.HTTPStatus,
		Action:     action,
		class:      retry.ErrPermanent,
		malformed:  true,
	}
}

// create POSTs payload as action and reads its Result with field; a success
// reply without the value (field returns the zero value) is an error
// matching ErrNoResult.
func create[T comparable](ctx context.Context, c *client, action string, payload any, field func(json.RawMessage) (T, error)) (T, Metadata, error) {
	var zero T
	result, md, err := c.do(ctx, http.MethodPost, action, payload)
	if err != nil {
		return zero, md, err
	}
	if result == nil {
		return zero, md, noResult(action, md)
	}
	v, err := field(result)
	if err != nil {
		return zero, md, malformedResult(action, md, err.Error(), result)
	}
	if v == zero {
		return zero, md, noResult(action, md)
	}
	return v, md, nil
}

// noResult is the error for a success reply without the expected Result.
func noResult(action string, md Metadata) error {
	if md.RequestID != "" {
		return fmt.Errorf("volcengine %s (request %s, HTTP %d): %w", action, md.RequestID, md.HTTPStatus, ErrNoResult)
	}
	return fmt.Errorf("volcengine %s (HTTP %d): %w", action, md.HTTPStatus, ErrNoResult)
}

// transportError builds the error of a call that got no readable answer.
// The caller's cancellation wins; the caller's deadline is a timeout like
// the client's own (transient, and possibly sent).
func transportError(ctx, callCtx context.Context, op string, err error, sent bool) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return callerDone(ctx, op, sent)
	}
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return &TransportError{Op: op, Err: err, Sent: sent}
}

// callerDone is the error of a call whose ctx the caller cancelled (or let
// expire): it matches ctx.Err() (and the cancel cause) and no class sentinel.
func callerDone(ctx context.Context, op string, sent bool) error {
	state := "before the request was sent"
	if sent {
		state = "after the request was sent; outcome unknown"
	}
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		return fmt.Errorf("volcengine %s: stopped by the caller %s: %w: %w", op, state, ctx.Err(), cause)
	}
	return fmt.Errorf("volcengine %s: stopped by the caller %s: %w", op, state, ctx.Err())
}

// looseString reads a JSON string, or the text of any other scalar; "" for
// absent or null.
func looseString(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return ""
	}
	if t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) == nil {
			return s
		}
	}
	return string(t)
}

// looseInt reads a JSON integer or a string holding one; 0 otherwise.
func looseInt(raw json.RawMessage) int64 {
	var n LooseInt
	_ = n.UnmarshalJSON(raw) // n stays 0 on error
	return int64(n)
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	const max = 256
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
