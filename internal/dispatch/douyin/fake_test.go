package douyin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testAppID  = "tt0123456789abcdef"
	testSecret = "s3cr3t-do-not-leak"
)

// recorded is one request the fake vendor saw.
type recorded struct {
	Path   string
	Method string
	Header http.Header
	Body   []byte
}

// fakeVendor is an httptest Douyin: the token endpoint and the role calls,
// each answered by a replaceable function field.
type fakeVendor struct {
	srv *httptest.Server

	// token answers fetch number n (1-based) of POST /api/apps/v2/token.
	token func(w http.ResponseWriter, r *http.Request, n int64)
	// api answers call number n (1-based) of POST /auth/entity/*.
	api func(w http.ResponseWriter, r *http.Request, n int64)

	fetches atomic.Int64
	calls   atomic.Int64

	mu       sync.Mutex
	tokenReq []recorded
	apiReq   []recorded
}

func newFakeVendor(t *testing.T) *fakeVendor {
	t.Helper()
	f := &fakeVendor{
		token: func(w http.ResponseWriter, _ *http.Request, n int64) {
			writeJSON(w, http.StatusOK, fmt.Sprintf(`{"err_no":0,"err_tips":"","data":{"access_token":"tok-%d","expires_in":7200}}`, n))
		},
		api: func(w http.ResponseWriter, _ *http.Request, _ int64) {
			writeJSON(w, http.StatusOK, `{"add_role_taskid":"Role_1","class_auths":[],"err":{"err_code":0,"err_msg":""}}`)
		},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := recorded{Path: r.URL.Path, Method: r.Method, Header: r.Header.Clone(), Body: body}
		switch r.URL.Path {
		case "/api/apps/v2/token":
			f.mu.Lock()
			f.tokenReq = append(f.tokenReq, rec)
			f.mu.Unlock()
			f.token(w, r, f.fetches.Add(1))
		default:
			f.mu.Lock()
			f.apiReq = append(f.apiReq, rec)
			f.mu.Unlock()
			f.api(w, r, f.calls.Add(1))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVendor) apiRequests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.apiReq...)
}

func (f *fakeVendor) tokenRequests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.tokenReq...)
}

// source returns a TokenSource against the fake with its own MemoryStore.
func (f *fakeVendor) source(clock func() time.Time) *TokenSource {
	return &TokenSource{
		AppID:      testAppID,
		Secret:     testSecret,
		BaseURL:    f.srv.URL,
		Store:      NewMemoryStore(),
		HTTPClient: f.srv.Client(),
		Timeout:    2 * time.Second,
		Now:        clock,
	}
}

// client returns a Client against the fake using a TokenSource on it.
func (f *fakeVendor) client(t *testing.T, mutate func(*Config)) (*Client, *TokenSource) {
	t.Helper()
	ts := f.source(nil)
	cfg := Config{BaseURL: f.srv.URL, AppID: testAppID, Tokens: ts, HTTPClient: f.srv.Client(), Timeout: 2 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c, ts
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// fakeClock is an adjustable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stubTokens is a TokenProvider made of function fields.
type stubTokens struct {
	token      func(ctx context.Context) (Token, error)
	invalidate func(ctx context.Context, bad Token) (Token, error)
}

func (s *stubTokens) Token(ctx context.Context) (Token, error) { return s.token(ctx) }

func (s *stubTokens) Invalidate(ctx context.Context, bad Token) (Token, error) {
	return s.invalidate(ctx, bad)
}

func staticTokens(tok string) *stubTokens {
	t := Token{AccessToken: tok, ExpiresAt: time.Now().Add(time.Hour), FetchedAt: time.Now()}
	return &stubTokens{
		token:      func(context.Context) (Token, error) { return t, nil },
		invalidate: func(context.Context, Token) (Token, error) { return t, nil },
	}
}

// refusedURL returns a base URL on which nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "http://" + addr
}

// decodeMap decodes a JSON object keeping numbers exact.
func decodeMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}
