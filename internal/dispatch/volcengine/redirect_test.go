package volcengine

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

// TestRedirectsAreNotFollowed: an endpoint that redirects (to a server that
// records what reaches it) does not get a signed request replayed to the
// target, whichever client is used, and the 3xx is a permanent ErrRedirect.
func TestRedirectsAreNotFollowed(t *testing.T) {
	clients := []struct {
		name string
		hc   *http.Client
	}{
		{"default client", nil},
		{"caller's client that follows redirects", &http.Client{}},
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, cl := range clients {
			for callName, call := range calls {
				t.Run(http.StatusText(status)+"/"+cl.name+"/"+callName, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					sink := newFakeVendor(t, testCreds.SecretAccessKey)
					redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						_, _ = io.Copy(io.Discard, r.Body)
						http.Redirect(w, r, sink.URL+r.URL.RequestURI(), status)
					}))
					t.Cleanup(redirector.Close)

					md, err := call(t, ctx, sink, func(c *Config) { c.Endpoint, c.HTTPClient = redirector.URL, cl.hc })
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
							t.Errorf("errors.Is(%v, %v) = %v, want %v", err, tc.class, !tc.want, tc.want)
						}
					}
					var ae *APIError
					if !errors.As(err, &ae) || ae.HTTPStatus != status || md.HTTPStatus != status {
						t.Errorf("err = %v, metadata %+v, want an *APIError with HTTP %d", err, md, status)
					}
					if err != nil && !strings.Contains(err.Error(), "redirected to "+sink.URL) {
						t.Errorf("error %q does not name the redirect target %s", err, sink.URL)
					}
					if got := sink.requests(); len(got) != 0 {
						t.Errorf("the redirect target received %d request(s) (first: %s %s, Authorization %q), want none",
							len(got), got[0].Method, got[0].Path, got[0].Header.Get("Authorization"))
					}
				})
			}
		}
	}
}
