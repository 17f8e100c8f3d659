// Package douyin calls the Douyin open platform's role calls
// (/auth/entity/add_role, /auth/entity/get_class_auth) and manages the app's
// access token. Errors match the class sentinels of package retry where the
// vendor's reply is read.
package douyin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
	"github.com/qualfile/qualfile/messages"
)

const (
	ProductionBaseURL = "https://developer.toutiao.com"
	SandboxBaseURL    = "https://open-sandbox.douyin.com"
)

// Sandbox review outcomes, for Config.CheckType.
const (
	CheckTypeOK     = "OK"
	CheckTypeReject = "REJECT"
)

// maxBody bounds how much of a reply is read.
const maxBody = 4 << 20

// defaultHTTPClient serves a Config or TokenSource that names no client.
var defaultHTTPClient = vendorhttp.NoRedirects(nil)

// noRedirects is hc, or defaultHTTPClient, refusing redirects: Go re-sends
// a POST body (the access token or app secret) answered 307 or 308.
func noRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		return defaultHTTPClient
	}
	return vendorhttp.NoRedirects(hc)
}

// TokenProvider hands out the app's access token. *TokenSource satisfies it.
type TokenProvider interface {
	Token(ctx context.Context) (Token, error)
	// Invalidate reports that the vendor rejected bad and returns its
	// replacement.
	Invalidate(ctx context.Context, bad Token) (Token, error)
}

// Config configures a Client.
type Config struct {
	BaseURL string        // default ProductionBaseURL
	AppID   string        // required
	Tokens  TokenProvider // required
	Timeout time.Duration // bounds one HTTP exchange; default 10s
	// HTTPClient sends the calls; default a client of this package's own.
	// A 3xx reply is never followed: it is an error of class ErrRedirect.
	HTTPClient *http.Client
	// CheckType, when set, is sent as the Aweme-Check-Type header that
	// decides the sandbox's simulated review; not with the production host.
	CheckType string
}

// Client calls the Douyin role API. It is safe for concurrent use.
type Client struct {
	baseURL   string
	appID     string
	tokens    TokenProvider
	timeout   time.Duration
	http      *http.Client
	checkType string
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.AppID == "" {
		return nil, ErrNoAppID
	}
	if cfg.Tokens == nil {
		return nil, ErrNoTokens
	}
	base := cmp.Or(strings.TrimRight(cfg.BaseURL, "/"), ProductionBaseURL)
	if ct := cfg.CheckType; ct != "" && (base == ProductionBaseURL || ct != CheckTypeOK && ct != CheckTypeReject) {
		return nil, ErrBadCheckType
	}
	c := &Client{
		baseURL:   base,
		appID:     cfg.AppID,
		tokens:    cfg.Tokens,
		timeout:   cfg.Timeout,
		http:      noRedirects(cfg.HTTPClient),
		checkType: cfg.CheckType,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	return c, nil
}

// Metadata describes the (last) HTTP exchange of a call.
type Metadata struct {
	LogID      string // the X-Tt-Logid response header
	HTTPStatus int    // 0 without a response
}

// AddRole files POST /auth/entity/add_role and returns the review task id.
func (c *Client) AddRole(ctx context.Context, p *messages.DouyinAddRole) (messages.DouyinAddRoleResult, Metadata, error) {
	var out messages.DouyinAddRoleResult
	if p == nil {
		return out, Metadata{}, ErrNilPayload
	}
	body := func(token string) ([]byte, error) {
		return json.Marshal(struct {
			AppID       string `json:"appid"`
			AccessToken string `json:"access_token"`
			*messages.DouyinAddRole
		}{c.appID, token, p})
	}
	meta, err := c.call(ctx, "add_role", "/auth/entity/add_role", body, &out)
	if err == nil && out.AddRoleTaskID == "" {
		// The vendor said yes but gave no task id: the role may exist, so
		// do not file again; a human must look.
		err = &APIError{Message: "success reply without add_role_taskid", LogID: meta.LogID, HTTPStatus: meta.HTTPStatus}
	}
	if err != nil {
		return messages.DouyinAddRoleResult{}, meta, err
	}
	return out, meta, nil
}

// GetClassAuth reads POST /auth/entity/get_class_auth. Each class_auths
// item is kept exactly as the vendor sent it.
func (c *Client) GetClassAuth(ctx context.Context, p *messages.DouyinGetClassAuth) (messages.DouyinClassAuthResult, Metadata, error) {
	var out messages.DouyinClassAuthResult
	if p == nil {
		return out, Metadata{}, ErrNilPayload
	}
	body := func(token string) ([]byte, error) {
		return json.Marshal(struct {
			AppID       string `json:"appid"`
			AccessToken string `json:"access_token"`
			*messages.DouyinGetClassAuth
		}{c.appID, token, p})
	}
	meta, err := c.call(ctx, "get_class_auth", "/auth/entity/get_class_auth", body, &out)
	if err != nil {
		return messages.DouyinClassAuthResult{}, meta, err
	}
	return out, meta, nil
}

// call gets a token and posts; when the vendor rejects the token it posts
// once more with a new one, and returns a second rejection as is.
func (c *Client) call(ctx context.Context, op, path string, body func(token string) ([]byte, error), out any) (Metadata, error) {
	tok, err := c.tokens.Token(ctx)
	if err != nil {
		return Metadata{}, fmt.Errorf("douyin %s: access token: %w", op, err)
	}
	meta, err := c.post(ctx, op, path, tok, body, out)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || codeClass[apiErr.Code] != ErrTokenRejected {
		return meta, err
	}
	fresh, ierr := c.tokens.Invalidate(ctx, tok)
	if ierr != nil {
		return meta, fmt.Errorf("douyin %s: the vendor rejected the access token (code %d, logid %s) and refreshing it failed: %w",
			op, apiErr.Code, apiErr.LogID, ierr)
	}
	return c.post(ctx, op, path, fresh, body, out)
}

// reply is the status part of every /auth/entity/* reply.
type reply struct {
	Err *struct {
		Code int64  `json:"err_code"`
		Msg  string `json:"err_msg"`
	} `json:"err"`
	ErrNo   int64  `json:"err_no"`
	ErrTips string `json:"err_tips"`
}

// post makes one HTTP exchange and reads its reply into out.
func (c *Client) post(ctx context.Context, op, path string, tok Token, body func(string) ([]byte, error), out any) (Metadata, error) {
	b, err := body(tok.AccessToken)
	if err != nil {
		return Metadata{}, fmt.Errorf("douyin %s: encoding the body: %w", op, err)
	}

	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { sent.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) { sent.Store(true) },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(cctx, trace), http.MethodPost, c.baseURL+path, bytes.NewReader(b))
	if err != nil {
		return Metadata{}, fmt.Errorf("douyin %s: building the request: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.checkType != "" {
		req.Header.Set("Aweme-Check-Type", c.checkType)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return Metadata{}, c.transportError(ctx, op, err, sent.Load())
	}
	defer resp.Body.Close()
	meta := Metadata{LogID: resp.Header.Get("X-Tt-Logid"), HTTPStatus: resp.StatusCode}
	if vendorhttp.IsRedirect(resp.StatusCode) {
		return meta, &APIError{
			Message: "redirected to " + vendorhttp.RedirectTarget(resp) + "; not followed, the request carries the access token",
			LogID:   meta.LogID, HTTPStatus: meta.HTTPStatus, class: ErrRedirect,
		}
	}
	raw, tooLarge, err := vendorhttp.ReadBody(resp, maxBody)
	if err != nil {
		return meta, c.transportError(ctx, op, err, true)
	}

	fail := func(code int64, msg string) error {
		return &APIError{Code: code, Message: msg, LogID: meta.LogID, HTTPStatus: meta.HTTPStatus, class: classify(code, meta.HTTPStatus)}
	}
	if tooLarge {
		return meta, fail(0, "reply larger than 4 MiB")
	}
	var rep reply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return meta, fail(0, "reply is not the documented JSON")
	}
	code, msg := rep.ErrNo, rep.ErrTips
	if rep.Err != nil && rep.Err.Code != 0 {
		code, msg = rep.Err.Code, rep.Err.Msg
	}
	if code != 0 {
		return meta, fail(code, msg)
	}
	if resp.StatusCode != http.StatusOK {
		return meta, fail(0, http.StatusText(resp.StatusCode))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return meta, fail(0, "success reply with an unexpected shape")
	}
	return meta, nil
}

// transportError is the error of a failed exchange: the caller's own
// cancellation as such (not transient), anything else a TransportError.
func (c *Client) transportError(ctx context.Context, op string, err error, sent bool) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		if sent {
			return fmt.Errorf("douyin %s: cancelled by the caller after the request may have reached the vendor: %w", op, ctx.Err())
		}
		return fmt.Errorf("douyin %s: cancelled by the caller: %w", op, ctx.Err())
	}
	return &TransportError{Op: op, Err: err, Sent: sent}
}
