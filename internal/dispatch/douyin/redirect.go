package douyin

import (
	"net/http"
	"net/url"

	"github.com/qualfile/qualfile/messages"
)

// Redirects are never followed: every request body carries the app secret
// (token fetch) or the access token (role calls), and Go's client re-sends
// the body of a POST answered with 307 or 308 to wherever Location points.
// A 3xx reply is an error of class ErrRedirect instead.

// defaultHTTPClient is used when a Config or TokenSource names no client:
// a transport of its own (not http.DefaultTransport, which anything in the
// process may change) and no redirects.
var defaultHTTPClient = &http.Client{Transport: newTransport(), CheckRedirect: refuseRedirect}

func newTransport() http.RoundTripper {
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		return dt.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
}

// refuseRedirect is a CheckRedirect that hands the 3xx reply back instead
// of following it.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// noRedirects returns hc, or the default client when hc is nil, as a client
// that does not follow redirects. hc itself is not changed.
func noRedirects(hc *http.Client) *http.Client {
	if hc == nil {
		return defaultHTTPClient
	}
	c := *hc
	c.CheckRedirect = refuseRedirect
	return &c
}

// isRedirect reports whether status is a 3xx.
func isRedirect(status int) bool { return status >= 300 && status <= 399 }

// redirectTarget names where a 3xx reply pointed, scheme and host only (the
// rest of a Location is the other side's and may be long or echo the
// request), for the error message.
func redirectTarget(resp *http.Response) string {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "nowhere (no Location)"
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "an unreadable Location"
	}
	if resp.Request != nil && resp.Request.URL != nil {
		u = resp.Request.URL.ResolveReference(u)
	}
	return messages.Truncate(u.Scheme+"://"+u.Host, 100)
}
