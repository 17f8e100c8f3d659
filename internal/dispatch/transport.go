package dispatch

import (
	"net"
	"net/http"
	"time"
)

// IdleConnTimeout is how long a vendor connection may sit idle before
// qualfile closes it: below the keep-alive of the vendors' front ends
// (commonly 60 s), so that a request is never written to a connection the
// far end is closing.
const IdleConnTimeout = 30 * time.Second

// NewHTTPClient returns the client that every vendor call of a process
// shares, keeping as many idle connections per vendor host as calls may be
// in flight at once, so that under load a call reuses a connection (and
// its TLS handshake). Each vendor client refuses redirects itself.
func NewHTTPClient(inFlight int) *http.Client {
	inFlight = max(inFlight, 2)
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          0, // no limit across hosts; per host below
		MaxIdleConnsPerHost:   inFlight,
		IdleConnTimeout:       IdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr}
}
