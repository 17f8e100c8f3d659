// Package vendorhttp is the HTTP handling the Volcengine and Douyin clients
// share.
package vendorhttp

import (
	"io"
	"net/http"
	"net/url"

	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// NoRedirects returns a copy of hc, or a client with a transport of its own
// when hc is nil, that hands a 3xx reply back instead of following it:
// every request is signed or carries a secret.
func NoRedirects(hc *http.Client) *http.Client {
	var c http.Client
	if hc != nil {
		c = *hc
	} else if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		c.Transport = dt.Clone()
	} else {
		c.Transport = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// IsRedirect reports whether status is a 3xx.
func IsRedirect(status int) bool { return status >= 300 && status <= 399 }

// RedirectTarget names where a 3xx reply pointed, scheme and host only (the
// rest of a Location is the other side's and may echo the request).
func RedirectTarget(resp *http.Response) string {
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

// ReadBody reads at most max bytes of resp's body; tooLarge reports that
// there was more.
func ReadBody(resp *http.Response, max int64) (raw []byte, tooLarge bool, err error) {
	raw, err = io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, false, err
	}
	return raw, int64(len(raw)) > max, nil
}

// StatusClass classifies a reply on its HTTP status alone: 429 throttled,
// 5xx transient, anything else permanent.
func StatusClass(status int) error {
	switch {
	case status == http.StatusTooManyRequests:
		return retry.ErrThrottled
	case status >= 500 && status <= 599:
		return retry.ErrTransient
	}
	return retry.ErrPermanent
}
