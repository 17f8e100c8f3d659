package douyin

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
)

// newRedirector is a server that answers every request with status and a
// Location on target, same path.
func newRedirector(tb testing.TB, status int, target string) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		http.Redirect(w, r, target+r.URL.Path, status)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// TestRedirectsAreNotFollowed: a base URL that redirects (to a server that
// records what reaches it) gets neither the app secret nor the access
// token, whichever client is used, and the 3xx is a permanent ErrRedirect.
func TestRedirectsAreNotFollowed(t *testing.T) {
	const token = "tok-do-not-leak"
	clients := []struct {
		name string
		hc   *http.Client
	}{
		{"default client", nil},
		{"caller's client that follows redirects", &http.Client{}},
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, cl := range clients {
			t.Run(http.StatusText(status)+"/"+cl.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				sink := newFakeVendor(t)
				redirector := newRedirector(t, status, sink.srv.URL)

				src := &TokenSource{AppID: testAppID, Secret: testSecret, BaseURL: redirector.URL, HTTPClient: cl.hc, Timeout: 2 * time.Second}
				_, err := src.Token(ctx)
				var te *TokenError
				if !errors.As(err, &te) || te.HTTPStatus != status {
					t.Errorf("token fetch: err = %v, want a *TokenError with HTTP %d", err, status)
				}
				checkRedirectError(t, "token fetch", err, sink.srv.URL, testSecret)

				c, err := New(Config{BaseURL: redirector.URL, AppID: testAppID, Tokens: staticTokens(token), HTTPClient: cl.hc, Timeout: 2 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				_, meta, err := c.AddRole(ctx, fullAddRole())
				var ae *APIError
				if !errors.As(err, &ae) || ae.HTTPStatus != status || meta.HTTPStatus != status {
					t.Errorf("add_role: err = %v, metadata %+v, want an *APIError with HTTP %d", err, meta, status)
				}
				checkRedirectError(t, "add_role", err, sink.srv.URL, token)
				_, _, err = c.GetClassAuth(ctx, fullGetClassAuth())
				checkRedirectError(t, "get_class_auth", err, sink.srv.URL, token)

				got := append(sink.tokenRequests(), sink.apiRequests()...)
				for _, r := range got {
					if strings.Contains(string(r.Body), testSecret) || strings.Contains(string(r.Body), token) {
						t.Errorf("the redirect target received the secret or the token: %s %s", r.Method, r.Path)
					}
				}
				if len(got) != 0 {
					t.Errorf("the redirect target received %d request(s), want none", len(got))
				}
			})
		}
	}
}

// checkRedirectError checks that err is a permanent, non-ambiguous
// ErrRedirect that names the redirect's host and not the secret.
func checkRedirectError(tb testing.TB, op string, err error, target, secret string) {
	tb.Helper()
	for _, tc := range []struct {
		class error
		want  bool
	}{
		{ErrRedirect, true},
		{retry.ErrPermanent, true},
		{retry.ErrTransient, false},
		{retry.ErrAmbiguous, false},
	} {
		if errors.Is(err, tc.class) != tc.want {
			tb.Errorf("%s: errors.Is(%v, %v) = %v, want %v", op, err, tc.class, !tc.want, tc.want)
		}
	}
	if err == nil {
		return
	}
	if !strings.Contains(err.Error(), "redirected to "+target) {
		tb.Errorf("%s: error %q does not name the redirect target %s", op, err, target)
	}
	if strings.Contains(err.Error(), secret) {
		tb.Errorf("%s: error %q contains the secret", op, err)
	}
}
